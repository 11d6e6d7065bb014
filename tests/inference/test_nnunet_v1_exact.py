"""Imported nnU-Net v1 models reproduce nnU-Net v1's own predictor (exact mode).

The references in ``tests/data/nnunet_v1_reference`` were made by nnunet 1.7.1's own code
(``make_reference.py``, README there): v1 result folders with the plans of v1's
``ExperimentPlanner3D_v21`` (shrunk network) and random weights saved by ``nnUNetTrainerV2``, and
``predict_from_folder`` outputs on one phantom stored RAS, LPS-permuted and at 0.9 x 0.9 x 3 mm,
padded with zeros so that the crop to the nonzero box removes something. Task901: one channel (T2w),
two classes; Task902: two channels (T2w, T1w), three classes; Task903: two channels normalised by
v1's ``CT`` and ``CT2`` with the planner's intensity properties.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import InputError
from mednet_pvs.zoo import load_pretrained
from mednet_pvs.zoo.import_nnunet_v1 import import_nnunet_v1

REF = Path(__file__).resolve().parents[1] / "data" / "nnunet_v1_reference"
TASK = REF / "results" / "Task901_PVS"
MODELS = ("nnUNetPlansv2.1", "nnUNetPlansv2.1_nomask", "nnUNetPlansv2.1_aniso")
CASES = ("ras", "lps", "aniso")
PKL = "model_final_checkpoint.model.pkl"
#: two-channel folders (inputs ``<case>_T2w``, ``<case>_T1w``): name -> (task, plans)
MULTI = {"2ch_3class": ("Task902_PVSWMH", "nnUNetPlansv2.1"), "2ch_ct_ct2": ("Task903_PVSCT", "nnUNetPlansv2.1_ct")}


def _folder(plans: str) -> Path:
    return TASK / f"nnUNetTrainerV2__{plans}"


def _reference(plans: str, case: str) -> tuple[np.ndarray, np.ndarray]:
    base = REF / "predictions" / f"Task901_PVS__{plans}"
    labels = np.asarray(nib.load(base / f"{case}.nii.gz").dataobj)
    prob = np.load(base / f"{case}_pvs.npz")["probability"].astype(np.float32)  # (z, y, x): v1's axis order
    return labels, prob.transpose(2, 1, 0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # module scope, autouse: set before the module-scoped model fixtures load
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers; on a loaded 2-core machine much faster than two
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    return {plans: load_pretrained(str(_folder(plans)), device="cpu") for plans in MODELS}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("plans", MODELS)
def test_matches_nnunet_v1_predictor(models, plans, case):
    labels_ref, prob_ref = _reference(plans, case)
    args = json.loads((REF / "predictions" / f"Task901_PVS__{plans}" / "reference.json").read_text())
    pred = models[plans].predict(REF / "inputs" / f"{case}_T2w.nii.gz", tta=args["tta"], step=args["step_size"])
    assert pred.mask.shape == labels_ref.shape == pred.scan.shape
    agree = float((pred.mask == labels_ref).mean())
    assert agree >= 0.999, f"labels agree in {agree:.5f} of voxels"
    np.testing.assert_allclose(pred.probabilities, prob_ref, atol=1e-3)


def test_exact_mode_is_the_default_and_reads_the_plans(models):
    from mednet_pvs.inference.nnunet_model import NnUNetModel

    two = models["nnUNetPlansv2.1"]
    assert isinstance(two, NnUNetModel) and len(two.networks) == 2
    p = two.pipeline
    assert p.version == 1 and p.normalization_schemes == ("nonCT",) and p.use_mask_for_norm == (True,)
    assert models["nnUNetPlansv2.1_nomask"].pipeline.use_mask_for_norm == (False,)
    aniso = models["nnUNetPlansv2.1_aniso"].pipeline
    assert aniso.transpose_forward == (1, 0, 2) and aniso.spacing == pytest.approx((3.0, 0.9, 0.9))
    assert two.inference.window.mirror_axes == (0, 1, 2) and two.inference.window.patch_size == (32, 32, 32)


def test_one_tile_is_not_weighted(models):
    """v1 weights tiles by its Gaussian only when more than one tile covers the volume."""
    import torch

    from mednet_pvs.inference.nnunet_model import (
        nnunet_v1_gaussian,
        nnunet_v1_sliding_window,
    )

    g = nnunet_v1_gaussian((8, 8, 8))
    assert g.dtype == torch.float32 and float(g.max()) == 1.0 and float(g.min()) > 0
    net = models["nnUNetPlansv2.1_nomask"].networks[0]
    x = torch.randn(1, 32, 32, 32)
    with torch.inference_mode():
        one = nnunet_v1_sliding_window(net, x, (32, 32, 32), 2)
        direct = torch.softmax(net(x[None]), 1)[0]
    assert torch.equal(one, direct)  # bit for bit: no Gaussian multiplied in and divided out


def test_bundle_round_trip_keeps_v1_exact_mode(models, tmp_path):
    model = models["nnUNetPlansv2.1_aniso"]
    model.save_pretrained(tmp_path / "b")
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["kind"] == "nnunet" and config["nnunet"]["version"] == 1
    back = load_pretrained(str(tmp_path / "b"), device="cpu")
    case = REF / "inputs" / "aniso_T2w.nii.gz"
    np.testing.assert_array_equal(model.predict(case, tta=False).mask, back.predict(case, tta=False).mask)


def _copy(tmp_path: Path, plans: str = "nnUNetPlansv2.1") -> Path:
    dest = tmp_path / "Task901_PVS" / f"nnUNetTrainerV2__{plans}"
    shutil.copytree(_folder(plans), dest)
    return dest


def _edit_plans(pkl: Path, edit) -> None:
    with open(pkl, "rb") as f:
        info = pickle.load(f)  # our own fixture: a trusted pickle
    edit(info["plans"])
    with open(pkl, "wb") as f:
        pickle.dump(info, f)


def test_folds_with_different_plans_are_refused(tmp_path):
    folder = _copy(tmp_path)
    _edit_plans(folder / "fold_1" / PKL, lambda p: p["use_mask_for_norm"].update({0: False}))
    with pytest.raises(InputError, match=r"fold_1: its plans differ from fold_0's"):
        import_nnunet_v1(folder, device="cpu")


def test_missing_fold_is_named(tmp_path):
    with pytest.raises(InputError, match=r"has no fold_3 \(folds present: fold_0, fold_1\)"):
        import_nnunet_v1(_folder("nnUNetPlansv2.1"), folds=[0, 3], device="cpu")
    folder = _copy(tmp_path)
    (folder / "fold_1" / PKL).unlink()
    with pytest.raises(InputError, match=rf"fold_1/{PKL}: missing"):
        import_nnunet_v1(folder, device="cpu")


def test_unknown_normalisation_is_named(tmp_path):
    folder = _copy(tmp_path, "nnUNetPlansv2.1_nomask")
    _edit_plans(folder / "fold_0" / PKL, lambda p: p["normalization_schemes"].update({0: "MyNorm"}))
    with pytest.raises(InputError, match=rf"fold_0/{PKL}: normalization 'MyNorm' is not known \(known in exact mode: "
                                         r"nonCT, CT, CT2, noNorm\)"):
        import_nnunet_v1(folder, device="cpu")


def test_approximate_mode_is_still_offered():
    from mednet_pvs.inference import PVSModel
    from mednet_pvs.inference.nnunet_model import NnUNetModel

    model = import_nnunet_v1(_folder("nnUNetPlansv2.1_nomask"), device="cpu", mode="approximate")
    assert isinstance(model, PVSModel) and not isinstance(model, NnUNetModel)
    assert model.preprocessing.orientation == "SAR"
    with pytest.raises(Exception, match="mode must be one of exact, approximate"):
        import_nnunet_v1(_folder("nnUNetPlansv2.1_nomask"), device="cpu", mode="fast")


def test_predict_command_runs_a_v1_folder_exactly(tmp_path, capsys):
    import torch

    from mednet_pvs.cli.main import main

    plans = "nnUNetPlansv2.1_nomask"  # its reference was made without mirroring
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["predict", "-m", str(_folder(plans)), "-i", str(REF / "inputs" / "lps_T2w.nii.gz"),
                     "-o", str(tmp_path / "out"), "--regions", "none", "--no-tta"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().err
    img = nib.load(tmp_path / "out" / "lps_T2w" / "lps_T2w_mask.nii.gz")
    np.testing.assert_array_equal(np.asarray(img.dataobj), _reference(plans, "lps")[0])
    np.testing.assert_allclose(img.affine, nib.load(REF / "inputs" / "lps_T2w.nii.gz").affine)


# ------------------------------------------------------------------------------ two-channel models
def _multi_folder(model: str) -> Path:
    task, plans = MULTI[model]
    return REF / "results" / task / f"nnUNetTrainerV2__{plans}"


def _channels(case: str) -> list[Path]:
    return [REF / "inputs" / f"{case}_{contrast}.nii.gz" for contrast in ("T2w", "T1w")]


def _multi_reference(model: str, case: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """v1's label map (X, Y, Z), its foreground probabilities (K - 1, X, Y, Z) and ``reference.json``."""
    base = REF / "predictions" / "__".join(MULTI[model])
    labels = np.asarray(nib.load(base / f"{case}.nii.gz").dataobj)
    fg, pvs = base / f"{case}_fg.npz", base / f"{case}_pvs.npz"
    prob = np.load(fg)["probability"] if fg.is_file() else np.load(pvs)["probability"][None]  # (K - 1, z, y, x)
    return labels, prob.astype(np.float32).transpose(0, 3, 2, 1), json.loads((base / "reference.json").read_text())


