"""PVS burden: clusters counted and measured right, regions on any grid, outputs on the input grid."""
from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mednet_pvs.analysis import pvs_burden, read_lut, write_summary
from mednet_pvs.analysis.clusters import cluster_geometry, label_clusters, majority_label
from mednet_pvs.analysis.regions import labels_at, resample_labels
from mednet_pvs.errors import InputError
from mednet_pvs.io import load_image


def tube(shape, affine, start, direction, length, radius):
    """Voxels whose centre (scanner mm) lies inside a capped cylinder."""
    d = np.asarray(direction, float)
    d /= np.linalg.norm(d)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3] - np.asarray(start, float)
    t = xyz @ d
    perp = np.linalg.norm(xyz - t[:, None] * d, axis=1)
    return ((perp <= radius) & (t >= 0) & (t <= length)).reshape(shape)


def oblique_lps():
    """LPS-ish, rotated 25 degrees about S, anisotropic 0.6 x 0.7 x 0.9 mm, shifted origin."""
    a = np.deg2rad(25)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([-0.6, -0.7, 0.9])
    aff[:3, 3] = [40.0, 30.0, -20.0]
    return aff


# --------------------------------------------------------------------------------------- geometry


def test_box_tube_measures_exactly():
    m = np.zeros((40, 40, 40), bool)
    m[5:25, 10:13, 10:13] = True  # 20 x 3 x 3 voxels of 0.5 mm
    b = pvs_burden(m, (0.5, 0.5, 0.5))
    c = b.clusters.iloc[0]
    assert b.count == 1 and b.volume_mm3 == pytest.approx(180 * 0.125)
    assert c.length_mm == pytest.approx(10.0)
    assert c.width_mm == pytest.approx(1.5)
    assert (c.centroid_x_mm, c.centroid_y_mm, c.centroid_z_mm) == pytest.approx((7.25, 5.5, 5.5))
    assert (c.axis_x, c.axis_y, c.axis_z) == pytest.approx((1, 0, 0), abs=1e-9)
    assert c.angle_si_deg == pytest.approx(90.0)


def test_vertical_tube_on_anisotropic_grid():
    m = np.zeros((10, 10, 30), bool)
    m[4:6, 4:6, 3:15] = True  # 2 x 2 voxels of 0.5 mm across, 12 slices of 1 mm
    c = pvs_burden(m, (0.5, 0.5, 1.0)).clusters.iloc[0]
    assert c.length_mm == pytest.approx(12.0)
    assert c.width_mm == pytest.approx(1.0)
    assert c.angle_si_deg == pytest.approx(0.0, abs=1e-6)
    assert c.axis_z == pytest.approx(1.0)


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 0.5), (0.6, 0.6, 0.6), (0.5, 0.5, 0.8), (1.0, 1.0, 1.0)])
@pytest.mark.parametrize("direction", [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 2, 3), (3, -1, 0.5)])
def test_round_tube_length_width_orientation_within_a_voxel(spacing, direction):
    aff = np.diag([*spacing, 1.0])
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    length, radius = 12.0, 1.0
    shape = tuple(int(30 / s) for s in spacing)
    m = tube(shape, aff, np.full(3, 15.0) - d * length / 2 + 0.123, d, length, radius)
    b = pvs_burden(m, aff)
    assert b.count == 1
    c = b.clusters.iloc[0]
    voxel = max(spacing)
    assert abs(c.length_mm - length) <= voxel
    assert abs(c.width_mm - 2 * radius) <= voxel
    axis = np.array([c.axis_x, c.axis_y, c.axis_z])
    assert abs(axis @ d) > 0.995
    assert c.angle_si_deg == pytest.approx(math.degrees(math.acos(abs(d[2]))), abs=3.0)


