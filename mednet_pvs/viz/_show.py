"""``show``: one call from a prediction, a phantom or files to a picture."""
from __future__ import annotations

from typing import Any

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.viz._volumes import VolumeSource

#: What :func:`show` draws for each ``kind``.
KINDS = ("slices", "mip", "mosaic", "gallery")


def show(
    obj: Any,
    mask: VolumeSource | None = None,
    affine: Any = None,
    *,
    probs: VolumeSource | None = None,
    kind: str = "slices",
    **options: Any,
) -> Any:
    """A picture of a prediction, a phantom or an image, in one call.

    Args:
        obj: a :class:`~mednet_pvs.inference.Prediction` (its scan, mask and probabilities are
            used), a :class:`~mednet_pvs.synth.Phantom` (image and label), or an image (path,
            nibabel image, Scan, ``(array, affine)`` or array with ``affine=``).
        mask: PVS mask (overrides the prediction's or phantom's).
        affine: 4x4 voxel-to-scanner matrix (mm) for bare arrays.
        probs: PVS probability map (overrides the prediction's).
        kind: ``"slices"`` (:func:`~mednet_pvs.viz.show_slices`), ``"mip"``
            (:func:`~mednet_pvs.viz.show_mip` of the probabilities, else the mask, over the image),
            ``"mosaic"`` (:func:`~mednet_pvs.viz.show_mosaic`) or ``"gallery"``
            (:func:`~mednet_pvs.viz.show_cluster_gallery`).
        **options: passed on (``radiological=``, ``mode=``, ``save=``, ``title=``, ``n=``...).

    Returns:
        The matplotlib figure.

    Example:
        >>> pred = model.predict("sub-01_T2w.nii.gz")
        >>> fig = show(pred)                                  # slices + probability row
        >>> show(pred, kind="gallery", by="uncertainty", save="uncertain.png")
    """
    from mednet_pvs.viz.gallery import show_cluster_gallery
    from mednet_pvs.viz.mosaic import show_mosaic
    from mednet_pvs.viz.projection import show_mip
    from mednet_pvs.viz.slices import show_slices

    image: Any = obj
    if all(hasattr(obj, a) for a in ("scan", "mask", "probabilities")):  # a Prediction
        image = obj.scan
        mask = obj.mask if mask is None else mask
        probs = obj.probabilities if probs is None else probs
    elif all(hasattr(obj, a) for a in ("image", "label", "affine")):  # a Phantom
        image = (obj.image, obj.affine)
        mask = obj.label if mask is None else mask
    if kind == "slices":
        return show_slices(image, mask, affine, probs=probs, **options)
    if kind == "mip":
        if probs is None and mask is None:
            raise InputError("<probs>", "a MIP needs a probability map or a mask")
        return show_mip(probs if probs is not None else mask, affine, image=image, **options)
    if kind == "mosaic":
        return show_mosaic(image, mask, affine, probs=probs, **options)
    if kind == "gallery":
        return show_cluster_gallery(image, mask, affine, probs=probs, **options)
    raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
