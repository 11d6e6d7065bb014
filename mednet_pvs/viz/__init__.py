"""Pictures of scans, PVS masks and probability maps (matplotlib figures; PNG without a display).

    from mednet_pvs.viz import show, show_slices, show_mip, show_mosaic, show_cluster_gallery

    fig = show(pred)                                   # a Prediction: slices + probability row
    fig = show_slices("t2.nii.gz", "t2_pvs.nii.gz", radiological=True, save="slices.png")
    fig = show_mip(pred.probabilities, pred.scan.affine, image=pred.scan.data)
    fig = show_cluster_gallery(img, mask, affine, probs=probs, by="uncertainty")

Every function returns a :class:`matplotlib.figure.Figure` on its own Agg canvas (Jupyter displays
it; nothing is registered with pyplot) and takes ``save=path`` to also write a PNG atomically.
Volumes are accepted as paths, nibabel images, :class:`~mednet_pvs.io.Scan`, ``(array, affine)``
pairs, or arrays with ``affine=``; masks and probability maps must lie on the image's grid.

Orientation comes from the affine alone (:func:`to_ras`: axis flips and permutations, no
resampling), so an LPS-, RAS- or oblique-stored scan gives the same picture. Pictures are in
neurological convention (patient's right on the right) unless ``radiological=True``; every panel
names its edges (L/R, P/A, I/S), has a scale bar and gives positions in scanner mm.

Importing this module does not import matplotlib (the drawing functions do, on first use).
"""
from __future__ import annotations

from mednet_pvs.viz._save import save_figure
from mednet_pvs.viz._show import show
from mednet_pvs.viz._volumes import richest_point, to_ras
from mednet_pvs.viz.gallery import show_cluster_gallery
from mednet_pvs.viz.mosaic import show_mosaic
from mednet_pvs.viz.projection import show_mip
from mednet_pvs.viz.slices import save_overview, show_slices

__all__ = [
    "richest_point",
    "save_figure",
    "save_overview",
    "show",
    "show_cluster_gallery",
    "show_mip",
    "show_mosaic",
    "show_slices",
    "to_ras",
]
