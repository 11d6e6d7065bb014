"""fit -> checkpoints -> model bundle -> validate/test -> finetune, through the command line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mednet_pvs.cli.main import main
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference import PVSModel
from mednet_pvs.training import export_bundle, read_checkpoint
from mednet_pvs.training.finetuning import resolve_model_folder

TINY = ["--config", "tiny_synthetic", "--logger", "csv", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--data.synthetic_train_size", "2", "--data.synthetic_val_size", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A two-step ``mednet-pvs fit`` of the tiny config; returns its run folder."""
    root = tmp_path_factory.mktemp("run")
    assert main(["fit", *TINY, "--trainer.default_root_dir", str(root), "--model.image_every_n_epochs", "1",
                 "--model.inference", INFERENCE]) == 0
    return root


#: the run's one inference block: validation uses its window (unmirrored), the exported model all of it
INFERENCE = '{"window": {"batch_size": 4, "mirror_axes": [0, 2]}, "min_cluster_mm3": 0.5}'


def test_the_fit_configs_inference_block_is_the_exported_models(tiny_run):
    config = PVSModel.from_pretrained(tiny_run / "model", device="cpu").inference
    assert config.window.mirror_axes == (0, 2) and config.min_cluster_mm3 == 0.5 and config.window.batch_size == 4
    assert config.window.patch_size == (32, 32, 32)  # the training patch, as no tile was given


def test_fit_writes_checkpoints_logs_pictures_and_a_bundle(tiny_run):
    ckpts = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-0000-") for n in ckpts)
    log = tiny_run / "logs" / "version_0"
    assert (log / "metrics.csv").is_file() and (log / "config.yaml").is_file()
    assert len(list((log / "images").glob("val_epoch0000_*.png"))) == 1
    assert (tiny_run / "data_config.json").is_file()
    assert sorted(p.name for p in (tiny_run / "model").iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_the_bundle_is_the_best_checkpoint_with_its_preprocessing_and_figures(tiny_run):
    best = next((tiny_run / "checkpoints").glob("best-*.ckpt"))
    ckpt = read_checkpoint(best)
    model = PVSModel.from_pretrained(tiny_run / "model", device="cpu")
    assert model.network.to_dict() == ckpt["mednet_pvs"]["network"] and model.network.name == "mednext"
    assert model.preprocessing.to_dict() == ckpt["mednet_pvs"]["preprocessing"]
    assert list(model.inference.window.patch_size) == [32, 32, 32]
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    assert all(torch.equal(state[k], v) for k, v in model.networks[0].state_dict().items())
    dice = ckpt["mednet_pvs"]["metrics"]["dice"]
    assert model.meta["metrics"]["val_dice"] == pytest.approx(dice)
    assert model.meta["training"]["checkpoint"] == best.name and model.meta["training"]["global_step"] == 2
    card = (tiny_run / "model" / "README.md").read_text()
    assert "## Training" in card and "val_dice" in card
    from mednet_pvs.synth import PhantomConfig, make_phantom

    ph = make_phantom(PhantomConfig(anatomy="procedural", shape=(48, 48, 48)), seed=3)
    pred = model.predict((ph.image, ph.affine), tta=False)
    assert pred.mask.shape == ph.image.shape and np.isfinite(pred.probabilities).all()


def test_validate_and_test_commands(tiny_run, capsys):
    best = str(next((tiny_run / "checkpoints").glob("best-*.ckpt")))
    common = [*TINY, "--trainer.default_root_dir", str(tiny_run / "eval")]
    assert main(["validate", *common, "--ckpt_path", best]) == 0
    assert main(["test", *common, "--ckpt_path", best]) == 0
    out = capsys.readouterr().out
    assert "val/dice" in out and "test/dice" in out


def test_export_errors(tmp_path):
    bad = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, bad)
    with pytest.raises(InputError, match="not a mednet-pvs training checkpoint"):
        export_bundle(bad, tmp_path / "out")
    with pytest.raises(InputError, match="checkpoint not found"):
        export_bundle(tmp_path / "missing.ckpt", tmp_path / "out")


def test_finetune_command_writes_a_new_bundle(tiny_run, tmp_path, capsys):
    from mednet_pvs.synth import PhantomConfig, make_cohort

    cohort = make_cohort(tmp_path / "t1w", 4, PhantomConfig(anatomy="procedural", shape=(48, 48, 48), contrast="T1w"), seed=1)
    out = tmp_path / "t1w_model"
    code = main(["finetune", "--from", str(tiny_run / "model"), "--data", str(cohort), "-o", str(out), "--epochs", "1",
                 "--steps-per-epoch", "2", "--split", "manifest", "--num-workers", "0", "--augmentation", "none",
                 "--freeze-encoder-epochs", "1", "--accelerator", "cpu"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "before" in printed and "dice" in printed and str(out) in printed
    model = PVSModel.from_pretrained(out, device="cpu")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (tmp_path / "t1w_model-run" / "checkpoints" / "last.ckpt").is_file()
    config = json.loads((out / "config.json").read_text())
    assert "finetuned_from" in config["meta"]["training"] and "val_dice" in config["meta"]["metrics_before_finetuning"]
    assert model.preprocessing == PVSModel.from_pretrained(tiny_run / "model", device="cpu").preprocessing


def test_finetune_source_errors(tmp_path, capsys):
    """Sources go through load_pretrained: its errors (unknown name, no public weights, missing
    folder) reach the user, and a Frangi model is refused (nothing to fine-tune)."""
    from mednet_pvs.zoo.pretrained import ModelNotAvailableError

    with pytest.raises(ConfigError, match="unknown model 'mednet_pvs_t2w'. Did you mean mednet-pvs-t2w"):
        resolve_model_folder("mednet_pvs_t2w", tmp_path)
    with pytest.raises(ModelNotAvailableError, match="import-nnunet-v1"):
        resolve_model_folder("mednet-pvs-t2w", tmp_path)
    with pytest.raises(InputError, match="model folder not found"):
        resolve_model_folder(tmp_path / "nope", tmp_path)
    with pytest.raises(ConfigError, match="no network to fine-tune"):
        resolve_model_folder("frangi-t2w", tmp_path)
    assert main(["finetune", "--from", "mednet_pvs_t2w", "--data", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    assert "unknown model 'mednet_pvs_t2w'" in capsys.readouterr().err
