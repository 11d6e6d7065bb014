"""One preprocessing pipeline, described by a serialisable config, for training and inference.

Steps (TorchIO transforms, in this order, built by :func:`build_preprocessing`):

1. :class:`RecordInputGrid`: store the input grid (``subject["input_shape"]``, ``(3,)`` int, and
   ``subject["input_affine"]``, ``(4, 4)`` float, mm) so that results can be mapped back.
2. ``tio.ToOrientation`` (default ``"RAS"``; image, label and brain mask alike).
3. :class:`CropToMask`: crop to the brain's bounding box plus ``crop_margin_mm`` (brain mask when
   given, else the image's foreground: nonzero voxels, as nnU-Net).
4. :class:`NormalizeIntensity`: per channel, z-score or percentile clipping rescaled to [0, 1],
   statistics taken inside the brain mask (or the foreground).
5. :class:`ResampleToSpacing`: to ``target_spacing`` (mm), or with ``finest_spacing`` to
   :func:`resample_spacing` (an axis finer than the target is kept, down to that size); images
   linear (or B-spline), labels nearest, or *probability-preserving*: the label resampled linearly
   as a float and thresholded at 0.5.

Training inserts MRI-artefact augmentation (bias field, motion...) between steps 3 and 4 (they act
on raw intensities) and the other augmentation after step 5: see
:func:`mednet_pvs.data.augmentation.build_training_transform`.

The config (:class:`PreprocessConfig`) is saved in a model bundle's ``config.json``
(``"preprocessing": cfg.to_dict()``) and read back with :meth:`PreprocessConfig.from_dict`, so
inference runs exactly the preprocessing training used.

Back to the input grid (inference)
----------------------------------
The preprocessed subject's image carries its own affine, and step 1 stored the input grid. A
prediction made on the preprocessed grid (``(C, X', Y', Z')`` probabilities) is mapped back with
:func:`to_input_grid`, which resamples it *by affine* (world coordinates, mm) onto
``(input_shape, input_affine)``: this undoes the reorientation, the crop (voxels outside the crop
get 0) and the resampling in one step, exactly (no interpolation) when no resampling was done::

    subject = subject_from_arrays(scan.data, scan.affine)      # or subject_from_case / _from_files
    pre = build_preprocessing(cfg)(subject)
    probs = predict(pre["image"].data)                         # (C, X', Y', Z') on pre's grid
    back = to_input_grid(probs, pre)                           # (C, X, Y, Z) on the input grid
    save_like(back[1].numpy() > 0.5, scan, "mask.nii.gz")

(The crop is also in TorchIO's history, ``pre.get_inverse_transform()``; ``ToOrientation`` and
the resampling are not invertible there, hence the affine route.)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torchio as tio

from mednet_pvs.config import Config, shown
from mednet_pvs.errors import ConfigError
from mednet_pvs.io import PathType, load_image

IMAGE, LABEL, BRAINMASK = "image", "label", "brainmask"
Normalisation = Literal["zscore", "percentile", "none"]


#: Kept for code written against the data layer's first version.
DictConfig = Config


@dataclass
class PreprocessConfig(Config):
    """How scans are prepared for the network; JSON-able, travels with the model weights.

    Attributes:
        target_spacing: voxel size (mm) to resample to, or ``None`` to keep each scan's own.
        finest_spacing: with ``target_spacing``, the finest voxel size (mm) kept: an axis whose
            voxels are finer than the target is not downsampled to it but kept as it is, or
            resampled to this size when finer still (:func:`resample_spacing`); ``None``
            resamples every axis to the target (nnU-Net). A 0.8 mm scan then keeps its PVS
            detail instead of being downsampled to 1 mm and its probabilities upsampled back.
        orientation: axis codes to reorient to (``"RAS"``), or ``None`` to keep.
        normalisation: ``"zscore"`` (mean 0, std 1 inside the mask), ``"percentile"`` (clip to
            ``percentiles`` inside the mask, rescale to [0, 1]) or ``"none"``.
        percentiles: lower and upper percentile (0-100) for ``"percentile"``.
        use_brainmask: compute statistics and crop with the subject's brain mask when it has one.
        foreground: mask used without a brain mask: ``"nonzero"`` (nnU-Net) or ``"mean"``
            (voxels above the image mean, for scans with a noisy background).
        crop_to_brain: crop to the bounding box of the brain mask / foreground.
        crop_margin_mm: margin kept around that bounding box (mm).
        label_interpolation: ``"nearest"``, or ``"linear"`` (probability-preserving: the mask is
            resampled as a float and thresholded at 0.5, which puts the boundary at the 50%
            partial-volume level in world space; structures thinner than about half a target
            voxel vanish when downsampling, whereas nearest keeps or drops them depending on how
            the grids align, and shifts boundaries by up to half a voxel).
        image_interpolation: ``"linear"`` or ``"bspline"`` (nnU-Net uses 3rd order).
    """

    _what = "preprocessing"

    target_spacing: tuple[float, float, float] | None = None
    finest_spacing: float | None = None
    orientation: str | None = "RAS"
    normalisation: Normalisation = "zscore"
    percentiles: tuple[float, float] = (0.5, 99.5)
    use_brainmask: bool = True
    foreground: Literal["nonzero", "mean"] = "nonzero"
    crop_to_brain: bool = True
    crop_margin_mm: float = 5.0
    label_interpolation: Literal["nearest", "linear"] = "nearest"
    image_interpolation: Literal["linear", "bspline"] = "linear"

    _one_for_all = ("target_spacing",)

    def __post_init__(self) -> None:
        sp = self.target_spacing
        if isinstance(sp, (int, float)):
            self.target_spacing = (float(sp),) * 3  # one size: isotropic
        elif sp is not None:
            self.target_spacing = tuple(float(v) for v in sp)  # type: ignore[assignment]
        if isinstance(self.orientation, str):
            self.orientation = self.orientation.upper()
        self.percentiles = tuple(float(v) for v in self.percentiles)  # type: ignore[assignment]
        super().__post_init__()

    def validate(self) -> None:
        """Spacing of 3 positive sizes (mm), 3 axis codes, known choices, ordered percentiles in
        [0, 100], margin >= 0 mm."""
        sp = self.target_spacing
        if sp is not None and (len(sp) != 3 or not min(sp) > 0):
            raise ConfigError(f"must be 3 positive sizes in mm or null, not {shown(sp)}", field="target_spacing")
        fine = self.finest_spacing
        if fine is not None and (sp is None or not 0 < fine <= min(sp)):
            raise ConfigError(f"must be null or a size in mm in (0, the smallest target_spacing], not {shown(fine)}"
                              + (" (target_spacing is null: every scan keeps its own)" if sp is None else ""),
                              field="finest_spacing")
        o = self.orientation
        if o is not None and not isinstance(o, str) or isinstance(o, str) and sorted(o.translate(str.maketrans("LPI", "RAS"))) != ["A", "R", "S"]:
            raise ConfigError(f"must be 3 axis codes such as 'RAS' or 'LPS', not {shown(o)}", field="orientation")
        _choice("normalisation", self.normalisation, ("zscore", "percentile", "none"))
        _choice("foreground", self.foreground, ("nonzero", "mean"))
        _choice("label_interpolation", self.label_interpolation, ("nearest", "linear"))
        _choice("image_interpolation", self.image_interpolation, ("linear", "bspline"))
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ConfigError(f"must satisfy 0 <= low < high <= 100, not {shown(self.percentiles)}", field="percentiles")
        if not self.crop_margin_mm >= 0:
            raise ConfigError(f"must be >= 0 (mm), not {shown(self.crop_margin_mm)}", field="crop_margin_mm")


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"must be one of {', '.join(map(repr, allowed))}, not {shown(value)}", field=name)


# ------------------------------------------------------------------------------------- subjects


def _read_image(path: PathType) -> tuple[np.ndarray, np.ndarray]:
    """TorchIO reader: image through :func:`mednet_pvs.io.load_image` (checked), (1, X, Y, Z) float32."""
    scan = load_image(path, kind="image", max_anisotropy=None)
    return scan.data[None], scan.affine


def _read_label(path: PathType) -> tuple[np.ndarray, np.ndarray]:
    """TorchIO reader: label / mask as stored (integers), (1, X, Y, Z)."""
    scan = load_image(path, kind="label", max_anisotropy=None)
    data = scan.data if scan.data.dtype != np.uint16 else scan.data.astype(np.int32)
    return data[None], scan.affine


def subject_from_files(
    images: PathType | Sequence[PathType],
    label: PathType | None = None,
    brainmask: PathType | None = None,
    **metadata: Any,
) -> tio.Subject:
    """A lazily loaded subject: ``"image"`` (one channel per path), optional ``"label"``, ``"brainmask"``.

    Files are read (with :mod:`mednet_pvs.io`'s checks) when the subject is first used, e.g. in a
    data-loader worker. ``metadata`` (e.g. ``subject="sub-01", site="A"``) is stored as is.
    """
    paths = [Path(images)] if isinstance(images, (str, Path)) else [Path(p) for p in images]
    kw: dict[str, Any] = {IMAGE: tio.ScalarImage(paths if len(paths) > 1 else paths[0], reader=_read_image)}
    if label is not None:
        kw[LABEL] = tio.LabelMap(Path(label), reader=_read_label)
    if brainmask is not None:
        kw[BRAINMASK] = tio.LabelMap(Path(brainmask), reader=_read_label)
    return tio.Subject(**kw, **metadata)


def subject_from_case(case: Any, *, with_label: bool = True) -> tio.Subject:
    """The subject of a :class:`~mednet_pvs.data.cases.Case`, with metadata ``subject``, ``site``, ``split``."""
    return subject_from_files(
        case.images,
        case.label if with_label else None,
        case.brainmask,
        subject=case.key,
        site=case.site or "",
        split=case.split or "",
    )


def subject_from_arrays(
    image: np.ndarray | torch.Tensor,
    affine: np.ndarray,
    label: np.ndarray | torch.Tensor | None = None,
    brainmask: np.ndarray | torch.Tensor | None = None,
    *,
    subject: str = "",
    site: str = "",
) -> tio.Subject:
    """A subject from arrays already in memory.

    Args:
        image: (X, Y, Z) or (C, X, Y, Z) intensities (cast to float32).
        affine: 4x4 voxel-to-world (mm) matrix shared by all arrays.
        label: (X, Y, Z) binary PVS mask, or ``None``.
        brainmask: (X, Y, Z) binary brain mask, or ``None``.
    """
    def chan(a: Any, dtype: torch.dtype) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(a)).to(dtype)
        return t[None] if t.ndim == 3 else t

    affine = np.asarray(affine, dtype=float)
    kw: dict[str, Any] = {IMAGE: tio.ScalarImage(tensor=chan(image, torch.float32), affine=affine)}
    if label is not None:
        kw[LABEL] = tio.LabelMap(tensor=chan(label, torch.uint8), affine=affine)
    if brainmask is not None:
        kw[BRAINMASK] = tio.LabelMap(tensor=chan(brainmask, torch.uint8), affine=affine)
    return tio.Subject(**kw, subject=subject, site=site)


# ----------------------------------------------------------------------------------- transforms


def foreground_mask(subject: tio.Subject, cfg: PreprocessConfig) -> torch.Tensor:
    """(X, Y, Z) bool: the brain mask (when present and ``use_brainmask``), else the image foreground."""
    if cfg.use_brainmask and BRAINMASK in subject:
        return subject[BRAINMASK].data[0] > 0
    data = subject[IMAGE].data
    if cfg.foreground == "mean":
        return (data > data.mean(dim=(1, 2, 3), keepdim=True)).any(0)
    return (data != 0).any(0)


class RecordInputGrid(tio.SpatialTransform):
    """Store the image's grid as ``subject["input_shape"]`` ((3,) int64) and ``["input_affine"]`` ((4, 4) mm)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.args_names = []

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if "input_affine" not in subject:  # keep the first record when pipelines are chained
            subject["input_shape"] = np.asarray(subject[IMAGE].spatial_shape, dtype=np.int64)
            subject["input_affine"] = np.asarray(subject[IMAGE].affine, dtype=np.float64)
            subject.update_attributes()
        return subject


class _ConfigTransform:
    """Mixin: a transform driven by a :class:`PreprocessConfig` (``cfg``)."""

    def __init__(self, cfg: PreprocessConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.cfg = cfg
        self.args_names = ["cfg"]


class CropToMask(_ConfigTransform, tio.SpatialTransform):
    """Crop every image to the bounding box of the brain (or foreground) plus a margin.

    Args:
        cfg: preprocessing config (``use_brainmask``, ``foreground``, ``crop_margin_mm``).

    The crop is done by ``tio.Crop`` (recorded in the subject's history). An empty mask leaves the
    subject uncropped.
    """

    def bounds(self, subject: tio.Subject) -> tuple[int, int, int, int, int, int] | None:
        """Voxels to cut at each end, ``(x0, x1, y0, y1, z0, z1)``, or ``None`` for nothing to crop."""
        mask = foreground_mask(subject, self.cfg)
        if not mask.any():
            return None
        shape = np.array(mask.shape)
        margin = np.ceil(self.cfg.crop_margin_mm / np.array(subject[IMAGE].spacing)).astype(int)
        out = []
        for ax in range(3):
            hits = torch.nonzero(mask.any(dim=tuple(a for a in range(3) if a != ax))).flatten()
            lo = max(int(hits[0]) - int(margin[ax]), 0)
            hi = min(int(hits[-1]) + 1 + int(margin[ax]), int(shape[ax]))
            out += [lo, int(shape[ax]) - hi]
        return None if not any(out) else tuple(out)  # type: ignore[return-value]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        b = self.bounds(subject)
        return subject if b is None else tio.Crop(b, copy=False)(subject)


class NormalizeIntensity(_ConfigTransform, tio.IntensityTransform):
    """Per-channel intensity normalisation inside the brain (or foreground) mask.

    Args:
        cfg: preprocessing config (``normalisation``, ``percentiles``, ``use_brainmask``,
            ``foreground``).

    ``"zscore"``: ``(x - mean) / std`` with statistics inside the mask. ``"percentile"``: clip to
    the ``percentiles`` inside the mask, then rescale linearly to [0, 1]. Output float32. With the
    ``"nonzero"`` foreground (no brain mask) the zero background stays 0, as in nnU-Net.
    """

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if self.cfg.normalisation == "none":
            return subject
        mask = foreground_mask(subject, self.cfg)
        # nnU-Net: with the nonzero mask (no brain mask), the zero background stays 0
        keep_zero = self.cfg.foreground == "nonzero" and not (self.cfg.use_brainmask and BRAINMASK in subject)
        for image in self.get_images(subject):
            data = image.data.float().clone()
            for c in range(data.shape[0]):
                data[c] = self.normalize(data[c], mask)
                if keep_zero:
                    data[c][~mask] = 0
            image.set_data(data)
        return subject

    def normalize(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalise one channel (X, Y, Z) given a bool mask (X, Y, Z)."""
        values = x[mask] if mask.shape == x.shape and mask.any() else x.flatten()
        if self.cfg.normalisation == "zscore":
            mean, std = values.mean(), values.std()
            return (x - mean) / (std if std > 0 else 1.0)
        lo, hi = np.percentile(values.numpy(), self.cfg.percentiles)
        return ((x.clamp(float(lo), float(hi)) - lo) / (hi - lo if hi > lo else 1.0)).float()


class ResampleToSpacing(tio.SpatialTransform):
    """Resample every image to a voxel size (mm), labels nearest or probability-preserving.

    Args:
        spacing: target voxel size (mm).
        image_interpolation: ``"linear"`` or ``"bspline"`` for scalar images.
        label_interpolation: ``"nearest"``, or ``"linear"``: each label map is resampled as float32
            with linear interpolation and thresholded at 0.5 (binary masks; multi-label maps are
            resampled one-hot and the largest value wins).
        finest: keep axes finer than ``spacing`` down to this size (mm): :func:`resample_spacing`.
    """

    def __init__(
        self,
        spacing: tuple[float, float, float],
        image_interpolation: str = "linear",
        label_interpolation: str = "nearest",
        finest: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spacing, self.image_interpolation, self.label_interpolation = tuple(spacing), image_interpolation, label_interpolation
        self.finest = finest
        self.args_names = ["spacing", "image_interpolation", "label_interpolation", "finest"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        spacing = resample_spacing(subject[IMAGE].spacing, self.spacing, self.finest)
        if np.allclose(subject[IMAGE].spacing, spacing, atol=1e-4):
            return subject
        linear_labels = self.label_interpolation == "linear"
        originals: dict[str, tuple[torch.dtype, torch.Tensor]] = {}
        if linear_labels:
            for name, img in subject.get_images_dict(intensity_only=False).items():
                if isinstance(img, tio.LabelMap):
                    values = torch.unique(img.data)
                    onehot = torch.cat([img.data == v for v in values]) if len(values) > 2 else (img.data > 0)
                    originals[name] = (img.data.dtype, values)
                    img.set_data(onehot.float())
        resample = tio.Resample(
            spacing,
            image_interpolation=self.image_interpolation,
            label_interpolation="linear" if linear_labels else "nearest",
            copy=False,
        )
        subject = resample(subject)
        for name, (dtype, values) in originals.items():
            img = subject[name]
            if len(values) > 2:
                img.set_data(values[img.data.argmax(0, keepdim=True)].to(dtype))
            else:
                img.set_data((img.data >= 0.5).to(dtype) * (values.max() if len(values) else 1).to(dtype))
        return subject


class PadToShape(tio.SpatialTransform):
    """Pad (centred, with 0) every axis shorter than ``min_shape`` so that patches fit.

    Args:
        min_shape: smallest spatial shape (X, Y, Z) voxels, e.g. the patch size.
    """

    def __init__(self, min_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_shape = tuple(int(v) for v in min_shape)
        self.args_names = ["min_shape"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        missing = np.maximum(np.array(self.min_shape) - np.array(subject.spatial_shape), 0)
        if not missing.any():
            return subject
        pad = [int(v) for m in missing for v in (m // 2, m - m // 2)]
        return tio.Pad(pad, padding_mode=0, copy=False)(subject)


def build_preprocessing(cfg: PreprocessConfig | dict | None = None, *, artefacts: tio.Transform | None = None) -> tio.Compose:
    """The preprocessing pipeline of ``cfg`` (see the module docstring for the steps).

    Args:
        cfg: config, its dict, or ``None`` for the defaults.
        artefacts: transform applied to raw intensities between cropping and normalisation
            (training only: MRI artefact augmentation).

    Returns:
        A ``tio.Compose`` taking a subject with ``"image"`` and optional ``"label"`` /
        ``"brainmask"``; the subject given is not modified.
    """
    cfg = _as_config(cfg)
    steps: list[tio.Transform] = [RecordInputGrid(copy=False)]
    if cfg.orientation is not None:
        steps.append(tio.ToOrientation(cfg.orientation, copy=False))
    if cfg.crop_to_brain:
        steps.append(CropToMask(cfg, copy=False))
    if artefacts is not None:
        steps.append(artefacts)
    steps.append(NormalizeIntensity(cfg, copy=False))
    if cfg.target_spacing is not None:
        steps.append(ResampleToSpacing(cfg.target_spacing, cfg.image_interpolation, cfg.label_interpolation,
                                       finest=cfg.finest_spacing, copy=False))
    return tio.Compose(steps)


def resample_spacing(spacing: Sequence[float], target: Sequence[float], finest: float | None = None) -> tuple[float, float, float]:
    """The voxel size (mm) a scan of voxel size ``spacing`` is resampled to, axis by axis.

    ``target`` where the scan is as coarse or coarser; with ``finest``, a finer axis keeps its own
    size, or ``finest`` where it is finer still (``spacing`` 0.8 -> 0.8 with target 1 and finest
    0.8; 0.6 -> 0.8; 1.2 -> 1; 5 -> 1). Sizes within 1e-4 mm of the target count as the target.
    """
    out = []
    for s, t in zip(spacing, target):
        s, t = float(s), float(t)
        out.append(t if finest is None or s >= t - 1e-4 else max(s, float(finest)))
    return tuple(out)  # type: ignore[return-value]


def _as_config(cfg: PreprocessConfig | dict | None) -> PreprocessConfig:
    if cfg is None:
        return PreprocessConfig()
    if isinstance(cfg, dict):
        return PreprocessConfig.from_dict(cfg)
    if not isinstance(cfg, PreprocessConfig):
        raise ConfigError(f"preprocessing must be a PreprocessConfig or a dict, not {type(cfg).__name__}")
    return cfg


# --------------------------------------------------------------------------- back to the input


def input_grid(subject: tio.Subject) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid recorded by :class:`RecordInputGrid`: ``(shape, affine)``."""
    if "input_affine" not in subject:
        raise ValueError("subject has no recorded input grid: preprocess it with build_preprocessing() first")
    shape = tuple(int(v) for v in np.asarray(subject["input_shape"]).reshape(-1)[:3])
    return shape, np.asarray(subject["input_affine"], dtype=float).reshape(4, 4)  # type: ignore[return-value]


def resample_to_grid(
    data: torch.Tensor | np.ndarray,
    affine: np.ndarray,
    shape: Sequence[int],
    target_affine: np.ndarray,
    *,
    interpolation: str = "linear",
) -> torch.Tensor:
    """Resample ``data`` (C, X, Y, Z) living on ``affine`` onto the grid ``(shape, target_affine)``.

    World coordinates (mm) are matched, so reorientation, crops and voxel size all come out right;
    voxels of the target outside ``data``'s field of view are 0. Returns float32 (C, *shape).
    """
    t = torch.as_tensor(np.asarray(data) if isinstance(data, np.ndarray) else data).float()
    shape = tuple(int(v) for v in shape)
    img = tio.ScalarImage(tensor=t, affine=np.asarray(affine, dtype=float))
    out = tio.Resample((shape, np.asarray(target_affine, dtype=float)), image_interpolation=interpolation)(img).data
    if tuple(out.shape[1:]) != shape:  # never expected: SimpleITK honours the reference size
        raise RuntimeError(f"resampled shape {tuple(out.shape[1:])} != target shape {shape}")
    return out


def voxel_extent(src_affine: np.ndarray, tgt_affine: np.ndarray) -> np.ndarray:
    """How many source voxels one target voxel spans along each source axis: ``(3,)`` float,
    the sum over the target's voxel edges of their absolute length in source voxels (exact for
    grids axis-aligned to each other: permuted, flipped, scaled; a bounding box otherwise)."""
    m = np.linalg.solve(np.asarray(src_affine, np.float64)[:3, :3], np.asarray(tgt_affine, np.float64)[:3, :3])
    return np.abs(m).sum(axis=1)


def box_kernel(width: float) -> np.ndarray:
    """The 1-D mean over ``width`` voxels centred on a voxel (``width`` >= 1, fractional end
    weights: each tap weighs the overlap of its voxel ``[k - 0.5, k + 0.5]`` with
    ``[-width / 2, width / 2]``); sums to 1, odd length, symmetric."""
    half = float(width) / 2.0
    k = np.arange(-int(np.ceil(half - 0.5)), int(np.ceil(half - 0.5)) + 1, dtype=np.float64)
    w = np.clip(np.minimum(k + 0.5, half) - np.maximum(k - 0.5, -half), 0.0, None)
    return w / w.sum()


def box_average(data: torch.Tensor, widths: Sequence[float]) -> torch.Tensor:
    """``data`` (C, X, Y, Z) averaged over a box ``widths`` voxels wide per spatial axis (axes
    whose width is at most ~1 are left alone), zeros beyond the edges, on ``data``'s device.

    What a map on a fine grid must go through before it is sampled on a coarser one (thick
    slices): a coarse voxel holds the mean of the fine voxels it covers (the partial-volume
    fraction of a probability or mask), not the value at its centre."""
    out = data.float()
    for axis, width in enumerate(widths):
        if width <= 1.0 + 1e-3:
            continue
        kern = torch.as_tensor(box_kernel(width), dtype=out.dtype, device=out.device)
        dim = 1 + axis
        moved = out.movedim(dim, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        flat = torch.nn.functional.conv1d(flat, kern.view(1, 1, -1), padding=kern.numel() // 2)
        out = flat.reshape(moved.shape).movedim(-1, dim)
    return out


def to_input_grid(
    data: torch.Tensor | np.ndarray,
    preprocessed: tio.Subject,
    *,
    interpolation: str = "linear",
) -> torch.Tensor:
    """Map an array on the preprocessed grid back onto the input image's grid.

    Args:
        data: (C, X', Y', Z') or (X', Y', Z') values on ``preprocessed["image"]``'s grid
            (probabilities, logits, a mask).
        preprocessed: the subject returned by :func:`build_preprocessing`'s pipeline.
        interpolation: ``"linear"`` for probabilities, ``"nearest"`` for masks/labels, or
            ``"area"``: linear after a box average over each input voxel's extent along axes
            where the input grid is coarser than the preprocessed one (thick slices: the
            probability that a voxel is mostly PVS, as a label drawn on that grid is; see
            :func:`box_average`); the same as ``"linear"`` where the input grid is not coarser.

    Returns:
        float32 tensor (C, X, Y, Z) (or (X, Y, Z)) on the input grid; voxels outside the
        preprocessed field of view (cropped away) are 0. With arrays only (e.g. a validation
        batch's ``"affine"``, ``"input_shape"``, ``"input_affine"``) use :func:`resample_to_grid`.
    """
    t = torch.as_tensor(np.asarray(data) if isinstance(data, np.ndarray) else data)
    squeeze = t.ndim == 3
    shape, affine = input_grid(preprocessed)
    t = t[None] if squeeze else t
    if interpolation == "area":
        t, interpolation = box_average(t, voxel_extent(preprocessed[IMAGE].affine, affine)), "linear"
    out = resample_to_grid(t, preprocessed[IMAGE].affine, shape, affine, interpolation=interpolation)
    return out[0] if squeeze else out


__all__ = [
    "PreprocessConfig",
    "build_preprocessing",
    "resample_spacing",
    "subject_from_case",
    "subject_from_files",
    "subject_from_arrays",
    "to_input_grid",
    "resample_to_grid",
    "box_average",
    "box_kernel",
    "voxel_extent",
    "input_grid",
    "RecordInputGrid",
    "CropToMask",
    "NormalizeIntensity",
    "ResampleToSpacing",
    "PadToShape",
]
