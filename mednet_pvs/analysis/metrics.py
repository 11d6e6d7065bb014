"""Evaluation metrics for PVS masks, each defined once, here, and vectorised.

Per case (:func:`case_metrics`), for a predicted mask P and a reference mask R on one grid:

Voxel overlap (:func:`voxel_metrics`)
    ``dice = 2|P∩R| / (|P|+|R|)``, ``precision = |P∩R|/|P|``, ``recall = |P∩R|/|R|``.

Distances (:func:`surface_metrics`), as in the nnU-Net PVS baseline (``pvs-seg-nnunet`` 0.1.0,
``pvsseg/evaluate.py``)
    Surfaces are the boundary voxels (voxels of the mask with a 26-neighbour outside it, i.e.
    ``mask & ~erode(mask, 3x3x3)``, the image border counting as outside). For every boundary voxel
    of one mask, the Euclidean distance (mm, between voxel centres) to the nearest boundary voxel
    of the other (computed with a k-d tree: the values of the baseline's
    ``distance_transform_edt(..., sampling=spacing)``, faster on sparse PVS masks). ``hd95_mm`` is the 95th percentile of the *pooled* distances of
    both directions (the baseline's convention; MONAI and DeepMind's ``surface-distance`` take the
    max of the two directed percentiles instead). ``surface_dice`` (normalised surface Dice at
    ``tolerance_mm``, 1 mm by default) is the fraction of boundary voxels of both masks lying within
    the tolerance of the other's boundary.

Clusters (:func:`match_clusters`, :func:`detection_scores`)
    Clusters are 26-connected components. A predicted cluster is a *true positive* when it
    overlaps (shares at least one voxel with) any reference cluster; a reference cluster is
    *found* when any predicted cluster overlaps it. Matching is many-to-many: one predicted
    cluster bridging two reference PVS finds both. With ``TPp`` true-positive predicted clusters
    out of ``Np`` and ``TPr`` found reference clusters out of ``Nr``:

    * ``det_precision = TPp/Np``, ``det_recall = TPr/Nr``, ``det_f1 = 2PR/(P+R)``;
    * ``cluster_dice = (TPp + TPr) / (Np + Nr)`` -- the Dice coefficient over clusters, counting
      matched clusters on both sides. It equals ``2TP/(2TP+FP+FN)`` when matching is one-to-one and,
      unlike a one-to-one matching, does not punish a prediction for splitting or merging a PVS.
      MedNet-PVS (arXiv:2508.20256) and PINGU (Sinclair et al. 2024, arXiv:2405.08337) report a
      "cluster-level Dice" next to the voxel Dice, and SHIVA-PVS (Boutinaud et al. 2021,
      Front. Neuroinform. 15:641600) a "Dice for PVS cluster detection"; none of the material we
      could read spells out the formula or publishes the code, so this is the overlap-based
      reading of those descriptions (a cluster counts as detected when it overlaps the other
      segmentation), stated exactly here. ``pvs-seg-nnunet`` (the nnU-Net PVS baseline on PyPI)
      instead pairs clusters one-to-one, greedily by overlap, and reports precision/recall/F1 only:
      its counts of true positives are at most ours.
    * detection is split into **small** (<= ``small_max_voxels`` voxels, 10 as in
      ``pvs-seg-nnunet``) and **large** clusters: precision over the small (large) predicted
      clusters, recall over the small (large) reference clusters.

Burden agreement
    ``n_pred``/``n_ref`` (cluster counts), ``vol_pred_mm3``/``vol_ref_mm3``, and the differences
    ``count_diff = n_pred - n_ref``, ``vol_diff_mm3`` and their absolute values.

Per region (``regions=`` a label map on the grid, or with its affine): every metric again for
each region group (``wm``, ``bg`` by default; :mod:`mednet_pvs.analysis.regions`): voxel and
distance metrics on both masks restricted to the group's voxels; cluster metrics over the
clusters whose majority label is in the group (their overlaps are judged on the whole masks, so a
predicted WM cluster touching a reference cluster assigned to BG is still a true positive).
Columns are prefixed ``<group>_``.

Empty masks (the nnU-Net convention: NaN when a ratio is 0/0, and NaN is left out of means):

=======================  ================  ================  ================
metric                   both empty        P empty, R not    R empty, P not
=======================  ================  ================  ================
dice                     NaN               0                 0
precision                NaN               NaN               0
recall                   NaN               0                 NaN
hd95_mm                  NaN               NaN               NaN
surface_dice             NaN               0                 0
cluster_dice             NaN               0                 0
det_precision / recall   as precision / recall, over clusters
=======================  ================  ================  ================

(``pvs-seg-nnunet`` scores both-empty cases as Dice 1 and HD95 0; ours are NaN so that a case with
no PVS does not inflate a mean.)

Across cases (:func:`agreement`): Pearson r and ICC(3,1) (:func:`icc`, Shrout & Fleiss 1979:
two-way mixed effects, consistency, single rater) of predicted versus reference count and volume.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mednet_pvs.analysis.clusters import as_affine, cluster_sizes, label_clusters, voxel_volume
from mednet_pvs.analysis.regions import REGION_GROUPS, RegionGroup, cluster_regions, group_index, labels_at
from mednet_pvs.errors import InputError

#: Surface Dice tolerance (mm) of the nnU-Net PVS baseline.
SURFACE_TOLERANCE_MM = 1.0
#: Largest "small" PVS, in voxels (nnU-Net PVS baseline).
SMALL_MAX_VOXELS = 10
#: Region groups evaluated by default.
EVAL_GROUPS = ("wm", "bg")

_NAN = float("nan")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else _NAN


# --------------------------------------------------------------------------------- voxel overlap


def voxel_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Voxel Dice, precision and recall of boolean masks (X, Y, Z); see the module table for empties."""
    tp = int(np.count_nonzero(pred & ref))
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    return {
        "dice": _ratio(2 * tp, n_pred + n_ref),
        "precision": _ratio(tp, n_pred),
        "recall": _ratio(tp, n_ref),
    }


