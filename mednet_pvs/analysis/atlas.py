"""Regions without FreeSurfer: the MNI152 region map, registered to the scan by an affine.

When a case has no region map of its own (aseg, SynthSeg), the region map the phantoms are drawn
on (:func:`mednet_pvs.synth.anatomy.mni_anatomy`: FreeSurfer ``aseg`` codes on nilearn's MNI152
2009a template, 1 mm) is registered to the scan, so the per-region burden
(:data:`~mednet_pvs.analysis.regions.REGION_GROUPS`: white matter, basal ganglia, midbrain,
hippocampus) comes by default and says where it came from (:data:`ATLAS_SOURCE`).

Registration (SimpleITK, :func:`register_atlas`): a T1-like template made of the atlas's tissue
fractions (``0.25 CSF + 0.55 GM + 0.85 WM``, skull-stripped as the atlas is) is the moving image,
the scan (times its brain mask when one is given) the fixed image; Mattes mutual information
(32 bins) so T1w, T2w, FLAIR or any contrast serve; centre-of-mass start; a 12-parameter affine fitted
by regular-step gradient descent at 4 mm, then refined at 2 mm (both images smoothed and shrunk to
that size; 20 % then 5 % of the voxels sampled, a fixed seed: the same scan gives the same regions).
The labels are never interpolated: the atlas stays on its own grid and the fitted transform becomes
its affine in the scan's scanner space, so a PVS voxel's region is the atlas label nearest to where
it maps (nearest neighbour, exactly as a region map on another grid is read,
:func:`~mednet_pvs.analysis.regions.labels_at`); :meth:`AtlasRegions.on_grid` resamples the map onto
the scan's grid when a whole volume is wanted.

Measured (``benchmarks/bench_atlas_regions.py``, README "Regions without FreeSurfer"): region Dice
on deformed 1 mm phantoms and a few CPU seconds per case. An affine cannot follow the non-linear
part of a subject's anatomy: hippocampal numbers are the least accurate; a subject's own
FreeSurfer/SynthSeg map (``regions=``) is better whenever there is one.

A registration that cannot be done (an empty image, too little of a head, a transform no head
needs, a SimpleITK error) raises :class:`RegistrationError` from :func:`register_atlas`;
:func:`case_regions` turns it into ``regions_error`` for the case's stats, so the case keeps its
mask and overall burden.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mednet_pvs.errors import InputError
from mednet_pvs.io import ImageSource, load_image

#: What a case's stats say its regions are when they come from the atlas.
ATLAS_SOURCE = "atlas (MNI152 2009a regions, SimpleITK affine, Mattes MI, 4+2 mm)"
#: ``regions`` modes of :func:`case_regions` (a path is given per case, not as a mode).
REGION_MODES = ("atlas", "none")
#: Pyramid: (voxel size in mm, iterations, share of voxels sampled by the metric).
LEVELS: tuple[tuple[float, int, float], ...] = ((4.0, 150, 0.20), (2.0, 50, 0.05))
#: Template intensities per tissue fraction (CSF, GM, WM): T1-like, as the MNI152 template.
TEMPLATE_WEIGHTS = (0.25, 0.55, 0.85)
#: Linear size of the registered brain relative to the MNI152 brain outside this range: not a head.
SCALE_RANGE = (0.25, 4.0)
#: Least share of the atlas's brain that must land inside the scan's field of view.
MIN_COVERAGE = 0.25
_SEED = 20260  # fixed sampling seed: reproducible regions
_MIN_SAMPLES = 3000


class RegistrationError(InputError):
    """The atlas could not be registered to a scan (the scan's other results stand)."""


@dataclass(frozen=True)
class AtlasRegions:
    """The atlas's region map placed on a scan.

    Attributes:
        labels: int16 (X, Y, Z) FreeSurfer ``aseg`` codes on the atlas's own 1 mm grid (read-only).
        affine: 4x4 atlas voxel -> the scan's scanner coordinates (RAS mm): a region map "on any
            grid", as :func:`~mednet_pvs.analysis.burden.pvs_burden` takes one.
        transform: 4x4 scan scanner coordinates -> MNI152 coordinates (mm), the fitted affine.
        source: how the regions were made (:data:`ATLAS_SOURCE`).
        seconds: wall time of :func:`register_atlas` (the first call in a process also builds the
            1 mm atlas, about 5 s of CPU).
    """

    labels: np.ndarray
    affine: np.ndarray
    transform: np.ndarray
    source: str
    seconds: float

    @property
    def region_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, affine)``, the form ``pvs_burden(regions=...)`` reads."""
        return self.labels, self.affine

    def on_grid(self, shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
        """The region map on a target grid (nearest neighbour; outside the atlas 0), int16 (X, Y, Z)."""
        from mednet_pvs.analysis.regions import resample_labels

        return resample_labels(self.labels, self.affine, tuple(int(n) for n in shape), np.asarray(affine, float))


# ------------------------------------------------------------------------------------ the atlas
@lru_cache(maxsize=1)
def _atlas() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(regions int16, affine, T1-like template float32, brain mask bool) on the atlas's 1 mm grid."""
    from mednet_pvs.synth.anatomy import mni_anatomy

    anat = mni_anatomy(1.0)
    w_csf, w_gm, w_wm = TEMPLATE_WEIGHTS
    template = (w_csf * anat.csf + w_gm * anat.gm + w_wm * anat.wm).astype(np.float32)
    return anat.regions, np.asarray(anat.affine, float), template, anat.brainmask


