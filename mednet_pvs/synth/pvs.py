"""Where PVS go, how many, which way they point, and how they are drawn.

Burden -> count (per region and hemisphere, in the whole volume). Levels follow the Potter /
Wardlaw visual rating scale for the basal ganglia and centrum semiovale (0 none, 1: 1-10,
2: 11-20, 3: 21-40, 4: >40, which we cap at 60). The scale counts PVS on the worst axial slice; we
use the same numbers for the whole volume, which keeps phantoms light. Midbrain (one midline
region) and hippocampus use small counts of their own. For a brain smaller than MNI152 (the
procedural head) the ranges are scaled by its linear size relative to MNI152 (``Anatomy.scale``)
and kept strictly increasing, so a higher level always means more PVS:

=================  =====  ======  ======  ======  ======
region             0      1       2       3       4
=================  =====  ======  ======  ======  ======
centrum semiovale  0      1-10    11-20   21-40   41-60   (per hemisphere)
basal ganglia      0      1-10    11-20   21-40   41-60   (per hemisphere)
midbrain           0      1       2-3     4-5     6-8     (midline)
hippocampus        0      1-2     3-5     6-8     9-12    (per hemisphere)
=================  =====  ======  ======  ======  ======

Orientation: centrum-semiovale PVS follow the radial field of the anatomy (from the ventricles
towards the cortex, i.e. roughly perpendicular to the cortex, like the medullary arteries);
basal-ganglia PVS are near-vertical (lenticulostriate arteries, tilt ~15 deg); midbrain PVS are
near-vertical with more tilt; hippocampal PVS lie along the hippocampal long axis.
Widths are drawn from ``width_mm`` skewed towards thin PVS (Beta(1.3, 3.5)), lengths from
``length_mm`` (Beta(1.5, 2.5)), and every PVS is at least twice as long as it is wide.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mednet_pvs.synth._util import rng_for, unit, voxel_of
from mednet_pvs.synth.anatomy import Anatomy, group_id
from mednet_pvs.synth.phantom_config import PVS_REGIONS, PhantomConfig
from mednet_pvs.synth.tubes import Wiggle, arc_length, render, trace

COUNT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "centrum_semiovale": ((0, 0), (1, 10), (11, 20), (21, 40), (41, 60)),
    "basal_ganglia": ((0, 0), (1, 10), (11, 20), (21, 40), (41, 60)),
    "midbrain": ((0, 0), (1, 1), (2, 3), (4, 5), (6, 8)),
    "hippocampus": ((0, 0), (1, 2), (3, 5), (6, 8), (9, 12)),
}


@dataclass(frozen=True)
class RegionSpec:
    groups: tuple[str, ...]
    direction: str  # "radial" | "vertical" | "hippocampus"
    tilt: float  # spread of the per-tube direction around the base direction
    curvature: float  # amplitude of the wiggle
    max_width: float = 99.0
    max_length: float = 999.0


REGION_SPECS: dict[str, RegionSpec] = {
    "centrum_semiovale": RegionSpec(("wm_L", "wm_R"), "radial", 0.0, 0.25),
    "basal_ganglia": RegionSpec(("bg_L", "bg_R"), "vertical", 0.25, 0.2),
    "midbrain": RegionSpec(("midbrain",), "vertical", 0.45, 0.2, max_width=2.0, max_length=10.0),
    "hippocampus": RegionSpec(("hip_L", "hip_R"), "hippocampus", 0.2, 0.15, max_width=2.0, max_length=8.0),
}


def count_ranges(region: str, scale: float = 1.0) -> list[tuple[int, int]]:
    """The (low, high) PVS count of each burden level for one region unit, scaled to a brain size."""
    out = [(0, 0)]
    nxt = 1
    for lo, hi in COUNT_RANGES[region][1:]:
        lo2 = max(nxt, int(round(lo * scale)))
        hi2 = max(lo2, int(round(hi * scale)))
        out.append((lo2, hi2))
        nxt = hi2 + 1
    return out


@dataclass
class PVSResult:
    occ: np.ndarray  # float32 occupancy; label = occ >= 0.5
    frac: np.ndarray  # float32 PVS volume fraction (image signal)
    instances: np.ndarray  # uint16, i = records[i - 1]
    records: list[dict[str, Any]] = field(default_factory=list)
    requested: dict[str, dict[str, int]] = field(default_factory=dict)


def place_pvs(anat: Anatomy, cfg: PhantomConfig, seed: int, reserved: np.ndarray) -> PVSResult:
    """Draw the PVS of every region into fresh arrays; ``reserved`` (bool) is updated in place."""
    from scipy import ndimage

    shape = anat.shape
    res = PVSResult(np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.uint16))
    origin = anat.origin
    for region in PVS_REGIONS:
        spec = REGION_SPECS[region]
        level = cfg.burden_of(region)
        res.requested[region] = {}
        for group in spec.groups:
            lo, hi = count_ranges(region, anat.scale)[level]
            u = rng_for(seed, "pvs-count", group).random()
            n_want = lo + int(u * (hi - lo + 1))
            res.requested[region][_hemi(group)] = n_want
            if n_want == 0:
                continue
            rng = rng_for(seed, "pvs", group)
            placed, attempts = 0, 0
            while placed < n_want and attempts < 40 * n_want + 40:
                attempts += 1
                tube = _one_tube(anat, cfg, spec, group, rng, reserved)
                if tube is None:
                    continue
                pts, radius, r = tube
                lab = r.label
                res.occ[r.box] = np.maximum(res.occ[r.box], r.occ)
                res.frac[r.box] = np.maximum(res.frac[r.box], r.frac)
                idx = len(res.records) + 1
                res.instances[r.box][lab] = idx
                reserved[r.box] |= ndimage.binary_dilation(lab, structure=np.ones((3, 3, 3), bool))
                placed += 1
                res.records.append(_record(idx, region, group, pts, radius, int(lab.sum()), anat, origin))
    return res


def _hemi(group: str) -> str:
    return group[-1] if group.endswith(("_L", "_R")) else "M"


def _one_tube(anat: Anatomy, cfg: PhantomConfig, spec: RegionSpec, group: str, rng: np.random.Generator,
              reserved: np.ndarray):
    h = anat.spacing
    w_lo, w_hi = cfg.width_mm
    w_hi = max(w_lo, min(w_hi, spec.max_width))
    width = w_lo + (w_hi - w_lo) * rng.beta(1.3, 3.5)
    radius = width / 2
    r_eff = max(radius, 0.5 * h)
    need = r_eff + h
    seeds = anat.seeds(group, np.ceil(need * 2) / 2)  # clearance quantised to 0.5 mm (cached seed lists)
    l_lo = max(cfg.length_mm[0], 2 * width)
    l_hi = max(l_lo, min(cfg.length_mm[1], spec.max_length))
    length = l_lo + (l_hi - l_lo) * rng.beta(1.5, 2.5)
    jitter = rng.uniform(-0.5, 0.5, 3)
    tilt = rng.normal(0, spec.tilt, 3)
    wig_rng = rng.integers(2**32)
    if seeds.size == 0:
        return None
    p0 = (np.array(np.unravel_index(seeds[rng.integers(seeds.size)], anat.shape)) + jitter) * h

    gid = group_id(group)
    groups, clearance = anat.groups, anat.clearance

    def ok(p: np.ndarray) -> bool:
        i = voxel_of(p, h, anat.shape)
        return i is not None and bool(groups[i] == gid and clearance[i] >= need and not reserved[i])

    if not ok(p0):
        return None
    if spec.direction == "radial":
        base = anat.direction(p0)

        def fld(p, t):
            v = anat.direction(p)
            return v if v @ t >= 0 else -v
    else:
        if spec.direction == "vertical":
            axis = np.array([0.0, 0.0, 1.0])
        else:
            axis = anat.hippo_axis * ([1, 1, 1] if group.endswith("_L") else [-1, 1, 1])
        tilt[np.argmax(np.abs(axis))] = 0.0
        base = unit(axis + tilt)

        def fld(p, t):
            return base if base @ t >= 0 else -base

    wig = Wiggle.random(base, spec.curvature, np.random.default_rng(wig_rng))
    pts = trace(p0, length, 0.5 * h, fld, ok, wig, base)
    if arc_length(pts) < l_lo - 1e-6:
        return None
    r = render(pts, radius, h, anat.shape)
    if r is None:
        return None
    lab = r.label
    if reserved[r.box][lab].any() or np.any(groups[r.box][lab] != gid):
        return None
    return pts, radius, r


def _record(idx: int, region: str, group: str, pts: np.ndarray, radius: float, n_vox: int, anat: Anatomy,
            origin: np.ndarray) -> dict[str, Any]:
    h = anat.spacing
    mid = pts[len(pts) // 2]
    d = unit(pts[-1] - pts[0])
    if d[2] < 0 or (d[2] == 0 and d[1] < 0):
        d = -d
    i = tuple(np.clip(np.rint(mid / h).astype(int), 0, np.array(anat.shape) - 1))
    length = arc_length(pts)
    return {
        "id": idx,
        "region": region,
        "hemisphere": _hemi(group),
        "aseg": int(anat.regions[i]),
        "length_mm": round(length, 3),
        "width_mm": round(2 * radius, 3),
        "direction": [round(float(v), 4) for v in d],
        "centre_mm": [round(float(v), 2) for v in mid + origin],
        "start_mm": [round(float(v), 2) for v in pts[0] + origin],
        "end_mm": [round(float(v), 2) for v in pts[-1] + origin],
        "n_voxels": n_vox,
        "volume_mm3": round(n_vox * h**3, 3),
        "true_volume_mm3": round(float(np.pi * radius**2 * length), 3),
    }
