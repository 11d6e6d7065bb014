"""Inputs of the pictures: read, check and bring to RAS voxel order (numpy and nibabel only).

Every picture goes through :func:`gather`: the volumes (image, mask, probability map) are read
from whatever the user has (path, nibabel image, :class:`~mednet_pvs.io.Scan`, ``(array, affine)``
or a bare array plus ``affine=``), checked to lie on one grid, and reoriented with :func:`to_ras`
(axis flips and permutations only, no resampling). After that, array axis 0 runs Left -> Right,
axis 1 Posterior -> Anterior and axis 2 Inferior -> Superior, whatever the stored voxel order, so
an LPS- or oblique-stored scan gives the same picture as its RAS copy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from mednet_pvs.errors import InputError

#: What the pictures accept for a volume: a path, a nibabel image, a Scan, ``(array, affine)`` or an array.
VolumeSource = Union[str, os.PathLike, np.ndarray, tuple, Any]

#: Letters of the negative and positive end of each RAS axis.
AXIS_ENDS = (("L", "R"), ("P", "A"), ("I", "S"))
#: World axis names of the RAS array axes.
AXIS_NAMES = ("x", "y", "z")
#: view name -> (normal axis, horizontal axis, vertical axis) in RAS array axes.
VIEWS = {"sagittal": (0, 1, 2), "coronal": (1, 0, 2), "axial": (2, 0, 1)}


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` reoriented to the closest RAS voxel order, and the affine of the reoriented array.

    Only flips and permutations of the array axes (no resampling): an oblique grid keeps its
    obliquity, its axes simply end up in the order closest to x (L->R), y (P->A), z (I->S).

    Args:
        data: (X, Y, Z) array as stored.
        affine: its 4x4 voxel-to-scanner (RAS+ mm) matrix.

    Returns:
        ``(ras_data, ras_affine)``; ``ras_affine`` maps indices of ``ras_data`` to the same scanner mm.
    """
    import nibabel as nib

    data = np.asarray(data)
    ornt = nib.orientations.io_orientation(np.asarray(affine, float))
    return nib.orientations.apply_orientation(data, ornt), ras_affine(affine, data.shape)


