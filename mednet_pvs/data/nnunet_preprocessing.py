"""nnU-Net's own preprocessing, step for step, for imported nnU-Net models ("exact mode").

Imported nnU-Net models run here exactly as nnU-Net's predictor runs them, so that their authors'
figures hold; the steps and their order follow nnU-Net v2 (2.8.1) ``DefaultPreprocessor.run_case_npy``
and ``export_prediction.convert_predicted_logits_to_segmentation_with_correct_shape``:

1. read (``SimpleITKIO``, nnU-Net's reader for NIfTI): the file's voxel array with the axes reversed
   (``(z, y, x)`` of the NIfTI's ``(i, j, k)``), spacing reversed; **never reoriented**: a scan stored
   LPS-permuted meets the network in another orientation than its RAS copy, as in nnU-Net;
2. ``transpose_forward`` of the plans;
3. crop to the nonzero box of all channels (holes filled); voxels outside the filled nonzero mask
   are ``-1`` in the mask used for normalisation;
4. normalise each channel by its scheme (z-score inside the mask or over the crop, CT, ...), then
5. resample to the target spacing with nnU-Net's function (scikit-image ``resize``, order 3, edge mode,
   no anti-aliasing; along a low-resolution axis of anisotropy > 3 a separate nearest-neighbour pass).
   nnU-Net v1 resamples first and normalises after (:attr:`NnUNetPipeline.version`).

The way back (:func:`export_logits`) resamples the logits (order 1, the same separate-z rule) to the
cropped shape, applies the softmax, takes the argmax, puts the crop back into the full array and
applies ``transpose_backward``.

Everything works on numpy arrays in nnU-Net's axis order; :func:`to_nnunet_axes` /
:func:`from_nnunet_axes` convert from/to the NIfTI voxel order of :class:`mednet_pvs.io.Scan`.
These functions are re-implementations checked against nnU-Net's own predictor (``tests/data/
nnunet_v2_reference``), not imports: nnU-Net is not a dependency.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import binary_fill_holes, map_coordinates

from mednet_pvs.config import Config, shown
from mednet_pvs.data.nnunet_normalizations import PHAM_NORMALIZATIONS
from mednet_pvs.errors import ConfigError

#: nnU-Net's ``ANISO_THRESHOLD``: a spacing ratio above this resamples the coarse axis separately.
ANISO_THRESHOLD = 3.0

#: Readers whose behaviour is reproduced. nnU-Net's ``SimpleITKIO`` and ``NibabelIO`` both hand the
#: network the stored voxel array with reversed axes; the ``WithReorient`` variants are not supported yet.
#: ``AgnoSITKIO`` (W. Pham's PVS models) is ``SimpleITKIO`` that reports 1 mm along every axis.
READERS = ("SimpleITKIO", "NibabelIO", "AgnoSITKIO")
#: Readers that ignore the file's voxel size: nnU-Net sees 1 mm per axis (no resampling to 1 mm plans).
SPACING_AGNOSTIC_READERS = ("AgnoSITKIO",)


@dataclass
class NnUNetPipeline(Config):
    """What nnU-Net's predictor does to a scan before and after the network (saved in a bundle).

    Axes of ``spacing`` are in the network's order (after ``transpose_forward``), in mm.

    Attributes:
        version: 1 (nnU-Net v1: resample, then normalise) or 2 (normalise, then resample).
        reader: nnU-Net's image reader class (:data:`READERS`).
        transpose_forward: the plans' axis permutation applied after reading.
        transpose_backward: its inverse, applied to outputs.
        spacing: target spacing of the configuration (network axis order, mm).
        normalization_schemes: per input channel (``ZScoreNormalization``, ``CTNormalization``, ...).
        use_mask_for_norm: per input channel: z-score inside the nonzero mask only.
        intensity_properties: per channel (``"0"``, ``"1"``...): the dataset fingerprint's
            ``mean``, ``std``, ``percentile_00_5``, ``percentile_99_5`` (used by CT normalisation).
        resampling_data: ``{"order": 3, "order_z": 0, "force_separate_z": None}`` for the image.
        resampling_probabilities: the same for the logits on the way back (order 1).
        channel_names: input channel index (``"0"``...) -> name (``"T2w"``...), from dataset.json.
        labels: label name -> value, from dataset.json (``{"background": 0, "PVS": 1}``).
    """

    _what = "nnU-Net pipeline"

    version: int = 2
    reader: str = "SimpleITKIO"
    transpose_forward: tuple[int, ...] = (0, 1, 2)
    transpose_backward: tuple[int, ...] = (0, 1, 2)
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    normalization_schemes: tuple[str, ...] = ("ZScoreNormalization",)
    use_mask_for_norm: tuple[bool, ...] = (False,)
    intensity_properties: dict[str, dict[str, float]] = field(default_factory=dict)
    resampling_data: dict[str, Any] = field(default_factory=lambda: {"order": 3, "order_z": 0, "force_separate_z": None})
    resampling_probabilities: dict[str, Any] = field(
        default_factory=lambda: {"order": 1, "order_z": 0, "force_separate_z": None})
    channel_names: dict[str, str] = field(default_factory=lambda: {"0": "image"})
    labels: dict[str, int] = field(default_factory=lambda: {"background": 0, "PVS": 1})

    def validate(self) -> None:
        """A known version and reader, permutations of (0, 1, 2), one scheme and flag per channel."""
        if self.version not in (1, 2):
            raise ConfigError(f"must be 1 or 2, not {shown(self.version)}", field="version")
        if self.reader not in READERS:
            raise ConfigError(f"must be one of {', '.join(READERS)}, not {shown(self.reader)}", field="reader")
        for name in ("transpose_forward", "transpose_backward"):
            if sorted(getattr(self, name)) != [0, 1, 2]:
                raise ConfigError(f"must be a permutation of (0, 1, 2), not {shown(getattr(self, name))}", field=name)
        if len(self.spacing) != 3 or any(s <= 0 for s in self.spacing):
            raise ConfigError(f"must be three positive numbers, not {shown(self.spacing)}", field="spacing")
        n = len(self.channel_names)
        for name in ("normalization_schemes", "use_mask_for_norm"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"must have one entry per input channel ({n}), not {shown(getattr(self, name))}",
                                  field=name)
        unknown = [s for s in self.normalization_schemes if s not in NORMALIZATIONS]
        if unknown:
            raise ConfigError(f"unknown normalisation scheme(s) {unknown}; known: {', '.join(sorted(NORMALIZATIONS))}",
                              field="normalization_schemes")
        if sorted(self.labels.values())[:1] != [0]:
            raise ConfigError(f"must map names to label values including background 0, not {shown(self.labels)}",
                              field="labels")

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)


@dataclass
class Preprocessed:
    """A case after :func:`preprocess`: the network's input and what the way back needs.

    Attributes:
        data: (C, *network grid) float32, network axis order.
        shape_before_cropping: shape after ``transpose_forward``, before cropping.
        bbox: ``[[lo, hi], ...]`` of the crop in that shape.
        shape_after_cropping: the cropped shape (before resampling).
        spacing: the input's spacing in network axis order (mm).
    """

    data: np.ndarray
    shape_before_cropping: tuple[int, ...]
    bbox: list[list[int]]
    shape_after_cropping: tuple[int, ...]
    spacing: tuple[float, ...]


# ------------------------------------------------------------------------------------------ axes
def to_nnunet_axes(volume: np.ndarray) -> np.ndarray:
    """(X, Y, Z) NIfTI voxel order -> nnU-Net's reader order (Z, Y, X): the axes reversed (a view)."""
    return volume.transpose(2, 1, 0)