@pytest.fixture(scope="module")
def multi_models():
    return {m: load_pretrained(str(_multi_folder(m)), device="cpu") for m in MULTI}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", MULTI)
def test_two_channel_models_match_nnunet_v1_predictor(multi_models, model, case):
    labels_ref, fg_ref, args = _multi_reference(model, case)
    pred = multi_models[model].predict(_channels(case), tta=args["tta"], step=args["step_size"])
    labels = pred.label_map if pred.label_map is not None else pred.mask
    probs = pred.class_probabilities[1:] if pred.class_probabilities is not None else pred.probabilities[None]
    assert labels.shape == labels_ref.shape == pred.scan.shape and probs.shape == fg_ref.shape
    agree = float((labels == labels_ref).mean())
    assert agree >= 0.999, f"labels agree in {agree:.5f} of voxels"
    for k in range(1, len(fg_ref) + 1):
        a, b = labels == k, labels_ref == k
        assert b.sum() > 100, "the reference has this class"  # the fixture's classes are not tied
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999, f"class {k}"
    np.testing.assert_allclose(probs, fg_ref, atol=1e-3)


def test_two_channel_plans_are_read_per_channel(multi_models):
    seg = multi_models["2ch_3class"]
    p = seg.pipeline
    assert p.channel_names == {"0": "T2w", "1": "T1w"} and seg.channel_names == ("T2w", "T1w")
    assert p.normalization_schemes == ("nonCT", "nonCT") and p.use_mask_for_norm == (True, False)
    assert seg.classes == {0: "background", 1: "label_1", 2: "label_2"}  # v1's plans keep no label names
    assert seg.meta["nnunet_v1"]["use_mask_for_norm"] == [True, False]
    ct = multi_models["2ch_ct_ct2"].pipeline
    assert ct.normalization_schemes == ("CT", "CT2") and ct.use_mask_for_norm == (False, True)
    assert ct.channel_names == {"0": "CT_0000", "1": "CT_0001"}  # v1's modalities {0: CT, 1: CT}, made unique
    with open(_multi_folder("2ch_ct_ct2") / "fold_0" / PKL, "rb") as f:
        planned = pickle.load(f)["plans"]["dataset_properties"]["intensityproperties"]  # our own fixture
    for c in (0, 1):
        got = ct.intensity_properties[str(c)]
        assert got["std"] == pytest.approx(planned[c]["sd"]) and got["mean"] == pytest.approx(planned[c]["mean"])
        assert got["percentile_00_5"] == pytest.approx(planned[c]["percentile_00_5"])
        assert got["percentile_99_5"] == pytest.approx(planned[c]["percentile_99_5"])


