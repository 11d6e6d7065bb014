"""Shared test set-up: offline, deterministic, quiet."""
from __future__ import annotations

import os

# Never touch the network from tests (Hub, wandb).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch to the cores pytest-xdist gives each worker (2 cores, 2 workers in CI)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
