"""Fixtures of the data-layer tests (helpers live in ``_data_helpers.py``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _data_helpers import write_cohort  # noqa: E402


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """A good 4-case, 2-site cohort; returns its manifest."""
    return write_cohort(tmp_path / "cohort", 4)
