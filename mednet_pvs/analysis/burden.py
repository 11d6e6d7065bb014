"""PVS burden of one case: clusters, their count and volume, per-cluster geometry, per-region totals.

    >>> b = pvs_burden("sub-01_desc-pvs_mask.nii.gz", regions="aseg.mgz", min_size_mm3=2.0)
    >>> b.count, b.volume_mm3, b.per_region["bg"]["count"]
    >>> b.clusters.head()            # one row per cluster (pandas DataFrame)
    >>> b.to_dict()                  # the numbers of stats.json (files: mednet_pvs.inference.CaseOutputs)

Clusters are 26-connected components (:mod:`mednet_pvs.analysis.clusters` defines length, width and
orientation). Regions come from a label map of the same subject on any grid
(:mod:`mednet_pvs.analysis.regions` defines the groups and the majority rule).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Union

import nibabel as nib
import numpy as np
import pandas as pd

from mednet_pvs.analysis._tables import json_ready, write_csv
from mednet_pvs.analysis.clusters import (
    as_affine,
    binary_mask,
    cluster_geometry,
    label_clusters,
    spacing_of,
    voxel_volume,
)
from mednet_pvs.analysis.regions import (
    OTHER,
    REGION_GROUPS,
    RegionGroup,
    RegionSource,
    cluster_regions,
    label_name,
    labels_at,
    load_regions,
    present_labels,
    read_lut,
)
from mednet_pvs.errors import InputError
from mednet_pvs.io import Scan, load_image

MaskSource = Union[str, PathLike, Scan, np.ndarray, tuple, nib.spatialimages.SpatialImage]

#: Columns of :attr:`Burden.clusters` (``mean_prob`` and the region columns only when given).
CLUSTER_COLUMNS = (
    "id", "n_voxels", "volume_mm3", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
    "length_mm", "width_mm", "axis_x", "axis_y", "axis_z", "angle_si_deg",
)


def load_mask(src: MaskSource, affine: Any = None, name: str = "mask") -> tuple[np.ndarray, np.ndarray, Scan | None]:
    """A boolean mask and its 4x4 affine from a path, Scan, nibabel image, (array, affine) or array.

    Args:
        src: the mask; an array is on the grid given by ``affine``.
        affine: spacing or 4x4 affine for a bare array (``None``: 1 mm isotropic). For a file or
            Scan it must be ``None`` or equal to the file's affine.
        name: what the mask is, for error messages about arrays.

    Returns:
        ``(mask (X, Y, Z) bool, affine 4x4, Scan or None)``.
    """
    if isinstance(src, np.ndarray):
        return binary_mask(src, f"<{name} array>"), as_affine(affine), None
    scan = load_image(src, kind="label", max_anisotropy=None)
    if affine is not None and not np.allclose(as_affine(affine), scan.affine, atol=1e-4):
        raise InputError(scan.name, "an affine was given that differs from the file's own; pass one or the other")
    return binary_mask(scan.data, scan.name), scan.affine, scan


def _load_values(src: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    if isinstance(src, np.ndarray):
        arr, name = src, f"<{what} array>"
    else:
        scan = load_image(src, kind="label", max_anisotropy=None)  # "label": an all-zero map is allowed
        arr, name = scan.data, scan.name
    if arr.shape != tuple(shape):
        raise InputError(name, f"{what} of shape {arr.shape} is not on the mask's grid {tuple(shape)}")
    return arr


@dataclass
class Burden:
    """PVS burden of one case.

    Attributes:
        count: number of clusters (after the minimum size).
        volume_mm3: total PVS volume, mm^3.
        clusters: one row per cluster; columns :data:`CLUSTER_COLUMNS` (``id`` is the value in
            :attr:`labels`; centroid in scanner RAS mm; ``axis_*`` the main axis as a unit vector in
            scanner RAS; ``angle_si_deg`` its angle to the superior-inferior axis), plus
            ``mean_prob`` with a probability map and ``region_label``, ``region_name``, ``region``
            (group key or ``"other"``) with a region map.
        per_region: ``{group key: {"name", "count", "volume_mm3", "labels"}}`` for the groups whose
            labels occur in the region map, plus ``"other"``; empty without a region map.
        labels: int32 (X, Y, Z) cluster labels ``1..count`` (0 background).
        affine: 4x4 voxel-to-scanner matrix of the mask.
        parameters: how it was computed (minimum size, connectivity, grid, region map...).
        mean_probability: mean probability over the PVS voxels, or ``None`` without probabilities.
        source: the mask's :class:`~mednet_pvs.io.Scan` when read from a file (the grid outputs go on).
    """

    count: int
    volume_mm3: float
    clusters: pd.DataFrame
    per_region: dict[str, dict[str, Any]]
    labels: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    parameters: dict[str, Any] = field(default_factory=dict)
    mean_probability: float | None = None
    source: Scan | None = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray:
        """Boolean (X, Y, Z) mask of the kept clusters."""
        return self.labels > 0

    def to_dict(self) -> dict[str, Any]:
        """Per-case numbers as strict-JSON-ready values (the content of ``stats.json``)."""
        from mednet_pvs.version import __version__

        out: dict[str, Any] = {"count": self.count, "volume_mm3": self.volume_mm3}
        if self.mean_probability is not None:
            out["mean_probability"] = self.mean_probability
        out["per_region"] = self.per_region
        out["parameters"] = self.parameters
        out["mednet_pvs_version"] = __version__
        return json_ready(out)

    def summary_row(self, case_id: str | None = None) -> dict[str, Any]:
        """One flat row for a batch summary: count, volume and ``<region>_count/_volume_mm3``."""
        return summary_row(self.to_dict(), case_id)


def summary_row(stats: Mapping[str, Any], case_id: str | None = None) -> dict[str, Any]:
    """The summary row of a case from its ``stats.json`` content (:meth:`Burden.to_dict`)."""
    row: dict[str, Any] = {} if case_id is None else {"case_id": case_id}
    row.update(count=stats["count"], volume_mm3=stats["volume_mm3"])
    if stats.get("mean_probability") is not None:
        row["mean_probability"] = stats["mean_probability"]
    for key, r in stats.get("per_region", {}).items():
        row[f"{key}_count"] = r["count"]
        row[f"{key}_volume_mm3"] = r["volume_mm3"]
    for key in ("regions_source", "regions_error"):  # where the regions came from (a file, the atlas), or why none
        if stats.get("parameters", {}).get(key):
            row[key] = stats["parameters"][key]
    return row


def pvs_burden(
    mask: MaskSource,
    affine: Any = None,
    *,
    probs: Any = None,
    regions: RegionSource | None = None,
    regions_affine: Any = None,
    lut: str | PathLike | Mapping[int, str] | None = None,
    min_size_mm3: float = 0.0,
    groups: Mapping[str, RegionGroup] | None = None,
) -> Burden:
    """Count and measure the PVS clusters of a mask, optionally per anatomical region.

    Args:
        mask: binary PVS mask: a path, :class:`~mednet_pvs.io.Scan`, nibabel image,
            ``(array, affine)`` pair, or an (X, Y, Z) array (bool or integer; voxels > 0 are PVS).
        affine: for an array: its spacing (mm) or 4x4 affine; ``None`` = 1 mm isotropic.
        probs: optional probability map (X, Y, Z) on the mask's grid (array or path); adds the
            per-cluster ``mean_prob`` and the case's ``mean_probability``.
        regions: optional label map of the same subject (aseg, SynthSeg...), on any grid: a path,
            Scan, ``(array, affine)`` or array. An array without ``regions_affine`` must be on the
            mask's grid.
        regions_affine: 4x4 affine of a ``regions`` array on another grid.
        lut: FreeSurfer LUT file (``id name r g b a``) or ``{id: name}`` for ``region_name``.
        min_size_mm3: clusters smaller than this (mm^3) are dropped before anything is counted.
        groups: region groups to report (default :data:`~mednet_pvs.analysis.regions.REGION_GROUPS`).

    Returns:
        A :class:`Burden`.

    Raises:
        InputError: unreadable inputs, a probability map given as the mask, grids that disagree.
    """
    m, aff, scan = load_mask(mask, affine)
    labels, n = label_clusters(m, aff, min_size_mm3)
    geo = cluster_geometry(labels, n, aff)
    table = pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "n_voxels": geo.n_voxels,
            "volume_mm3": geo.volume_mm3,
            "centroid_x_mm": geo.centroid_mm[:, 0],
            "centroid_y_mm": geo.centroid_mm[:, 1],
            "centroid_z_mm": geo.centroid_mm[:, 2],
            "length_mm": geo.length_mm,
            "width_mm": geo.width_mm,
            "axis_x": geo.main_axis[:, 0],
            "axis_y": geo.main_axis[:, 1],
            "axis_z": geo.main_axis[:, 2],
            "angle_si_deg": geo.angle_si_deg,
        }
    )
    mean_probability = None
    if probs is not None:
        p = _load_values(probs, m.shape, "probability map")
        table["mean_prob"] = geo.mean_of(p)
        vals = p.ravel()[geo.flat_index]
        mean_probability = float(vals.mean()) if vals.size else None

    groups = dict(REGION_GROUPS if groups is None else groups)
    per_region: dict[str, dict[str, Any]] = {}
    region_name = None
    if regions is not None:
        reg, reg_aff, region_name = load_regions(regions, regions_affine)
        names = read_lut(lut) if isinstance(lut, (str, PathLike)) else (dict(lut) if lut else None)
        at = labels_at(reg, reg_aff, m.shape, aff, geo.flat_index)
        maj, gidx = cluster_regions(at, geo.cluster_index, n, groups)
        keys = [*groups.keys(), OTHER]
        table["region_label"] = maj
        uniq, inv = np.unique(maj, return_inverse=True)
        table["region_name"] = np.array([label_name(v, names) for v in uniq.tolist()], dtype=object)[inv]
        table["region"] = np.array(keys, dtype=object)[gidx]
        present = present_labels(reg)
        counts = np.bincount(gidx + 1, minlength=len(keys) + 1)  # slot 0 = other
        vols = np.bincount(gidx + 1, weights=geo.volume_mm3, minlength=len(keys) + 1)
        present_set = {int(v) for v in present}
        for gi, (key, g) in enumerate(groups.items()):
            labs = sorted(present_set & set(g.labels))
            if labs:
                per_region[key] = {"name": g.name, "count": int(counts[gi + 1]), "volume_mm3": float(vols[gi + 1]), "labels": labs}
        per_region[OTHER] = {"name": "outside the groups above", "count": int(counts[0]), "volume_mm3": float(vols[0]), "labels": []}

    return Burden(
        count=n,
        volume_mm3=float(geo.volume_mm3.sum()),
        clusters=table,
        per_region=per_region,
        labels=labels,
        affine=aff,
        parameters={
            "min_size_mm3": float(min_size_mm3),
            "connectivity": 26,
            "shape": list(m.shape),
            "spacing_mm": list(spacing_of(aff)),
            "voxel_volume_mm3": voxel_volume(aff),
            "regions": region_name,
            "region_rule": "majority label of the cluster's voxels (ties: smaller label)" if regions is not None else None,
            **({"mask": scan.name} if scan is not None else {}),  # the file; an in-memory mask has none
        },
        mean_probability=mean_probability,
        source=scan,
    )


def write_summary(rows: Iterable[Mapping[str, Any]] | Mapping[str, Burden], path: str | PathLike) -> Path:
    """Write a batch summary CSV (one row per case), atomically.

    Args:
        rows: ``{case_id: Burden}``, or rows such as :meth:`Burden.summary_row` returns.
        path: destination ``.csv``.
    """
    if isinstance(rows, Mapping):
        rows = [b.summary_row(cid) for cid, b in rows.items()]
    return write_csv(pd.DataFrame(list(rows)), path)
