"""The environment is what the README promises: one CPU torch, no torchvision, the lock honoured.

On a CPU-only machine pip would happily replace torch 2.13.0+cpu by a CUDA torch plus ~6 GB of
packages the moment anything asks for torchvision (dynamic-network-architectures -> timm does).
These tests fail loudly if that ever happens.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch


def _dists(name: str) -> list[metadata.Distribution]:
    norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()  # noqa: E731
    return [d for d in metadata.distributions() if norm(d.metadata["Name"] or "") == norm(name)]


def test_exactly_one_torch():
    found = {(d.metadata["Name"], d.version, str(d.locate_file(""))) for d in _dists("torch")}
    assert len(found) == 1, f"several torch installs: {found}"
    assert next(iter(found))[1] == torch.__version__


def test_no_torchvision_or_cuda_packages_with_cpu_torch():
    if torch.version.cuda is not None:
        pytest.skip("CUDA build of torch: torchvision/nvidia packages are legitimate here")
    assert not _dists("torchvision"), "torchvision sneaked in (it drags a CUDA torch along)"
    cuda = sorted(d.metadata["Name"] for d in metadata.distributions() if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "triton")))
    assert not cuda, f"CUDA packages installed next to a CPU torch: {cuda}"


@pytest.mark.skipif(not os.environ.get("MEDNET_CPU_LOCK"), reason="only for the pinned CPU set-up (dev.py)")
def test_lock_is_installed_exactly():
    assert torch.__version__ == "2.13.0+cpu"
    lock = Path(os.environ["MEDNET_CPU_LOCK"])
    wrong = []
    for line in lock.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, version = line.split("==")
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong.append(f"{name}: want {version}, have {have}")
    assert not wrong, "environment differs from the lock:\n" + "\n".join(wrong)


def test_imports_pull_neither_timm_nor_torchvision():
    code = (
        "import sys, mednet_pvs, mednet_pvs.cli.main, lightning, torchio\n"
        "import dynamic_network_architectures.architectures.unet\n"
        "bad = [m for m in ('timm', 'torchvision') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------- the lock, pyproject and dev.py agree

ROOT = Path(__file__).resolve().parents[1]


def _dev():
    sys.path.insert(0, str(ROOT))
    try:
        import dev
    finally:
        sys.path.remove(str(ROOT))
    return dev


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0]).lower()


def test_requires_python_is_what_the_lock_covers():
    from packaging.specifiers import SpecifierSet

    covered = _dev().lock_pythons()
    spec = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert covered and all(f"{a}.{b}" in spec for a, b in covered), (spec, covered)
    first = min(covered)
    assert f"{first[0]}.{first[1] - 1}" not in spec, f"requires-python {spec} claims a Python the lock has no wheels for"
    assert covered == sorted(covered) and len({b for _, b in covered}) == covered[-1][1] - first[1] + 1, "no gaps"
    assert tuple(sys.version_info[:2]) in covered, "the suite runs on a Python the lock covers"


def test_dev_refuses_a_python_the_lock_does_not_cover_in_one_line(tmp_path, monkeypatch):
    dev = _dev()
    assert dev.python_problem((3, 11)) is None and dev.python_problem(tuple(sys.version_info[:2])) is None
    for version, impl in (((3, 10), "cpython"), ((3, 99), "cpython"), ((3, 11), "pypy")):
        problem = dev.python_problem(version, impl)
        assert problem and "\n" not in problem and "cpu-lock.txt" in problem and "3.11" in problem, problem
    # end to end: set-up with an uncovered interpreter stops before touching anything
    lock = tmp_path / "cpu-lock.txt"
    lock.write_text("# python: 3.99\nnumpy==2.4.6\n")
    venv = tmp_path / "venv"
    monkeypatch.setattr(dev, "LOCK", lock)
    monkeypatch.setattr(dev, "VENV", venv)
    monkeypatch.setattr(dev, "STAMP", venv / ".mednet-setup")
    with pytest.raises(SystemExit, match=r"^dev.py: cpython 3\.\d+ is not covered by cpu-lock.txt \(pinned for CPython 3\.99\)"):
        dev.setup()
    assert not venv.exists()


def test_torch_index_goes_to_the_torch_install_only():
    dev = _dev()
    cpu = "https://download.pytorch.org/whl/cpu"
    assert dev.torch_pip_args("torch==2.13.0", "") == ["torch==2.13.0"]
    assert dev.torch_pip_args("torch==2.13.0", cpu) == ["--index-url", cpu, "torch==2.13.0"]
    # read from the environment, and a different torch build sets the environment up again
    code = "import sys; sys.path.insert(0, '.'); import dev; print(dev.torch_pip_args()); print(dev._fingerprint())"
    env = {k: v for k, v in os.environ.items() if k not in ("MEDNET_TORCH_INDEX", "MEDNET_TORCH")}
    plain, indexed = (subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                                     env={**env, **extra}).stdout.splitlines() for extra in ({}, {"MEDNET_TORCH_INDEX": cpu}))
    assert plain[0] == "['torch==2.13.0']" and indexed[0] == f"['--index-url', '{cpu}', 'torch==2.13.0']"
    assert plain[1] != indexed[1]


def test_uv_takes_torch_from_pytorchs_cpu_index():
    uv = _pyproject()["tool"]["uv"]
    index = {i["name"]: i for i in uv["index"]}["pytorch-cpu"]
    assert index["url"] == "https://download.pytorch.org/whl/cpu" and index["explicit"] is True
    assert uv["sources"]["torch"] == [{"index": "pytorch-cpu"}]


def test_wandb_and_nnunet_networks_are_extras_and_the_lock_installs_everything():
    project = _pyproject()["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    heavy = {"wandb", "dynamic-network-architectures", "timm", "torchvision", "einops"}
    assert not base & heavy, f"a plain install pulls {base & heavy}"
    assert {"dynamic-network-architectures", "einops"} <= extras["nnunet"] and "wandb" in extras["wandb"]
    assert {"dynamic-network-architectures", "wandb"} <= extras["test"]
    pinned = {_name(line.split("==")[0]) for line in (ROOT / "requirements" / "cpu-lock.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    wanted = base.union(*(v for k, v in extras.items() if k != "notebooks")) - {"torch"}
    assert not wanted - pinned, f"declared but not in the lock: {sorted(wanted - pinned)}"


@pytest.mark.slow  # a fresh interpreter: torch, the bundled model, one prediction (~10 s of CPU)
def test_inference_and_the_cli_need_neither_wandb_nor_nnunet_networks():
    """A plain install (no extras): a bundled model predicts and the CLI runs."""
    code = """
