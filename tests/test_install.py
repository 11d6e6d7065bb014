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
