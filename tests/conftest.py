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


@pytest.fixture
def oblique_affine():
    """``oblique_affine(degrees, spacing, origin)``: a 4x4 voxel-to-world matrix rotated about S,
    with signed spacings (negative: L/P-going axes), for grids that are neither RAS nor isotropic."""
    import numpy as np

    def make(degrees=25.0, spacing=(-0.6, -0.7, 0.9), origin=(40.0, 30.0, -20.0)):
        a = np.deg2rad(degrees)
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        aff = np.eye(4)
        aff[:3, :3] = rot @ np.diag(spacing)
        aff[:3, 3] = origin
        return aff

    return make


@pytest.fixture
def figures(record_property):
    """``figures("line", ...)``: measured figures of a test, printed in a "measured figures" section
    at the end of the run (also under pytest-xdist, where a test's own prints are not shown)."""

    def add(*lines: str) -> None:
        record_property("figures", "\n".join(lines))

    return add


def pytest_terminal_summary(terminalreporter):
    seen = []
    for rep in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        for key, value in getattr(rep, "user_properties", ()):
            if key == "figures" and (rep.nodeid, value) not in seen:
                seen.append((rep.nodeid, value))
    if seen:
        terminalreporter.section("measured figures")
        for nodeid, value in seen:
            terminalreporter.write_line(f"{nodeid}\n{value}\n")
