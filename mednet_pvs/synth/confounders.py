"""Things that look a bit like PVS and must never be labelled as PVS.

* Lacunes: round/ovoid fluid cavities 3-15 mm across in the basal ganglia, thalamus or
  centrum-semiovale white matter; CSF-like core with a ~1 mm gliotic rim (WMH-like signal).
* White-matter hyperintensities, by Fazekas grade (0-3): periventricular caps/lining (1), a smooth
  halo (2) or an irregular band reaching into the deep white matter (3), plus deep foci (punctate,
  beginning to merge, confluent). Bright on T2w, slightly dark on T1w.
* Surface vessels (flow voids): 1-2.5 mm wide tubes 10-30 mm long running along the cortical
  surface, dark on T2w.

Each is returned as partial-volume "paints" (box, fraction, tissue) applied to the image later, a
code map (1 lacune, 2 WMH, 3 vessel) and an update of the ``reserved`` map PVS must avoid.
Sizes are scaled down (at most to 40 %) for brains smaller than MNI152.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mednet_pvs.synth._util import (bbox, box_around, box_coords, perpendiculars, ramp, rng_for, smooth_noise, unit,
                                    voxel_of)
from mednet_pvs.synth.anatomy import CODES, Anatomy
from mednet_pvs.synth.phantom_config import PhantomConfig
from mednet_pvs.synth.tubes import Wiggle, arc_length, render, trace

LACUNE, WMH, VESSEL = 1, 2, 3
CONFOUNDER_CODES = {"lacune": LACUNE, "wmh": WMH, "vessel": VESSEL}

#: Fazekas grade -> (periventricular thickness mm, deep foci count range, deep focus radius range mm)
_FAZEKAS = {1: (1.5, (2, 4), (1.0, 2.5)), 2: (4.0, (4, 8), (2.0, 4.0)), 3: (8.0, (7, 11), (3.0, 7.0))}
_LACUNE_GROUPS = ("bg_L", "bg_R", "thal_L", "thal_R", "wm_L", "wm_R")
_LACUNE_P = (0.2, 0.2, 0.15, 0.15, 0.15, 0.15)


@dataclass
class Paint:
    box: tuple[slice, ...]
    frac: np.ndarray  # float32 fraction of the voxel replaced by ``tissue``
    tissue: str


@dataclass
class ConfounderResult:
    codes: np.ndarray  # uint8 map: 0 none, 1 lacune, 2 WMH, 3 vessel
    paints: list[Paint] = field(default_factory=list)  # applied in order, before the PVS ...
    late_paints: list[Paint] = field(default_factory=list)  # ... and after them (vessels)
    meta: dict[str, Any] = field(default_factory=dict)


def add_confounders(anat: Anatomy, cfg: PhantomConfig, seed: int, reserved: np.ndarray) -> ConfounderResult:
    """Lacunes, WMH and surface vessels for one phantom; ``reserved`` (bool) is updated in place."""
    out = ConfounderResult(np.zeros(anat.shape, np.uint8))
    out.meta = {"lacunes": 0, "wmh_fazekas": 0, "wmh_deep_foci": 0, "wmh_volume_mm3": 0.0, "vessels": 0,
                "lacune_diameters_mm": []}
    if not cfg.confounders:
        return out
    size = float(np.clip(anat.scale, 0.4, 1.0))
    _wmh(anat, cfg.wmh, size, rng_for(seed, "wmh"), out)
    _lacunes(anat, cfg.lacunes, size, rng_for(seed, "lacunes"), out)
    _vessels(anat, cfg.vessels, size, rng_for(seed, "vessels"), out)
    from scipy import ndimage

    # PVS keep one voxel away from every confounder
    sl = bbox(out.codes > 0, margin=1)
    if sl is not None:
        reserved[sl] |= ndimage.binary_dilation(out.codes[sl] > 0, structure=np.ones((3, 3, 3), bool))
    out.meta["wmh_volume_mm3"] = round(float((out.codes == WMH).sum()) * anat.spacing**3, 2)
    return out


def _mark(out: ConfounderResult, box, mask: np.ndarray, code: int) -> None:
    view = out.codes[box]
    view[mask & (view == 0)] = code


def _blob(anat: Anatomy, centre: np.ndarray, radii: np.ndarray, rng: np.random.Generator, roughness: float,
          pad: float = 0.0):
    """Signed distance (mm, >0 inside) of a randomly oriented ellipsoid with a noisy edge, in its box."""
    h = anat.spacing
    r = float(radii.max()) + pad + 2 * h + roughness
    box = box_around(centre - r, centre + r, h, anat.shape)
    if box is None:
        return None, None
    gx, gy, gz = box_coords(box, h)
    a0 = unit(rng.normal(size=3))
    a1, a2 = perpendiculars(a0)
    d = (gx - centre[0], gy - centre[1], gz - centre[2])
    q2 = sum(((d[0] * a[0] + d[1] * a[1] + d[2] * a[2]) / s) ** 2 for a, s in zip((a0, a1, a2), radii))
    rho = np.sqrt(q2)
    sd = (1.0 - rho) * float(radii.min())
    if roughness > 0:
        sd = sd + roughness * (smooth_noise(sd.shape, max(2.0, radii.min() / h), rng) - 0.5) * 2
    return box, sd


def _wmh(anat: Anatomy, grade: int, size: float, rng: np.random.Generator, out: ConfounderResult) -> None:
    if grade == 0:
        return
    h = anat.spacing
    thick, n_range, r_range = _FAZEKAS[grade]
    wm_codes = list(CODES["wm"])
    # periventricular: within a (noisy) distance of the lateral ventricles, in cerebral WM
    box = anat.vent_box
    if anat.vent_dist.size:
        noise = smooth_noise(anat.vent_dist.shape, 6.0 / h, rng)
        t = thick * size * (0.3 + 1.4 * noise) if grade < 3 else thick * size * (0.1 + 1.8 * noise**1.5)
        wm = np.isin(anat.regions[box], wm_codes)
        frac = ramp(t - anat.vent_dist, h) * wm
        out.paints.append(Paint(box, frac, "wmh"))
        _mark(out, box, frac >= 0.5, WMH)
    # deep foci in the centrum semiovale
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    placed = 0
    for _ in range(n):
        group = ("wm_L", "wm_R")[int(rng.integers(2))]
        r = rng.uniform(*r_range) * size
        seeds = anat.seeds(group, 1.0)
        if seeds.size == 0:
            continue
        c = (np.array(np.unravel_index(seeds[rng.integers(seeds.size)], anat.shape)) + rng.uniform(-0.5, 0.5, 3)) * h
        radii = r * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.9)])
        box, sd = _blob(anat, c, np.maximum(radii, 0.6 * h), rng, roughness=0.3 * r)
        if box is None:
            continue
        frac = ramp(sd, h) * np.isin(anat.regions[box], wm_codes)
        if not (frac >= 0.5).any():
            continue
        out.paints.append(Paint(box, frac, "wmh"))
        _mark(out, box, frac >= 0.5, WMH)
        placed += 1
    out.meta["wmh_fazekas"] = grade
    out.meta["wmh_deep_foci"] = placed


def _lacunes(anat: Anatomy, n: int, size: float, rng: np.random.Generator, out: ConfounderResult) -> None:
    h = anat.spacing
    rim = max(1.0, 0.7 * h)
    placed, attempts = 0, 0
    while placed < n and attempts < 30 * n:
        attempts += 1
        group = _LACUNE_GROUPS[int(rng.choice(len(_LACUNE_GROUPS), p=_LACUNE_P))]
        seeds = anat.seeds(group, 1.5 + rim)
        want = rng.uniform(1.5, max(1.5, 7.5 * size))  # radius: 3-15 mm lacunes (smaller in small brains)
        shape_ratio = rng.uniform(0.75, 1.0, 2)
        if seeds.size == 0:
            continue
        i = seeds[rng.integers(seeds.size)]
        c = np.array(np.unravel_index(i, anat.shape)) * h
        r = max(1.5, min(want, float(anat.clearance.flat[i]) - rim))
        radii = r * np.array([1.0, *shape_ratio])
        box, sd = _blob(anat, c, radii, rng, roughness=0.0, pad=rim)
        if box is None:
            continue
        outer = ramp(sd + rim, h) * anat.brainmask[box]
        mask = outer >= 0.5
        if (out.codes[box][mask] > 0).any():
            continue
        out.paints.append(Paint(box, outer, "lacune_rim"))
        out.paints.append(Paint(box, ramp(sd, h) * anat.brainmask[box], "lacune"))
        _mark(out, box, mask, LACUNE)
        out.meta["lacune_diameters_mm"].append(round(2 * r, 2))
        placed += 1
    out.meta["lacunes"] = placed


def _vessels(anat: Anatomy, n: int, size: float, rng: np.random.Generator, out: ConfounderResult) -> None:
    h = anat.spacing
    seeds = anat.surface_seeds()
    allowed = list(CODES["cortex"]) + list(CODES["csf"])
    placed, attempts = 0, 0
    while placed < n and attempts < 20 * n and seeds.size:
        attempts += 1
        width = rng.uniform(1.0, 2.5)
        length = rng.uniform(10.0, 30.0) * size
        p0 = np.array(np.unravel_index(seeds[rng.integers(seeds.size)], anat.shape)) * h
        nrm = anat.direction(p0)
        e1, e2 = perpendiculars(nrm if np.any(nrm) else np.array([0.0, 0.0, 1.0]))
        ang = rng.uniform(0, 2 * np.pi)
        d0 = np.cos(ang) * e1 + np.sin(ang) * e2
        wig = Wiggle.random(d0, 0.3, rng)

        def ok(p: np.ndarray) -> bool:
            i = voxel_of(p, h, anat.shape)
            return i is not None and bool(anat.brainmask[i] and anat.regions[i] in allowed and out.codes[i] == 0)

        def fld(p: np.ndarray, t: np.ndarray) -> np.ndarray:  # stay tangent to the surface
            v = anat.direction(p)
            tt = t - (t @ v) * v
            return unit(tt) if np.linalg.norm(tt) > 1e-6 else t

        pts = trace(p0, length, 0.5 * h, fld, ok, wig, d0)
        if arc_length(pts) < 5.0 * size:
            continue
        r = render(pts, width / 2, h, anat.shape)
        if r is None:
            continue
        frac = r.frac * anat.brainmask[r.box]
        mask = (r.occ >= 0.5) & anat.brainmask[r.box]
        if (out.codes[r.box][mask] > 0).any():
            continue
        out.late_paints.append(Paint(r.box, frac, "vessel"))
        _mark(out, r.box, mask, VESSEL)
        placed += 1
    out.meta["vessels"] = placed
