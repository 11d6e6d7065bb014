"""The GPU machine's kit (benchmarks/gpu_kit.sh, gpu_train_synth_any.sh): the SimpleITK stand-in
lets TorchIO import and refuses any use, and the training stage's command runs end to end (on
the CPU here, tiny) with only the stand-in, so the recipe cannot rot before a GPU is lent."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def stand_in(tmp_path) -> Path:
    folder = tmp_path / "shim" / "SimpleITK"
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu_simpleitk_stand_in.py", folder / "__init__.py")
    return folder.parent


def _env(stand_in: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(stand_in), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(extra)
    return env


def test_the_stand_in_imports_torchio_and_refuses_every_use(stand_in):
    code = ("import SimpleITK as sitk, torchio\n"
            "assert 'stand-in' in sitk.__version__ and sitk.Image | int\n"
            "for use in (lambda: sitk.ReadImage('x.nii'), lambda: sitk.sitkLinear.value, lambda: sitk.Image(3, 3)):\n"
            "    try:\n        use()\n    except RuntimeError as e:\n        assert 'stand-in' in str(e), e\n"
            "    else:\n        raise SystemExit('a use of the stand-in did not raise')\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(stand_in), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_the_training_stage_runs_with_the_stand_in_and_leaves_what_comes_back(stand_in, tmp_path):
    """Measured: about 35 s on 2 CPU cores (3 steps of 2 x 32^3 from the bundled model)."""
    out, run = tmp_path / "out", tmp_path / "run"
    env = _env(stand_in, OUT=str(out), RUN=str(run), ACCEL="cpu", PATCH="32", BATCH="2", SPV="2", WORKERS="1", WIDTH="24",
               SREC="1", EMA="0.9", STEPS="3", CKPT_EVERY="2", LOG_EVERY="1", MAXTIME="00:00:05:00", HARDLIMIT="400")
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train_synth_any.sh")], env=env, capture_output=True, text=True, timeout=450)
    log = (out / "train.log").read_text() if (out / "train.log").exists() else ""
    assert r.returncode == 0, (r.stdout + r.stderr + log)[-3000:]
    assert {"last.ckpt", "metrics.csv", "model.safetensors", "config.json", "command.txt", "train.log"} <= {p.name for p in out.iterdir()}
    import torch

    assert torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 3  # saved when fit stopped
    assert "perf/data_wait_s" in (out / "metrics.csv").read_text().splitlines()[0]
    assert "SimpleITK" not in log  # nothing reached the stand-in
    import json

    data = json.loads((run / "data_config.json").read_text())
    source = data["source"]  # stage 5's data, typed as numbers
    assert data["skeleton_classes"] == [2]  # SREC: the loader workers skeletonised the PVS class
    assert (source["noise"], source["p_procedural"], source["p_thick"]) == (0.1, 0.5, 0.35)
    # WIDTH: the bundled 16-channel model widened to 24 channels (mednet_pvs.nets.widen) and trained
    config = json.loads((out / "config.json").read_text())
    assert config["network"]["kwargs"]["n_channels"] == 24
    assert config["meta"]["training"]["weights"] == "exponential moving average, decay 0.9"  # EMA: the average exported


def test_the_training_stage_command_takes_width_and_kernel(tmp_path):
    def command(**extra: str) -> str:
        env = dict(os.environ, DRY="1", OUT=str(tmp_path / "out"), RUN=str(tmp_path / "run"), **extra)
        r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train_synth_any.sh")], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    plain = command()
    assert "n_channels" not in plain and "kernel_size" not in plain and "--model.init_from mednet_pvs/zoo/bundled/mednet-pvs-synth-any" in plain
    wide = command(WIDTH="32", KERNEL="5")
    assert "--model.network_kwargs.n_channels 32 --model.network_kwargs.kernel_size 5" in wide
    assert "skeleton" not in plain and "--model.skeleton_recall_weight 0.5 --data.skeleton_classes [2]" in command(SREC="0.5")
    assert "ema_decay" not in plain and "--model.ema_decay 0.999" in command(EMA="0.999")
