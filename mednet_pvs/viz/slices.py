"""Orthogonal slices (sagittal, coronal, axial) through one point, with the PVS mask and probabilities."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.errors import InputError
from mednet_pvs.viz._save import finish, save_figure
from mednet_pvs.viz._volumes import Volumes, VolumeSource, gather, richest_point, window

#: Width (inches) a slice panel gets on average; heights follow the physical aspect.
PANEL_IN = 3.7


def show_slices(
    image: VolumeSource,
    mask: VolumeSource | None = None,
    affine: Any = None,
    *,
    point: Sequence[float] | None = None,
    mode: str = "contour",
    radiological: bool = False,
    probs: VolumeSource | None = None,
    views: Sequence[str] = ("sagittal", "coronal", "axial"),
    plain: bool = False,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Orthogonal slices through one point, in world (RAS) orientation, with the PVS mask drawn on top.

    Each view shows the image on its own voxel grid (no resampling or smoothing), oriented by the
    affine: the same picture for an RAS-, LPS- or otherwise-stored copy of a scan. Edges are
    labelled (L/R, P/A, I/S), each panel has a scale bar, titles give the slice position in scanner
    mm. Sagittal views put anterior on the left (as PACS, FSLeyes and Freeview do).

    Args:
        image: the scan: a path, nibabel image, :class:`~mednet_pvs.io.Scan`, ``(array, affine)``
            or an (X, Y, Z) array with ``affine=``.
        mask: PVS mask on the image's grid (voxels > 0 are PVS), same kinds of input; optional.
        affine: 4x4 voxel-to-scanner matrix (mm) for bare arrays.
        point: (x, y, z) scanner coordinates (mm) the slices go through; default: per axis the
            slice with most mask voxels (else most voxels with probability >= 0.5, else the centre).
        mode: mask drawn as voxel-edge outlines (``"contour"``) or a translucent red fill (``"overlay"``).
        radiological: patient's right on the picture's left (default: neurological, right on the right).
        probs: PVS probability map (0..1) on the image's grid; adds a row with it as a heat overlay
            and a colour bar.
        views: which of ``"sagittal"``, ``"coronal"``, ``"axial"``, in order.
        plain: add a first row with the image alone (to see what the mask drawing covers).
        title: text put before the description of the picture.
        save: also write the figure there as PNG (atomically).

    Returns:
        A matplotlib figure (Agg canvas; Jupyter displays it). Rows: image alone (``plain``, or when
        neither mask nor probs is given), mask, probabilities; columns: ``views``.

    Raises:
        InputError: naming the input that is not 3-D, not on the image's grid, a probability map
            given as mask, or a point outside the image.
        ConfigError: unknown ``mode`` or view.
    """
    if image is None:
        raise InputError("<image>", "show_slices needs an image (use show_mip for a probability map alone)")
    vols = gather(affine, image=image, mask=mask, probs=probs)
    fig = draw_slices(vols, point=point, mode=mode, radiological=radiological, views=views, plain=plain, title=title)
    return finish(fig, save)


def default_point(vols: Volumes) -> tuple[int, int, int]:
    """RAS voxel the slices go through by default: the PVS-richest slices, else the centre."""
    if vols.mask is not None and vols.mask.any():
        return richest_point(vols.mask)
    if vols.probs is not None:
        return richest_point(vols.probs >= 0.5)
    return tuple(n // 2 for n in vols.shape)  # type: ignore[return-value]


def draw_slices(
    vols: Volumes,
    *,
    point: Sequence[float] | None = None,
    mode: str = "contour",
    radiological: bool = False,
    views: Sequence[str] = ("sagittal", "coronal", "axial"),
    plain: bool = False,
    title: str | None = None,
    mask_caption: str | None = None,
) -> Any:
    """:func:`show_slices` on volumes already gathered (see :func:`~mednet_pvs.viz._volumes.gather`)."""
    from mednet_pvs.viz import _draw as d

    d.check_mode(mode)
    assert vols.image is not None
    ref = default_point(vols) if point is None else vols.voxel(point)
    vmin, vmax = window(vols.image)
    rows = [k for k, on in (("image", plain or (vols.mask is None and vols.probs is None)),
                            ("mask", vols.mask is not None), ("probs", vols.probs is not None)) if on]
    planes = [d.plane(vols, v, ref, radiological) for v in views]
    sizes = [p.size_mm for p in planes]
    scale = PANEL_IN * len(planes) / sum(w for w, _ in sizes)  # inches per mm
    mask_what = mask_caption or f"PVS mask: red {'outline' if mode == 'contour' else 'fill'}"
    parts = [title, d.convention_text(radiological) + d.grid_note(vols)]
    if vols.mask is not None:
        parts.append(mask_what)
    if vols.probs is not None:
        parts.append(f"probability: heat map, transparent below {d.PROB_FADE[0]:g}, opaque from {d.PROB_FADE[1]:g}")
    fig, axes = d.panel_grid([w * scale for w, _ in sizes], [max(h for _, h in sizes) * scale] * len(rows),
                             " - ".join(p for p in parts if p),
                             margins_in=(0.3 if len(rows) > 1 else 0.06, 0.85 if vols.probs is not None else 0.06, 0.06))
    for r, kind in enumerate(rows):
        for c, pl in enumerate(planes):
            ax = axes[r][c]
            d.gray(ax, pl, d.cut(vols.image, pl, ref[pl.normal]), vmin, vmax)
            if kind == "mask":
                m = d.cut(vols.mask, pl, ref[pl.normal])
                d.draw_mask(ax, pl, m, mode)
                count = int(m.sum())
                ax.text(0.015, 0.985, f"{count} PVS voxel{'' if count == 1 else 's'}", transform=ax.transAxes,
                        color=d.TEXT, fontsize=8, ha="left", va="top")
            elif kind == "probs":
                d.heat(ax, pl, d.cut(vols.probs, pl, ref[pl.normal]), on_image=True)
            d.frame(ax, pl)
            if r == 0:
                d.title(ax, f"{pl.view}   {d.position_text(pl, vols.world(ref)[pl.normal])}")
        if len(rows) > 1:
            d.row_label(fig, axes[r][0], {"image": "image", "mask": "PVS mask", "probs": "PVS probability"}[kind])
        if kind == "probs":
            d.prob_colorbar(fig, axes[r][-1])
    return fig


def save_overview(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, path: str | os.PathLike, *,
                  title: str | None = None, radiological: bool = False) -> Path:
    """Save a PNG with sagittal, coronal and axial slices through the PVS-richest location.

    The top row shows the image, the bottom row the same slices with the label filled in red
    (:func:`show_slices` with ``mode="overlay"``, ``plain=True``). Written atomically; returns ``path``.

    Raises:
        InputError: the image is not 3-D, or the label is not on its grid.
    """
    vols = gather(affine, image=image, mask=label)
    if vols.mask is None:
        vols.mask = np.zeros(vols.shape, bool)
    fig = draw_slices(vols, mode="overlay", radiological=radiological, plain=True, title=title,
                      mask_caption="label in red")
    return save_figure(fig, path)
