"""``mednet-pvs fit|validate|test --ckpt_path FILE``: the file is read by the one safe reader before
Lightning sees it; a missing file, a file that is not a checkpoint, or one that could run code is
one line naming it (exit 1), never Lightning's UnpicklingError traceback."""
from __future__ import annotations

import os

import pytest
import torch

from mednet_pvs.cli.main import main
from mednet_pvs.errors import InputError
from mednet_pvs.training.cli import check_checkpoint, ckpt_path_args


class _RunsCode:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def files(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": _RunsCode(tmp_path / "pwned")}, evil)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, weights)  # plain tensors, but no Lightning checkpoint
    return {"evil": evil, "text": text, "weights": weights, "missing": tmp_path / "missing.ckpt"}


@pytest.mark.parametrize("command", ["validate", "test", "fit"])
@pytest.mark.parametrize("form", ["two args", "equals"])
@pytest.mark.parametrize("which, said", [
    ("evil", r"cannot be read as a PyTorch checkpoint with weights_only=True: it refers to posix\.system, .*could run code"),
    ("missing", "checkpoint not found"),
    ("text", "not a PyTorch file, or a damaged one"),
    ("weights", r"not a Lightning checkpoint \(no 'state_dict'\)"),
])
def test_bad_checkpoint_is_one_line_naming_it(files, capsys, tmp_path, command, form, which, said):
    import re

    path = files[which]
    args = ["--ckpt_path", str(path)] if form == "two args" else [f"--ckpt_path={path}"]
    assert main([command, *args]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"error: {path}: ") and re.search(said, err), err
    assert not (tmp_path / "pwned").exists()  # nothing in the file ran


def test_ckpt_path_from_a_config_file_is_checked_too(files, capsys, tmp_path):
    """LightningCLI reads a checkpoint's hyperparameters right after parsing: checked before that."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"ckpt_path: {files['evil']}\n")
    assert main(["validate", "--config", "tiny_synthetic", "--config", str(extra), "--logger", "none",
                 "--trainer.default_root_dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"error: {files['evil']}: ") and "could run code" in err
    assert not (tmp_path / "pwned").exists()


def test_names_lightning_resolves_and_real_checkpoints_pass(tmp_path):
    for value in ("last", "best", "hpc", "registry", "registry:my-model:latest", "s3://bucket/x.ckpt", None):
        check_checkpoint(value)  # left to Lightning: no file of that name to read here
    ckpt = tmp_path / "epoch=0.ckpt"
    torch.save({"epoch": 0, "global_step": 4, "pytorch-lightning_version": "2.6.0",
                "state_dict": {"net.w": torch.ones(2)}, "hyper_parameters": {"lr": 1e-3, "patch": [32, 32, 32]},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}]}, ckpt)
    check_checkpoint(ckpt)
    with pytest.raises(InputError, match="not a file"):
        check_checkpoint(tmp_path)


def test_both_argument_forms_are_found():
    assert ckpt_path_args(["validate", "--ckpt_path", "a.ckpt", "--config", "c.yaml", "--ckpt_path=b.ckpt"]) == ["a.ckpt", "b.ckpt"]
    assert ckpt_path_args(["fit", "--ckpt_path"]) == []  # a dangling flag: LightningCLI reports it