@lru_cache(maxsize=len(LEVELS))
def _template_at(voxel_mm: float) -> Any:
    """The moving template, smoothed and shrunk to about ``voxel_mm`` (cached: the same every case)."""
    _, affine, template, _ = _atlas()
    return _shrink(_to_sitk(template, affine), voxel_mm)


# ------------------------------------------------------------------------------------- helpers
def _to_sitk(data: np.ndarray, affine: np.ndarray) -> Any:
    """A SimpleITK image whose physical space is the array's scanner space (RAS mm, as nibabel's;
    both images use it, so the fitted transform is RAS -> RAS). A sheared affine gets the nearest
    rotation (the regions are read back through the exact affine)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, np.float32).transpose(2, 1, 0)))
    lin = np.asarray(affine, float)[:3, :3]
    spacing = np.sqrt((lin**2).sum(0))
    u, _, vt = np.linalg.svd(lin / spacing)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(v) for v in affine[:3, 3]])
    img.SetDirection([float(v) for v in (u @ vt).ravel()])
    return img


def _shrink(img: Any, voxel_mm: float) -> Any:
    """Gaussian-smoothed (sigma = voxel_mm / 2) and shrunk by whole factors to about ``voxel_mm``."""
    import SimpleITK as sitk

    factors = [max(1, round(voxel_mm / s)) for s in img.GetSpacing()]
    if max(factors) == 1:
        return img
    return sitk.Shrink(sitk.SmoothingRecursiveGaussian(img, voxel_mm / 2), factors)


def _as_matrix(tx: Any) -> np.ndarray:
    """A SimpleITK affine transform as a 4x4 matrix (fixed point -> moving point)."""
    m = np.array(tx.GetMatrix(), float).reshape(3, 3)
    c = np.array(tx.GetCenter(), float)
    t = np.array(tx.GetTranslation(), float)
    out = np.eye(4)
    out[:3, :3] = m
    out[:3, 3] = t + c - m @ c
    return out


def _check_signal(data: np.ndarray, name: str) -> None:
    finite = np.isfinite(data)
    if not finite.all():
        raise RegistrationError(name, f"{int((~finite).sum())} NaN/infinite voxels: the atlas cannot be registered")
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        raise RegistrationError(name, f"image is empty (every voxel {lo:g}): the atlas cannot be registered")
    fg = int((data > lo + 0.05 * (hi - lo)).sum())
    if fg < 1000:
        raise RegistrationError(name, f"only {fg} voxels above background: too little of a head to register the atlas to")


def _size_guess(data: np.ndarray, affine: np.ndarray) -> float:
    """Linear size of the scan's foreground relative to the atlas brain (cube root of the volume
    ratio): the registration's starting scale. A skull-on head starts about 1.2 times too large,
    well within what the 4 mm level corrects."""
    lo, hi = float(data.min()), float(data.max())
    fg = float((data > lo + 0.1 * (hi - lo)).sum()) * abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    brain = float(_atlas()[3].sum())  # 1 mm voxels
    return (fg / brain) ** (1 / 3)


def _check_transform(m: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    """Refuse transforms no head needs and placements that leave the atlas outside the scan."""
    if not np.all(np.isfinite(m)):
        raise RegistrationError(name, "atlas registration diverged (non-finite transform)")
    sv = np.linalg.svd(m[:3, :3], compute_uv=False)  # scan mm -> atlas mm: 1/brain size
    size = 1.0 / sv[::-1]
    lo, hi = SCALE_RANGE
    if size.min() < lo or size.max() > hi:
        raise RegistrationError(
            name, f"atlas registration gave a brain {size.min():.2f}-{size.max():.2f} times the MNI152 size "
                  f"(a head is {lo:g}-{hi:g}): is this a head scan?")
    _, a_aff, _, brain = _atlas()
    step = 4
    ijk = np.argwhere(brain[::step, ::step, ::step]).T * step  # atlas brain, every 4th voxel
    world_mni = a_aff[:3, :3] @ ijk + a_aff[:3, 3:4]
    to_scan_vox = np.linalg.inv(affine) @ np.linalg.inv(m)
    v = to_scan_vox[:3, :3] @ world_mni + to_scan_vox[:3, 3:4]
    inside = np.all((v > -0.5) & (v < np.array(shape)[:, None] - 0.5), axis=0).mean()
    if inside < MIN_COVERAGE:
        raise RegistrationError(
            name, f"atlas registration put {100 * inside:.0f}% of the brain inside the scan's field of view "
                  f"(at least {100 * MIN_COVERAGE:.0f}% needed)")


# -------------------------------------------------------------------------------- registration
def register_atlas(image: ImageSource, affine: Any = None, *, brainmask: ImageSource | np.ndarray | None = None,
                   threads: int | None = None) -> AtlasRegions:
    """Register the MNI152 region map to a scan (affine, mutual information).

    Args:
        image: the scan: a path, nibabel image, :class:`~mednet_pvs.io.Scan`, ``(array, affine)``
            or an (X, Y, Z) array with ``affine``.
        affine: 4x4 affine of an array ``image``.
        brainmask: optional brain mask on the scan's grid (path, Scan or array): the scan is
            multiplied by it, so a skull-on scan meets the skull-stripped template as it should.
        threads: SimpleITK threads (default: SimpleITK's, all cores).

    Returns:
        :class:`AtlasRegions` (the map in the scan's scanner space).

    Raises:
        RegistrationError: an empty image, too little signal, a SimpleITK failure, or a fitted
            transform no head needs (brain size outside :data:`SCALE_RANGE`, less than
            :data:`MIN_COVERAGE` of the brain inside the field of view).
    """
    import SimpleITK as sitk

    t0 = time.perf_counter()
    src = (image, np.eye(4) if affine is None else np.asarray(affine, float)) if isinstance(image, np.ndarray) else image
    try:
        scan = load_image(src, max_anisotropy=None)
    except InputError as e:  # e.g. an empty (constant) image: no regions, the case goes on
        raise RegistrationError(e.path, f"{e.problem}: the atlas cannot be registered") from None
    name = scan.name
    data = np.asarray(scan.data, np.float32)
    if brainmask is not None:
        bm = np.asarray(brainmask) if isinstance(brainmask, np.ndarray) else load_image(brainmask, kind="label", max_anisotropy=None).data
        if bm.shape != data.shape:
            raise RegistrationError(name, f"brain mask of shape {bm.shape} is not on the scan's grid {data.shape}")
        data = np.where(bm > 0, data, 0).astype(np.float32)
    _check_signal(data, name)
    regions, a_aff, template, _ = _atlas()
    size = _size_guess(data, scan.affine)
    lo, hi = SCALE_RANGE
    if not lo <= size <= hi:  # no registration can make a head of it: say so at once
        raise RegistrationError(name, f"the image's foreground is {size:.2f} times the size of the MNI152 brain "
                                      f"(a head is {lo:g}-{hi:g}): is this a head scan?")
    try:
        if threads:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
        fixed_full = _to_sitk(data - float(data.min()), scan.affine)
        tx = sitk.CenteredTransformInitializer(fixed_full, _to_sitk(template, a_aff), sitk.AffineTransform(3),
                                               sitk.CenteredTransformInitializerFilter.MOMENTS)
        tx.SetMatrix((np.eye(3) / size).ravel().tolist())
        for voxel_mm, iterations, share in LEVELS:
            fixed = _shrink(fixed_full, voxel_mm)
            n = int(np.prod(fixed.GetSize()))
            reg = sitk.ImageRegistrationMethod()
            reg.SetMetricAsMattesMutualInformation(32)
            reg.SetMetricSamplingStrategy(reg.RANDOM)
            reg.SetMetricSamplingPercentage(min(1.0, max(share, _MIN_SAMPLES / n)), _SEED)
            reg.SetInterpolator(sitk.sitkLinear)
            reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-2, numberOfIterations=iterations,
                                                         gradientMagnitudeTolerance=1e-8, relaxationFactor=0.6)
            reg.SetOptimizerScalesFromPhysicalShift()
            reg.SetInitialTransform(tx, inPlace=True)
            reg.Execute(fixed, _template_at(voxel_mm))
    except RuntimeError as e:  # SimpleITK's errors (no overlap, too few samples...) are RuntimeErrors
        msg = " ".join(str(e).split())
        raise RegistrationError(name, f"atlas registration failed ({msg[-200:]})") from None
    m = _as_matrix(tx)
    _check_transform(m, scan.affine, data.shape, name)
    return AtlasRegions(labels=regions, affine=np.linalg.inv(m) @ a_aff, transform=m, source=ATLAS_SOURCE,
                        seconds=time.perf_counter() - t0)


def check_region_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`REGION_MODES`, else a :class:`~mednet_pvs.errors.ConfigError`."""
    from mednet_pvs.errors import ConfigError

    if mode not in REGION_MODES:
        raise ConfigError(f"regions must be one of {', '.join(REGION_MODES)} (or a region map file/folder), not {mode!r}")
    return mode


def case_regions(regions: Any, image: ImageSource, *, mode: str = "atlas",
                 brainmask: ImageSource | None = None) -> tuple[Any, dict[str, Any]]:
    """The region map to use for one case, and what to record about it; never raises for a failed
    registration.

    Args:
        regions: the case's own region map (path, Scan, ``(array, affine)``) or ``None``.
        image: the case's scan (registered to when ``regions`` is ``None`` and ``mode="atlas"``).
        mode: ``"atlas"`` (the case's own map when it has one, else the registered atlas) or
            ``"none"`` (no per-region burden).
        brainmask: the case's brain mask, if any (helps the registration of skull-on scans).

    Returns:
        ``(regions for pvs_burden or None, record)``; ``record`` has ``regions_source`` (``"file"``,
        :data:`ATLAS_SOURCE` or ``"none"``) and, when the registration failed, ``regions_error``
        (the reason, one line) with ``regions_source`` ``"none"``; with the atlas also
        ``regions: "atlas"`` (the map's name in the stats) and ``regions_seconds``.

    Raises:
        ConfigError: an unknown ``mode``.
    """
    if check_region_mode(mode) == "none":
        return None, {"regions_source": "none"}
    if regions is not None:
        return regions, {"regions_source": "file"}
    try:
        fit = register_atlas(image, brainmask=brainmask)
    except RegistrationError as e:
        return None, {"regions_source": "none", "regions_error": str(e)}
    return fit.region_map, {"regions": "atlas", "regions_source": fit.source, "regions_seconds": round(fit.seconds, 2)}


__all__ = ["ATLAS_SOURCE", "REGION_MODES", "AtlasRegions", "RegistrationError", "case_regions", "check_region_mode",
           "register_atlas"]
