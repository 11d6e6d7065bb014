"""Zoo tests: a private Hugging Face cache per test, a loopback Hub, the nnU-Net v1 release fixture."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _zoo_fakehub import FakeHub

DATA = Path(__file__).resolve().parents[1] / "data"
RELEASE = DATA / "nnunet_v1_release" / "nnUNet" / "3d_fullres"
MEDNEXT_DIR = RELEASE / "Task019_HCP_T2w" / "nnUNetTrainerV2_MedNeXt_L_kernel5_lr_3e_4_500epochs__nnUNetPlansv2.1_trgSp_0.8x0.8x0.8"
GENERIC_DIR = RELEASE / "Task030_nnunet_HCP_T2w" / "nnUNetTrainerV2__nnUNetPlansv2.1_trgSp_0.8x0.8x0.8"


@pytest.fixture(autouse=True)
def _private_hf_cache(tmp_path, monkeypatch):
    """Never touch the user's Hugging Face cache: each test gets its own (read at call time)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture
def fake_hub(monkeypatch):
    """A loopback Hub (+ CDN) that huggingface_hub talks to through ``HF_ENDPOINT``; online for this test."""
    from huggingface_hub import constants

    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read at import time by huggingface_hub
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the fake Hub speaks plain LFS, not Xet
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield hub
    hub.close()


def read_reference(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """(state dict, input, deep-supervision outputs from full resolution down) of a reference fixture."""
    d = load_file(path)
    sd = {k[len("state_dict."):]: v for k, v in d.items() if k.startswith("state_dict.")}
    return sd, d["input"], [d[f"output.{i}"] for i in range(sum(k.startswith("output.") for k in d))]


@pytest.fixture(scope="session")
def mednext_reference():
    return read_reference(DATA / "mednext_v1_reference" / "tiny_L_k5_ds.safetensors")


@pytest.fixture(scope="session")
def generic_reference():
    return read_reference(DATA / "nnunet_v1_reference" / "tiny_generic_unet_v1.safetensors")


@pytest.fixture(scope="session")
def mednext_release() -> Path:
    """The tiny MedNeXt trainer folder (fold_0 = the reference weights, fold_1 perturbed)."""
    return MEDNEXT_DIR


@pytest.fixture(scope="session")
def generic_release() -> Path:
    """The tiny Generic_UNet trainer folder (fold_0 = the reference weights)."""
    return GENERIC_DIR


@pytest.fixture(scope="session")
def release_root() -> Path:
    """``nnUNet/3d_fullres`` of the release fixture (two trained models)."""
    return RELEASE
