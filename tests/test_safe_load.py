"""The one safe reader: torch files with weights_only=True, safetensors, restricted pickles; and
no other module of the package unpickles anything."""
from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import mednet_pvs
import mednet_pvs.safe_load
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.safe_load import read_pickle, read_state_dict, torch_load, unwrap_state_dict

PACKAGE = Path(mednet_pvs.__file__).parent
SAFE_LOAD = Path(mednet_pvs.safe_load.__file__)


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.GroupNorm(4, 4), torch.nn.Conv3d(4, 2, 1))
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class Payload:
    """Any class other than tensors and containers: a pickle that could run code."""


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_pickles_that_could_run_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Payload()}, path)
    with pytest.raises(InputError, match=r"evil.pth.*weights_only=True"):
        read_state_dict(path)


def test_torch_load_runs_nothing_and_admits_numpy(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"w": torch.zeros(1), "x": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"evil.pt: cannot be read as a PyTorch checkpoint with weights_only=True"):
        torch_load(tmp_path / "evil.pt")
    assert not marker.exists()
    # nnU-Net's checkpoint logs hold numpy scalars and arrays: those (only) are admitted
    torch.save({"w": torch.ones(2), "log": [np.float64(0.5), np.float32(-0.3)], "a": np.arange(3)}, tmp_path / "np.pt")
    got = torch_load(tmp_path / "np.pt")
    assert got["log"] == [0.5, np.float32(-0.3)] and got["a"].tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="nope.pt: file not found"):
        torch_load(tmp_path / "nope.pt")


def test_read_state_dict_formats(tmp_path):
    sd = _state_dict()
    save_file(sd, tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "raw.pt")
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "model_final_checkpoint.model")
    for name in ("w.safetensors", "raw.pt", "model_final_checkpoint.model"):
        got = read_state_dict(tmp_path / name)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    with pytest.raises(InputError, match="missing.pt: file not found"):
        read_state_dict(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="missing.safetensors: file not found"):
        read_state_dict(tmp_path / "missing.safetensors")
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(InputError, match="empty.pt: not a state dict"):
        read_state_dict(tmp_path / "empty.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="bad.safetensors: cannot be read as safetensors"):
        read_state_dict(tmp_path / "bad.safetensors")


def test_unwrap_state_dict_removes_containers_and_wrapper_prefixes():
    sd = _state_dict()
    for wrapped in ({"network_weights": sd}, {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
                    {f"_orig_mod.{k}": v for k, v in sd.items()}):
        assert unwrap_state_dict(wrapped).keys() == sd.keys()
    with pytest.raises(ConfigError, match=r"entries \['x'\] are not tensors"):
        unwrap_state_dict({**sd, "x": 1})
    with pytest.raises(ConfigError, match="expected a state dict"):
        unwrap_state_dict([1, 2])  # type: ignore[arg-type]


def test_read_pickle_admits_plans_types_only(tmp_path):
    plans = {"plans": OrderedDict(a=np.array([0.8, 0.8]), b=np.float64(1.5), c=(1, [2, 3], {"x"}, b"y"))}
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(plans, protocol=4))
    got = read_pickle(tmp_path / "ok.pkl")
    assert got["plans"]["a"].tolist() == [0.8, 0.8] and got["plans"]["c"] == (1, [2, 3], {"x"}, b"y")
    assert isinstance(got["plans"], OrderedDict) and got["plans"]["b"] == 1.5
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"plans": _RunsCode(marker)}))
    with pytest.raises(InputError, match=r"evil.pkl: refers to \S+\.system.*refused"):
        read_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(plans)[:20])
    with pytest.raises(InputError, match="cut.pkl: not a readable pickle"):
        read_pickle(tmp_path / "cut.pkl")
    with pytest.raises(InputError, match="none.pkl: file not found"):
        read_pickle(tmp_path / "none.pkl")


def test_importing_safe_load_does_not_import_torch():
    code = "import sys, mednet_pvs.safe_load; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _dotted(node: ast.AST) -> str:
    """``torch.serialization.load`` for the expression ``torch.serialization.load`` ("" if not a name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def unpickling(source: str, label: str) -> tuple[list[str], list[str]]:
    """(every use of torch.load / pickle / an Unpickler in the code ``source``, the torch.load calls
    without ``weights_only=True``); docstrings and comments do not count."""
    uses, unsafe = [], []
    for node in ast.walk(ast.parse(source)):
        where = f"{label}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            uses += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in ("pickle", "_pickle", "dill")]
        elif isinstance(node, ast.ImportFrom):
            module, names = node.module or "", {a.name for a in node.names}
            if module.split(".")[0] in ("pickle", "_pickle", "dill") or (module.startswith("torch") and "load" in names):
                uses.append(f"{where} from {module} import {', '.join(sorted(names))}")
        elif isinstance(node, (ast.Attribute, ast.Name)):
            name = _dotted(node)
            if name.split(".")[0] == "pickle" or name in ("torch.load", "torch.serialization.load") or "Unpickler" in name:
                uses.append(f"{where} {name}")
        if isinstance(node, ast.Call) and _dotted(node.func) in ("torch.load", "torch.serialization.load"):
            flag = {k.arg: k.value for k in node.keywords}.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                unsafe.append(where)
    return uses, unsafe


def test_safe_load_is_the_only_module_that_unpickles():
    for path in sorted(PACKAGE.rglob("*.py")):
        uses, unsafe = unpickling(path.read_text(), str(path.relative_to(PACKAGE)))
        if path == SAFE_LOAD:
            assert any("torch.load" in u for u in uses) and any("Unpickler" in u for u in uses), uses
            assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
        else:
            assert not uses, f"only mednet_pvs/safe_load.py may unpickle: {uses}"
    assert "weights_only=False" not in SAFE_LOAD.read_text()


def test_the_unpickling_check_sees_what_it_forbids():
    """The check above would catch a module that loads unsafely (it does not pass vacuously)."""
    code = ('"""Docstrings may say torch.load and pickle.Unpickler."""\nimport pickle\nimport torch\n'
            "a = torch.load('f', weights_only=False)\nb = torch.load('f')\nc = torch.load('f', weights_only=True)\n"
            "d = pickle.Unpickler\n")
    uses, unsafe = unpickling(code, "probe.py")
    assert unsafe == ["probe.py:4", "probe.py:5"]
    assert {u.split(" ", 1)[1] for u in uses} == {"import pickle", "torch.load", "pickle.Unpickler", "pickle"}, uses
    assert not any(u.startswith("probe.py:1 ") for u in uses)  # the docstring is not code
