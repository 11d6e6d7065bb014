"""Domain-randomised phantoms: a new head, contrast and acquisition every sample.

    from mednet_pvs.synth.domain import DomainConfig, make_domain_phantom

    ph = make_domain_phantom(DomainConfig(), seed=3)                 # training: anything goes
    ph = make_domain_phantom(DomainConfig.fixed("FLAIR", head=True, resolution=(1, 1, 5)), seed=9)

SynthSeg-style training data for one model that works on any contrast, resolution and head
(``mednet-pvs-synth-any``). Per sample (each draw from its own seeded stream):

* **Anatomy**: the MNI152 brain (or the procedural one) with the PVS, lacunes, WMH and vessels of
  :func:`~mednet_pvs.synth.make_phantom` (random burden 0-4 per region, random confounder counts),
  then a new shape: a random affine (per-axis scale 0.85-1.15, rotation up to 10 degrees) and a
  smooth random displacement (up to ``deform_mm``, ~25 mm correlation) warp image and labels
  together (linear interpolation, labels re-thresholded at 0.5).
* **Head** (:mod:`mednet_pvs.synth.head`): CSF rim, skull and diploe, muscle, fat, skin, face and
  neck tissue, eyes; whole-head fields of view with probability ``p_head``, else skull-stripped
  (zero outside a brain mask dilated 0-2 mm) and cut to the brain.
* **Contrast**: every tissue mean random (``p_random``), else a T1w/T2w/FLAIR/PD preset with
  +-0.08 jitter; PVS follow CSF, so they are brighter or darker than white matter by at least
  ``min_pvs_contrast`` in every tissue they run through; a random gamma.
* **Acquisition**: voxel size 0.6-1.3 mm per axis, or thick slices (1.5-5 mm, any axis, with a
  Gaussian slice profile 0.9-1.2x the thickness) with probability ``p_thick``: blurred, sampled
  on that grid, given a bias field (up to ``bias``) and Rician noise (up to ``noise``) there, and
  for training brought back to the phantom grid (as the preprocessing's resampling does);
  k-space motion ghosting with probability ``p_motion``.

Labels: the PVS mask (never the confounders), the brain mask and the regions follow the same warp
at full resolution; :meth:`Phantom.label_map` style ``0 air/head, 1 brain, 2 PVS`` is
:func:`brain_pvs_labels`. Orientation on disk: :func:`store_as` (e.g. ``"LPS"``) permutes and
flips the arrays and rewrites the affine, so world coordinates stay the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mednet_pvs.config import Config, shown
from mednet_pvs.errors import ConfigError
from mednet_pvs.synth._util import bbox, rng_for
from mednet_pvs.synth.phantom import Phantom

CONTRAST_CHOICES = ("any", "T1w", "T2w", "FLAIR", "PD", "random")


@dataclass
class DomainConfig(Config):
    """How wide the randomisation is. Probabilities in [0, 1]; lengths in mm.

    Attributes:
        anatomy: ``"mni"``, ``"procedural"`` or ``"mixed"`` (procedural with probability ``p_procedural``).
        p_procedural: under ``"mixed"``, the probability of the procedural anatomy.
        shape: grid of the procedural anatomy (voxels; ignored for MNI).
        spacing: the phantom grid (mm); training data comes back on it.
        contrast: ``"any"`` (random with ``p_random``, else a jittered preset), ``"random"``, or one
            preset (``"T1w"``, ``"T2w"``, ``"FLAIR"``, ``"PD"``; exact, no jitter).
        p_random: probability of a fully random contrast under ``"any"``.
        min_pvs_contrast: least |CSF - t| for random contrasts, for every tissue t PVS run through
            (:data:`~mednet_pvs.synth.contrast.PVS_HOSTS`; PVS follow CSF).
        p_head: probability of a whole head (else skull-stripped).
        deform_mm: largest smooth displacement; scale_range / rotate_deg: the random affine.
        resolution: fixed acquisition voxel size (x, y, z) in mm, or ``None`` to draw it.
        p_thick: probability of thick slices when drawn (1.5-``max_thickness_mm``).
        noise, bias: largest Rician noise (relative to the brain mean) and bias strength.
        p_motion: probability of motion ghosting. gamma: largest |log gamma| of the intensity curve.
        acquired_grid: keep the image and labels on the acquisition grid (test sets: what a scanner
            stores) instead of bringing them back to the phantom grid (training).
        p_brainmask: training only: probability that a sample comes with its brain mask (then
            cropped to the brain and normalised inside it, as ``predict``'s second pass does),
            else normalised over the whole field of view (as the first pass does).
    """

    _what = "domain phantom"

    anatomy: str = "mni"
    p_procedural: float = 0.2
    shape: tuple[int, int, int] = (96, 96, 96)
    spacing: float = 1.0
    contrast: str = "any"
    p_random: float = 0.7
    min_pvs_contrast: float = 0.2
    p_head: float = 0.5
    deform_mm: float = 4.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    rotate_deg: float = 10.0
    resolution: tuple[float, float, float] | None = None
    p_thick: float = 0.35
    max_thickness_mm: float = 5.0
    noise: float = 0.08
    bias: float = 0.4
    p_motion: float = 0.1
    gamma: float = 0.3
    acquired_grid: bool = False
    p_brainmask: float = 0.5

    def validate(self) -> None:
        """Known anatomy and contrast; probabilities in [0, 1]; sizes positive."""
        if self.anatomy not in ("mni", "procedural", "mixed"):
            raise ConfigError(f"must be mni, procedural or mixed, not {shown(self.anatomy)}", field="anatomy")
        if self.contrast not in CONTRAST_CHOICES:
            raise ConfigError(f"must be one of {', '.join(CONTRAST_CHOICES)}, not {shown(self.contrast)}", field="contrast")
        for name in ("p_procedural", "p_random", "p_head", "p_thick", "p_motion", "p_brainmask"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"must be a probability in [0, 1], not {shown(v)}", field=name)
        if not 0.3 <= self.spacing <= 3.0:
            raise ConfigError(f"must be in [0.3, 3] mm, not {shown(self.spacing)}", field="spacing")
        lo, hi = self.scale_range
        if not 0.5 <= lo <= hi <= 2.0:
            raise ConfigError(f"must be 0.5 <= low <= high <= 2, not {shown(self.scale_range)}", field="scale_range")
        if self.resolution is not None and (len(self.resolution) != 3 or not all(0.3 <= r <= 10.0 for r in self.resolution)):
            raise ConfigError(f"must be three voxel sizes in [0.3, 10] mm, not {shown(self.resolution)}", field="resolution")
        for name in ("deform_mm", "rotate_deg", "noise", "bias", "gamma", "min_pvs_contrast"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"must be >= 0, not {shown(getattr(self, name))}", field=name)
        if not 1.0 <= self.max_thickness_mm <= 10.0:
            raise ConfigError(f"must be in [1, 10] mm, not {shown(self.max_thickness_mm)}", field="max_thickness_mm")

    @classmethod
    def fixed(cls, contrast: str, *, head: bool, resolution: tuple[float, float, float] = (1.0, 1.0, 1.0),
              spacing: float | None = None, **kwargs: Any) -> DomainConfig:
        """A test-set config: one preset contrast, head or not, one acquisition voxel size, stored
        on the acquisition grid; still a new shape, noise and bias per seed."""
        sp = spacing if spacing is not None else min(1.0, float(min(resolution)))
        return cls(contrast=contrast, p_head=1.0 if head else 0.0, resolution=tuple(float(r) for r in resolution),  # type: ignore[arg-type]
                   spacing=sp, acquired_grid=True, **kwargs)


def brain_pvs_labels(ph: Phantom) -> np.ndarray:
    """uint8 training target of the any-contrast model: 0 outside the brain, 1 brain, 2 PVS."""
    out = (ph.brainmask > 0).astype(np.uint8)
    out[(ph.label > 0) & (out > 0)] = 2
    return out


def make_domain_phantom(config: DomainConfig | None = None, *, seed: int = 0) -> Phantom:
    """One domain-randomised phantom (see the module docstring); same (config, seed) -> same arrays."""
    from mednet_pvs.synth.anatomy import get_anatomy
    from mednet_pvs.synth.contrast import tissue_means
    from mednet_pvs.synth.head import HEAD_TISSUES, make_head, pad_for_head
    from mednet_pvs.synth.phantom import phantom_meta, render_brain
    from mednet_pvs.synth.phantom_config import PhantomConfig

    cfg = config or DomainConfig()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    rng = rng_for(seed, "domain")
    anatomy = cfg.anatomy if cfg.anatomy != "mixed" else ("procedural" if rng.random() < cfg.p_procedural else "mni")
    burden = {r: int(rng.integers(0, 5)) for r in ("centrum_semiovale", "basal_ganglia", "midbrain", "hippocampus")}
    if max(burden.values()) == 0:
        burden["centrum_semiovale"] = int(rng.integers(1, 5))
    pcfg = PhantomConfig(anatomy=anatomy, shape=tuple(cfg.shape), spacing=cfg.spacing, contrast="random", burden=burden,
                         lacunes=int(rng.integers(0, 5)), wmh=int(rng.integers(0, 4)), vessels=int(rng.integers(0, 11)),
                         noise=0.0, bias=0.0, blur_fwhm_mm=0.0)
    anat = get_anatomy(anatomy, pcfg.shape, cfg.spacing)
    h = anat.spacing

    crng = rng_for(seed, "contrast")
    if cfg.contrast == "any":
        kind = "random" if crng.random() < cfg.p_random else str(crng.choice(["T1w", "T2w", "FLAIR", "PD"]))
        jitter = 0.08
    else:
        kind, jitter = cfg.contrast, 0.0
    means = tissue_means(kind, crng, head=True, min_pvs_contrast=cfg.min_pvs_contrast, jitter=jitter)
    img, label, pvs, conf = render_brain(anat, pcfg, seed, means)
    meta = phantom_meta(anat, pcfg, seed, label, pvs, conf, means)

    # a head around the brain, on a padded grid
    pad = pad_for_head(anat.shape, h)
    img, label, brain, regions = (np.pad(a, pad) for a in (img, label, anat.brainmask, anat.regions))
    head = make_head(brain, h, rng_for(seed, "head"))
    outside = head.labels >= 2
    lut = np.zeros(int(head.labels.max()) + 1, np.float32)
    for code, name in HEAD_TISSUES.items():
        if code < lut.size:
            lut[code] = means[name]
    img[outside] = lut[head.labels[outside]]
    origin = np.asarray(anat.affine)[:3, 3] - np.array([p[0] for p in pad]) * h
    affine = np.diag([h, h, h, 1.0])
    affine[:3, 3] = origin

    # a new shape: random affine + smooth displacement, image and labels together
    img, label, brain, regions, skin, warp = _deform(img, label, brain, regions, head.labels > 0, h, cfg, rng_for(seed, "deform"))
    whole_head = bool(rng_for(seed, "fov").random() < cfg.p_head)
    img, acq = _acquire(img, brain, h, cfg, seed)
    if not whole_head:
        r = rng_for(seed, "strip").uniform(0.0, 2.0)
        keep = _dilate(brain, r, h)
        img = np.where(keep, img, np.float32(0.0))
        box = bbox(keep, margin=int(round(rng_for(seed, "fov", "margin").uniform(2.0, 10.0) / h)))
    else:
        if rng_for(seed, "fov", "zero").random() < 0.25:  # some scanners store the air as exact zeros
            img = np.where(_dilate(skin, 2.0, h), img, np.float32(0.0))
        box = bbox(skin, margin=int(round(rng_for(seed, "fov", "margin").uniform(0.0, 15.0) / h)))
        if box is not None:  # often the field of view ends somewhere in the neck
            zb = bbox(brain)
            if zb is not None and rng_for(seed, "fov", "neck").random() < 0.5:
                z0 = int(rng_for(seed, "fov", "cut").integers(max(box[2].start, zb[2].start - int(40 / h)), zb[2].start + 1))
                box = (box[0], box[1], slice(z0, box[2].stop))
    assert box is not None
    img, label, brain, regions = (a[box] for a in (img, label, brain, regions))
    affine[:3, 3] = affine[:3, 3] + np.array([s.start for s in box]) * h
    out_affine = affine
    if cfg.acquired_grid and acq.get("voxel_mm") and any(abs(v - h) > 1e-6 for v in acq["voxel_mm"]):
        img, label, brain, regions, out_affine = _to_acquired_grid(img, label, brain, regions, affine, acq["voxel_mm"])
    meta.update(generator="mednet_pvs.synth.domain", domain=cfg.to_dict(), contrast_kind=kind, whole_head=whole_head,
                head=head.meta, deformation=warp, acquisition=acq, anatomy=anatomy, shape=list(img.shape),
                spacing_mm=[round(float(v), 4) for v in np.sqrt((out_affine[:3, :3] ** 2).sum(0))],
                affine=np.asarray(out_affine).round(6).tolist(), pvs_volume_mm3=round(float(label.sum()) * float(abs(np.linalg.det(out_affine[:3, :3]))), 3))
    meta["config"] = dict(meta["config"], contrast=kind)
    z = np.zeros(img.shape, np.uint16)
    return Phantom(image=img.astype(np.float32), label=label.astype(np.uint8), brainmask=brain.astype(np.uint8),
                   regions=regions.astype(np.int16), affine=out_affine, meta=meta,
                   pvs_fraction=label.astype(np.float32), instances=z, confounders=z.astype(np.uint8))


# ------------------------------------------------------------------------------------ helpers

def _deform(img, label, brain, regions, head, h, cfg: DomainConfig, rng):
    """Warp everything with one random affine + smooth displacement (torch ``grid_sample``: 0.5 s
    per channel on a 200^3 grid, as fast as scipy's ``map_coordinates``; the image linearly, all
    labels packed in one channel by nearest neighbour)."""
    import torch
    import torch.nn.functional as F

    shape = img.shape
    lo, hi = cfg.scale_range
    scale = rng.uniform(lo, hi, 3) * rng.uniform(0.95, 1.05)
    ang = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg, 3))
    rot = _rotation(ang)
    m = rot @ np.diag(1.0 / scale)  # output -> input (normalised coordinates, isotropic grid)
    ext = np.array(shape, float) * h  # sizes in mm: normalised coordinates of each axis differ
    a = np.diag(2.0 / ext) @ m @ np.diag(ext / 2.0)
    # smooth displacement on a ~25 mm control grid, in mm -> normalised
    cells = [max(3, int(round(n * h / 25.0)) + 1) for n in shape]
    disp = rng.normal(0.0, cfg.deform_mm / 2.0, (3, *cells)).clip(-cfg.deform_mm, cfg.deform_mm)
    with torch.no_grad():
        # affine_grid works in (W, H, D) = (z, y, x) order: reverse the axes of ``a``
        theta = torch.tensor(a[::-1, ::-1].copy(), dtype=torch.float32)
        theta = torch.cat([theta, torch.zeros(3, 1)], dim=1)[None]
        grid = F.affine_grid(theta, [1, 1, *shape], align_corners=True)
        d = torch.from_numpy(disp.astype(np.float32))[None]
        d = F.interpolate(d, size=shape, mode="trilinear", align_corners=True)[0]
        for i in range(3):
            grid[0, ..., 2 - i] += d[i] * float(2.0 / ext[i])
        del d
        out = F.grid_sample(torch.from_numpy(np.ascontiguousarray(img))[None, None], grid, mode="bilinear",
                            padding_mode="zeros", align_corners=True)[0, 0].numpy()
        # every label in one channel, warped by nearest neighbour: regions * 8 + head * 4 + brain * 2 + PVS
        code = regions.astype(np.float32) * 8 + head * np.float32(4) + brain * np.float32(2) + label
        code = F.grid_sample(torch.from_numpy(code)[None, None], grid, mode="nearest", padding_mode="zeros",
                             align_corners=True)[0, 0].numpy().astype(np.int32)
    meta = {"scale": [round(float(v), 3) for v in scale], "rotation_deg": [round(float(np.rad2deg(v)), 2) for v in ang],
            "displacement_mm_max": round(float(np.abs(disp).max()), 2)}
    return out, (code & 1) > 0, (code & 2) > 0, (code >> 3).astype(np.int16), (code & 4) > 0, meta


def _rotation(ang: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(ang)
    sx, sy, sz = np.sin(ang)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _dilate(mask: np.ndarray, r_mm: float, h: float) -> np.ndarray:
    from scipy import ndimage

    r = int(round(r_mm / h))
    if r <= 0:
        return mask
    z = np.arange(-r, r + 1)
    ball = (z[:, None, None] ** 2 + z[None, :, None] ** 2 + z[None, None, :] ** 2) <= r * r
    return ndimage.binary_dilation(mask, structure=ball)


def draw_voxel_size(cfg: DomainConfig, rng: np.random.Generator) -> tuple[list[float], dict[str, Any]]:
    """The acquisition voxel (x, y, z) in mm and its description (slice axis, profile)."""
    if cfg.resolution is not None:
        vox = [float(v) for v in cfg.resolution]
        thick = max(vox) > 1.5 * min(vox)
        return vox, {"slice_axis": int(np.argmax(vox)) if thick else None, "profile": 1.0}
    if rng.random() < cfg.p_thick:
        axis = int(rng.integers(0, 3))
        inplane = float(rng.uniform(0.6, 1.2))
        vox = [inplane] * 3
        vox[axis] = float(rng.uniform(1.5, cfg.max_thickness_mm))
        return vox, {"slice_axis": axis, "profile": float(rng.uniform(0.9, 1.2))}
    return [float(v) for v in rng.uniform(0.6, 1.3, 3)], {"slice_axis": None, "profile": 1.0}


def _acquire(img: np.ndarray, brain: np.ndarray, h: float, cfg: DomainConfig, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """PSF blur, sampling on the acquisition grid, bias and Rician noise there, motion, gamma;
    the image comes back on the phantom grid (the caller may sample it again: ``acquired_grid``)."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    from mednet_pvs.synth.acquisition import bias_field, motion

    rng = rng_for(seed, "acquisition")
    vox, desc = draw_voxel_size(cfg, rng)
    fwhm = [v * (desc["profile"] if desc["slice_axis"] == i else 1.0) for i, v in enumerate(vox)]
    for ax, f in enumerate(fwhm):  # PSF on top of the phantom grid's own sampling
        s = np.sqrt(max(f * f - h * h, 0.0)) / 2.3548 / h
        if s > 0.2:
            img = ndimage.gaussian_filter1d(img, s, axis=ax, truncate=3.0, output=np.float32)
    ref = float(img[brain].mean()) if brain.any() else float(img.mean())
    coarse = [max(4, int(round(n * h / v))) for n, v in zip(img.shape, vox)]
    down = any(c < n for c, n in zip(coarse, img.shape))
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    a = F.interpolate(t, size=coarse, mode="trilinear", align_corners=True)[0, 0].numpy() if down else img
    bm = F.interpolate(torch.from_numpy(brain.astype(np.float32))[None, None], size=coarse, mode="trilinear",
                       align_corners=True)[0, 0].numpy() > 0.5 if down else brain
    meta: dict[str, Any] = {"voxel_mm": [round(v, 3) for v in vox], "slice_axis": desc["slice_axis"],
                            "slice_profile": round(desc["profile"], 3)}
    b = float(rng.uniform(0.0, cfg.bias))
    if b > 0.01:
        a = a * np.exp(np.float32(b) * bias_field(a.shape, bm, rng_for(seed, "bias")))
    meta["bias"] = round(b, 3)
    if rng.random() < cfg.p_motion:
        a, shifts = motion(a.astype(np.float32), float(rng.uniform(1.0, 4.0)), rng_for(seed, "motion"))
        meta["motion_shifts_vox"] = [[round(float(v), 2) for v in s] for s in shifts]
    sigma = float(rng.uniform(0.005, cfg.noise)) * ref if cfg.noise > 0 else 0.0
    if sigma > 0:
        nrng = rng_for(seed, "noise")
        re = a + nrng.standard_normal(a.shape, dtype=np.float32) * np.float32(sigma)
        im = nrng.standard_normal(a.shape, dtype=np.float32) * np.float32(sigma)
        a = np.sqrt(re * re + im * im, dtype=np.float32)
    meta["noise_sigma"] = round(sigma, 5)
    if cfg.gamma > 0:
        g = float(np.exp(rng.uniform(-cfg.gamma, cfg.gamma)))
        top = float(np.percentile(a, 99.9)) or 1.0
        a = (np.clip(a / top, 0.0, None) ** np.float32(g) * np.float32(top)).astype(np.float32)
        meta["gamma"] = round(g, 3)
    if down:
        a = F.interpolate(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None], size=img.shape,
                          mode="trilinear", align_corners=True)[0, 0].numpy()
    return np.ascontiguousarray(a, dtype=np.float32), meta


