"""The LightningCLI layer: shipped configs never rot, loggers, config names, one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from _training_helpers import tiny_data, tiny_module, tiny_trainer

from mednet_pvs.cli.main import main
from mednet_pvs.nets import required_divisor
from mednet_pvs.training.cli import (check_checkpoint, config_path, default_precision, list_configs, make_logger,
                                     resolve_config_args, run_cli, typed_source)

SHIPPED = ["mednext_l_k5_t1w", "mednext_l_k5_t2w", "nnunet_t1w", "nnunet_t2w", "synth_any", "synth_any_plain", "synth_t1w", "synth_t2w", "tiny_synthetic"]


def test_the_expected_configs_are_shipped():
    assert list_configs() == SHIPPED
    assert config_path("tiny_synthetic") == config_path("tiny_synthetic.yaml")
    assert config_path("tiny_synthetic").is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_instantiates(name, tmp_path):
    needs_source = "\n  source:" not in config_path(name).read_text()
    extra = ["--data.source", str(tmp_path / "cohort.csv")] if needs_source else []
    cli = run_cli(["--config", name, "--logger", "none", "--trainer.default_root_dir", str(tmp_path), *extra], run=False)
    model, dm = cli.model, cli.datamodule
    patch = dm.patch_size
    assert all(p % d == 0 for p, d in zip(patch, required_divisor(model.net)))
    assert model.network_spec["name"] == {"mednext_l_k5_t1w": "mednext_l_k5", "mednext_l_k5_t2w": "mednext_l_k5",
                                          "nnunet_t1w": "nnunet_plain", "nnunet_t2w": "nnunet_plain", "tiny_synthetic": "mednext",
                                          "synth_t1w": "mednext", "synth_t2w": "mednext", "synth_any": "mednext",
                                          "synth_any_plain": "nnunet_plain"}[name]
    if name == "synth_any":  # the any-contrast model: domain-randomised phantoms, brain + PVS outputs, resumable
        assert dm.synthetic and dm.source["generator"] == "domain" and dm.source["contrast"] == "any"
        assert model.labels == {"0": "background", "1": "brain", "2": "PVS"} and model.net.config.n_classes == 3
        assert cli.config["checkpoint_every_n_steps"] == 200 and cli.config["export"]["name"] == "mednet-pvs-synth-any"
        assert dm.boundary_fraction == 0.25 and dm.source["min_pvs_contrast"] == 0.2
        assert model.hparams.init_from.endswith("mednet-pvs-synth-t2w")  # warm start from the T2w model
        assert model.inference.window.pad_mode == "replicate"  # it normalises inside the brain: pad with the border
    elif name == "synth_any_plain":  # the same stream and outputs as a plain U-Net, bf16-mixed on the CPU, from scratch
        any_cli = run_cli(["--config", "synth_any", "--logger", "none", "--trainer.default_root_dir", str(tmp_path)], run=False)
        assert dm.source == {**any_cli.datamodule.source, "noise": 0.1, "p_thick": 0.35, "p_procedural": 0.5}
        assert model.labels == any_cli.model.labels and model.net.config.num_classes == 3
        assert model.net.config.features_per_stage == (32, 64, 128, 256) and patch == (48, 48, 48)
        assert cli.trainer.precision == "bf16-mixed" and cli.trainer.max_steps == 5000 and model.hparams.init_from is None
        assert cli.config["checkpoint_every_n_steps"] == 200 and cli.config["export"]["name"] == "mednet-pvs-synth-any"
        assert model.inference.window.patch_size == (64, 64, 64) and model.inference.window.pad_mode == "replicate"
    elif name.startswith("synth_"):  # the bundled models' set-ups: MNI phantoms of one contrast, float16 export
        assert dm.synthetic and dm.source["contrast"] == {"synth_t1w": "T1w", "synth_t2w": "T2w"}[name]
        assert dm.source["anatomy"] == "mni" and patch == (32, 32, 32)
        export = cli.config["export"]
        assert export["name"] == f"mednet-pvs-{name.replace('_', '-')}" and export["weights_dtype"] == "float16"
    elif name != "tiny_synthetic":  # the paper's set-ups
        assert patch == (128, 128, 128) and dm.batch_size == 2 and model.optim.grad_clip == 12.0
        assert dm.preprocessing.target_spacing == ((0.8,) * 3 if name.endswith("t2w") else (1.0,) * 3)
        assert model.optim.name == ("adamw" if name.startswith("mednext") else "sgd")
        assert cli.trainer.max_epochs == 1000
    else:
        assert dm.synthetic and dm.source["contrast"] == "T2w"
    assert cli.trainer.logger is None  # --logger none


def test_a_synthetic_source_key_on_the_command_line_is_typed(tmp_path):
    # one generator setting changed on the command line, the rest of the config's source kept
    cli = run_cli(["--config", "synth_any", "--logger", "none", "--trainer.default_root_dir", str(tmp_path),
                   "--data.source.noise", "0.1", "--data.source.p_procedural", "0.5", "--data.source.resolution", "[1, 1, 5]"],
                  run=False)
    cfg = cli.datamodule._phantom_config()
    assert cfg.noise == 0.1 and cfg.p_procedural == 0.5 and cfg.resolution == (1.0, 1.0, 5.0)
    assert cfg.contrast == "any" and cfg.min_pvs_contrast == 0.2  # from the config file
    assert typed_source({"generator": "domain", "contrast": "T1w", "noise": "0.1", "x": "a: b: c"}) == {
        "generator": "domain", "contrast": "T1w", "noise": 0.1, "x": "a: b: c"}


def test_config_names_resolve_and_unknown_names_are_one_line_errors(capsys):
    args = resolve_config_args(["fit", "--config", "tiny_synthetic", "--config=nnunet_t2w", "--trainer.max_epochs", "3"])
    assert args[2] == str(config_path("tiny_synthetic")) and args[3] == f"--config={config_path('nnunet_t2w')}"
    assert main(["fit", "--config", "no_such_config"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no shipped config named 'no_such_config'") and "tiny_synthetic" in err and "\n" not in err


def test_help_reaches_lightning_cli(capsys):
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--model.network" in out and "--data.source" in out and "--logger" in out and "--ckpt_path" in out


def test_loggers(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wb = make_logger("wandb", tmp_path)
    assert isinstance(wb, WandbLogger) and wb._offline and wb._project == "mednet-pvs"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not make_logger("wandb", tmp_path)._offline
    assert isinstance(make_logger("csv", tmp_path), CSVLogger)
    assert make_logger("none", tmp_path) is False
    cli = run_cli(["--config", "tiny_synthetic", "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert isinstance(cli.trainer.logger, WandbLogger)  # the default
    assert default_precision("cpu") is None


def test_checkpoints_go_to_the_run_folder(tmp_path):
    cli = run_cli(["--config", "tiny_synthetic", "--logger", "csv", "--trainer.default_root_dir", str(tmp_path),
                   "--checkpoint_every_n_steps", "7"], run=False)
    from lightning.pytorch.callbacks import ModelCheckpoint

    cbs = [cb for cb in cli.trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    assert {Path(cb.dirpath) for cb in cbs} == {tmp_path / "checkpoints"}
    best = next(cb for cb in cbs if cb.monitor == "val/dice")
    last = next(cb for cb in cbs if cb.monitor is None)
    assert best.mode == "max" and last._every_n_train_steps == 7
    from mednet_pvs.training.cli import ResumeCheck

    assert sum(isinstance(cb, ResumeCheck) for cb in cli.trainer.callbacks) == 1  # says why a resume trains nothing


def test_last_checkpoint_every_epoch_even_when_validation_is_rarer(tmp_path):
    """``last.ckpt`` follows training (every epoch), not validation (every 3rd here)."""
    import torch

    from mednet_pvs.training.cli import checkpoint_callbacks

    trainer = tiny_trainer(tmp_path, max_epochs=2, check_val_every_n_epoch=3, enable_checkpointing=True,
                           callbacks=checkpoint_callbacks(tmp_path))
    trainer.fit(tiny_module(), datamodule=tiny_data())
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["last.ckpt"]  # no validation yet, so no best
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 4
    check_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # what fit writes passes the check of --ckpt_path FILE


def test_last_checkpoint_is_written_when_fit_stops_between_saves_and_resumes_there(tmp_path):
    """Stopped at step 7 with saves every 5 steps: last.ckpt holds step 7 (Lightning alone: 5), and
    a run resumed from it starts at step 7."""
    import lightning as L
    import torch

    from mednet_pvs.training.cli import checkpoint_callbacks

    last = tmp_path / "checkpoints" / "last.ckpt"
    trainer = tiny_trainer(tmp_path, max_epochs=-1, max_steps=7, limit_train_batches=100, limit_val_batches=0,
                           enable_checkpointing=True, callbacks=checkpoint_callbacks(tmp_path, every_n_steps=5))
    trainer.fit(tiny_module(), datamodule=tiny_data())
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 7
    check_checkpoint(last)

    class Start(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.step = trainer.global_step

    start = Start()
    again = tiny_trainer(tmp_path, max_epochs=-1, max_steps=9, limit_train_batches=100, limit_val_batches=0,
                         enable_checkpointing=True, callbacks=[*checkpoint_callbacks(tmp_path, every_n_steps=5), start])
    again.fit(tiny_module(), datamodule=tiny_data(), ckpt_path=str(last))
    assert start.step == 7 and again.global_step == 9
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 9


def test_a_resumed_fit_that_trains_no_step_says_why(tmp_path, capsys):
    """A run stopped by --trainer.max_time and resumed by the same command ends at once (its time
    is spent and its epoch closed): ResumeCheck names both; a resumed run that trains says nothing."""
    import time

    import lightning as L

    from mednet_pvs.training.cli import ResumeCheck, checkpoint_callbacks

    class Slow(L.Callback):  # the first step outlasts max_time, so the Timer stops fit after it
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            time.sleep(1.2)

    last = tmp_path / "checkpoints" / "last.ckpt"
    kw = dict(max_epochs=1, limit_train_batches=100, limit_val_batches=0, enable_checkpointing=True,
              max_time={"seconds": 1})
    first = tiny_trainer(tmp_path, **kw, callbacks=[*checkpoint_callbacks(tmp_path), ResumeCheck(), Slow()])
    first.fit(tiny_module(), datamodule=tiny_data())
    assert first.global_step == 1 and "trained no step" not in capsys.readouterr().err  # not resumed

    again = tiny_trainer(tmp_path, **kw, callbacks=[*checkpoint_callbacks(tmp_path), ResumeCheck()])
    again.fit(tiny_module(), datamodule=tiny_data(), ckpt_path=str(last))
    err = capsys.readouterr().err
    assert again.global_step == 1
    assert f"resumed from {last} at step 1 and trained no step" in err
    assert "--trainer.max_epochs -1" in err and "already spent --trainer.max_time" in err

    more = tiny_trainer(tmp_path, max_epochs=-1, max_steps=3, limit_train_batches=100, limit_val_batches=0,
                        enable_checkpointing=True, callbacks=[*checkpoint_callbacks(tmp_path), ResumeCheck()])
    more.fit(tiny_module(), datamodule=tiny_data(), ckpt_path=str(last))
    assert more.global_step == 3 and "trained no step" not in capsys.readouterr().err
    done = tiny_trainer(tmp_path, max_epochs=-1, max_steps=3, limit_train_batches=100, limit_val_batches=0,
                        enable_checkpointing=True, callbacks=[*checkpoint_callbacks(tmp_path), ResumeCheck()])
    done.fit(tiny_module(), datamodule=tiny_data(), ckpt_path=str(last))
    assert "--trainer.max_steps 3 was already reached" in capsys.readouterr().err