# ------------------------------------------------------------------------------------- distances


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: mask voxels with at least one of their 26 neighbours outside the mask
    (outside the image counts as outside), as a boolean (X, Y, Z) array.

    Same as ``mask & ~binary_erosion(mask, 3x3x3, border_value=0)``.
    """
    out = np.zeros(mask.shape, dtype=bool)
    out[tuple(boundary_voxels(mask).T)] = True
    return out


def boundary_voxels(mask: np.ndarray) -> np.ndarray:
    """(B, 3) voxel indices of the boundary voxels (see :func:`boundary`).

    Checks the 26 neighbours of the mask voxels only (26 gathers of N values in a zero-padded
    copy), so sparse PVS masks cost O(N) beyond one pass over the volume.
    """
    mask = np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return np.zeros((0, 3), dtype=np.intp)
    padded = np.pad(mask, 1).ravel()
    pshape = tuple(n + 2 for n in mask.shape)
    coords = np.unravel_index(idx, mask.shape)
    pidx = np.ravel_multi_index(tuple(c + 1 for c in coords), pshape)
    sx, sy = pshape[1] * pshape[2], pshape[2]
    offsets = [a * sx + b * sy + c for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
    interior = np.ones(idx.size, dtype=bool)
    for off in offsets:
        interior &= padded[pidx + off]
    return np.stack(coords, axis=1)[~interior]


def surface_distances(pred: np.ndarray, ref: np.ndarray, affine: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Boundary-to-boundary distances (mm) both ways: ``(pred -> ref, ref -> pred)``.

    Each boundary voxel's distance to the nearest boundary voxel of the other mask, between voxel
    centres in scanner mm (through the affine's 3x3 part, so sheared grids are exact too). The
    nearest neighbours come from a k-d tree on the boundary voxels: the same Euclidean distances
    as ``distance_transform_edt(~boundary, sampling=spacing)`` read at the other boundary (tested
    equal), at a cost that grows with the number of boundary voxels rather than the volume (a
    whole-brain mask: 0.1 s instead of 1.3 s). Both masks must be non-empty.
    """
    from scipy.spatial import cKDTree

    a3 = as_affine(affine)[:3, :3]
    pts_p = boundary_voxels(pred) @ a3.T
    pts_r = boundary_voxels(ref) @ a3.T
    return cKDTree(pts_r).query(pts_p)[0], cKDTree(pts_p).query(pts_r)[0]