def test_geometry_follows_an_oblique_flipped_affine():
    """The same voxels on an LPS/oblique grid: centroid and axis are those of scanner space."""
    aff = oblique_lps()
    m = np.zeros((30, 20, 20), bool)
    m[5:25, 9:11, 9:11] = True  # along array axis 0
    c = pvs_burden(m, aff).clusters.iloc[0]
    centre_ijk = np.array([14.5, 9.5, 9.5])
    np.testing.assert_allclose([c.centroid_x_mm, c.centroid_y_mm, c.centroid_z_mm], aff[:3, :3] @ centre_ijk + aff[:3, 3])
    col = aff[:3, 0] / np.linalg.norm(aff[:3, 0])
    axis = np.array([c.axis_x, c.axis_y, c.axis_z])
    assert abs(axis @ col) == pytest.approx(1.0, abs=1e-9)
    assert c.length_mm == pytest.approx(20 * 0.6)
    assert c.width_mm == pytest.approx((2 * 0.7 + 2 * 0.9) / 2)


def test_26_connectivity_and_minimum_size():
    m = np.zeros((20, 20, 20), bool)
    m[2, 2, 2] = m[3, 3, 3] = True  # corner-touching: one cluster of 2
    m[10, 10, 10] = True  # 1 voxel
    m[15, 5:8, 5] = True  # 3 voxels
    m[5, 15, 12:17] = True  # 5 voxels
    vox = 0.8**3
    assert pvs_burden(m, (0.8,) * 3).count == 4
    b = pvs_burden(m, (0.8,) * 3, min_size_mm3=3 * vox)  # exactly 3 voxels is kept
    assert b.count == 2
    assert sorted(b.clusters.n_voxels) == [3, 5]
    assert list(b.clusters.id) == [1, 2]
    assert set(np.unique(b.labels)) == {0, 1, 2}
    assert b.volume_mm3 == pytest.approx(8 * vox)
    assert b.parameters["min_size_mm3"] == pytest.approx(3 * vox)


def test_vectorised_geometry_matches_a_per_cluster_loop():
    rng = np.random.default_rng(3)
    m = rng.random((30, 30, 30)) > 0.93
    aff = oblique_lps()
    labels, n = label_clusters(m, aff)
    geo = cluster_geometry(labels, n, aff)
    a3 = aff[:3, :3]
    for k in rng.choice(n, size=min(n, 25), replace=False):
        ijk = np.argwhere(labels == k + 1).astype(float)
        assert geo.n_voxels[k] == len(ijk)
        np.testing.assert_allclose(geo.centroid_mm[k], a3 @ ijk.mean(0) + aff[:3, 3], atol=1e-9)
        cov = a3 @ (np.cov(ijk.T, bias=True).reshape(3, 3)) @ a3.T + a3 @ a3.T / 12
        w, v = np.linalg.eigh(cov)
        np.testing.assert_allclose(np.sort(geo.extents_mm[k, 1:]), np.sort(np.sqrt(12 * np.clip(w[:2], 0, None))), atol=1e-9)
        e = v[:, 2]
        proj = (ijk - ijk.mean(0)) @ a3.T @ e
        length = proj.max() - proj.min() + np.sqrt(((e @ a3) ** 2).sum())
        assert geo.length_mm[k] == pytest.approx(length, abs=1e-9)


def test_mean_probability_per_cluster():
    m = np.zeros((10, 10, 10), bool)
    m[1:3, 1, 1] = True
    m[6:9, 6, 6] = True
    p = np.zeros(m.shape, np.float32)
    p[1, 1, 1], p[2, 1, 1] = 0.6, 0.8
    p[6:9, 6, 6] = 0.9
    b = pvs_burden(m, probs=p)
    np.testing.assert_allclose(b.clusters.mean_prob, [0.7, 0.9], rtol=1e-6)
    assert b.mean_probability == pytest.approx((0.6 + 0.8 + 2.7) / 5, rel=1e-6)


def test_majority_label_ties_take_the_smaller_value():
    idx = np.array([0, 0, 0, 0, 1, 1, 1])
    vals = np.array([41, 2, 41, 2, 11, 11, 0])
    np.testing.assert_array_equal(majority_label(idx, vals, 3), [2, 11, 0])


