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
