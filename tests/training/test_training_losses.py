"""Losses: nnU-Net's deep-supervision weights, target downsampling, soft Dice + CE, Skeleton Recall."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mednet_pvs.errors import ConfigError
from mednet_pvs.training.losses import (DeepSupervisionLoss, DiceCELoss, SkeletonRecallLoss, SoftDiceLoss, deep_supervision_weights,
                                        downsample_target, tubed_skeleton)


def test_deep_supervision_weights_are_nnunets():
    # nnU-Net v2: weights = 1/2**i; weights[-1] = 0; weights / weights.sum()
    w = deep_supervision_weights(5)
    assert w == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0])
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(2) == pytest.approx([1.0, 0.0])
    with pytest.raises(ConfigError):
        deep_supervision_weights(0)


def test_downsample_target_nearest_and_max():
    t = torch.zeros(1, 1, 8, 8, 8)
    t[0, 0, 3, 3, :] = 1  # a one-voxel-thin line at odd indices: nearest (even samples) loses it
    near = downsample_target(t, (4, 4, 4), "nearest")
    assert torch.equal(near, F.interpolate(t, size=(4, 4, 4), mode="nearest"))
    assert near.sum() == 0
    mx = downsample_target(t, (4, 4, 4), "max")
    assert mx.shape == (1, 1, 4, 4, 4) and mx[0, 0, 1, 1].tolist() == [1, 1, 1, 1] and mx.sum() == 4
    assert downsample_target(t, (8, 8, 8)) is t
    with pytest.raises(ConfigError):
        downsample_target(t, (3, 3, 3), "max")
    with pytest.raises(ConfigError):
        downsample_target(t, (4, 4, 4), "area")  # type: ignore[arg-type]


def _logits_for(target: torch.Tensor, scale: float) -> torch.Tensor:
    fg = (target * 2 - 1) * scale  # +scale on PVS, -scale elsewhere
    return torch.cat([-fg, fg], 1)


def test_soft_dice_matches_the_formula_and_limits():
    torch.manual_seed(0)
    target = (torch.rand(2, 1, 6, 6, 6) > 0.8).float()
    assert SoftDiceLoss()(_logits_for(target, 30.0), target) == pytest.approx(0.0, abs=1e-4)
    assert SoftDiceLoss()(_logits_for(1 - target, 30.0), target) == pytest.approx(1.0, abs=1e-4)
    logits = torch.randn(2, 2, 6, 6, 6)
    p = torch.softmax(logits, 1)[:, 1]
    t = target[:, 0]
    batch = 1 - (2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5)  # nnU-Net batch Dice, foreground only
    assert SoftDiceLoss()(logits, target) == pytest.approx(float(batch), rel=1e-5)
    per_case = 1 - ((2 * (p * t).sum((1, 2, 3)) + 1e-5) / (p.sum((1, 2, 3)) + t.sum((1, 2, 3)) + 1e-5)).mean()
    assert SoftDiceLoss(batch_dice=False)(logits, target) == pytest.approx(float(per_case), rel=1e-5)


def test_dice_ce_is_the_sum_of_both_terms():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 2, 4, 4, 4), (torch.rand(2, 1, 4, 4, 4) > 0.7).float()
    ce = F.cross_entropy(logits, target[:, 0].long())
    dice = SoftDiceLoss()(logits, target)
    assert DiceCELoss()(logits, target) == pytest.approx(float(ce + dice), rel=1e-6)
    assert DiceCELoss(dice_weight=0.0)(logits, target) == pytest.approx(float(ce), rel=1e-6)
    assert DiceCELoss(ce_weight=0.0, dice_weight=2.0)(logits, target) == pytest.approx(float(2 * dice), rel=1e-6)


def test_deep_supervision_loss_weights_levels_and_keeps_the_last_in_the_graph():
    torch.manual_seed(2)
    target = (torch.rand(2, 1, 16, 16, 16) > 0.9).float()
    outs = [torch.randn(2, 2, s, s, s, requires_grad=True) for s in (16, 8, 4, 2)]
    loss = DeepSupervisionLoss(DiceCELoss(), "nearest")(outs, target)
    w = deep_supervision_weights(4)
    expected = sum(w[i] * DiceCELoss()(o, downsample_target(target, o.shape[2:])) for i, o in enumerate(outs[:3]))
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    loss.backward()
    assert all(o.grad is not None for o in outs)  # DDP needs a gradient for every output head
    assert outs[-1].grad.abs().sum() == 0 and outs[0].grad.abs().sum() > 0
    single = torch.randn(2, 2, 16, 16, 16)
    assert float(DeepSupervisionLoss()(single, target)) == pytest.approx(float(DiceCELoss()(single, target)), rel=1e-6)
    with pytest.raises(ConfigError):
        DeepSupervisionLoss(target_downsampling="area")  # type: ignore[arg-type]


def _tube_target() -> torch.Tensor:
    """(2, 1, 16, 16, 16): sample 0 holds a 3x3-voxel tube along z (class 2) in a class-1 block;
    sample 1 holds no class 2."""
    t = torch.zeros(2, 1, 16, 16, 16)
    t[:, :, 2:14, 2:14, 2:14] = 1
    t[0, 0, 6:9, 6:9, 3:13] = 2
    return t


def test_tubed_skeleton_is_the_thinned_class_dilated_inside_it():
    t = _tube_target()
    skel = tubed_skeleton(t, [2])
    assert skel.shape == t.shape and skel.dtype == t.dtype
    tube = skel[0, 0] == 2
    assert set(skel.unique().tolist()) == {0.0, 2.0}  # class 1 not skeletonised, nothing outside class 2
    assert bool((t[0, 0][tube] == 2).all()) and not bool(skel[1].any())
    assert 0 < int(tube.sum()) <= int((t[0, 0] == 2).sum())  # the skeleton's line, dilated twice, kept inside the tube
    assert bool(tube[7, 7, 4:12].all())  # the centre line is in it
    from skimage.morphology import skeletonize

    line = torch.from_numpy(skeletonize((t[0, 0] == 2).numpy())).bool()
    assert bool(tube[line].all()) and int(line.sum()) < int(tube.sum())  # dilated, not the bare skeleton


def test_skeleton_recall_is_the_soft_recall_of_the_tube():
    torch.manual_seed(2)
    t = _tube_target()
    skel = (tubed_skeleton(t, [2]) == 2).float()[:, 0]
    logits = torch.randn(2, 3, 16, 16, 16)
    p = torch.softmax(logits, 1)[:, 2]
    expected = 1 - ((p * skel).sum() + 1e-5) / (skel.sum() + 1e-5)  # the authors' batch recall, as 1 - recall
    assert SkeletonRecallLoss([2])(logits, t) == pytest.approx(float(expected), rel=1e-5)
    perfect = torch.where(t == 2, 30.0, -30.0).repeat(1, 3, 1, 1, 1) * torch.tensor([-1.0, -1.0, 1.0]).view(1, 3, 1, 1, 1)
    assert SkeletonRecallLoss([2])(perfect, t) == pytest.approx(0.0, abs=1e-4)
    assert SkeletonRecallLoss([2])(-perfect, t) == pytest.approx(1.0, abs=1e-4)
    everywhere = torch.zeros(2, 3, 16, 16, 16)
    everywhere[:, 2] = 30.0
    assert SkeletonRecallLoss([2])(everywhere, t) == pytest.approx(0.0, abs=1e-4)  # recall only: no penalty for extra
    with pytest.raises(ConfigError, match="foreground classes"):
        SkeletonRecallLoss([0])


def test_dice_ce_adds_the_weighted_skeleton_recall():
    torch.manual_seed(3)
    t, logits = _tube_target(), torch.randn(2, 3, 16, 16, 16, requires_grad=True)
    base = float(DiceCELoss()(logits, t))
    srec = float(SkeletonRecallLoss([2])(logits, t))
    assert float(DiceCELoss(skeleton_weight=0.5, skeleton_classes=[2])(logits, t)) == pytest.approx(base + 0.5 * srec, rel=1e-6)
    DiceCELoss(skeleton_weight=1.0, skeleton_classes=[2])(logits, t).backward()
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    with pytest.raises(ConfigError, match=">= 0"):
        DiceCELoss(skeleton_weight=-1.0)


def test_a_skeleton_from_the_data_workers_replaces_the_losss_own():
    """Given ``skeleton``, the loss scores it (not its own); deep supervision downsamples it per level."""
    torch.manual_seed(4)
    t, logits = _tube_target(), torch.randn(2, 3, 16, 16, 16)
    own = tubed_skeleton(t, [2])
    srec = SkeletonRecallLoss([2])
    assert float(srec(logits, t, own)) == pytest.approx(float(srec(logits, t)), rel=1e-6)
    half = own.clone()
    half[..., 8:] = 0  # a different skeleton: only the tube's first half
    p, mask = torch.softmax(logits, 1)[:, 2], (half == 2).float()[:, 0]
    expected = 1 - ((p * mask).sum() + 1e-5) / (mask.sum() + 1e-5)
    assert float(srec(logits, t, half)) == pytest.approx(float(expected), rel=1e-5)
    loss = DiceCELoss(skeleton_weight=1.0, skeleton_classes=[2])
    assert float(loss(logits, t, half)) == pytest.approx(float(DiceCELoss()(logits, t)) + float(expected), rel=1e-5)
    outs = [torch.randn(2, 3, s, s, s) for s in (16, 8, 4)]
    ds = DeepSupervisionLoss(loss, "max")(outs, t, half)
    w = deep_supervision_weights(3)
    by_level = sum(w[i] * loss(o, downsample_target(t, o.shape[2:], "max"), downsample_target(half, o.shape[2:], "max"))
                   for i, o in enumerate(outs[:2]))
    assert float(ds) == pytest.approx(float(by_level), rel=1e-6)
    assert float(ds) != pytest.approx(float(DeepSupervisionLoss(loss, "max")(outs, t)), rel=1e-3)  # not its own skeleton