import sys
sys.modules['wandb'] = None
sys.modules['dynamic_network_architectures'] = None  # importing either now fails as if not installed
import nibabel as nib
from mednet_pvs.cli.main import main
from mednet_pvs.synth import PhantomConfig, make_phantom
from mednet_pvs.zoo import load_pretrained

ph = make_phantom(PhantomConfig(anatomy="procedural", shape=(40, 40, 40)), seed=1)
pred = load_pretrained("mednet-pvs-synth-t2w", device="cpu").predict(nib.Nifti1Image(ph.image, ph.affine))
assert pred.mask.shape == (40, 40, 40) and pred.mask.any()
assert main(["models", "--json"]) == 0
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.slow  # imports Lightning (training.cli) when no test before it has
def test_the_extras_features_say_how_to_get_them_in_one_line(monkeypatch, tmp_path):
    from mednet_pvs.errors import MednetError
    from mednet_pvs.nets import create_network
    from mednet_pvs.training.cli import make_logger

    import mednet_pvs.nets

    monkeypatch.delitem(sys.modules, "mednet_pvs.nets.dna_unets", raising=False)
    # an earlier import (another test in this worker) leaves the submodule as an attribute of the package,
    # which ``from mednet_pvs.nets import dna_unets`` would return without importing anything
    monkeypatch.delattr(mednet_pvs.nets, "dna_unets", raising=False)
    for name in [m for m in sys.modules if m.split(".")[0] in ("wandb", "dynamic_network_architectures")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing either now fails as if not installed
    monkeypatch.setitem(sys.modules, "dynamic_network_architectures", None)
    for make, needle in ((lambda: create_network("nnunet_plain"), "pip install 'mednet-pvs[nnunet]'"),
                         (lambda: make_logger("wandb", tmp_path), "pip install 'mednet-pvs[wandb]'")):
        with pytest.raises(MednetError) as info:
            make()
        assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)
