"""Reference fixtures of the networks' tests (copied from the originals' outputs, see their READMEs)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

DATA = Path(__file__).resolve().parents[1] / "data"
MEDNEXT_REF = DATA / "mednext_v1_reference"
NNUNET_V1_REF = DATA / "nnunet_v1_reference"


def read_reference(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """(state dict, input, deep-supervision outputs from full resolution down) of a fixture file."""
    d = load_file(path)
    sd = {k[len("state_dict."):]: v for k, v in d.items() if k.startswith("state_dict.")}
    n_out = sum(k.startswith("output.") for k in d)
    return sd, d["input"], [d[f"output.{i}"] for i in range(n_out)]


@pytest.fixture(scope="session")
def mednext_tiny():
    """The tiny MedNeXt of the reference: (constructor args, state dict, input, 5 outputs)."""
    args = json.loads((MEDNEXT_REF / "tiny_L_k5_ds.json").read_text())
    return (args, *read_reference(MEDNEXT_REF / "tiny_L_k5_ds.safetensors"))


@pytest.fixture(scope="session")
def generic_unet_tiny():
    """The tiny v1 Generic_UNet of the reference: (constructor args, state dict, input, 3 outputs)."""
    args = json.loads((NNUNET_V1_REF / "tiny_generic_unet_v1.json").read_text())
    return (args, *read_reference(NNUNET_V1_REF / "tiny_generic_unet_v1.safetensors"))


@pytest.fixture(scope="session")
def mednext_ref_dir() -> Path:
    return MEDNEXT_REF


@pytest.fixture(scope="session")
def nnunet_v1_ref_dir() -> Path:
    return NNUNET_V1_REF
