"""Anatomical regions for PVS: label maps on any grid, FreeSurfer lookup tables, region groups.

A region map is an integer label volume of the same subject (FreeSurfer ``aseg.mgz`` /
``aparc+aseg.mgz`` / ``wmparc.mgz``, SynthSeg output, ...) on any grid: it is sampled at the PVS
voxels by nearest neighbour through the composed voxel-to-voxel affine
``inv(A_regions) @ A_image`` (:func:`labels_at`, :func:`resample_labels`), so a 1 mm aseg serves
a 0.7 mm T2w mask without a separate registration step (both must already be in the same scanner
space, as FreeSurfer/SynthSeg outputs of the same scan are).

Region groups (:data:`REGION_GROUPS`), as used for PVS burden (Potter et al. 2015 rating regions):

* ``wm`` -- centrum semiovale / cerebral white matter: Left/Right-Cerebral-White-Matter 2/41,
  WM-hypointensities 77 (78/79 left/right), corpus callosum 251-255 (aseg), and the wmparc white
  matter parcels 3001-3035, 4001-4035, 5001, 5002. SynthSeg has 2/41 only.
* ``bg`` -- basal ganglia: caudate 11/50, putamen 12/51, pallidum 13/52, accumbens 26/58.
  Thalamus (10/49) and ventral DC (28/60) are *not* included.
* ``midbrain`` -- aseg and SynthSeg have no midbrain label: the whole Brain-Stem 16 stands in
  (FreeSurfer's brainstem-substructures label 173 "Midbrain" is used too when present).
* ``hippocampus`` -- Left/Right-Hippocampus 17/53.

A cluster's region is the label at the majority of its voxels (ties: the smaller label value);
its group is the group holding that label, or ``other`` (``0``/unlabelled included).
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Union

import numpy as np
from scipy import ndimage as ndi

from mednet_pvs.analysis.clusters import majority_label
from mednet_pvs.errors import InputError
from mednet_pvs.io import Scan, load_image


@dataclass(frozen=True)
class RegionGroup:
    """A named set of label values.

    Attributes:
        key: short name used in tables and column prefixes (``wm``, ``bg``...).
        name: readable name.
        labels: the label values that belong to the group.
    """

    key: str
    name: str
    labels: frozenset[int]


_WMPARC = tuple(range(3001, 3036)) + tuple(range(4001, 4036)) + (5001, 5002)

#: Default region groups, in report order.
REGION_GROUPS: dict[str, RegionGroup] = {
    g.key: g
    for g in (
        RegionGroup("wm", "white matter (centrum semiovale)", frozenset((2, 41, 77, 78, 79, 251, 252, 253, 254, 255) + _WMPARC)),
        RegionGroup("bg", "basal ganglia", frozenset((11, 50, 12, 51, 13, 52, 26, 58))),
        RegionGroup("midbrain", "midbrain (brainstem)", frozenset((16, 173))),
        RegionGroup("hippocampus", "hippocampus", frozenset((17, 53))),
    )
}

#: Name used for clusters whose majority label is in no group (including 0).
OTHER = "other"

#: Names of the FreeSurfer labels used above and of their neighbours (a LUT file overrides them).
ASEG_NAMES: dict[int, str] = {
    0: "Unknown", 2: "Left-Cerebral-White-Matter", 3: "Left-Cerebral-Cortex", 4: "Left-Lateral-Ventricle",
    5: "Left-Inf-Lat-Vent", 7: "Left-Cerebellum-White-Matter", 8: "Left-Cerebellum-Cortex",
    10: "Left-Thalamus", 11: "Left-Caudate", 12: "Left-Putamen", 13: "Left-Pallidum", 14: "3rd-Ventricle",
    15: "4th-Ventricle", 16: "Brain-Stem", 17: "Left-Hippocampus", 18: "Left-Amygdala", 24: "CSF",
    26: "Left-Accumbens-area", 28: "Left-VentralDC", 31: "Left-choroid-plexus",
    41: "Right-Cerebral-White-Matter", 42: "Right-Cerebral-Cortex", 43: "Right-Lateral-Ventricle",
    44: "Right-Inf-Lat-Vent", 46: "Right-Cerebellum-White-Matter", 47: "Right-Cerebellum-Cortex",
    49: "Right-Thalamus", 50: "Right-Caudate", 51: "Right-Putamen", 52: "Right-Pallidum",
    53: "Right-Hippocampus", 54: "Right-Amygdala", 58: "Right-Accumbens-area", 60: "Right-VentralDC",
    63: "Right-choroid-plexus", 77: "WM-hypointensities", 78: "Left-WM-hypointensities",
    79: "Right-WM-hypointensities", 85: "Optic-Chiasm", 173: "Midbrain", 251: "CC_Posterior",
    252: "CC_Mid_Posterior", 253: "CC_Central", 254: "CC_Mid_Anterior", 255: "CC_Anterior",
    5001: "Left-UnsegmentedWhiteMatter", 5002: "Right-UnsegmentedWhiteMatter",
}

RegionSource = Union[str, PathLike, Scan, np.ndarray, tuple]


def read_lut(path: str | PathLike) -> dict[int, str]:
    """Read a FreeSurfer colour lookup table (``FreeSurferColorLUT.txt`` format).

    Each non-comment line is ``id name r g b a``; ``#`` starts a comment; blank lines are skipped.

    Returns:
        ``{label id: name}``.

    Raises:
        InputError: the file cannot be read or a line is not ``id name ...``.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(p, f"lookup table cannot be read ({e})") from None
    out: dict[int, str] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[0].lstrip("-").isdigit():
            raise InputError(p, f"line {i} is not 'id name r g b a': {line[:60]!r}")
        out[int(parts[0])] = parts[1]
    if not out:
        raise InputError(p, "lookup table has no entries (expected lines 'id name r g b a')")
    return out