def _to_acquired_grid(img, label, brain, regions, affine, vox):
    """Image and labels on the acquisition grid (what a scanner would store): the image sampled
    (linear), masks by area average >= 0.5, regions by nearest neighbour; the affine scaled."""
    import torch
    import torch.nn.functional as F

    h = float(affine[0, 0])
    size = [max(4, int(round(n * h / v))) for n, v in zip(img.shape, vox)]
    step = np.array([n * h / s for n, s in zip(img.shape, size)])  # exact voxel sizes on this FOV
    def lin(a):
        return F.interpolate(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None], size=size,
                             mode="area" if all(s <= n for s, n in zip(size, img.shape)) else "trilinear")[0, 0].numpy()
    out_img = lin(img)
    out_lab, out_brain = lin(label) >= 0.5, lin(brain) >= 0.5
    idx = [np.minimum(((np.arange(s) + 0.5) * st / h).astype(int), n - 1) for s, st, n in zip(size, step, img.shape)]
    out_reg = regions[np.ix_(*idx)]
    aff = np.array(affine, float)
    aff[:3, :3] = np.diag(step)
    aff[:3, 3] = affine[:3, 3] + (step - h) / 2.0  # voxel centres: the first coarse voxel covers the first fine ones
    return out_img, out_lab, out_brain, out_reg, aff


def store_as(ph: Phantom, code: str) -> Phantom:
    """The phantom with its arrays stored in another orientation (``"LPS"``, ``"PIR"``...): the
    voxels move, the world coordinates of every voxel stay the same."""
    import nibabel as nib
    from nibabel import orientations as o

    cur = o.io_orientation(ph.affine)
    want = o.axcodes2ornt(tuple(code))
    tr = o.ornt_transform(cur, want)
    arrays = {k: o.apply_orientation(getattr(ph, k), tr) for k in ("image", "label", "brainmask", "regions", "pvs_fraction",
                                                                  "instances", "confounders")}
    aff = ph.affine @ o.inv_ornt_aff(tr, ph.image.shape)
    meta = dict(ph.meta, stored_orientation="".join(nib.aff2axcodes(aff)), affine=np.asarray(aff).round(6).tolist(),
                shape=list(arrays["image"].shape))
    return Phantom(affine=aff, meta=meta, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})


__all__ = ["CONTRAST_CHOICES", "DomainConfig", "brain_pvs_labels", "draw_voxel_size", "make_domain_phantom", "store_as"]
