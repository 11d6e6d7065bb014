"""DDP on CPU (gloo, 2 processes): gradients synchronised, metrics reduced, each rank on its own subjects."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("_ddp_run.py")


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", MASTER_ADDR="127.0.0.1")
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert (r0["world_size"], r0["strategy"], r0["backend"]) == (2, "DDPStrategy", "gloo")
    assert r0["global_step"] == r1["global_step"] == 6

    # gradients were averaged: both ranks end with the same weights, which moved from the start
    assert all(torch.equal(r0["initial"][k], r1["initial"][k]) for k in r0["initial"])
    assert all(torch.equal(r0["final"][k], r1["final"][k]) for k in r0["final"])
    assert any(not torch.equal(r0["final"][k], r0["initial"][k]) for k in r0["final"])

    # each rank trained and validated on its own subjects
    t0, t1 = set(r0["train_subjects"]), set(r1["train_subjects"])
    assert t0 and t1 and not t0 & t1
    v0, v1 = set(r0["val_subjects"]), set(r1["val_subjects"])  # the same two per rank in both epochs
    assert len(v0) == len(v1) == 2 and not v0 & v1

    # metrics are reduced over both ranks: the logged value is the mean over all 4 validation cases
    cases = r0["val_cases"] + r1["val_cases"]
    assert sorted(c["subject"] for c in cases) == sorted(v0 | v1)
    dice = [c["dice"] for c in cases]
    assert r0["metrics"]["val/dice"] == pytest.approx(sum(dice) / 4) == r1["metrics"]["val/dice"]
    assert r0["metrics"]["train/loss_epoch"] == pytest.approx(r1["metrics"]["train/loss_epoch"])
