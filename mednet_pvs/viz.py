"""Pictures of scans and PVS masks (PNG, no display needed).

Slices are shown in RAS world orientation whatever the voxel order of the input (the affine is
used to flip/permute axes), in neurological convention by default (patient's right on the
picture's right) or radiological (``radiological=True``); every panel names its edges (L/R, P/A,
I/S).
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` reoriented to the closest RAS voxel order, and the affine of the reoriented array."""
    import nibabel as nib

    affine = np.asarray(affine, float)
    data = np.asarray(data)
    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(data, ornt)
    return out, affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)


def richest_point(label: np.ndarray) -> tuple[int, int, int]:
    """Per axis, the slice index holding most label voxels (array centre for an empty label)."""
    lab = np.asarray(label) > 0
    if not lab.any():
        return tuple(n // 2 for n in lab.shape)  # type: ignore[return-value]
    return tuple(int(np.argmax(lab.sum(axis=tuple(a for a in range(3) if a != k)))) for k in range(3))  # type: ignore[return-value]


def save_overview(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, path: str | os.PathLike, *,
                  title: str | None = None, radiological: bool = False) -> Path:
    """Save a PNG with sagittal, coronal and axial slices through the PVS-richest location.

    The top row shows the image, the bottom row the same slices with the label in red.
    Written atomically; returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mednet_pvs.errors import InputError
    from mednet_pvs.io import atomic_path

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3:
        raise InputError("<image>", f"save_overview needs a 3-D image, got shape {img.shape}")
    lab = np.zeros(img.shape, bool) if label is None else np.asarray(label) > 0
    if lab.shape != img.shape:
        raise InputError("<label>", f"label shape {lab.shape} differs from image shape {img.shape}")
    img, ras_affine = to_ras(img, affine)
    lab, _ = to_ras(lab, affine)
    zooms = np.sqrt((ras_affine[:3, :3] ** 2).sum(0))
    p = richest_point(lab)
    world = (ras_affine @ [*p, 1.0])[:3]
    fg = img[img > 0] if (img > 0).any() else img.ravel()
    vmin, vmax = (float(v) for v in np.percentile(fg, [0.5, 99.5]))

    # (name, slice, horizontal axis, vertical axis, (left, right, bottom, top) edge letters)
    lr = ("R", "L") if radiological else ("L", "R")
    views = [
        ("sagittal", (p[0], slice(None), slice(None)), 1, 2, ("P", "A", "I", "S")),
        ("coronal", (slice(None), p[1], slice(None)), 0, 2, (*lr, "I", "S")),
        ("axial", (slice(None), slice(None), p[2]), 0, 1, (*lr, "P", "A")),
    ]
    fig = Figure(figsize=(12, 8.4), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)  # Agg canvas: no display, and pyplot's global backend is left alone
    axes = fig.subplots(2, 3)
    red = np.zeros((1, 1, 4))
    red[..., 0], red[..., 3] = 1.0, 0.75
    for col, (name, sl, hax, vax, edges) in enumerate(views):
        s = img[sl].T  # rows: vertical axis, columns: horizontal axis
        m = lab[sl].T
        if radiological and hax == 0:
            s, m = s[:, ::-1], m[:, ::-1]
        aspect = zooms[vax] / zooms[hax]
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(s, cmap="gray", origin="lower", vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
            if row == 1 and m.any():
                ax.imshow(np.where(m[..., None], red, 0.0), origin="lower", aspect=aspect, interpolation="nearest")
            ax.set_axis_off()
            for txt, xy in zip(edges, ((0.01, 0.5), (0.99, 0.5), (0.5, 0.01), (0.5, 0.99))):
                ax.text(*xy, txt, transform=ax.transAxes, color="yellow", fontsize=12, fontweight="bold",
                        ha="left" if xy[0] < 0.1 else "right" if xy[0] > 0.9 else "center",
                        va="bottom" if xy[1] < 0.1 else "top" if xy[1] > 0.9 else "center")
        axis_name, k = {"sagittal": ("x", 0), "coronal": ("y", 1), "axial": ("z", 2)}[name]
        axes[0, col].set_title(f"{name} {axis_name} = {world[k]:+.0f} mm  ({int(lab[sl].sum())} PVS voxels)",
                               color="white", fontsize=10)
    conv = "radiological" if radiological else "neurological"
    head = textwrap.fill(f"{title + '  -  ' if title else ''}{conv} view, label in red", width=110)
    fig.suptitle(head, color="white", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92 - 0.025 * head.count("\n"), wspace=0.02, hspace=0.06)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return path
