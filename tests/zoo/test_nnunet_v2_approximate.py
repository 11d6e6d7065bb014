"""nnU-Net v2 folders imported in approximate mode (the project's pipeline, trainable): what
``finetune --from <v2 folder>`` starts from. Fixtures: ``tests/data/nnunet_v2_reference`` (README there)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mednet_pvs.cli.main import main
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference import PVSModel
from mednet_pvs.zoo.import_nnunet_v2 import import_nnunet_v2

REF = Path(__file__).resolve().parents[1] / "data" / "nnunet_v2_reference"
RESENC = REF / "results" / "Dataset901_PVS" / "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres"
TWO_CHANNELS = REF / "results" / "Dataset902_PVSWMH" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
CUSTOM_NORM = REF / "results" / "Dataset903_PVSAgno" / "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres"


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # far faster on a loaded 2-core machine
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_approximate_import_keeps_weights_and_plans_and_matches_exact_mode():
    exact = import_nnunet_v2(RESENC, device="cpu")
    approx = import_nnunet_v2(RESENC, device="cpu", mode="approximate")
    assert isinstance(approx, PVSModel) and type(approx).__name__ == "PVSModel" and len(approx.networks) == 2
    for a, b in zip(exact.networks, approx.networks):  # nnU-Net's weights, exactly
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    pre, window = approx.preprocessing, approx.inference.window
    assert pre.target_spacing == exact.pipeline.spacing and pre.normalisation == "zscore" and pre.orientation == "SAR"
    assert window.patch_size == exact.inference.window.patch_size and window.mirror_axes == exact.inference.window.mirror_axes
    assert window.sigma_scale == pytest.approx(1 / 8) and approx.meta["mode"] == "approximate" and approx.meta["import_notes"]
    # the phantom stored RAS at the plans' 1 mm: the project's pipeline finds nnU-Net's labels
    case = REF / "inputs" / "ras_T2w.nii.gz"
    a, b = exact.predict(case, tta=False).mask.astype(bool), approx.predict(case, tta=False).mask.astype(bool)
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice >= 0.99, f"Dice {dice:.4f}"  # measured 0.9954


@pytest.mark.parametrize(("folder", "where", "message"), [
    (TWO_CHANNELS, "dataset.json", "has 2 input channels (T2w, T1w): approximate mode (fine-tuning) takes single-channel"),
    (CUSTOM_NORM, "plans.json", "normalisation 'T1wPVSNormalization' has no counterpart"),
])
def test_models_without_a_counterpart_are_refused_in_one_line(folder, where, message):
    with pytest.raises(InputError, match=re.escape(message)) as e:
        import_nnunet_v2(folder, device="cpu", mode="approximate")
    assert str(e.value).startswith(str(folder / where)) and "\n" not in str(e.value)


def test_unknown_mode():
    with pytest.raises(ConfigError, match="mode must be one of exact, approximate"):
        import_nnunet_v2(RESENC, mode="fast")


def test_import_command_mode_approximate(tmp_path, capsys):
    out = tmp_path / "bundle"
    code = main(["import-nnunet-v2", "-i", str(RESENC), "-o", str(out), "--mode", "approximate", "--folds", "0",
                 "--training-orientation", "LAS"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "network" and config["preprocessing"]["orientation"] == "SAL"
    assert "approximate mode" in capsys.readouterr().err
    code = main(["import-nnunet-v2", "-i", str(RESENC), "-o", str(tmp_path / "b2"), "--mode", "fast"])
    assert code != 0 and not (tmp_path / "b2").exists()


@pytest.mark.slow
def test_finetune_starts_from_a_v2_folder(tmp_path, capsys):
    """``finetune --from <v2 folder>``: the approximate import, then training (two steps on tiny phantoms)."""
    from mednet_pvs.synth import PhantomConfig, make_cohort
    from mednet_pvs.training.finetuning import resolve_model_folder

    folder = resolve_model_folder(RESENC, tmp_path / "run0")
    assert folder == tmp_path / "run0" / "source_model"
    assert json.loads((folder / "config.json").read_text())["kind"] == "network"
    cohort = make_cohort(tmp_path / "data", 3, PhantomConfig(anatomy="procedural", shape=(40, 40, 40)), seed=1)
    out = tmp_path / "tuned"
    code = main(["finetune", "-m", str(RESENC), "-i", str(cohort), "-o", str(out), "--epochs", "1",
                 "--steps-per-epoch", "2", "--split", "manifest", "--num-workers", "0", "--augmentation", "none",
                 "--accelerator", "cpu", "--batch-size", "1"])
    assert code == 0, capsys.readouterr().err
    tuned = PVSModel.from_pretrained(out, device="cpu")
    assert tuned.network.name == "nnunet_resenc_m" and tuned.inference.window.patch_size == (24, 32, 24)
    assert np.isfinite(tuned.predict(REF / "inputs" / "ras_T2w.nii.gz", tta=False).probabilities).all()
