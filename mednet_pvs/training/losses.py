"""Segmentation losses: nnU-Net's soft Dice + cross-entropy, with deep supervision.

nnU-Net (v1 ``MultipleOutputLoss2``, v2 ``DeepSupervisionWrapper``) weights the outputs of a
deep-supervised network ``1 / 2**i`` from full resolution (i = 0) down, gives the lowest
resolution weight 0 and normalises the weights to sum to 1; every output is compared with the
target downsampled to its size (nearest neighbour, nnU-Net's ``DownsampleSegForDSTransform2``;
``"max"`` keeps a voxel foreground when any voxel it covers is, which keeps thin PVS visible at
coarse levels). The Dice term is nnU-Net v2's ``MemoryEfficientSoftDiceLoss`` (softmax
probabilities, background excluded, batch Dice, smoothing 1e-5), here as ``1 - Dice`` so that a
perfect prediction has loss 0 (the gradients are nnU-Net's). An optional third term is the Skeleton
Recall loss of Kirchhoff et al. (ECCV 2024, :class:`SkeletonRecallLoss`) for thin tubular structures.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mednet_pvs.data.skeleton import skeleton_classes, tubed_skeleton_array
from mednet_pvs.errors import ConfigError

Logits = torch.Tensor | Sequence[torch.Tensor]
TargetDownsampling = Literal["nearest", "max"]


def deep_supervision_weights(n: int) -> list[float]:
    """nnU-Net's weights of ``n`` outputs (full resolution first): ``1/2**i``, the last 0, summing to 1.

    >>> deep_supervision_weights(4)
    [0.5714285714285714, 0.2857142857142857, 0.14285714285714285, 0.0]
    """
    if n < 1:
        raise ConfigError(f"deep supervision needs at least one output, got {n}")
    if n == 1:
        return [1.0]
    w = [1.0 / 2**i for i in range(n)]
    w[-1] = 0.0
    total = sum(w)
    return [v / total for v in w]


def downsample_target(target: torch.Tensor, size: Sequence[int], mode: TargetDownsampling = "nearest") -> torch.Tensor:
    """Class-index target (B, 1, X, Y, Z) brought to ``size`` (x, y, z) for a lower deep-supervision level.

    ``"nearest"``: nnU-Net's order-0 resampling. ``"max"``: max-pooling of each class's mask (for
    integer factors), i.e. the highest class any covered voxel holds.
    """
    size = tuple(int(s) for s in size)
    if tuple(target.shape[2:]) == size:
        return target
    if mode == "nearest":
        return F.interpolate(target.float(), size=size, mode="nearest").to(target.dtype)
    if mode == "max":
        factors = [s // t for s, t in zip(target.shape[2:], size)]
        if any(s != f * t for s, f, t in zip(target.shape[2:], factors, size)):
            raise ConfigError(f"max-pooling needs integer factors, got {tuple(target.shape[2:])} -> {size}")
        return F.max_pool3d(target.float(), kernel_size=factors, stride=factors).to(target.dtype)
    raise ConfigError(f"target downsampling must be 'nearest' or 'max', not {mode!r}")


class SoftDiceLoss(nn.Module):
    """``1 - soft Dice`` of the softmax of logits (B, K, X, Y, Z) against class indices (B, 1, X, Y, Z).

    As nnU-Net v2: foreground classes only (``do_bg=False``), ``batch_dice`` sums over the batch
    before the ratio (one Dice per class for the whole batch), ``smooth`` in numerator and
    denominator; the Dice of the foreground classes is averaged.
    """

    def __init__(self, batch_dice: bool = True, do_bg: bool = False, smooth: float = 1e-5) -> None:
        super().__init__()
        self.batch_dice, self.do_bg, self.smooth = batch_dice, do_bg, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float(), 1)
        onehot = torch.zeros_like(probs).scatter_(1, target.long(), 1.0)
        if not self.do_bg:
            probs, onehot = probs[:, 1:], onehot[:, 1:]
        axes = tuple(range(2, probs.ndim))
        if self.batch_dice:
            axes = (0, *axes)
        intersect = (probs * onehot).sum(axes)
        denom = probs.sum(axes) + onehot.sum(axes)
        dice = (2 * intersect + self.smooth) / torch.clamp(denom + self.smooth, min=1e-8)
        return 1.0 - dice.mean()


def tubed_skeleton(target: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """The tubed skeleton (:func:`~mednet_pvs.data.skeleton.tubed_skeleton_array`) of each sample of
    class-index targets (B, 1, X, Y, Z) -> the same shape, dtype and device.

    Runs on the CPU in the training process (a GPU target is copied): 8 ms per batch of 2 x 48^3
    over all four deep-supervision levels (under 1 % of a CPU step of the ``synth_any`` net), but
    0.3 s per batch of 8 x 96^3, more than the 0.13 s of an H200 step; there, compute it in the data
    workers instead (``--data.skeleton_classes``, :class:`~mednet_pvs.data.skeleton.TubedSkeleton`).
    """
    lab = target[:, 0].detach().to("cpu", torch.int64).numpy()
    out = np.stack([tubed_skeleton_array(lab[b], classes) for b in range(lab.shape[0])])
    return torch.from_numpy(out)[:, None].to(device=target.device, dtype=target.dtype)


class SkeletonRecallLoss(nn.Module):
    """``1 - soft recall`` of a tubed skeleton (:func:`tubed_skeleton`) by the softmax of the logits.

    As the authors' ``SoftSkeletonRecallLoss``: foreground classes only, ``batch_dice`` sums over the
    batch before the ratio, ``smooth`` 1e-5; the recall of the classes present in ``classes`` is
    averaged. ``1 -`` (theirs is ``-recall``) keeps a perfect prediction at 0; the gradients are
    theirs. ``logits`` (B, K, X, Y, Z); ``target`` (B, 1, X, Y, Z) class indices, skeletonised here
    unless ``skeleton`` (the same shape) is given, already made by the data workers.
    """

    def __init__(self, classes: Sequence[int], batch_dice: bool = True, smooth: float = 1e-5) -> None:
        super().__init__()
        self.classes, self.batch_dice, self.smooth = skeleton_classes(classes), batch_dice, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor, skeleton: torch.Tensor | None = None) -> torch.Tensor:
        skel = tubed_skeleton(target, self.classes) if skeleton is None else skeleton
        probs = torch.softmax(logits.float(), 1)[:, self.classes]
        onehot = torch.cat([(skel == c) for c in self.classes], 1).float()
        axes = (0, *range(2, probs.ndim)) if self.batch_dice else tuple(range(2, probs.ndim))
        recall = ((probs * onehot).sum(axes) + self.smooth) / torch.clamp(onehot.sum(axes) + self.smooth, min=1e-8)
        return 1.0 - recall.mean()


class DiceCELoss(nn.Module):
    """``ce_weight * cross-entropy + dice_weight * (1 - soft Dice)`` (nnU-Net's ``DC_and_CE_loss``),
    plus ``skeleton_weight * (1 - skeleton recall)`` of ``skeleton_classes`` when the weight is not 0
    (:class:`SkeletonRecallLoss`; the authors' ``DC_SkelREC_and_CE_loss`` with ``weight_srec``).

    ``logits`` (B, K, X, Y, Z); ``target`` (B, 1, X, Y, Z) class indices (float or int); ``skeleton``
    the tubed skeleton of ``target`` when the data workers made it (else made here when needed).
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, batch_dice: bool = True,
                 skeleton_weight: float = 0.0, skeleton_classes: Sequence[int] = (1,)) -> None:
        super().__init__()
        if skeleton_weight < 0:
            raise ConfigError(f"the skeleton recall weight must be >= 0, got {skeleton_weight}")
        self.dice_weight, self.ce_weight, self.skeleton_weight = dice_weight, ce_weight, skeleton_weight
        self.dice = SoftDiceLoss(batch_dice=batch_dice)
        self.skeleton = SkeletonRecallLoss(skeleton_classes, batch_dice=batch_dice) if skeleton_weight else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor, skeleton: torch.Tensor | None = None) -> torch.Tensor:
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(logits.float(), target[:, 0].long())
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, target)
        if self.skeleton is not None:
            loss = loss + self.skeleton_weight * self.skeleton(logits, target, skeleton)
        return loss


