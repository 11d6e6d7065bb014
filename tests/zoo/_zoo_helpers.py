"""Helpers of the zoo tests: editable copies of the release fixture, deep-supervision outputs, a scan."""
from __future__ import annotations

import contextlib
import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mednet_pvs.safe_load import read_pickle

PKL = "model_final_checkpoint.model.pkl"


def copy_trainer(src: Path, root: Path, *, task: str | None = None, folds: tuple[str, ...] | None = None) -> Path:
    """Copy a trainer folder to ``root/<task>/<trainer folder>`` (only ``folds`` if given); returns the copy."""
    dst = root / (task or src.parent.name) / src.name
    for fold in sorted(src.iterdir()):
        if folds is None or fold.name in folds:
            shutil.copytree(fold, dst / fold.name)
    return dst


def edit_pickle(path: Path, change: Callable[[dict], Any]) -> None:
    """Rewrite a ``.model.pkl`` after ``change(info)`` edits the loaded dict in place."""
    info = read_pickle(path)
    change(info)
    path.write_bytes(pickle.dumps(info, protocol=4))


@contextlib.contextmanager
def ds_outputs(net: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Make ``net`` return its deep-supervision list in eval mode (as the reference fixtures hold)."""
    old = net.config.ds_outputs_in_eval
    net.config.ds_outputs_in_eval = True
    try:
        yield net
    finally:
        net.config.ds_outputs_in_eval = old


def scan(shape: tuple[int, int, int] = (40, 36, 32), spacing: tuple[float, float, float] = (0.8, 0.8, 0.8),
         signs: tuple[int, int, int] = (1, 1, 1), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth positive test volume and its affine (axis-aligned, ``signs`` flip axes: (-1, 1, 1) = LAS)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    for ax in range(3):  # a little smoothing so the networks see structure, not only noise
        x = (x + np.roll(x, 1, ax) + np.roll(x, -1, ax)) / 3
    data = (100 + 20 * x + np.linspace(0, 10, shape[0])[:, None, None]).astype(np.float32)
    affine = np.diag([s * sign for s, sign in zip(spacing, signs)] + [1.0])
    return data, affine
