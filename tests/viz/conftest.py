"""Fixtures of the picture tests (helpers live in ``_viz_helpers.py``). Agg only, no display."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _viz_helpers import toy_affine, toy_clusters, toy_image  # noqa: E402


@pytest.fixture
def toy():
    """``(image, mask, affine)``: 30x36x24 1-mm RAS toy head with four PVS clusters."""
    mask, _ = toy_clusters()
    return toy_image(), mask, toy_affine()