def surface_metrics(
    pred: np.ndarray, ref: np.ndarray, affine: Any = None, tolerance_mm: float = SURFACE_TOLERANCE_MM
) -> dict[str, float]:
    """``hd95_mm`` (pooled 95th percentile) and ``surface_dice`` at ``tolerance_mm`` (module docs)."""
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not has_p and not has_r:
        return {"hd95_mm": _NAN, "surface_dice": _NAN}
    if not (has_p and has_r):
        return {"hd95_mm": _NAN, "surface_dice": 0.0}
    d_pr, d_rp = surface_distances(pred, ref, affine)
    pooled = np.concatenate([d_pr, d_rp])
    within = int(np.count_nonzero(d_pr <= tolerance_mm)) + int(np.count_nonzero(d_rp <= tolerance_mm))
    return {"hd95_mm": float(np.percentile(pooled, 95)), "surface_dice": within / pooled.size}


# -------------------------------------------------------------------------------------- clusters


@dataclass
class ClusterMatch:
    """Which clusters of a prediction and a reference overlap.

    Attributes:
        pred_hit: (Np,) bool, predicted cluster overlaps some reference cluster (true positive).
        ref_hit: (Nr,) bool, reference cluster overlapped by some predicted cluster (found).
        pred_size: (Np,) voxels per predicted cluster.
        ref_size: (Nr,) voxels per reference cluster.
        pairs: (M, 2) overlapping ``(pred id, ref id)`` pairs (1-based ids).
        overlap: (M,) voxels shared by each pair.
    """

    pred_hit: np.ndarray
    ref_hit: np.ndarray
    pred_size: np.ndarray
    ref_size: np.ndarray
    pairs: np.ndarray
    overlap: np.ndarray


