"""Phantom.save (files, types, sidecar) and make_cohort (manifest)."""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth import PhantomConfig, make_cohort, make_phantom
from mednet_pvs.synth.cohort import MANIFEST_COLUMNS, assign_splits, subject_seed


def test_save_writes_the_five_files(proc_phantom, tmp_path):
    paths = proc_phantom.save(tmp_path / "out", "ph01")
    names = {k: p.name for k, p in paths.items()}
    assert names == {"image": "ph01_T2w.nii.gz", "label": "ph01_pvs.nii.gz", "brainmask": "ph01_brainmask.nii.gz",
                     "regions": "ph01_regions.nii.gz", "json": "ph01.json"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names.values())  # no temp files left
    expect = {"image": (proc_phantom.image, np.float32), "label": (proc_phantom.label, np.uint8),
              "brainmask": (proc_phantom.brainmask, np.uint8), "regions": (proc_phantom.regions, np.int16)}
    for key, (arr, dtype) in expect.items():
        img = nib.load(paths[key])
        assert img.get_data_dtype() == dtype
        assert np.allclose(img.affine, proc_phantom.affine)
        assert np.array_equal(np.asanyarray(img.dataobj), arr)
        assert img.header.get_xyzt_units()[0] == "mm"
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    meta = json.loads(paths["json"].read_text())
    assert meta["seed"] == 1 and meta["pvs_count"] == len(meta["pvs"]) == proc_phantom.meta["pvs_count"]
    assert PhantomConfig.from_dict(meta["config"]) == PhantomConfig.from_dict(proc_phantom.meta["config"])
    assert meta["files"]["label"] == "ph01_pvs.nii.gz"
    rec = meta["pvs"][0]
    assert {"region", "hemisphere", "aseg", "length_mm", "width_mm", "direction", "centre_mm"} <= set(rec)
    assert {"lacunes", "wmh_fazekas", "vessels"} <= set(meta["confounders"])


def test_save_extras_and_bad_names(proc_phantom, tmp_path):
    paths = proc_phantom.save(tmp_path, "x", extras=True)
    assert np.array_equal(np.asanyarray(nib.load(paths["instances"]).dataobj), proc_phantom.instances)
    assert np.array_equal(np.asanyarray(nib.load(paths["confounders"]).dataobj), proc_phantom.confounders)
    with pytest.raises(ConfigError):
        proc_phantom.save(tmp_path, "../evil")


def test_make_cohort_writes_a_manifest(tmp_path):
    cfg = PhantomConfig(anatomy="procedural", shape=(48, 48, 48), burden=1)
    seen = []
    manifest = make_cohort(tmp_path / "c", 5, cfg, seed=3, sites=["A", "B"], on_subject=seen.append)
    assert manifest == tmp_path / "c" / "manifest.csv"
    with manifest.open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == MANIFEST_COLUMNS
        rows = list(reader)
    assert [r["subject"] for r in rows] == [f"sub-00{i}" for i in range(1, 6)]
    assert [r["site"] for r in rows] == ["A", "B", "A", "B", "A"]
    assert sorted(r["split"] for r in rows) == ["test", "train", "train", "train", "val"]
    for r in rows:
        for key in ("image", "label", "brainmask"):
            assert not r[key].startswith("/") and (manifest.parent / r[key]).is_file()
        assert r["image"].endswith("_T2w.nii.gz") and r["label"].endswith("_pvs.nii.gz")
    assert len(seen) == 5 and seen[0]["pvs_count"] > 0
    # subjects differ, and each can be remade from its recorded seed
    meta = json.loads((manifest.parent / "sub-002" / "sub-002.json").read_text())
    assert meta["seed"] == subject_seed(3, 1) and meta["cohort"]["site"] == "B"
    again = make_phantom(cfg, seed=meta["seed"])
    assert np.array_equal(again.label, np.asanyarray(nib.load(manifest.parent / rows[1]["label"]).dataobj))


def test_cohort_sites_mapping_sets_per_site_options(tmp_path):
    cfg = PhantomConfig(anatomy="procedural", shape=(48, 48, 48), burden=1)
    manifest = make_cohort(tmp_path, 2, cfg, sites={"t2": {}, "t1": {"contrast": "T1w", "noise": 0.05}})
    rows = list(csv.DictReader(manifest.open()))
    assert rows[0]["image"].endswith("_T2w.nii.gz") and rows[1]["image"].endswith("_T1w.nii.gz")


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=2, seed=-1), dict(n=2, sites=0), dict(n=2, sites=["a", "a"]),
                                    dict(n=2, sites={"a": {"colour": 1}})])
def test_cohort_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        make_cohort(tmp_path, config=PhantomConfig(anatomy="procedural"), **kwargs)


def test_splits():
    assert assign_splits(10, (0.7, 0.15, 0.15), 0).count("train") == 7
    assert assign_splits(3, (0.7, 0.15, 0.15), 0).count("test") == 1
    assert assign_splits(1, (0.7, 0.15, 0.15), 0) == ["train"]
    assert assign_splits(20, (1, 0, 0), 0) == ["train"] * 20
    assert assign_splits(10, (0.7, 0.15, 0.15), 1) != assign_splits(10, (0.7, 0.15, 0.15), 2)
