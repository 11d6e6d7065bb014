"""Evaluation metrics on hand-computed examples, the empty-mask conventions, and ICC/Pearson."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy import stats

from mednet_pvs.analysis.clusters import label_clusters
from mednet_pvs.analysis.metrics import (
    agreement,
    boundary,
    case_metrics,
    icc,
    match_clusters,
    pearson_r,
    surface_distances,
    surface_metrics,
    voxel_metrics,
)

nan = math.nan


def test_voxel_overlap_hand_example():
    pred = np.zeros((5, 5, 5), bool)
    ref = np.zeros_like(pred)
    pred[0, 0, :] = True  # 5 voxels
    pred[4, 4, 4] = True  # 6th
    ref[0, 0, 1:4] = True  # 3 shared
    ref[2, 2, 2] = True  # 4th
    assert voxel_metrics(pred, ref) == pytest.approx({"dice": 0.6, "precision": 0.5, "recall": 0.75})


@pytest.mark.parametrize(
    "p_empty, r_empty, expected",
    [
        (True, True, dict(dice=nan, precision=nan, recall=nan, hd95_mm=nan, surface_dice=nan, cluster_dice=nan, det_precision=nan, det_recall=nan, det_f1=nan)),
        (True, False, dict(dice=0.0, precision=nan, recall=0.0, hd95_mm=nan, surface_dice=0.0, cluster_dice=0.0, det_precision=nan, det_recall=0.0, det_f1=0.0)),
        (False, True, dict(dice=0.0, precision=0.0, recall=nan, hd95_mm=nan, surface_dice=0.0, cluster_dice=0.0, det_precision=0.0, det_recall=nan, det_f1=0.0)),
    ],
    ids=["both_empty", "pred_empty", "ref_empty"],
)
def test_empty_mask_conventions(p_empty, r_empty, expected):
    full = np.zeros((6, 6, 6), bool)
    full[2:4, 2:4, 2:4] = True
    empty = np.zeros_like(full)
    out = case_metrics(empty if p_empty else full, empty if r_empty else full)
    for k, v in expected.items():
        assert (math.isnan(out[k]) and math.isnan(v)) or out[k] == v, (k, out[k], v)


def test_distances_between_single_voxels_use_the_spacing():
    pred = np.zeros((10, 10, 12), bool)
    ref = np.zeros_like(pred)
    pred[5, 5, 5] = ref[5, 5, 8] = True
    out = surface_metrics(pred, ref, (1.0, 1.0, 2.0))
    assert out == {"hd95_mm": 6.0, "surface_dice": 0.0}
    assert surface_metrics(pred, ref, (1.0, 1.0, 2.0), tolerance_mm=6.0)["surface_dice"] == 1.0


def test_shifted_cubes_hand_example():
    """Two 3x3x3 cubes one voxel apart: 26 boundary voxels each; per side 10 at 1 mm, 16 at 0."""
    pred = np.zeros((9, 7, 7), bool)
    ref = np.zeros_like(pred)
    pred[2:5, 2:5, 2:5] = True
    ref[3:6, 2:5, 2:5] = True
    d_pr, d_rp = surface_distances(pred, ref)
    assert sorted(d_pr) == [0.0] * 16 + [1.0] * 10 == sorted(d_rp)
    assert surface_metrics(pred, ref) == {"hd95_mm": 1.0, "surface_dice": 1.0}
    assert surface_metrics(pred, ref, tolerance_mm=0.5)["surface_dice"] == pytest.approx(32 / 52)


def test_surface_distances_equal_the_baselines_distance_transform():
    """k-d tree distances == distance_transform_edt(~boundary, sampling) read at the other boundary."""
    rng = np.random.default_rng(0)
    pred = ndi.binary_dilation(rng.random((24, 20, 16)) > 0.97)
    ref = ndi.binary_dilation(rng.random((24, 20, 16)) > 0.97)
    pred[0, :3, :3] = True  # touches the image border
    spacing = (0.7, 0.9, 1.3)
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    # The baseline's surfaces: mask minus its 26-connected erosion (image border = outside).
    bp, br = (m & ~ndi.binary_erosion(m, np.ones((3, 3, 3)), border_value=0) for m in (pred, ref))
    np.testing.assert_array_equal(boundary(pred), bp)
    np.testing.assert_array_equal(boundary(ref), br)
    np.testing.assert_allclose(d_pr, ndi.distance_transform_edt(~br, sampling=spacing)[bp], atol=1e-9)
    np.testing.assert_allclose(d_rp, ndi.distance_transform_edt(~bp, sampling=spacing)[br], atol=1e-9)
    pooled = np.concatenate([d_pr, d_rp])
    out = surface_metrics(pred, ref, spacing)
    assert out["hd95_mm"] == pytest.approx(np.percentile(pooled, 95))
    assert out["surface_dice"] == pytest.approx(np.mean(pooled <= 1.0))


def _cluster_scene():
    """ref: R1, R2 (6 vox each), R3 (12 vox), R4 (1 vox); pred: P1 bridging R1+R2 (14 vox), P2 (3, FP), P3 (2, on R4)."""
    ref = np.zeros((40, 12, 12), bool)
    pred = np.zeros_like(ref)
    ref[2:8, 5, 5] = True  # R1
    ref[10:16, 5, 5] = True  # R2 (gap of 2 voxels from R1)
    ref[22:34, 5, 5] = True  # R3, missed
    ref[37, 9, 9] = True  # R4, small
    pred[3:15, 6, 5] = True  # P1 overlaps nothing directly...
    pred[5, 5, 5] = pred[12, 5, 5] = True  # ...until these two voxels touch R1 and R2 -> 14 voxels
    pred[28, 1:4, 1] = True  # P2, false positive
    pred[37, 9, 9:11] = True  # P3 overlaps R4
    return pred, ref


def test_cluster_detection_hand_example():
    pred, ref = _cluster_scene()
    pl, n_p = label_clusters(pred)
    rl, n_r = label_clusters(ref)
    assert (n_p, n_r) == (3, 4)
    m = match_clusters(pl, n_p, rl, n_r)
    np.testing.assert_array_equal(m.pred_hit, [True, False, True])
    np.testing.assert_array_equal(m.ref_hit, [True, True, False, True])
    out = case_metrics(pred, ref)
    assert out["det_precision"] == pytest.approx(2 / 3)
    assert out["det_recall"] == pytest.approx(3 / 4)
    assert out["det_f1"] == pytest.approx(12 / 17)
    assert out["cluster_dice"] == pytest.approx(5 / 7)
    assert (out["n_pred"], out["n_ref"], out["count_diff"], out["abs_count_diff"]) == (3, 4, -1, 1)
    assert out["vol_pred_mm3"] == 19 and out["vol_ref_mm3"] == 25 and out["abs_vol_diff_mm3"] == 6
    # small (<= 10 voxels): pred P2 (FP), P3 (TP); ref R1, R2, R4 (all found); large: P1 (TP) / R3 (missed)
    assert (out["small_n_pred"], out["small_n_ref"], out["large_n_pred"], out["large_n_ref"]) == (2, 3, 1, 1)
    assert out["small_det_precision"] == 0.5 and out["small_det_recall"] == 1.0
    assert out["large_det_precision"] == 1.0 and out["large_det_recall"] == 0.0


def test_minimum_size_applies_to_both_masks():
    pred, ref = _cluster_scene()
    out = case_metrics(pred, ref, min_size_mm3=2.0)  # drops R4 (1 voxel) only
    assert (out["n_pred"], out["n_ref"]) == (3, 3)
    assert out["det_precision"] == pytest.approx(1 / 3)  # P3 now overlaps nothing


def test_metrics_per_region():
    pred, ref = _cluster_scene()
    reg = np.full(ref.shape, 2, np.int16)  # white matter...
    reg[20:] = 12  # ...and putamen from x = 20 on (R3, P2, R4, P3)
    out = case_metrics(pred, ref, regions=reg)
    # WM: P1 / R1, R2 -> all matched; BG: P2 (FP), P3 (TP) / R3 (missed), R4 (found)
    assert (out["wm_n_pred"], out["wm_n_ref"], out["bg_n_pred"], out["bg_n_ref"]) == (1, 2, 2, 2)
    assert out["wm_cluster_dice"] == 1.0 and out["bg_cluster_dice"] == 0.5
    assert out["bg_det_precision"] == 0.5 and out["bg_det_recall"] == 0.5
    # Voxel metrics on the masks restricted to the region.
    np.testing.assert_allclose(out["bg_dice"], voxel_metrics(pred & (reg == 12), ref & (reg == 12))["dice"])
    np.testing.assert_allclose(out["wm_dice"], voxel_metrics(pred & (reg == 2), ref & (reg == 2))["dice"])
    assert out["wm_vol_ref_mm3"] + out["bg_vol_ref_mm3"] == out["vol_ref_mm3"]
    with pytest.raises(ValueError, match="unknown region group"):
        case_metrics(pred, ref, regions=reg, groups=("wm", "cortex"))


def test_overlap_counting_matches_a_loop():
    rng = np.random.default_rng(1)
    pl, n_p = label_clusters(rng.random((20, 20, 20)) > 0.9)
    rl, n_r = label_clusters(rng.random((20, 20, 20)) > 0.9)
    m = match_clusters(pl, n_p, rl, n_r)
    loop = {(p, r): int(np.sum((pl == p) & (rl == r))) for p in range(1, n_p + 1) for r in np.unique(rl[pl == p]) if r}
    assert dict(zip(map(tuple, m.pairs.tolist()), m.overlap.tolist())) == loop
    np.testing.assert_array_equal(m.pred_hit, [any(k[0] == p for k in loop) for p in range(1, n_p + 1)])
    np.testing.assert_array_equal(m.ref_hit, [any(k[1] == r for k in loop) for r in range(1, n_r + 1)])


def test_icc_shrout_fleiss_worked_example():
    """Shrout & Fleiss (1979), Table 2 data (6 targets x 4 judges) and Table 4 values."""
    y = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert icc(y, "1,1") == pytest.approx(0.17, abs=0.005)
    assert icc(y, "2,1") == pytest.approx(0.29, abs=0.005)
    assert icc(y, "3,1") == pytest.approx(0.71, abs=0.005)
    # Exact values from the mean squares (BMS = 11.24, EMS = 1.02, k = 4).
    assert icc(y, "3,1") == pytest.approx((11.2417 - 1.0194) / (11.2417 + 3 * 1.0194), abs=1e-4)


def test_icc_consistency_ignores_a_constant_offset():
    x = np.array([3.0, 7.0, 1.0, 12.0, 5.0])
    assert icc(np.stack([x, x + 5], 1), "3,1") == pytest.approx(1.0)
    assert icc(np.stack([x, x + 5], 1), "2,1") < 0.9
    assert math.isnan(icc(np.array([[1.0, 2.0]])))


def test_pearson_and_agreement():
    rng = np.random.default_rng(2)
    x = rng.normal(size=20)
    y = x + rng.normal(scale=0.5, size=20)
    assert pearson_r(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    y_nan = y.copy()
    y_nan[3] = np.nan
    a = agreement(x, y_nan)
    assert a["n"] == 19
    assert a["pearson_r"] == pytest.approx(stats.pearsonr(np.delete(x, 3), np.delete(y, 3))[0])
    assert math.isnan(pearson_r([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
