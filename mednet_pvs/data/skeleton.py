"""The "tubed skeleton" target of the Skeleton Recall loss (Kirchhoff et al., ECCV 2024).

:func:`tubed_skeleton_array` is the geometry; :class:`TubedSkeleton` computes it in the data
loader's workers, once per augmented volume, and adds it to the subject as the label map
``"skeleton"`` so that every patch cut from the volume carries its own piece (the authors compute it
in their data augmentation too). Without it, :class:`~mednet_pvs.training.losses.SkeletonRecallLoss`
skeletonises each batch in the training process.

Measured (``benchmarks/bench_skeleton.py``, one thread, 2-core CPU): the skeleton of a whole 1 mm
domain-randomised phantom (145-184 x 215-247 x 177-231 voxels) took 0.15-0.25 s, 3 % of the 4.9-7.5 s
that making the phantom took; in the training process a batch of 8 x 96^3 (four deep-supervision
levels) took 0.33 s, 2.6 times an H200 step of the any-contrast net (0.128 s), and 2 x 48^3 9 ms.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchio as tio

from mednet_pvs.errors import ConfigError

SKELETON_KEY = "skeleton"


def skeleton_classes(classes: Sequence[int]) -> list[int]:
    """``classes`` as a list of ints, each a foreground class (>= 1); else a :class:`ConfigError`."""
    out = [int(c) for c in classes]
    if not out or any(c < 1 for c in out):
        raise ConfigError(f"skeleton recall needs foreground classes (>= 1), got {list(classes)}")
    return out


def tubed_skeleton_array(label: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """The tubed skeleton of one class-index volume (X, Y, Z) -> the same shape, integer.

    Each of ``classes`` is skeletonised (``skimage.morphology.skeletonize``, Lee's 3D thinning), the
    skeleton dilated twice by the 6-neighbour cross and kept inside the class's own voxels (as the
    authors' ``SkeletonTransform``); those voxels hold the class, every other voxel 0. For PVS,
    1-3 voxels wide, the tube holds most of the PVS (334 of 376 voxels in a 48^3 domain-phantom
    crop), so a recall of it weighs every tube by its length rather than its volume.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    lab = np.asarray(label)
    if lab.ndim != 3:
        raise ConfigError(f"a tubed skeleton needs a 3D label (X, Y, Z), got shape {lab.shape}")
    out = np.zeros(lab.shape, dtype=np.int64)
    cross = ndi.generate_binary_structure(3, 1)
    for c in skeleton_classes(classes):
        mask = lab == c
        if mask.any():
            tube = ndi.binary_dilation(skeletonize(mask), cross, iterations=2) & mask
            out[tube] = c
    return out


class TubedSkeleton(tio.Transform):
    """Add the label map ``"skeleton"``: the tubed skeleton of ``classes`` of the subject's ``label``.

    Put it last in a training transform (after every spatial change of the label) and before patch
    sampling; the patches then carry ``"skeleton"`` (B, 1, X, Y, Z) beside ``"label"``.

    Args:
        classes: foreground class indices to skeletonise (the PVS class).
        label: key of the class-index label map.
    """

    def __init__(self, classes: Sequence[int], label: str = "label", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes, self.label = skeleton_classes(classes), label
        self.args_names = ["classes", "label"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if self.label not in subject:
            raise ConfigError(f"TubedSkeleton needs the label map {self.label!r}; the subject has {sorted(subject.keys())}")
        lab = subject[self.label]
        skel = tubed_skeleton_array(lab.data[0].numpy(), self.classes)
        subject.add_image(tio.LabelMap(tensor=torch.from_numpy(skel)[None].to(lab.data.dtype), affine=lab.affine), SKELETON_KEY)
        return subject