def test_two_channel_input_is_checked(multi_models):
    model = multi_models["2ch_3class"]
    with pytest.raises(InputError, match=r"takes 2 input channel\(s\) \(T2w, T1w\), 1 given"):
        model.predict(REF / "inputs" / "ras_T2w.nii.gz")
    with pytest.raises(InputError, match=r"lps_T1w\.nii\.gz: channel grid .* differs from .*ras_T2w"):
        model.predict([REF / "inputs" / "ras_T2w.nii.gz", REF / "inputs" / "lps_T1w.nii.gz"])


def test_two_channel_bundle_round_trip(multi_models, tmp_path):
    model = multi_models["2ch_ct_ct2"]
    model.save_pretrained(tmp_path / "b")
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["nnunet"]["normalization_schemes"] == ["CT", "CT2"] and config["nnunet"]["version"] == 1
    back = load_pretrained(str(tmp_path / "b"), device="cpu")
    a, b = model.predict(_channels("aniso"), tta=False), back.predict(_channels("aniso"), tta=False)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def _copy_multi(tmp_path: Path, model: str) -> Path:
    dest = tmp_path / MULTI[model][0] / _multi_folder(model).name
    shutil.copytree(_multi_folder(model), dest)
    return dest


def test_two_channel_folders_that_do_not_add_up_are_refused(tmp_path):
    one = _copy_multi(tmp_path / "a", "2ch_3class")

    def one_channel(p):
        for key in ("normalization_schemes", "use_mask_for_norm", "modalities"):
            p[key].pop(1)
    _edit_plans(one / "fold_0" / PKL, one_channel)
    with pytest.raises(InputError, match=r"model_final_checkpoint\.model: the weights take 2 input channel\(s\), the "
                                         r"plans have 1 \(nonCT\)"):
        import_nnunet_v1(one, device="cpu")
    gap = _copy_multi(tmp_path / "b", "2ch_3class")
    _edit_plans(gap / "fold_0" / PKL, lambda p: p["normalization_schemes"].update({2: p["normalization_schemes"].pop(1)}))
    with pytest.raises(InputError, match=r"plans' normalization_schemes .* is not one entry per input channel 0, 1, \.\.\."):
        import_nnunet_v1(gap, device="cpu")
    ct = _copy_multi(tmp_path / "c", "2ch_ct_ct2")
    _edit_plans(ct / "fold_0" / PKL, lambda p: p["dataset_properties"]["intensityproperties"].pop(1))
    with pytest.raises(InputError, match=rf"fold_0/{PKL}: normalization 'CT2' needs the plans' "
                                         r"dataset_properties\['intensityproperties'\] \(.* of channel 1\)"):
        import_nnunet_v1(ct, device="cpu")
    with pytest.raises(InputError, match=r"has 2 input channels \(T2w, T1w\): approximate mode \(fine-tuning\) takes "
                                         r"single-channel models only"):
        import_nnunet_v1(_multi_folder("2ch_3class"), device="cpu", mode="approximate")


def test_predict_command_runs_a_two_channel_v1_folder(tmp_path, capsys):
    import torch

    from mednet_pvs.cli.main import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # channels given out of order: put in the plans' order (T2w, T1w) by name
        code = main(["predict", "-m", str(_multi_folder("2ch_3class")), "--channel", f"T1w={_channels('lps')[1]}",
                     "--channel", f"T2w={_channels('lps')[0]}", "-o", str(tmp_path / "out"), "--regions", "none",
                     "--no-tta"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().err
    img = nib.load(tmp_path / "out" / "lps_T2w" / "lps_T2w_classes.nii.gz")
    np.testing.assert_array_equal(np.asarray(img.dataobj), _multi_reference("2ch_3class", "lps")[0])
    np.testing.assert_allclose(img.affine, nib.load(_channels("lps")[0]).affine)
