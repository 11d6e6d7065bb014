"""A gallery of crops around individual PVS clusters: the largest, or those the model is least sure of."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.viz._save import finish
from mednet_pvs.viz._volumes import VIEWS, Volumes, VolumeSource, gather, to_ras, window

#: Side (inches) of a gallery crop.
CROP_IN = 1.9
#: Margin (mm) kept around a cluster when the crop is enlarged to hold it whole.
MARGIN_MM = 2.0


def rank_clusters(volume_mm3: np.ndarray, mean_prob: np.ndarray | None, by: str = "volume", n: int = 12) -> np.ndarray:
    """0-based indices of the ``n`` clusters to show, in order.

    Args:
        volume_mm3: (K,) cluster volumes.
        mean_prob: (K,) mean probability per cluster, or ``None``.
        by: ``"volume"``: largest first; ``"uncertainty"``: mean probability closest to 0.5 first
            (ties: the larger cluster first). Remaining ties: smaller cluster id first.
        n: how many (all if fewer).

    Raises:
        ConfigError: unknown ``by``, or ``"uncertainty"`` without probabilities.
    """
    ids = np.arange(len(volume_mm3))
    if by == "volume":
        order = np.lexsort((ids, -np.asarray(volume_mm3)))
    elif by == "uncertainty":
        if mean_prob is None:
            raise ConfigError("by='uncertainty' needs the probability map (probs=...)")
        order = np.lexsort((ids, -np.asarray(volume_mm3), np.abs(np.asarray(mean_prob) - 0.5)))
    else:
        raise ConfigError(f"unknown by={by!r}; use 'volume' or 'uncertainty'")
    return order[: max(int(n), 0)]


def show_cluster_gallery(
    image: VolumeSource,
    mask: VolumeSource,
    affine: Any = None,
    *,
    probs: VolumeSource | None = None,
    by: str = "volume",
    n: int = 12,
    crop_mm: float = 12.0,
    view: str = "auto",
    radiological: bool = False,
    ncols: int | None = None,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Crops around single PVS clusters, largest first or least certain first.

    Clusters are the 26-connected components of the mask, numbered as in
    :func:`mednet_pvs.analysis.pvs_burden` (the ``id`` column of its cluster table), with the
    volume and mean probability it reports. Each crop is a slice through the cluster, on the image's
    own grid: by default in the plane that best contains the cluster's main axis (a PVS running
    superior-inferior is shown coronal or sagittal, one running in-plane axial), at the slice holding
    most of its voxels. The cluster is outlined in red in that slice, its projection through all
    its slices is dotted, other clusters are orange. Each crop is titled with the cluster id, its
    volume (mm^3) and mean probability, and the slice's position.

    Args:
        image: the scan (path, nibabel image, Scan, ``(array, affine)`` or array with ``affine=``).
        mask: PVS mask on the image's grid.
        affine: 4x4 voxel-to-scanner matrix (mm) for bare arrays.
        probs: PVS probability map (0..1) on the grid; needed for ``by="uncertainty"``.
        by: ``"volume"`` (largest first) or ``"uncertainty"`` (mean probability closest to 0.5 first).
        n: number of clusters (all if fewer).
        crop_mm: side of the square field of view (mm), enlarged when a cluster does not fit.
        view: ``"auto"`` (per cluster, see above) or ``"axial"``, ``"coronal"``, ``"sagittal"``.
        radiological: patient's right on the picture's left (default neurological).
        ncols: crops per row (default ``min(n, 6)``).
        title: text put before the description of the picture.
        save: also write the figure there as PNG (atomically).

    Returns:
        A matplotlib figure, one crop per cluster (a single message panel for an empty mask).

    Raises:
        InputError: inputs not 3-D or not on one grid, no mask. ConfigError: bad ``by`` or ``view``.
    """
    from scipy import ndimage as ndi

    from mednet_pvs.analysis.clusters import cluster_geometry, label_clusters
    from mednet_pvs.viz import _draw as d

    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    if view != "auto" and view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; use 'auto' or one of {', '.join(VIEWS)}")
    if image is None or mask is None:
        raise InputError("<mask>" if mask is None else "<image>", "show_cluster_gallery needs an image and a mask")
    vols = gather(affine, image=image, mask=mask, probs=probs)
    labels, k = label_clusters(vols.stored["mask"], vols.source_affine)  # numbered as pvs_burden numbers them
    geo = cluster_geometry(labels, k, vols.source_affine)
    mean_prob = geo.mean_of(vols.stored["probs"]) if "probs" in vols.stored else None
    chosen = rank_clusters(geo.volume_mm3, mean_prob, by, n)
    what = "largest" if by == "volume" else "most uncertain (mean probability closest to 0.5)"
    head = [title, f"{chosen.size} {what} of {k} PVS clusters" + ("" if mean_prob is None else " (p: mean probability)"),
            "red: the cluster in this slice, dotted: its projection through all its slices, orange: other clusters",
            d.convention_text(radiological) + d.grid_note(vols)]
    heading = " - ".join(t for t in head if t)
    if chosen.size == 0:
        fig, axes = d.panel_grid([4.0], [1.0], heading)
        axes[0][0].set_axis_off()
        axes[0][0].text(0.5, 0.5, "no PVS clusters in the mask", color=d.TEXT, ha="center", va="center")
        return finish(fig, save)

    lab_ras = to_ras(labels, vols.source_affine)[0]
    boxes = ndi.find_objects(lab_ras)
    # main axes in RAS array axes (differs from scanner RAS only for oblique grids)
    a3 = vols.affine[:3, :3] / vols.zooms
    main = np.linalg.solve(a3, geo.main_axis[chosen].T).T
    vmin, vmax = window(vols.image)  # type: ignore[arg-type]
    ncols = max(1, min(ncols or min(int(n), 6), chosen.size))
    grid = [chosen[i : i + ncols] for i in range(0, chosen.size, ncols)]
    fig, axes = d.panel_grid([[CROP_IN] * len(r) for r in grid], [CROP_IN] * len(grid), heading, gap_in=(0.08, 0.42))
    for j, c in enumerate(chosen):
        ax = axes[j // ncols][j % ncols]
        cid = int(c) + 1
        name = view if view != "auto" else ("sagittal", "coronal", "axial")[int(np.argmin(np.abs(main[j])))]
        where = _crop(ax, vols, lab_ras, cid, boxes[c], name, radiological, crop_mm, vmin, vmax)
        prob = "" if mean_prob is None else f"   p {mean_prob[c]:.2f}"
        ax.set_title(f"#{cid}   {geo.volume_mm3[c]:.1f} mm³{prob}\n{where}", color=d.TEXT, fontsize=8, pad=3)
    return finish(fig, save)


def _crop(ax: Any, vols: Volumes, lab_ras: np.ndarray, cid: int, box: tuple[slice, ...], view: str,
          radiological: bool, crop_mm: float, vmin: float, vmax: float) -> str:
    """Draw one cluster's crop in ``ax``; returns the slice's view and position."""
    from mednet_pvs.viz import _draw as d

    normal = VIEWS[view][0]
    inside = lab_ras[box] == cid
    counts = inside.sum(axis=tuple(a for a in range(3) if a != normal))
    ref = [(s.start + s.stop - 1) // 2 for s in box]
    ref[normal] = box[normal].start + int(np.argmax(counts))
    pl = d.plane(vols, view, tuple(ref), radiological)  # type: ignore[arg-type]
    sl = d.cut(lab_ras, pl, ref[normal])
    d.gray(ax, pl, d.cut(vols.image, pl, ref[normal]), vmin, vmax)  # type: ignore[arg-type]
    d.draw_mask(ax, pl, (sl > 0) & (sl != cid), color=d.OTHER_PVS, lw=0.8)
    footprint = np.zeros((pl.nh, pl.nv), bool)
    sub = (box[pl.h], box[pl.v])
    footprint[sub] = inside.any(axis=normal)
    ax.add_collection(_dotted(d.outline_segments(footprint, pl)))
    d.draw_mask(ax, pl, sl == cid, lw=1.4)
    ch = float(pl.h_mm((box[pl.h].start + box[pl.h].stop - 1) / 2))
    cv = float(pl.v_mm((box[pl.v].start + box[pl.v].stop - 1) / 2))
    half = max(crop_mm / 2, (box[pl.h].stop - box[pl.h].start) * pl.dh / 2 + MARGIN_MM,
               (box[pl.v].stop - box[pl.v].start) * pl.dv / 2 + MARGIN_MM)
    d.frame(ax, pl, fontsize=7, lim=(ch - half, ch + half, cv - half, cv + half))
    return f"{view}  {d.position_text(pl, vols.world(tuple(ref))[normal])}"  # type: ignore[arg-type]


def _dotted(segments: np.ndarray) -> Any:
    from matplotlib.collections import LineCollection

    from mednet_pvs.viz._draw import PVS

    return LineCollection(segments, colors=PVS, linewidths=0.8, linestyles=(0, (1, 1.5)), alpha=0.9, gid="pvs_projection")