def match_clusters(pred_labels: np.ndarray, n_pred: int, ref_labels: np.ndarray, n_ref: int) -> ClusterMatch:
    """Overlaps between two cluster labelings, counted once over the shared voxels.

    The labels at the voxels in both masks are paired into one code ``p * (Nr + 1) + r`` and
    counted with a single :func:`numpy.unique` (a sparse overlap matrix: no per-cluster loop).
    """
    both = np.flatnonzero((pred_labels.ravel() > 0) & (ref_labels.ravel() > 0))
    code = pred_labels.ravel()[both].astype(np.int64) * (n_ref + 1) + ref_labels.ravel()[both]
    codes, counts = np.unique(code, return_counts=True)
    pairs = np.stack([codes // (n_ref + 1), codes % (n_ref + 1)], axis=1)
    pred_hit = np.bincount(pairs[:, 0], minlength=n_pred + 1)[1:] > 0
    ref_hit = np.bincount(pairs[:, 1], minlength=n_ref + 1)[1:] > 0
    return ClusterMatch(
        pred_hit=pred_hit,
        ref_hit=ref_hit,
        pred_size=cluster_sizes(pred_labels, n_pred),
        ref_size=cluster_sizes(ref_labels, n_ref),
        pairs=pairs,
        overlap=counts,
    )


def detection_scores(pred_hit: np.ndarray, ref_hit: np.ndarray) -> dict[str, float]:
    """Cluster-level scores from hit flags (module docs): precision, recall, F1, cluster Dice, counts."""
    n_p, n_r = int(pred_hit.size), int(ref_hit.size)
    tp_p, tp_r = int(np.count_nonzero(pred_hit)), int(np.count_nonzero(ref_hit))
    prec, rec = _ratio(tp_p, n_p), _ratio(tp_r, n_r)
    if math.isnan(prec) or math.isnan(rec):
        f1 = 0.0 if (n_p and tp_p == 0) or (n_r and tp_r == 0) else _NAN
    else:
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "cluster_dice": _ratio(tp_p + tp_r, n_p + n_r),
        "det_precision": prec,
        "det_recall": rec,
        "det_f1": f1,
        "det_tp_pred": tp_p,
        "det_tp_ref": tp_r,
    }


def _size_split(match: ClusterMatch, pred_sel: np.ndarray, ref_sel: np.ndarray, small_max_voxels: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, ps, rs in (
        ("small", match.pred_size <= small_max_voxels, match.ref_size <= small_max_voxels),
        ("large", match.pred_size > small_max_voxels, match.ref_size > small_max_voxels),
    ):
        ps, rs = ps & pred_sel, rs & ref_sel
        s = detection_scores(match.pred_hit[ps], match.ref_hit[rs])
        out.update(
            {
                f"{name}_n_pred": int(ps.sum()),
                f"{name}_n_ref": int(rs.sum()),
                f"{name}_det_precision": s["det_precision"],
                f"{name}_det_recall": s["det_recall"],
                f"{name}_det_f1": s["det_f1"],
            }
        )
    return out


# -------------------------------------------------------------------------------------- per case


def _scores(
    pred: np.ndarray,
    ref: np.ndarray,
    affine: np.ndarray,
    vox_mm3: float,
    match: ClusterMatch,
    pred_sel: np.ndarray,
    ref_sel: np.ndarray,
    tolerance_mm: float,
    small_max_voxels: int,
) -> dict[str, float]:
    """All per-case metrics for masks ``pred``/``ref`` and the selected clusters."""
    out: dict[str, float] = {}
    out.update(voxel_metrics(pred, ref))
    out.update(surface_metrics(pred, ref, affine, tolerance_mm))
    out.update(detection_scores(match.pred_hit[pred_sel], match.ref_hit[ref_sel]))
    out.update(_size_split(match, pred_sel, ref_sel, small_max_voxels))
    n_p, n_r = int(pred_sel.sum()), int(ref_sel.sum())
    v_p = float(match.pred_size[pred_sel].sum()) * vox_mm3
    v_r = float(match.ref_size[ref_sel].sum()) * vox_mm3
    out.update(
        {
            "n_pred": n_p,
            "n_ref": n_r,
            "count_diff": n_p - n_r,
            "abs_count_diff": abs(n_p - n_r),
            "vol_pred_mm3": v_p,
            "vol_ref_mm3": v_r,
            "vol_diff_mm3": v_p - v_r,
            "abs_vol_diff_mm3": abs(v_p - v_r),
        }
    )
    return out


def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    affine: Any = None,
    *,
    regions: np.ndarray | None = None,
    regions_affine: np.ndarray | None = None,
    groups: Sequence[str] | Mapping[str, RegionGroup] = EVAL_GROUPS,
    min_size_mm3: float = 0.0,
    tolerance_mm: float = SURFACE_TOLERANCE_MM,
    small_max_voxels: int = SMALL_MAX_VOXELS,
) -> dict[str, float]:
    """Every per-case metric (module docs), overall and per region group.

    Args:
        pred: predicted mask (X, Y, Z), bool or 0/1.
        ref: reference mask on the same grid.
        affine: spacing (mm) or 4x4 affine of the grid; ``None`` = 1 mm isotropic.
        regions: integer region map, on this grid or (with ``regions_affine``) on its own.
        regions_affine: 4x4 affine of ``regions`` when on another grid.
        groups: region group keys (from :data:`~mednet_pvs.analysis.regions.REGION_GROUPS`) or
            ``{key: RegionGroup}``; only used with ``regions``.
        min_size_mm3: clusters smaller than this are removed from both masks first.
        tolerance_mm: surface Dice tolerance.
        small_max_voxels: largest "small" cluster (voxels).

    Returns:
        A flat ``{metric: value}``; region metrics as ``<group>_<metric>``.
    """
    pred, ref = np.asarray(pred) > 0, np.asarray(ref) > 0
    if pred.shape != ref.shape:
        raise InputError(None, f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    aff = as_affine(affine)
    vox = voxel_volume(aff)
    pl, n_p = label_clusters(pred, aff, min_size_mm3)
    rl, n_r = label_clusters(ref, aff, min_size_mm3)
    pred, ref = pl > 0, rl > 0
    match = match_clusters(pl, n_p, rl, n_r)
    out = _scores(pred, ref, aff, vox, match, np.ones(n_p, bool), np.ones(n_r, bool), tolerance_mm, small_max_voxels)
    if regions is None:
        return out
    if isinstance(groups, Mapping):
        gdict = dict(groups)
    else:
        unknown = [k for k in groups if k not in REGION_GROUPS]
        if unknown:
            raise ValueError(f"unknown region group(s) {unknown}; known: {', '.join(REGION_GROUPS)}")
        gdict = {k: REGION_GROUPS[k] for k in groups}
    union = np.flatnonzero(pred.ravel() | ref.ravel())  # sorted
    at = labels_at(np.asarray(regions), regions_affine, pred.shape, aff, union)
    g_union = group_index(at, gdict)

    def cluster_groups(labels: np.ndarray, n: int) -> np.ndarray:
        # The group of each cluster's majority region label, as in pvs_burden.
        flat = np.flatnonzero(labels)
        return cluster_regions(at[np.searchsorted(union, flat)], labels.ravel()[flat] - 1, n, gdict)[1]

    g_pred, g_ref = cluster_groups(pl, n_p), cluster_groups(rl, n_r)
    for gi, key in enumerate(gdict):
        in_g = np.zeros(pred.shape, dtype=bool)
        in_g.ravel()[union[g_union == gi]] = True
        scores = _scores(
            pred & in_g, ref & in_g, aff, vox, match, g_pred == gi, g_ref == gi, tolerance_mm, small_max_voxels
        )
        out.update({f"{key}_{k}": v for k, v in scores.items()})
    return out


# ----------------------------------------------------------------------------------- across cases


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of paired values (NaN pairs dropped); NaN with < 2 pairs or no variance."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return _NAN
    return float(np.corrcoef(x, y)[0, 1])


def icc(ratings: np.ndarray, form: str = "3,1") -> float:
    """Intraclass correlation (Shrout & Fleiss 1979) of an (n targets, k raters) table.

    Forms: ``"1,1"`` (one-way random, single), ``"2,1"`` (two-way random, absolute agreement,
    single), ``"3,1"`` (two-way mixed, consistency, single)::

        ICC(1,1) = (BMS - WMS) / (BMS + (k-1) WMS)
        ICC(2,1) = (BMS - EMS) / (BMS + (k-1) EMS + k (JMS - EMS) / n)
        ICC(3,1) = (BMS - EMS) / (BMS + (k-1) EMS)

    with BMS/JMS/EMS/WMS the between-targets, between-raters, residual and within-target mean
    squares. Rows with a NaN are dropped; NaN with fewer than 2 rows or a zero denominator.
    """
    y = np.asarray(ratings, dtype=float)
    if y.ndim != 2 or y.shape[1] < 2:
        raise ValueError(f"ratings must be (n targets, k >= 2 raters), got shape {y.shape}")
    y = y[np.all(np.isfinite(y), axis=1)]
    n, k = y.shape
    if n < 2:
        return _NAN
    grand = y.mean()
    ss_rows = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_tot = ((y - grand) ** 2).sum()
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = (ss_tot - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    wms = (ss_tot - ss_rows) / (n * (k - 1))
    if form == "1,1":
        num, den = bms - wms, bms + (k - 1) * wms
    elif form == "2,1":
        num, den = bms - ems, bms + (k - 1) * ems + k * (jms - ems) / n
    elif form == "3,1":
        num, den = bms - ems, bms + (k - 1) * ems
    else:
        raise ValueError(f"unknown ICC form {form!r} (use '1,1', '2,1' or '3,1')")
    return float(num / den) if den else _NAN


def agreement(pred: Sequence[float], ref: Sequence[float]) -> dict[str, float]:
    """Pearson r and ICC(3,1) of predicted versus reference values over cases, with ``n`` pairs."""
    x, y = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    n = int(np.count_nonzero(np.isfinite(x) & np.isfinite(y)))
    return {"pearson_r": pearson_r(x, y), "icc31": icc(np.stack([x, y], axis=1), "3,1"), "n": n}