# ---------------------------------------------------------------------------------------- regions


def test_regions_on_the_same_grid():
    m = np.zeros((20, 20, 20), bool)
    m[2:6, 2, 2] = True  # 4 voxels: 3 in WM (2), 1 in putamen (12) -> wm
    m[10:13, 10, 10] = True  # putamen
    m[15, 15, 15:18] = True  # 2 voxels hippocampus (17), 1 unlabelled -> hippocampus
    m[18, 2, 2] = True  # unlabelled -> other
    reg = np.zeros(m.shape, np.int16)
    reg[:8] = 2
    reg[5, 2, 2] = 12
    reg[9:14] = 51
    reg[15, 15, 15:17] = 17
    b = pvs_burden(m, regions=reg)
    t = b.clusters
    assert list(t.region_label) == [2, 51, 17, 0]
    assert list(t.region) == ["wm", "bg", "hippocampus", "other"]
    assert list(t.region_name) == ["Left-Cerebral-White-Matter", "Right-Putamen", "Left-Hippocampus", "Unknown"]
    assert set(b.per_region) == {"wm", "bg", "hippocampus", "other"}  # no brainstem label: no midbrain
    assert b.per_region["wm"]["count"] == 1 and b.per_region["wm"]["volume_mm3"] == 4
    assert b.per_region["bg"] == {"name": "basal ganglia", "count": 1, "volume_mm3": 3.0, "labels": [12, 51]}
    assert b.per_region["other"]["count"] == 1
    row = b.summary_row("c1")
    assert row["bg_count"] == 1 and row["hippocampus_volume_mm3"] == 3


def test_regions_on_another_grid_are_sampled_by_scanner_position():
    """A 2 mm label map, shifted and flipped, labels clusters by where they are in scanner space."""
    mask_aff = np.diag([0.5, 0.5, 0.5, 1.0])
    reg_aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    reg_aff[:3, 3] = [20.0, -4.0, -4.0]  # x = 20 - 2i
    # Label by scanner x: x < 7 -> caudate (11), else white matter (41).
    xs = 20 - 2 * np.arange(12)
    reg = np.where(xs[:, None, None] < 7, 11, 41) * np.ones((12, 12, 12), int)
    m = np.zeros((30, 20, 20), bool)
    m[2:6, 5, 5] = True  # x = 1..2.5 mm -> caudate
    m[20:26, 5, 5] = True  # x = 10..12.5 mm -> WM
    b = pvs_burden(m, mask_aff, regions=reg, regions_affine=reg_aff)
    assert list(b.clusters.region_label) == [11, 41]
    assert b.per_region["bg"]["count"] == 1 and b.per_region["wm"]["count"] == 1
    # Sampling at voxels equals the whole-grid resampling at those voxels.
    full = resample_labels(reg, reg_aff, m.shape, mask_aff)
    flat = np.flatnonzero(m)
    np.testing.assert_array_equal(labels_at(reg, reg_aff, m.shape, mask_aff, flat), full.ravel()[flat])


def test_regions_from_files_and_a_lut(tmp_path):
    aff = oblique_lps()
    m = np.zeros((20, 20, 20), np.uint8)
    m[3:7, 4, 4] = 1
    reg = np.full(m.shape, 50, np.int16)
    nib.save(nib.Nifti1Image(m, aff), tmp_path / "mask.nii.gz")
    nib.save(nib.Nifti1Image(reg, aff), tmp_path / "aseg.nii.gz")
    lut = tmp_path / "lut.txt"
    lut.write_text("# FreeSurfer LUT\n\n0  Unknown 0 0 0 0\n50 Right-Caudate-custom 122 186 220 0\n")
    assert read_lut(lut) == {0: "Unknown", 50: "Right-Caudate-custom"}
    b = pvs_burden(tmp_path / "mask.nii.gz", regions=tmp_path / "aseg.nii.gz", lut=lut)
    assert b.clusters.region_name[0] == "Right-Caudate-custom"
    assert b.per_region["bg"]["labels"] == [50]
    bad = tmp_path / "bad.txt"
    bad.write_text("Left-Caudate 11 0 0 0\n")
    with pytest.raises(InputError, match="bad.txt.*line 1"):
        read_lut(bad)


