"""CaseOutputs: the one owner of a case's file names and their writer; Prediction.save and the
batch use it, and the mask written is the model's own."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mednet_pvs.analysis import pvs_burden
from mednet_pvs.inference import CaseOutputs, Prediction
from mednet_pvs.inference.batch import case_outputs
from mednet_pvs.io import load_image


def test_case_outputs_are_on_the_input_grid(tmp_path, oblique_affine):
    aff = oblique_affine()  # LPS-ish, rotated 25 degrees about S, 0.6 x 0.7 x 0.9 mm
    m = np.zeros((16, 18, 20), np.uint8)
    m[2:9, 3, 3] = 1
    src = tmp_path / "in" / "sub-01_pvs.nii.gz"
    src.parent.mkdir()
    nib.save(nib.Nifti1Image(m, aff), src)
    probs = np.where(m > 0, 0.9, 0.1).astype(np.float32)
    b = pvs_burden(src, probs=probs, regions=np.full(m.shape, 2), min_size_mm3=0.5)
    paths = CaseOutputs(tmp_path / "out", "sub-01").write(load_image(src, kind="label"), m, probabilities=probs, burden=b, labels=True)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "sub-01_mask.nii.gz", "sub-01_prob.nii.gz", "sub-01_clusters.nii.gz", "sub-01_stats.json", "sub-01_clusters.csv",
    }
    out = nib.load(paths["mask"])
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, aff, atol=1e-5)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), m)
    stats = json.loads(paths["stats"].read_text())  # strict JSON
    assert stats["count"] == 1 and stats["per_region"]["wm"]["count"] == 1
    assert stats["parameters"]["min_size_mm3"] == 0.5
    table = pd.read_csv(paths["clusters"])
    assert list(table.columns[:3]) == ["id", "n_voxels", "volume_mm3"] and len(table) == 1


def test_the_mask_written_is_the_models_not_the_burdens(tmp_path):
    """A burden with a minimum size drops a small cluster from its table; the mask file keeps the model's mask."""
    m = np.zeros((12, 12, 12), np.uint8)
    m[2:9, 3, 3] = 1
    m[9, 9, 9] = 1  # 1 mm^3: below the burden's minimum size
    scan = load_image((np.zeros(m.shape, np.float32), np.eye(4)), kind="label")
    b = pvs_burden(m, np.eye(4), min_size_mm3=2.0)
    assert b.count == 1
    out = CaseOutputs(tmp_path, "c")
    paths = out.write(scan, m, burden=b)
    np.testing.assert_array_equal(np.asanyarray(nib.load(paths["mask"]).dataobj), m)
    assert out.done() and out.read_stats()["count"] == 1


def test_names_are_shared_by_prediction_save_and_the_batch(tmp_path):
    scan = load_image((np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32), np.eye(4)))
    pred = Prediction(probabilities=np.full(scan.shape, 0.2, np.float32), mask=np.zeros(scan.shape, np.uint8), scan=scan)
    saved = pred.save(tmp_path / "single", "sub-01", probabilities=True)
    batch = case_outputs(tmp_path / "batch", "sub-01")
    assert {k: p.name for k, p in saved.items()} == {k: batch[k].name for k in saved}
    assert batch.folder == tmp_path / "batch" / "sub-01" and batch["mask"] == batch.path("mask")
    assert not batch.done()
    assert sorted(p.name for p in (tmp_path / "single").iterdir()) == ["sub-01_mask.nii.gz", "sub-01_prob.nii.gz"]


def test_probabilities_can_be_drawn_without_being_written(tmp_path):
    scan = load_image((np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32), np.eye(4)))
    mask = np.zeros(scan.shape, np.uint8)
    mask[10:20, 20, 20] = 1
    paths = CaseOutputs(tmp_path, "x").write(scan, mask, probabilities=mask * 0.9, save_probabilities=False, preview=True)
    assert set(paths) == {"mask", "preview"} and paths["preview"].stat().st_size > 0
    with pytest.raises(ValueError, match="labels=True needs the burden"):
        CaseOutputs(tmp_path, "y").write(scan, mask, labels=True)
