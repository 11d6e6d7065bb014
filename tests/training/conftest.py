"""Training tests: helpers on the path, torch on one thread (2 threads on a shared 2-core machine
can run 10x slower than 1 when another process competes for the cores)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # module scope: also covers module-scoped fixtures that train
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
