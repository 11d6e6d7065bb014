"""A mosaic of parallel slices through the brain, with the PVS mask and probabilities."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.viz._save import finish
from mednet_pvs.viz._volumes import VIEWS, VolumeSource, gather, window

#: Width (inches) of a mosaic panel.
PANEL_IN = 2.0


def mosaic_slices(image: np.ndarray, normal: int, n: int) -> np.ndarray:
    """``n`` evenly spaced slice indices across ``normal`` spanning the image's foreground.

    The foreground is the voxels brighter than 10 % of the display window; slices where it covers
    under 2 % of the largest slice's area are left out (air, neck). Fewer than ``n`` indices come
    back when the foreground spans fewer slices.
    """
    lo, hi = window(image)
    counts = (image > lo + 0.1 * (hi - lo)).sum(axis=tuple(a for a in range(3) if a != normal))
    keep = np.flatnonzero(counts >= 0.02 * counts.max()) if counts.max() > 0 else np.arange(image.shape[normal])
    first, last = int(keep[0]), int(keep[-1])
    if n >= last - first + 1:
        return np.arange(first, last + 1)
    return np.unique(np.rint(np.linspace(first, last, n + 2)[1:-1]).astype(int))


def show_mosaic(
    image: VolumeSource,
    mask: VolumeSource | None = None,
    affine: Any = None,
    *,
    axis: str = "axial",
    n: int = 12,
    mode: str = "contour",
    radiological: bool = False,
    probs: VolumeSource | None = None,
    ncols: int | None = None,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """``n`` parallel slices evenly spread through the brain, PVS mask (and probabilities) on top.

    Args:
        image: the scan (path, nibabel image, Scan, ``(array, affine)`` or array with ``affine=``).
        mask: PVS mask on the image's grid (optional).
        affine: 4x4 voxel-to-scanner matrix (mm) for bare arrays.
        axis: ``"axial"``, ``"coronal"`` or ``"sagittal"`` slices (in world orientation).
        n: number of slices (fewer if the brain spans fewer); see :func:`mosaic_slices`.
        mode: mask as voxel-edge outlines (``"contour"``: at mosaic size, about a pixel a voxel, the
            outline makes small PVS easier to spot than a fill) or translucent fill (``"overlay"``).
        radiological: patient's right on the picture's left (default neurological).
        probs: PVS probability map (0..1) on the image's grid, drawn as a heat overlay.
        ncols: panels per row (default ``min(n, 6)``).
        title: text put before the description of the picture.
        save: also write the figure there as PNG (atomically).

    Returns:
        A matplotlib figure with one panel per slice, each titled with its scanner position (mm)
        and PVS voxel count; the first panel carries the orientation letters and the scale bar.

    Raises:
        InputError: inputs not 3-D or not on one grid. ConfigError: unknown ``axis`` or ``mode``, ``n < 1``.
    """
    from mednet_pvs.viz import _draw as d

    if axis not in VIEWS:
        raise ConfigError(f"unknown axis {axis!r}; use one of {', '.join(VIEWS)}")
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    d.check_mode(mode)
    if image is None:
        raise InputError("<image>", "show_mosaic needs an image")
    vols = gather(affine, image=image, mask=mask, probs=probs)
    img = vols.image
    assert img is not None
    ref = tuple(s // 2 for s in vols.shape)
    pl = d.plane(vols, axis, ref, radiological)  # type: ignore[arg-type]
    index = mosaic_slices(img, pl.normal, n)
    ncols = max(1, min(ncols or min(n, 6), index.size))
    rows = [index[i : i + ncols] for i in range(0, index.size, ncols)]
    w_mm, h_mm = pl.size_mm
    scale = PANEL_IN / w_mm
    parts = [title, f"{index.size} {axis} slices", d.convention_text(radiological) + d.grid_note(vols)]
    if vols.mask is not None:
        parts.append(f"PVS mask: red {'outline' if mode == 'contour' else 'fill'}")
    if vols.probs is not None:
        parts.append("probability: heat map")
    fig, axes = d.panel_grid([[w_mm * scale] * len(r) for r in rows], [h_mm * scale] * len(rows),
                             " - ".join(p for p in parts if p), gap_in=(0.04, 0.24),
                             margins_in=(0.06, 0.85 if vols.probs is not None else 0.06, 0.06))
    vmin, vmax = window(img)
    origin, step = vols.axis_coords(pl.normal, ref)  # type: ignore[arg-type]
    for r, row in enumerate(rows):
        for c, k in enumerate(row):
            ax, first = axes[r][c], r == 0 and c == 0
            d.gray(ax, pl, d.cut(img, pl, int(k)), vmin, vmax)
            label = d.position_text(pl, origin + int(k) * step)
            if vols.probs is not None:
                d.heat(ax, pl, d.cut(vols.probs, pl, int(k)), on_image=True)
            if vols.mask is not None:
                m = d.cut(vols.mask, pl, int(k))
                d.draw_mask(ax, pl, m, mode, lw=0.7)
                label += f"  ({int(m.sum())} PVS vox)"
            d.frame(ax, pl, letters=first, scale=first, fontsize=9)
            d.title(ax, label, fontsize=8)
    if vols.probs is not None:
        d.prob_colorbar(fig, axes[0][-1])
    return finish(fig, save)