def from_nnunet_axes(volume: np.ndarray) -> np.ndarray:
    """nnU-Net's (Z, Y, X) [with a leading channel axis if 4D] -> (X, Y, Z) NIfTI voxel order (a view)."""
    return volume.transpose(2, 1, 0) if volume.ndim == 3 else volume.transpose(0, 3, 2, 1)


# ------------------------------------------------------------------------------------- cropping
def crop_to_nonzero(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """nnU-Net's ``crop_to_nonzero``: the box of voxels nonzero in any channel (holes filled).

    Args:
        data: (C, *spatial).

    Returns:
        ``(cropped data, seg, bbox)``: ``seg`` (1, *cropped) int8 is 0 inside the filled nonzero
        mask and -1 outside; ``bbox`` is ``[[lo, hi), ...]`` per spatial axis.
    """
    nonzero = data[0] != 0
    for c in range(1, data.shape[0]):
        nonzero |= data[c] != 0
    nonzero = binary_fill_holes(nonzero)
    where = np.argwhere(nonzero)
    if where.size == 0:  # acvl_utils' get_bbox_from_mask on an empty mask: min/max of nothing
        bbox = [[0, s] for s in nonzero.shape]
    else:
        bbox = [[int(lo), int(hi) + 1] for lo, hi in zip(where.min(0), where.max(0))]
    box = tuple(slice(lo, hi) for lo, hi in bbox)
    seg = np.where(nonzero[box], np.int8(0), np.int8(-1))[None]
    return data[(slice(None), *box)], seg, bbox


def insert_crop(full: np.ndarray, crop: np.ndarray, bbox: Sequence[Sequence[int]]) -> np.ndarray:
    """Write ``crop`` into the last ``len(bbox)`` axes of ``full`` at ``bbox`` (in place; returned)."""
    box = tuple(slice(lo, hi) for lo, hi in bbox)
    full[(Ellipsis, *box)] = crop
    return full


# -------------------------------------------------------------------------------- normalisation
def _zscore(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    image = image.astype(np.float32, copy=False)
    if use_mask:
        mask = seg >= 0
        mean, std = image[mask].mean(), image[mask].std()
        image[mask] = (image[mask] - mean) / max(std, 1e-8)
    else:
        mean, std = image.mean(), image.std()
        image -= mean
        image /= max(std, 1e-8)
    return image


def _ct(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    image = image.astype(np.float32, copy=False)
    np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
    image -= props["mean"]
    image /= max(props["std"], 1e-8)
    return image


def _none(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    return image.astype(np.float32, copy=False)


def _rescale01(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    image = image.astype(np.float32, copy=False)
    image -= image.min()
    image /= np.clip(image.max(), a_min=1e-8, a_max=None)
    return image


Normalization = Callable[[np.ndarray, np.ndarray, bool, dict], np.ndarray]
#: nnU-Net v2's normalisation classes by name (``nnunetv2/preprocessing/normalization``).
NORMALIZATIONS: dict[str, Normalization] = {
    "ZScoreNormalization": _zscore,
    "CTNormalization": _ct,
    "NoNormalization": _none,
    "RescaleTo01Normalization": _rescale01,
}
NORMALIZATIONS.update(PHAM_NORMALIZATIONS)  # T1wPVSNormalization, AHENormalization, NLMFNormalization


def normalize(data: np.ndarray, seg: np.ndarray, pipeline: NnUNetPipeline) -> np.ndarray:
    """Each channel by its scheme (in place where nnU-Net works in place). ``seg``: (1, *spatial)."""
    for c in range(data.shape[0]):
        scheme = NORMALIZATIONS[pipeline.normalization_schemes[c]]
        data[c] = scheme(data[c], seg[0], pipeline.use_mask_for_norm[c], pipeline.intensity_properties.get(str(c), {}))
    return data


# ----------------------------------------------------------------------------------- resampling
def compute_new_shape(old_shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """``round(old_spacing / new_spacing * old_shape)`` per axis, as nnU-Net rounds it."""
    return tuple(int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape))  # noqa: RUF046 (numpy floats)


def _lowres_axis(spacing: Sequence[float]) -> np.ndarray:
    return np.where(max(spacing) / np.array(spacing) == 1)[0]


def separate_z(current_spacing: Sequence[float], new_spacing: Sequence[float],
               force_separate_z: bool | None = None, threshold: float = ANISO_THRESHOLD) -> tuple[bool, int | None]:
    """nnU-Net's ``determine_do_sep_z_and_axis``: resample one coarse axis separately, and which."""
    if force_separate_z is not None:
        do, axis = force_separate_z, (_lowres_axis(current_spacing) if force_separate_z else None)
    elif max(current_spacing) / min(current_spacing) > threshold:
        do, axis = True, _lowres_axis(current_spacing)
    elif max(new_spacing) / min(new_spacing) > threshold:
        do, axis = True, _lowres_axis(new_spacing)
    else:
        do, axis = False, None
    if axis is not None:
        if len(axis) != 1:  # two or three equally coarse axes: not anisotropic in one axis
            return False, None
        return do, int(axis[0])
    return do, None


def resample_to_shape(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                      new_spacing: Sequence[float], *, order: int = 3, order_z: int = 0,
                      force_separate_z: bool | None = False, threshold: float = ANISO_THRESHOLD) -> np.ndarray:
    """nnU-Net's ``resample_data_or_seg_to_shape`` for images and logits (``is_seg=False``).

    scikit-image's ``resize`` (``mode="edge"``, no anti-aliasing) per channel in float64, output in
    the input's dtype; with a separate coarse axis, 2D resizes per slice, then nearest-neighbour
    (``order_z``) ``map_coordinates`` along that axis. A shape that does not change returns ``data``.

    Args:
        data: (C, *spatial) array.
        new_shape: the spatial shape wanted.
        current_spacing, new_spacing: mm, same axis order.
    """
    from skimage.transform import resize

    do_sep, axis = separate_z(current_spacing, new_spacing, force_separate_z, threshold)
    shape, new_shape = np.array(data[0].shape), np.array(new_shape)
    if not np.any(shape != new_shape):
        return data
    out = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    data = data.astype(float, copy=False)
    kwargs = {"mode": "edge", "anti_aliasing": False}
    if not do_sep:
        for c in range(data.shape[0]):
            out[c] = resize(data[c], new_shape, order, **kwargs)
        return out
    assert axis is not None
    shape_2d = np.delete(new_shape, axis)
    for c in range(data.shape[0]):
        tmp = new_shape.copy()
        tmp[axis] = shape[axis]
        here = np.zeros(tmp)
        for s in range(shape[axis]):
            idx = [slice(None)] * 3
            idx[axis] = s
            here[tuple(idx)] = resize(data[c][tuple(idx)], shape_2d, order, **kwargs)
        if shape[axis] != new_shape[axis]:
            grid = np.mgrid[: new_shape[0], : new_shape[1], : new_shape[2]].astype(float)
            for d in range(3):
                grid[d] = float(here.shape[d]) / new_shape[d] * (grid[d] + 0.5) - 0.5
            out[c] = map_coordinates(here, grid, order=order_z, mode="nearest")
        else:
            out[c] = here
    return out


def _resample(data: np.ndarray, new_shape: Sequence[int], current: Sequence[float], new: Sequence[float],
              kwargs: dict[str, Any]) -> np.ndarray:
    return resample_to_shape(data, new_shape, current, new, order=int(kwargs.get("order", 3)),
                             order_z=int(kwargs.get("order_z", 0)), force_separate_z=kwargs.get("force_separate_z", False))


# ------------------------------------------------------------------------------------ pipeline
def preprocess(channels: Sequence[np.ndarray], spacing_xyz: Sequence[float], pipeline: NnUNetPipeline) -> Preprocessed:
    """nnU-Net's preprocessing of one case.

    Args:
        channels: one (X, Y, Z) array per input channel, NIfTI voxel order, one grid.
        spacing_xyz: the voxel size (mm) along X, Y, Z (the NIfTI's pixdim); a reader of
            :data:`SPACING_AGNOSTIC_READERS` takes 1 mm instead, as nnU-Net then does.
        pipeline: the imported model's :class:`NnUNetPipeline`.
    """
    data = np.stack([to_nnunet_axes(np.asarray(c)) for c in channels]).astype(np.float32)
    spacing = tuple(float(s) for s in spacing_xyz)[::-1]
    if pipeline.reader in SPACING_AGNOSTIC_READERS:
        spacing = (1.0,) * len(spacing)
    tf = pipeline.transpose_forward
    data = data.transpose(0, *[i + 1 for i in tf])
    spacing = tuple(spacing[i] for i in tf)
    shape_before = tuple(data.shape[1:])
    data, seg, bbox = crop_to_nonzero(data)
    shape_after = tuple(data.shape[1:])
    target = pipeline.spacing
    new_shape = compute_new_shape(shape_after, spacing, target)
    if pipeline.version == 2:
        data = normalize(np.ascontiguousarray(data), seg, pipeline)
        data = _resample(data, new_shape, spacing, target, pipeline.resampling_data)
    else:
        raise ConfigError("nnU-Net v1's exact pipeline is not implemented yet")
    return Preprocessed(np.ascontiguousarray(data, dtype=np.float32), shape_before, bbox, shape_after, spacing)


def export_logits(logits: np.ndarray, pre: Preprocessed, pipeline: NnUNetPipeline) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's way back: logits on the network grid -> (label map, probabilities) on the input grid.

    Args:
        logits: (K, *network grid) as the sliding window left them (float16 in nnU-Net v2).

    Returns:
        ``(labels (X, Y, Z) uint8, probabilities (K, X, Y, Z) float32)`` in NIfTI voxel order; outside
        the crop the labels are 0 and the probabilities are background 1.
    """
    import torch

    logits = _resample(logits, pre.shape_after_cropping, pipeline.spacing, pre.spacing,
                       pipeline.resampling_probabilities)
    probs = torch.softmax(torch.from_numpy(np.ascontiguousarray(logits)).float(), 0)
    seg = probs.argmax(0).numpy()
    labels = insert_crop(np.zeros(pre.shape_before_cropping, np.uint8), seg, pre.bbox)
    full = np.zeros((probs.shape[0], *pre.shape_before_cropping), np.float32)
    full[0] = 1
    full = insert_crop(full, probs.numpy(), pre.bbox)
    tb = pipeline.transpose_backward
    labels = labels.transpose(tb)
    full = full.transpose(0, *[i + 1 for i in tb])
    return np.ascontiguousarray(from_nnunet_axes(labels)), np.ascontiguousarray(from_nnunet_axes(full))