def ras_affine(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The affine :func:`to_ras` gives an array of ``shape`` stored with ``affine`` (no data touched)."""
    import nibabel as nib

    affine = np.asarray(affine, float)
    ornt = nib.orientations.io_orientation(affine)
    return affine @ nib.orientations.inv_ornt_aff(ornt, tuple(shape[:3]))


def richest_point(label: np.ndarray) -> tuple[int, int, int]:
    """Per axis, the slice index holding most label voxels (array centre for an empty label)."""
    lab = np.asarray(label) > 0
    if not lab.any():
        return tuple(n // 2 for n in lab.shape)  # type: ignore[return-value]
    return tuple(int(np.argmax(lab.sum(axis=tuple(a for a in range(3) if a != k)))) for k in range(3))  # type: ignore[return-value]


@dataclass
class Volumes:
    """Volumes of one picture, in RAS voxel order on one grid.

    Attributes:
        image: float32 (X, Y, Z) intensities, or ``None``.
        mask: bool (X, Y, Z) PVS mask, or ``None``.
        probs: float32 (X, Y, Z) PVS probability (0..1), or ``None``.
        affine: 4x4 voxel-to-scanner matrix of these RAS-ordered arrays (mm).
        stored: the same volumes as given (stored voxel order), for computations that must match
            other modules' numbering (cluster ids).
        source_affine: the affine of the stored arrays.
    """

    image: np.ndarray | None
    mask: np.ndarray | None
    probs: np.ndarray | None
    affine: np.ndarray
    stored: dict[str, np.ndarray] = field(repr=False)
    source_affine: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the RAS-ordered arrays."""
        return next(v for v in (self.image, self.mask, self.probs) if v is not None).shape  # type: ignore[return-value]

    @property
    def zooms(self) -> np.ndarray:
        """Voxel size (mm) along the RAS array axes."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def world(self, voxel: tuple[int, int, int] | np.ndarray) -> np.ndarray:
        """Scanner coordinates (x, y, z mm) of a voxel centre of the RAS-ordered arrays."""
        return (self.affine @ [*np.asarray(voxel, float), 1.0])[:3]

    def voxel(self, point_mm: Any) -> tuple[int, int, int]:
        """Nearest voxel (RAS-ordered indices) to a scanner point (x, y, z mm).

        Raises:
            InputError: the point lies outside the image.
        """
        p = np.asarray(point_mm, float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise InputError("<point>", f"point must be three scanner coordinates (x, y, z) in mm, got {point_mm!r}")
        ijk = np.rint(np.linalg.solve(self.affine, [*p, 1.0])[:3]).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= self.shape):
            lo, hi = self.world((0, 0, 0)), self.world(np.array(self.shape) - 1)
            box = ", ".join(f"{a} {min(l, h):+.1f}..{max(l, h):+.1f}" for a, l, h in zip(AXIS_NAMES, lo, hi))
            raise InputError("<point>", f"({', '.join(f'{v:+.1f}' for v in p)}) mm lies outside the image ({box} mm)")
        return tuple(int(v) for v in ijk)  # type: ignore[return-value]

    def axis_coords(self, axis: int, ref: tuple[int, int, int]) -> tuple[float, float]:
        """``(origin, step)``: world coordinate (mm) of index ``i`` along ``axis`` is ``origin + i * step``.

        Exact for grids aligned with the scanner axes; for an oblique grid it is measured along the
        array axis through ``ref`` (the picture stays on the image's own grid).
        """
        step = float(self.zooms[axis])
        return float(self.world(ref)[axis]) - ref[axis] * step, step

    @property
    def obliquity_deg(self) -> float:
        """Largest angle (degrees) between a grid axis and the nearest scanner axis."""
        import nibabel as nib

        return float(np.degrees(np.max(np.abs(nib.affines.obliquity(self.affine)))))


def _check_affine(affine: Any, name: str) -> np.ndarray:
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise InputError(name, f"affine must be a finite, non-singular 4x4 voxel-to-scanner matrix (mm), got shape {a.shape}")
    return a


def _read(src: VolumeSource, name: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(array, affine or None, display name)`` of one volume source."""
    from mednet_pvs.io import Scan, load_image

    if isinstance(src, Scan):
        return np.asarray(src.data), np.asarray(src.affine, float), src.name
    if isinstance(src, tuple):
        if len(src) != 2:
            raise InputError(f"<{name}>", "an in-memory volume is given as (array, affine)")
        arr = np.asarray(src[0])
        return arr, _check_affine(src[1], f"<{name} array>"), f"<{name} array>"
    if isinstance(src, (str, os.PathLike)) or hasattr(src, "dataobj"):
        scan = load_image(src, kind="image" if name == "image" else "label", max_anisotropy=None)
        return scan.data, scan.affine, scan.name
    arr = np.asarray(src)
    if arr.dtype == object:
        raise InputError(f"<{name}>", f"not an image: {type(src).__name__}")
    return arr, None, f"<{name} array>"


def _as_3d(arr: np.ndarray, label: str) -> np.ndarray:
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or min(arr.shape) == 0:
        raise InputError(label, f"a 3-D volume is needed, got an array of shape {arr.shape}")
    return arr


def _as_probs(arr: np.ndarray, label: str) -> np.ndarray:
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):  # a mask: voxels > 0 are PVS
        return (arr > 0).astype(np.float32)
    arr = arr.astype(np.float32, copy=False)
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise InputError(label, f"{bad} NaN or infinite probabilities; fix or mask them first")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(label, f"probabilities must lie within 0..1, got values {lo:.3g}..{hi:.3g}")
    return arr


def gather(affine: Any = None, **sources: VolumeSource | None) -> Volumes:
    """Read the given volumes (``image=``, ``mask=``, ``probs=``), check they share a grid, reorient to RAS.

    Args:
        affine: 4x4 affine for bare arrays; ``None`` when a source carries its own (path, nibabel
            image, Scan, ``(array, affine)``). If both are given they must agree.
        **sources: ``image``, ``mask`` and/or ``probs``; ``None`` entries are skipped.

    Returns:
        :class:`Volumes` (image float32, mask bool, probs float32, all RAS-ordered).

    Raises:
        InputError: naming the input: not 3-D, shapes or grids that differ, a missing affine, NaN
            in the image, a probability map given as mask, probabilities outside 0..1.
    """
    given = {k: v for k, v in sources.items() if v is not None}
    if not given:
        raise InputError(None, "nothing to show: give an image, a mask or a probability map")
    ref_aff = None if affine is None else _check_affine(affine, "<affine>")
    aff_from = "the affine= given"
    ref_shape: tuple[int, int, int] = (0, 0, 0)
    ref_name = ""
    stored: dict[str, np.ndarray] = {}
    for key, src in given.items():
        arr, aff, label = _read(src, key)
        arr = _as_3d(arr, label)
        if not ref_name:
            ref_shape, ref_name = arr.shape, label
        elif arr.shape != ref_shape:
            raise InputError(label, f"{key} of shape {arr.shape} is not on the grid of {ref_name} (shape {ref_shape})")
        if aff is not None:
            if ref_aff is None:
                ref_aff, aff_from = aff, f"that of {label}"
            elif not np.allclose(aff, ref_aff, atol=1e-3):
                raise InputError(label, f"{key}'s affine differs from {aff_from}: not the same grid")
        if key == "image":
            arr = arr.astype(np.float32, copy=False)
            if not np.isfinite(arr).all():
                raise InputError(label, f"{int((~np.isfinite(arr)).sum())} NaN or infinite voxels; fix or mask them first")
        elif key == "mask":
            from mednet_pvs.analysis.clusters import binary_mask  # refuses a probability map

            arr = binary_mask(arr, label)
        elif key == "probs":
            arr = _as_probs(arr, label)
        stored[key] = arr
    if ref_aff is None:
        raise InputError(ref_name, "a bare array needs affine= (4x4 voxel-to-scanner matrix, mm) to be shown in world orientation")
    ras = {k: to_ras(v, ref_aff)[0] for k, v in stored.items()}
    return Volumes(ras.get("image"), ras.get("mask"), ras.get("probs"), ras_affine(ref_aff, ref_shape), stored, ref_aff)


def window(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Display range of an image: percentiles of its non-zero voxels (of all voxels if none)."""
    fg = image[image != 0] if (image != 0).any() else image.ravel()
    fg = fg[:: max(1, fg.size // 2_000_000)]  # a subsample is plenty for two percentiles
    lo, hi = (float(v) for v in np.percentile(fg, percentiles))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)
