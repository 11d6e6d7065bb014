"""A run killed hard (SIGKILL) mid-epoch resumes from its last checkpoint with ``--ckpt_path last``:
same global step, optimiser moments and lr-schedule position, not from step 0."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from mednet_pvs.training.cli import run_cli
from mednet_pvs.training.optim import PolyWarmup

STEPS_PER_EPOCH, MAX_STEPS, EVERY = 12, 24, 3


def _args(root: Path) -> list[str]:
    return ["--config", "tiny_synthetic", "--logger", "csv", "--trainer.default_root_dir", str(root),
            "--trainer.limit_train_batches", str(STEPS_PER_EPOCH), "--trainer.max_steps", str(MAX_STEPS),
            "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "0", "--checkpoint_every_n_steps", str(EVERY),
            "--data.synthetic_train_size", "6", "--data.samples_per_volume", "4", "--trainer.enable_progress_bar", "false"]


def _wait_for_mid_epoch_checkpoint(proc: subprocess.Popen, last: Path, timeout: float = 240.0) -> None:
    """Poll until ``last.ckpt`` holds a step in the first epoch past the first checkpoint."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, "the training process ended before it could be killed"
        if last.is_file():
            try:
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            except Exception:  # noqa: BLE001 - caught while being replaced: try again
                step = 0
            if step >= 2 * EVERY:
                return
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint after {timeout} s")


class Record(L.Callback):
    """What the resumed run starts with."""

    def on_train_start(self, trainer, pl_module):
        opt, sched = trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler
        self.start_step = trainer.global_step
        self.opt_state = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in v.items()} for k, v in opt.state_dict()["state"].items()}
        self.sched_state = sched.state_dict()
        self.lr = opt.param_groups[0]["lr"]
        self.steps_run = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps_run += 1


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_last(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "mednet_pvs.cli.main", "fit", *_args(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "checkpoints" / "last.ckpt"
    try:
        _wait_for_mid_epoch_checkpoint(proc, last)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(last, map_location="cpu", weights_only=True)
    step = saved["global_step"]
    assert 2 * EVERY <= step < MAX_STEPS and step % EVERY == 0
    assert not (tmp_path / "model").exists()  # it never finished

    rec = Record()
    cli = run_cli(["fit", *_args(tmp_path), "--ckpt_path", "last"], trainer_defaults={"callbacks": [rec]})
    assert rec.start_step == step > 0  # continued, not restarted
    saved_opt = saved["optimizer_states"][0]["state"]
    assert set(rec.opt_state) == set(saved_opt) and len(saved_opt) > 0
    for k, state in saved_opt.items():  # AdamW step counts and both moments, parameter by parameter
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(rec.opt_state[k][name]), torch.as_tensor(value)), (k, name)
    assert all(float(s["step"]) == step for s in saved_opt.values())  # one AdamW step per optimiser step
    assert rec.sched_state["last_epoch"] == saved["lr_schedulers"][0]["last_epoch"] == step
    assert rec.lr == pytest.approx(saved["hyper_parameters"]["lr"] * PolyWarmup(MAX_STEPS)(step))  # the config's peak lr, decayed
    assert cli.trainer.global_step == MAX_STEPS and rec.steps_run == MAX_STEPS - step
    assert (tmp_path / "model" / "config.json").is_file()


def test_resumed_run_continues_the_phantom_stream_instead_of_replaying_it(tmp_path, monkeypatch):
    """A run stopped mid-epoch and resumed from its checkpoint draws phantoms it has not drawn yet;
    without the datamodule's saved stream position it restarts at the epoch's first seed."""
    from _training_helpers import tiny_data, tiny_module, tiny_trainer

    from mednet_pvs.data.datamodule import PhantomDataset
    from mednet_pvs.training.cli import checkpoint_callbacks

    seeds: list[int] = []
    make = PhantomDataset.__getitem__

    def recording(self, index):
        seeds.append(self.base_seed + int(index))
        return make(self, index)

    monkeypatch.setattr(PhantomDataset, "__getitem__", recording)
    last = tmp_path / "checkpoints" / "last.ckpt"
    # 2 patches per step, 4 per phantom, a queue of 8: 6 steps draw 4 phantoms (two fills)
    kw = dict(max_epochs=-1, limit_train_batches=100, limit_val_batches=0, enable_checkpointing=True)
    tiny_trainer(tmp_path, max_steps=6, callbacks=checkpoint_callbacks(tmp_path, every_n_steps=3), **kw).fit(
        tiny_module(), datamodule=tiny_data(synthetic_train_size=1000))
    before = list(seeds)
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 6 and saved["PVSDataModule"] == {"phantom_seed_shift": len(before)} and before == [0, 1, 2, 3]

    seeds.clear()
    again = tiny_trainer(tmp_path, max_steps=12, callbacks=checkpoint_callbacks(tmp_path, every_n_steps=3), **kw)
    again.fit(tiny_module(), datamodule=tiny_data(synthetic_train_size=1000), ckpt_path=str(last))
    assert again.global_step == 12
    assert seeds == [4, 5, 6, 7]  # the stream goes on: nothing drawn before is drawn again
    # and the next checkpoint counts both parts, for a second resume
    assert torch.load(last, map_location="cpu", weights_only=True)["PVSDataModule"] == {"phantom_seed_shift": 8}