def test_region_array_without_affine_must_match_the_grid():
    with pytest.raises(InputError, match="not on the mask's grid"):
        pvs_burden(np.ones((4, 4, 4), bool), regions=np.zeros((5, 5, 5), int))


# ------------------------------------------------------------------------------------ inputs, I/O


def test_inputs_path_scan_pair_and_array_agree(tmp_path):
    aff = oblique_lps()
    m = np.zeros((16, 16, 16), np.uint8)
    m[2:9, 3, 3] = 1
    m[10, 10, 10:12] = 1
    p = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(m, aff), p)
    results = [pvs_burden(src) for src in (p, str(p), load_image(p, kind="label"), (m, aff))] + [pvs_burden(m, aff)]
    for r in results[1:]:
        assert r.count == results[0].count == 2
        pd.testing.assert_frame_equal(r.clusters, results[0].clusters)


def test_probability_map_given_as_mask_is_refused(tmp_path):
    p = tmp_path / "probs.nii.gz"
    nib.save(nib.Nifti1Image(np.linspace(0, 1, 64, dtype=np.float32).reshape(4, 4, 4), np.eye(4)), p)
    with pytest.raises(InputError, match="probs.nii.gz.*probability map"):
        pvs_burden(p)


def test_empty_mask():
    b = pvs_burden(np.zeros((8, 8, 8), bool), regions=np.full((8, 8, 8), 2))
    assert b.count == 0 and b.volume_mm3 == 0
    assert b.clusters.empty and {"length_mm", "region"} <= set(b.clusters.columns)
    assert b.per_region["wm"]["count"] == 0
    json.dumps(b.to_dict(), allow_nan=False)


def test_batch_summary_has_one_row_per_case(tmp_path):
    m = np.zeros((16, 18, 20), np.uint8)
    m[2:9, 3, 3] = 1
    b = pvs_burden(m, oblique_lps(), min_size_mm3=0.5)
    summary = write_summary({"sub-01": b, "sub-02": pvs_burden(np.zeros((4, 4, 4), bool))}, tmp_path / "summary.csv")
    s = pd.read_csv(summary)
    assert list(s.case_id) == ["sub-01", "sub-02"] and list(s["count"]) == [1, 0]


def test_phantom_burden_per_region():
    synth = pytest.importorskip("mednet_pvs.synth")
    if not hasattr(synth, "make_phantom"):
        pytest.skip("mednet_pvs.synth.make_phantom not available yet")
    ph = synth.make_phantom(synth.PhantomConfig(anatomy="procedural", shape=(64, 64, 64)), seed=0)
    b = pvs_burden(ph.label, ph.affine, regions=ph.regions)
    assert b.count > 0
    assert b.count == sum(r["count"] for r in b.per_region.values())
    assert b.volume_mm3 == pytest.approx(sum(r["volume_mm3"] for r in b.per_region.values()))
    assert "wm" in b.per_region


def test_probability_map_from_a_file_may_be_all_zero(tmp_path):
    m = np.zeros((6, 6, 6), np.uint8)
    m[2, 2, 2:4] = 1
    nib.save(nib.Nifti1Image(np.zeros(m.shape, np.float32), np.eye(4)), tmp_path / "p.nii.gz")
    b = pvs_burden(m, probs=tmp_path / "p.nii.gz")
    assert b.clusters.mean_prob.tolist() == [0.0] and b.mean_probability == 0.0


def test_analysis_and_classical_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, mednet_pvs.analysis, mednet_pvs.classical; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
