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

The way back (:func:`export_logits`) resamples the logits (order 1, the same separate-z rule) to the
cropped shape, applies the softmax, takes the argmax, puts the crop back into the full array and
applies ``transpose_backward``.

nnU-Net v1 (1.7.1: ``GenericPreprocessor.preprocess_test_case``, ``save_segmentation_nifti_from_softmax``;
``version=1``) differs in three places: it **resamples first and normalises after**, with the mask
of the nonzero crop resampled too (batchgenerators' ``resize_segmentation``, order 1) and voxels
outside it set to 0 when ``use_mask_for_norm`` (:data:`V1_NORMALIZATIONS`: ``nonCT``, ``CT``, ``CT2``,
``noNorm``, with v1's ``std + 1e-8``); its network returns softmax probabilities, not logits; and its
way back (:func:`export_softmax_v1`) applies ``transpose_backward`` *before* resampling the
probabilities to the cropped shape, deciding the separate-z axis from the input's spacing in its
stored order or else from the target spacing in the network's order, as v1 does.

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
        version: 1 (nnU-Net v1: resample, then normalise; softmax out) or 2 (normalise, then
            resample; logits out).
        reader: nnU-Net's image reader class (:data:`READERS`).
        transpose_forward: the plans' axis permutation applied after reading.
        transpose_backward: its inverse, applied to outputs.
        spacing: target spacing of the configuration (network axis order, mm).
        normalization_schemes: per input channel (v2: ``ZScoreNormalization``, ``CTNormalization``,
            ...; v1: ``nonCT``, ``CT``, ``CT2``, ``noNorm``).
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
        known = normalizations(self.version)
        unknown = [s for s in self.normalization_schemes if s not in known]
        if unknown:
            raise ConfigError(f"unknown normalisation scheme(s) {unknown} for nnU-Net v{self.version}; known: "
                              f"{', '.join(sorted(known))}", field="normalization_schemes")
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


def _v1_zscore(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    """v1's ``nonCT``: z-score inside the (resampled) nonzero mask and 0 outside it, or over the whole crop."""
    image = image.astype(np.float32, copy=False)
    if use_mask:
        mask = seg >= 0
        image[mask] = (image[mask] - image[mask].mean()) / (image[mask].std() + 1e-8)
        image[~mask] = 0
    else:
        image = (image - image.mean()) / (image.std() + 1e-8)
    return image


def _v1_ct(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    """v1's ``CT``: clip to the dataset's 0.5/99.5 percentiles, dataset mean and sd; 0 outside the mask."""
    image = np.clip(image.astype(np.float32, copy=False), props["percentile_00_5"], props["percentile_99_5"])
    image = (image - props["mean"]) / props["std"]
    if use_mask:
        image[seg < 0] = 0
    return image


def _v1_ct2(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    """v1's ``CT2``: clip to the dataset's percentiles, then this case's mean and sd inside them."""
    lo, hi = props["percentile_00_5"], props["percentile_99_5"]
    inside = (image > lo) & (image < hi)
    image = np.clip(image.astype(np.float32, copy=False), lo, hi)
    image = (image - image[inside].mean()) / image[inside].std()
    if use_mask:
        image[seg < 0] = 0
    return image


#: nnU-Net v1's normalisation schemes (``GenericPreprocessor.resample_and_normalize``) by the plans' names.
V1_NORMALIZATIONS: dict[str, Normalization] = {"nonCT": _v1_zscore, "CT": _v1_ct, "CT2": _v1_ct2, "noNorm": _none}


def normalizations(version: int) -> dict[str, Normalization]:
    """The normalisation schemes of nnU-Net ``version`` (1 or 2) by name."""
    return V1_NORMALIZATIONS if version == 1 else NORMALIZATIONS


def normalize(data: np.ndarray, seg: np.ndarray, pipeline: NnUNetPipeline) -> np.ndarray:
    """Each channel by its scheme (in place where nnU-Net works in place). ``seg``: (1, *spatial)."""
    schemes = normalizations(pipeline.version)
    for c in range(data.shape[0]):
        scheme = schemes[pipeline.normalization_schemes[c]]
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


def resize_segmentation(seg: np.ndarray, new_shape: Sequence[int], order: int = 1) -> np.ndarray:
    """batchgenerators' (0.25.5) ``resize_segmentation``: each label's indicator resized (edge mode,
    clipped), the per-voxel argmax; exact ties go to the nearest-neighbour label when it is tied."""
    from skimage.transform import resize

    kwargs = {"mode": "edge", "clip": True, "anti_aliasing": False}
    labels = np.unique(seg)
    if order == 0 or len(labels) < 2:
        if len(labels) == 1 and order != 0:
            return np.full(tuple(new_shape), labels[0], dtype=seg.dtype)
        return resize(seg.astype(float), new_shape, 0, **kwargs).astype(seg.dtype)
    scores = np.stack([resize((seg == c).astype(float), new_shape, order, **kwargs) for c in labels])
    win = scores.argmax(0)
    nearest = np.searchsorted(labels, resize(seg.astype(float), new_shape, 0, **kwargs))
    nearest = np.clip(nearest, 0, len(labels) - 1)
    top = np.take_along_axis(scores, nearest[None], 0)[0]
    win = np.where((top == scores.max(0)) & (top > 0), nearest, win)
    return labels[win].astype(seg.dtype)


def resample_to_shape(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                      new_spacing: Sequence[float], *, order: int = 3, order_z: int = 0,
                      force_separate_z: bool | None = False, threshold: float = ANISO_THRESHOLD,
                      is_seg: bool = False) -> np.ndarray:
    """nnU-Net's ``resample_data_or_seg_to_shape`` (v1: ``resample_patient``): the separate-z decision
    of :func:`separate_z`, then :func:`resample_along`."""
    do_sep, axis = separate_z(current_spacing, new_spacing, force_separate_z, threshold)
    return resample_along(data, new_shape, do_sep, axis, order=order, order_z=order_z, is_seg=is_seg)


def resample_along(data: np.ndarray, new_shape: Sequence[int], do_separate_z: bool, axis: int | None, *,
                   order: int = 3, order_z: int = 0, is_seg: bool = False) -> np.ndarray:
    """nnU-Net's ``resample_data_or_seg`` for images and probabilities (or, ``is_seg``, the crop mask).

    scikit-image's ``resize`` (``mode="edge"``, no anti-aliasing; :func:`resize_segmentation` for a
    segmentation) per channel in float64, output in the input's dtype; with a separate coarse
    ``axis``, 2D resizes per slice, then nearest-neighbour (``order_z``) ``map_coordinates`` along it.
    A shape that does not change returns ``data``.

    Args:
        data: (C, *spatial) array.
        new_shape: the spatial shape wanted.
    """
    from skimage.transform import resize as _resize

    def resize(image: np.ndarray, shape: Sequence[int], o: int, **kw: Any) -> np.ndarray:
        return resize_segmentation(image, shape, o) if is_seg else _resize(image, shape, o, **kw)

    do_sep = do_separate_z
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
    else:  # v1: NaNs to 0, resample image and crop mask (order 1), then normalise
        data[np.isnan(data)] = 0
        kw = pipeline.resampling_data
        data = _resample(np.ascontiguousarray(data), new_shape, spacing, target, kw)
        seg = resample_to_shape(seg.astype(np.int64), new_shape, spacing, target, order=1, order_z=0,
                                force_separate_z=kw.get("force_separate_z"), is_seg=True)
        data = normalize(data, seg, pipeline)
    return Preprocessed(np.ascontiguousarray(data, dtype=np.float32), shape_before, bbox, shape_after, spacing)


def export_prediction(scores: np.ndarray, pre: Preprocessed, pipeline: NnUNetPipeline) -> tuple[np.ndarray, np.ndarray]:
    """The network's output on its grid -> ``(labels, probabilities)`` on the input grid: v2's logits
    through :func:`export_logits`, v1's softmax through :func:`export_softmax_v1`."""
    return (export_softmax_v1 if pipeline.version == 1 else export_logits)(scores, pre, pipeline)


def export_softmax_v1(softmax: np.ndarray, pre: Preprocessed, pipeline: NnUNetPipeline) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net v1's way back (``predict_cases`` + ``save_segmentation_nifti_from_softmax``).

    ``transpose_backward`` first, then the probabilities resampled (``resampling_probabilities``:
    order 1, ``order_z`` 0) to the cropped shape in the stored axis order, the separate-z axis taken
    from the input's spacing (stored order) or else from the target spacing *in the network's order*
    (v1's own mix), the argmax, the crop put back.

    Args:
        softmax: (K, *network grid) float32 probabilities (folds averaged).

    Returns:
        As :func:`export_logits`.
    """
    tb = pipeline.transpose_backward
    softmax = softmax.transpose(0, *[i + 1 for i in tb])
    shape_after = tuple(pre.shape_after_cropping[i] for i in tb)
    shape_before = tuple(pre.shape_before_cropping[i] for i in tb)
    bbox = [pre.bbox[i] for i in tb]
    original = tuple(pre.spacing[i] for i in tb)
    kw = pipeline.resampling_probabilities
    # the input's spacing in stored order, the target in network order: v1 mixes them just so
    do_sep, axis = separate_z(original, pipeline.spacing, kw.get("force_separate_z"))
    probs = resample_along(np.ascontiguousarray(softmax, dtype=np.float32), shape_after, do_sep, axis,
                           order=int(kw.get("order", 1)), order_z=int(kw.get("order_z", 0)))
    labels = insert_crop(np.zeros(shape_before, np.uint8), probs.argmax(0).astype(np.uint8), bbox)
    full = np.zeros((probs.shape[0], *shape_before), np.float32)
    full[0] = 1
    full = insert_crop(full, probs, bbox)
    return np.ascontiguousarray(from_nnunet_axes(labels)), np.ascontiguousarray(from_nnunet_axes(full))


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