class DeepSupervisionLoss(nn.Module):
    """A loss applied to every output of a deep-supervised network with nnU-Net's weights.

    ``outputs``: logits (B, K, X, Y, Z), or a list of logits from full resolution down; ``target``
    (B, 1, X, Y, Z) at full resolution, downsampled per level (``target_downsampling``). Outputs
    of weight 0 are not scored, but stay in the graph (``0 * sum``) so that DDP sees a gradient
    for every parameter (nnU-Net v2 uses a weight of 1e-6 under DDP for the same reason).
    ``skeleton`` (the data workers' tubed skeleton of ``target``, the same shape) is downsampled per
    level the same way, as the authors of Skeleton Recall do; without it the loss skeletonises each
    level's own downsampled target.
    """

    def __init__(self, loss: nn.Module | None = None, target_downsampling: TargetDownsampling = "nearest") -> None:
        super().__init__()
        if target_downsampling not in ("nearest", "max"):
            raise ConfigError(f"target_downsampling must be 'nearest' or 'max', not {target_downsampling!r}")
        self.loss = loss if loss is not None else DiceCELoss()
        self.target_downsampling = target_downsampling

    def forward(self, outputs: Logits, target: torch.Tensor, skeleton: torch.Tensor | None = None) -> torch.Tensor:
        outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        total = outs[0].new_zeros((), dtype=torch.float32)
        for w, out in zip(deep_supervision_weights(len(outs)), outs):
            if w == 0.0:
                total = total + 0.0 * out.sum()
                continue
            size, mode = out.shape[2:], self.target_downsampling
            if skeleton is None:
                total = total + w * self.loss(out, downsample_target(target, size, mode))
            else:
                total = total + w * self.loss(out, downsample_target(target, size, mode), downsample_target(skeleton, size, mode))
        return total
