"""Fixtures of the phantom-generator tests (helpers live in ``_synth_helpers.py``).

Phantoms are session-scoped: each is made once and only read by the tests.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def proc_phantom():
    """64^3 procedural head, T2w, burden 3 (~0.3 s)."""
    from mednet_pvs.synth import make_phantom

    return make_phantom(anatomy="procedural", burden=3, seed=1)


@pytest.fixture(scope="session")
def mni_phantom():
    """Full-brain MNI152 at 1 mm, T2w, burden 3 (~5 s with the anatomy; use in slow tests)."""
    from mednet_pvs.synth import make_phantom

    return make_phantom(anatomy="mni", burden=3, seed=2)
