"""``mednet-pvs predict -m <nnU-Net v2 folder>`` with several channels and classes, and
``mednet-pvs import-nnunet-v2``: options parsed, outputs equal to nnU-Net's, one line per problem."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.cli.main import main

REF = Path(__file__).resolve().parents[1] / "data" / "nnunet_v2_reference"
MODEL = REF / "results" / "Dataset902_PVSWMH" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
PRED = REF / "predictions" / "Dataset902_PVSWMH__nnUNetPlans"


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers; far faster on a loaded 2-core machine
    yield
    torch.set_num_threads(n)


def _reference(case: str) -> np.ndarray:
    return np.asarray(nib.load(PRED / f"{case}.nii.gz").dataobj)


def test_predict_channels_writes_every_class(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "-m", str(MODEL), "--channel", f"T1w={REF / 'inputs' / 'ras_T1w.nii.gz'}",
                 "--channel", f"T2w={REF / 'inputs' / 'ras_T2w.nii.gz'}", "-o", str(out), "--regions", "none", "--no-tta"])
    err = capsys.readouterr().err
    assert code == 0, err
    case = out / "ras_T2w"
    classes = np.asarray(nib.load(case / "ras_T2w_classes.nii.gz").dataobj)
    np.testing.assert_array_equal(classes, _reference("ras"))  # channels put in the model's order (T2w, T1w)
    mask = np.asarray(nib.load(case / "ras_T2w_mask.nii.gz").dataobj)
    np.testing.assert_array_equal(mask, classes == 1)
    stats = json.loads((case / "ras_T2w_stats.json").read_text())
    assert stats["classes"]["WMH"]["voxels"] == int((classes == 2).sum())
    from scipy import ndimage as ndi

    for value, name in ((1, "PVS"), (2, "WMH")):  # each class's own burden: its clusters (26-connected)
        assert stats["classes"][name]["clusters"] == ndi.label(classes == value, np.ones((3, 3, 3)))[1]
    assert stats["classes"]["PVS"]["clusters"] == stats["count"]
    assert set(stats["provenance"]["inputs"]) == {"image", "channel_1"}
    import pandas as pd

    wmh = pd.read_csv(case / "ras_T2w_wmh_clusters.csv")  # a clusters table per class beside the PVS one
    assert len(wmh) == stats["classes"]["WMH"]["clusters"] and wmh["n_voxels"].sum() == (classes == 2).sum()
    assert not (case / "ras_T2w_pvs_clusters.csv").exists()  # PVS's table is the main one
    assert (case / "ras_T2w_clusters.csv").stat().st_mtime_ns >= (case / "ras_T2w_wmh_clusters.csv").stat().st_mtime_ns
    row = pd.read_csv(out / "summary.csv").iloc[0]  # per-class count/volume columns
    assert row["class_wmh_count"] == stats["classes"]["WMH"]["clusters"]
    assert row["class_wmh_volume_mm3"] == pytest.approx(stats["classes"]["WMH"]["volume_mm3"])
    assert row["class_pvs_count"] == stats["count"]
    code = main(["predict", "-m", str(MODEL), "--channel", f"T1w={REF / 'inputs' / 'ras_T1w.nii.gz'}",
                 "--channel", f"T2w={REF / 'inputs' / 'ras_T2w.nii.gz'}", "-o", str(out), "--regions", "none", "--no-tta"])
    assert code == 0  # resumed: the columns come back from the stats
    again = pd.read_csv(out / "summary.csv").iloc[0]
    assert again["class_wmh_count"] == row["class_wmh_count"] and again["class_wmh_volume_mm3"] == pytest.approx(row["class_wmh_volume_mm3"])


def test_nnunet_named_folder_is_one_case_per_stem(tmp_path, capsys):
    src = tmp_path / "imagesTs"
    src.mkdir()
    shutil.copy(REF / "inputs" / "lps_T2w.nii.gz", src / "lps_0000.nii.gz")
    shutil.copy(REF / "inputs" / "lps_T1w.nii.gz", src / "lps_0001.nii.gz")
    code = main(["predict", "-m", str(MODEL), "-i", str(src), "-o", str(tmp_path / "out"), "--regions", "none", "--no-tta"])
    assert code == 0, capsys.readouterr().err
    got = np.asarray(nib.load(tmp_path / "out" / "lps" / "lps_classes.nii.gz").dataobj)
    np.testing.assert_array_equal(got, _reference("lps"))


@pytest.mark.parametrize(("args", "message"), [
    (["--channel", "T2w=x.nii.gz"], "--channel: the model's channels are T2w, T1w; missing T1w"),
    (["--channel", "T2w"], "--channel 'T2w': expected NAME=path"),
    (["--channel", "T2w=a", "--channel", "T2w=b"], "--channel T2w is given twice"),
    (["-i", "x.nii.gz", "--channel", "T2w=a"], "give the input with -i/--input, or a multi-channel case with --channel"),
])
def test_bad_channel_options(tmp_path, capsys, args, message):
    code = main(["predict", "-m", str(MODEL), "-o", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_single_channel_given_to_two_channel_model(tmp_path, capsys):
    code = main(["predict", "-m", str(MODEL), "-i", str(REF / "inputs" / "ras_T2w.nii.gz"), "-o", str(tmp_path / "out"),
                 "--regions", "none"])
    err = capsys.readouterr().err
    assert code != 0 and "has 1 input channel(s); the model takes 2 (T2w, T1w)" in err


def test_import_nnunet_v2(tmp_path, capsys):
    out = tmp_path / "bundle"
    code = main(["import-nnunet-v2", "-i", str(MODEL), "-o", str(out), "--folds", "0", "--checkpoint", "final", "--name", "pvs-wmh"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "channels T2w, T1w, labels background, PVS, WMH" in err
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "nnunet" and config["name"] == "pvs-wmh" and config["meta"]["folds"] == ["0"]
    code = main(["import-nnunet-v2", "-i", str(MODEL), "-o", str(tmp_path / "b2"), "--checkpoint", "best"])
    err = capsys.readouterr().err
    assert code != 0 and "no fold_*/checkpoint_best.pth found" in err
    code = main(["import-nnunet-v2", "-i", str(MODEL), "-o", str(tmp_path / "b3"), "--checkpoint", "latest"])
    assert code != 0 and "latest" in capsys.readouterr().err


def test_finetune_from_an_exact_mode_bundle_points_to_the_folder(tmp_path, capsys):
    """An exact-mode bundle (nnU-Net's own pipeline) cannot be trained; the v2 folder itself can
    (approximate import: tests/zoo/test_nnunet_v2_approximate.py); a two-channel folder cannot."""
    from mednet_pvs.errors import InputError
    from mednet_pvs.training.finetuning import finetune
    from mednet_pvs.zoo import save_pretrained
    from mednet_pvs.zoo.import_nnunet_v2 import import_nnunet_v2

    bundle = save_pretrained(import_nnunet_v2(MODEL, device="cpu"), tmp_path / "exact")
    with pytest.raises(InputError, match="exact mode.*cannot be trained: fine-tune from the nnU-Net result folder itself"):
        finetune(str(bundle), tmp_path / "data", tmp_path / "out", run_dir=tmp_path / "run")
    with pytest.raises(InputError, match="approximate mode \\(fine-tuning\\) takes single-channel models only"):
        finetune(str(MODEL), tmp_path / "data", tmp_path / "out", run_dir=tmp_path / "run")


def test_finetune_from_a_v1_folder_starts_from_its_approximate_import(tmp_path):
    """v1 folders load in exact mode elsewhere; fine-tuning takes the trainable (approximate) import."""
    import json
    from pathlib import Path

    from mednet_pvs.training.finetuning import resolve_model_folder

    v1 = Path(__file__).parents[1] / "data" / "nnunet_v1_release" / "nnUNet" / "3d_fullres" / "Task030_nnunet_HCP_T2w"
    folder = resolve_model_folder(v1, tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    assert folder == tmp_path / "run" / "source_model" and config["kind"] == "network"
