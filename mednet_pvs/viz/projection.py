"""Maximum-intensity projection (MIP) of a PVS probability map or mask, in world orientation."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mednet_pvs.viz._save import finish
from mednet_pvs.viz._volumes import AXIS_NAMES, VolumeSource, gather

#: Height (inches) of a projection panel; widths follow the physical aspect.
PANEL_IN = 4.2


def show_mip(
    probs_or_mask: VolumeSource,
    affine: Any = None,
    *,
    axes: Sequence[str] = ("axial", "coronal", "sagittal"),
    image: VolumeSource | None = None,
    radiological: bool = False,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Maximum-intensity projections of a PVS probability map (or mask) along the scanner axes.

    The view radiologists use for thin structures: each pixel shows the highest probability along
    the projection line, so every PVS appears whole, however it winds through the slices. Axial
    projects along z (inferior-superior), coronal along y, sagittal along x, after reorienting the
    volume to RAS voxel order (the same picture for any stored orientation). Axes are in scanner
    mm: a voxel at (x, y, z) appears at (x, y) in the axial panel.

    Args:
        probs_or_mask: probability map (0..1) or binary mask: a path, nibabel image, Scan,
            ``(array, affine)`` or an (X, Y, Z) array with ``affine=``.
        affine: 4x4 voxel-to-scanner matrix (mm) for bare arrays.
        axes: projections to show, among ``"axial"``, ``"coronal"``, ``"sagittal"``.
        image: optional scan on the same grid, shown dimmed underneath as its *mean* intensity
            projection (an anatomical silhouette) with the probabilities fading in on top.
        radiological: patient's right on the picture's left (default neurological).
        title: text put before the description of the picture.
        save: also write the figure there as PNG (atomically).

    Returns:
        A matplotlib figure: one panel per projection, a colour bar (0..1).

    Raises:
        InputError: not 3-D, values outside 0..1, image not on the same grid.
    """
    from mednet_pvs.viz import _draw as d

    vols = gather(affine, probs=probs_or_mask, image=image)
    probs = vols.probs
    assert probs is not None
    binary = bool(((probs == 0) | (probs == 1)).all())
    centre = tuple(n // 2 for n in vols.shape)
    planes = [d.plane(vols, v, centre, radiological) for v in axes]  # type: ignore[arg-type]
    sizes = [p.size_mm for p in planes]
    scale = PANEL_IN / max(h for _, h in sizes)
    head = [title, f"maximum-intensity projection of the PVS {'mask' if binary else 'probability'}",
            d.convention_text(radiological) + d.grid_note(vols)]
    if vols.image is not None:
        head.append("background: mean intensity projection of the image")
    fig, axs = d.panel_grid([w * scale for w, _ in sizes], [max(h for _, h in sizes) * scale],
                            " - ".join(t for t in head if t), margins_in=(0.06, 0.85, 0.06))
    for ax, pl in zip(axs[0], planes):
        if vols.image is not None:
            mean = vols.image.mean(axis=pl.normal)
            lo = float(mean.min())
            d.gray(ax, pl, mean, lo, lo + 1.6 * (float(np.percentile(mean, 99.5)) - lo) + 1e-6)  # dimmed
        d.heat(ax, pl, probs.max(axis=pl.normal), on_image=vols.image is not None)
        d.frame(ax, pl)
        ends = [vols.world(tuple(i if a == pl.normal else c for a, c in enumerate(centre)))[pl.normal]
                for i in (0, vols.shape[pl.normal] - 1)]
        d.title(ax, f"{pl.view} MIP   along {AXIS_NAMES[pl.normal]}, {min(ends):+.0f} to {max(ends):+.0f} mm")
    d.prob_colorbar(fig, axs[0][-1], "PVS mask (projected)" if binary else "max PVS probability along the line")
    return finish(fig, save)
