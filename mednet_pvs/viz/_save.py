"""Writing pictures: PNG, atomically (no matplotlib import needed here)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Write a figure as PNG, atomically (a temp file beside ``path``, then a rename); returns ``path``.

    Args:
        fig: a matplotlib figure (e.g. what :func:`~mednet_pvs.viz.show_slices` returns).
        path: destination ``.png``; its folder is created.
        dpi: resolution (default: the figure's own, 100 for the pictures of this module).
    """
    from mednet_pvs.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi or fig.dpi, facecolor=fig.get_facecolor())
    return path


def finish(fig: Any, save: str | os.PathLike | None) -> Any:
    """``fig``, written to ``save`` as PNG first when a path is given."""
    if save is not None:
        save_figure(fig, save)
    return fig