def load_regions(src: RegionSource, affine: Any = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Read a region label map.

    Args:
        src: a path (``.nii``, ``.nii.gz``, ``.mgz``), a :class:`~mednet_pvs.io.Scan`, an
            ``(array, affine)`` pair, or an array (then ``affine`` gives its grid, or ``None`` to
            mean "the mask's grid").
        affine: the array's 4x4 affine when ``src`` is a bare array.

    Returns:
        ``(labels, affine or None, name)`` with integer labels (X, Y, Z).
    """
    if isinstance(src, np.ndarray):
        data, aff, name = src, None if affine is None else np.asarray(affine, dtype=float), "<region array>"
    else:
        scan = load_image(src, kind="label", max_anisotropy=None)
        data, aff, name = scan.data, scan.affine, scan.name
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(name, f"region map must be 3D, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.array_equal(data, np.round(data)):
            raise InputError(name, "region map holds non-integer values; a label map (aseg, SynthSeg) is needed")
        data = data.astype(np.int32)
    return data, aff, name


def _vox2vox(regions_affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.asarray(regions_affine, dtype=float)) @ np.asarray(target_affine, dtype=float)


def _same_grid(regions: np.ndarray, regions_affine: np.ndarray | None, shape: tuple[int, ...], affine: np.ndarray) -> bool:
    if regions_affine is None:
        return True
    return regions.shape == tuple(shape) and np.allclose(regions_affine, affine, atol=1e-4)


def labels_at(
    regions: np.ndarray,
    regions_affine: np.ndarray | None,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    flat_index: np.ndarray,
) -> np.ndarray:
    """Region labels at some voxels of a target grid (nearest neighbour through the affines).

    Args:
        regions: integer label map (its own grid).
        regions_affine: its 4x4 affine, or ``None`` when it is on the target grid already.
        shape: target grid shape (X, Y, Z).
        affine: target 4x4 affine.
        flat_index: (N,) C-order flat indices of the target voxels to look up.

    Returns:
        (N,) labels; voxels falling outside the region map get 0.

    Raises:
        InputError: ``regions_affine`` is ``None`` but the shapes differ.
    """
    if _same_grid(regions, regions_affine, shape, affine):
        if regions.shape != tuple(shape):
            raise InputError(
                None, f"region map of shape {regions.shape} is not on the mask's grid {tuple(shape)}: give its affine"
            )
        return regions.ravel()[flat_index]
    ijk = np.stack(np.unravel_index(flat_index, shape)).astype(np.float64)  # (3, N)
    m = _vox2vox(regions_affine, affine)  # type: ignore[arg-type]
    coords = m[:3, :3] @ ijk + m[:3, 3:4]
    return ndi.map_coordinates(regions, coords, order=0, mode="constant", cval=0, prefilter=False)


def resample_labels(
    regions: np.ndarray, regions_affine: np.ndarray | None, shape: tuple[int, int, int], affine: np.ndarray
) -> np.ndarray:
    """The whole region map on a target grid (nearest neighbour; outside the map -> 0).

    The same mapping as :func:`labels_at` (the composed voxel-to-voxel affine), done with
    :func:`scipy.ndimage.affine_transform`, which never builds the (3, X*Y*Z) coordinate array.
    """
    if _same_grid(regions, regions_affine, shape, affine):
        if regions.shape != tuple(shape):
            raise InputError(None, f"region map of shape {regions.shape} is not on the grid {tuple(shape)}: give its affine")
        return regions
    m = _vox2vox(regions_affine, affine)  # type: ignore[arg-type]
    return ndi.affine_transform(regions, m, output_shape=tuple(shape), order=0, mode="constant", cval=0, prefilter=False)


def present_labels(regions: np.ndarray) -> np.ndarray:
    """Sorted label values present in a region map."""
    r = regions.ravel()
    if r.size and np.issubdtype(r.dtype, np.integer) and r.min() >= 0 and r.max() < 1_000_000:
        return np.flatnonzero(np.bincount(r))
    return np.unique(r)


def group_index(values: np.ndarray, groups: dict[str, RegionGroup] | None = None) -> np.ndarray:
    """Position of each label value's group in ``list(groups)`` (-1 when in none), vectorised.

    Args:
        values: integer label values, any shape.
        groups: the groups (default :data:`REGION_GROUPS`); a label in several goes to the first.

    Returns:
        int array of the same shape as ``values``.
    """
    groups = REGION_GROUPS if groups is None else groups
    lookup: dict[int, int] = {}
    for gi, g in enumerate(groups.values()):
        for lab in g.labels:
            lookup.setdefault(int(lab), gi)
    values = np.asarray(values)
    if not lookup:
        return np.full(values.shape, -1, dtype=np.intp)
    keys = np.array(sorted(lookup), dtype=np.int64)
    vals = np.array([lookup[k] for k in keys.tolist()], dtype=np.intp)
    pos = np.clip(np.searchsorted(keys, values), 0, keys.size - 1)
    return np.where(keys[pos] == values, vals[pos], -1)


def group_of(values: np.ndarray, groups: dict[str, RegionGroup] | None = None) -> np.ndarray:
    """Group key of each label value (``"other"`` when in none), as an object array."""
    groups = REGION_GROUPS if groups is None else groups
    names = np.array([*groups.keys(), OTHER], dtype=object)
    return names[group_index(values, groups)]  # -1 picks the last entry, OTHER


def label_name(value: int, lut: dict[int, str] | None = None) -> str:
    """Name of a label from the LUT, else the built-in FreeSurfer names, else ``label-<id>``."""
    if lut and int(value) in lut:
        return lut[int(value)]
    return ASEG_NAMES.get(int(value), f"label-{int(value)}")


def cluster_regions(
    labels_at_voxels: np.ndarray, cluster_index: np.ndarray, n: int, groups: dict[str, RegionGroup] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Majority region label and group of each cluster.

    Args:
        labels_at_voxels: (N,) region label at each foreground voxel.
        cluster_index: (N,) 0-based cluster of each voxel.
        n: number of clusters.
        groups: region groups (default :data:`~mednet_pvs.analysis.regions.REGION_GROUPS`).

    Returns:
        ``(label (n,), group index (n,))``; group index into ``list(groups)``, -1 for "other".
    """
    maj = majority_label(cluster_index, labels_at_voxels, n)
    return maj, group_index(maj, groups)
