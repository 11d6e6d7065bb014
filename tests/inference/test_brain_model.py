"""Models with a brain class (mednet-pvs-synth-any): predict finds the brain in a first pass over
the whole field of view, crops and normalises the second with it, and writes the brain mask."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from mednet_pvs.inference import PVSModel
from mednet_pvs.inference.bundle import load_bundle
from mednet_pvs.inference.model import largest_component, refine_brain_mask, signal, signal_outside
from mednet_pvs.nets import create_network

LABELS = {"0": "background", "1": "brain", "2": "PVS"}


class BrainAndBright(torch.nn.Module):
    """Logits (background, brain, PVS) from the normalised intensity: brain where it is above the
    mean of what was normalised, PVS where it is far above; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.inputs: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls += 1
        v = x[:, :1]
        return torch.cat([torch.zeros_like(v), 4.0 * (v - 0.2), 6.0 * (v - 2.0)], 1)


def _head():
    """Air (0), a skull shell (dim), a brain block (bright) with PVS tubes (brightest)."""
    rng = np.random.default_rng(1)
    shape = (56, 52, 48)
    img = np.zeros(shape, np.float32)
    img[6:50, 6:46, 6:42] = 20.0  # scalp/skull
    brain = np.zeros(shape, bool)
    brain[12:44, 12:40, 12:36] = True
    img[brain] = 100.0
    pvs = np.zeros(shape, bool)
    pvs[16:40, 20:22, 20:22] = True
    pvs[28:30, 14:38, 26:28] = True
    img[pvs] = 400.0
    img += rng.normal(0, 1.0, shape).astype(np.float32) * (img > 0)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # stored LPS
    return nib.Nifti1Image(img, affine), brain, pvs


class BrainAboveWhole(torch.nn.Module):
    """Brain where the normalised intensity is above -0.3, PVS where it is above 2: over a whole
    field of view with a noisy background (first pass) that takes skull and brain, normalised
    inside skull and brain (second pass) only the brain."""

    def forward(self, x):
        v = x[:, :1]
        return torch.cat([torch.zeros_like(v), 4.0 * (v + 0.3), 6.0 * (v - 2.0)], 1)


def _model(net=None, labels=LABELS):
    return PVSModel(net or BrainAndBright(), None, {"target_spacing": None, "normalisation": "zscore"},
                    {"window": {"patch_size": [32, 32, 32], "mirror_axes": [], "batch_size": 4}}, labels=labels, device="cpu")


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_first_pass_finds_the_brain_then_pvs_inside_it(tmp_path):
    img, brain, pvs = _head()
    net = BrainAndBright()
    model = _model(net)
    assert model.predicts_brain
    pred = model.predict(img)
    assert pred.info["brainmask"] == "predicted"
    assert pred.brainmask is not None and pred.brainmask.shape == brain.shape
    assert _dice(pred.brainmask > 0, brain) > 0.95
    assert _dice(pred.mask > 0, pvs) > 0.9
    assert not np.any((pred.mask > 0) & ~(pred.brainmask > 0))
    assert "brain_network" in pred.info["seconds"]
    paths = pred.save(tmp_path, "case")
    saved = nib.load(paths["brainmask"])
    assert np.array_equal(np.asarray(saved.dataobj) > 0, pred.brainmask > 0)
    assert np.allclose(saved.affine, img.affine)


def test_a_given_brain_mask_skips_the_first_pass():
    img, brain, pvs = _head()
    net_a, net_b = BrainAndBright(), BrainAndBright()
    _model(net_a).predict(img)
    pred = _model(net_b).predict(img, brainmask=nib.Nifti1Image(brain.astype(np.uint8), img.affine))
    assert pred.info["brainmask"] == "given" and "brain_network" not in pred.info["seconds"]
    assert 0 < net_b.calls < net_a.calls  # one pass, inside the brain's box only
    assert _dice(pred.mask > 0, pvs) > 0.9


def test_labels_travel_with_the_bundle(tmp_path):
    net = create_network("mednext", in_channels=1, n_classes=3, n_channels=4, exp_r=2, kernel_size=3,
                         block_counts=[1] * 9, deep_supervision=False)
    model = PVSModel(net, {"name": "mednext", "kwargs": {"in_channels": 1, "n_classes": 3, "n_channels": 4, "exp_r": 2,
                                                         "kernel_size": 3, "block_counts": [1] * 9, "deep_supervision": False}},
                     {"target_spacing": None}, {"window": {"patch_size": [32, 32, 32]}}, labels=LABELS, device="cpu")
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["labels"] == LABELS
    back = load_bundle(tmp_path / "m", device="cpu")
    assert back.predicts_brain and back._pvs_class == 2


def test_both_passes_drops_what_only_the_first_pass_called_brain():
    img, brain, pvs = _head()
    data = np.asarray(img.dataobj).copy()
    data[data == 0] = np.abs(np.random.default_rng(2).normal(0, 1.0, int((data == 0).sum())))  # a scanner's noisy air
    img = nib.Nifti1Image(data, img.affine)
    first = _model(BrainAboveWhole())
    both = _model(BrainAboveWhole())
    both.inference = both.inference.updated({"brain_mask": "both_passes"})
    p1, p2 = first.predict(img), both.predict(img)
    skull = (data > 10) & ~brain
    assert np.all(p1.brainmask[skull] > 0) and _dice(p1.brainmask > 0, brain) < 0.6  # the first pass takes the skull
    assert _dice(p2.brainmask > 0, brain) > 0.99 and p2.info["brainmask"] == "predicted"
    assert _dice(p2.mask > 0, pvs) > 0.9 and not np.any((p2.mask > 0) & ~(p2.brainmask > 0))
    assert "brain_mask" not in first.provenance()["settings"]  # the default is not recorded: older batch records resume
    assert both.provenance()["settings"]["brain_mask"] == "both_passes"
    # with a given mask the second pass runs inside it and its own brain output is returned, as before
    given = both.predict(img, brainmask=nib.Nifti1Image(((data > 10) * 1).astype(np.uint8), img.affine))
    assert given.info["brainmask"] == "given" and np.array_equal(given.brainmask > 0, brain)


def _stripped():
    """A skull-stripped input: a bright brain with a dim outer layer (a cortex), exact zeros outside."""
    rng = np.random.default_rng(3)
    shape = (48, 44, 40)
    brain = np.zeros(shape, bool)
    brain[8:40, 8:36, 8:32] = True
    img = np.where(brain, 40.0, 0.0).astype(np.float32)
    img[11:37, 11:33, 11:29] = 100.0
    img += rng.normal(0, 1.0, shape).astype(np.float32) * brain
    return nib.Nifti1Image(img, np.eye(4)), brain


def _with(brain_mask, **extra):
    model = _model(BrainAboveWhole())
    model.inference = model.inference.updated({"brain_mask": brain_mask, **extra})
    return model


def test_refine_keeps_the_edge_of_a_skull_stripped_brain_that_the_second_pass_trims():
    _, brain = _stripped()
    data = np.where(brain, 50.0, 0.0).astype(np.float32)
    first = brain.copy()
    first[6:42, 6:38, 6:34] = True  # the first pass also took a 2-voxel rim of the (zero) air
    second = np.where(brain, 0.9, 0.0).astype(np.float32)
    second[brain & ~ndimage.binary_erosion(brain, iterations=3)] = 0.3  # the second pass doubts the brain's edge
    both, kind = refine_brain_mask(first, second, data, (1.0, 1.0, 1.0), "both_passes")
    assert kind is None and _dice(both, brain) < 0.8
    auto, kind = refine_brain_mask(first, second, data, (1.0, 1.0, 1.0), "auto")
    assert kind == "skull-stripped" and np.array_equal(auto, brain)  # the first mask within the image's signal


def test_refine_takes_a_head_with_zero_air_for_a_head_when_the_first_pass_took_it_all():
    img, brain, _ = _head()  # air stored as exact zeros; skull and scalp 6 voxels thick
    data = np.asarray(img.dataobj)
    first = data > 0  # the first pass took the whole head: no signal outside it
    assert signal_outside(signal(data), first, (1.0, 1.0, 1.0)) == 0.0
    second = np.where(brain, 0.95, 0.6).astype(np.float32)
    mask, kind = refine_brain_mask(first, second, data, (1.0, 1.0, 1.0), "auto", keep=0.8)
    assert kind == "whole head" and np.array_equal(mask, brain)  # the skull is measured from the refined mask
    assert np.array_equal(refine_brain_mask(first, second, data, (1.0, 1.0, 1.0), "auto")[0], first)  # keep 0.5: all kept


def test_auto_predicts_a_skull_stripped_input_within_its_signal():
    img, _ = _stripped()
    data = np.asarray(img.dataobj)
    first, auto = _with("first_pass").predict(img), _with("auto").predict(img)
    assert auto.info["brain_input"] == "skull-stripped" and "brain_input" not in first.info
    assert np.array_equal(auto.brainmask > 0, largest_component((first.brainmask > 0) & (data != 0)))
    assert not np.any((auto.mask > 0) & ~(auto.brainmask > 0))


def test_auto_on_a_whole_head_is_both_passes_and_brain_keep_applies():
    img, brain, _ = _head()
    data = np.asarray(img.dataobj).copy()
    data[data == 0] = np.abs(np.random.default_rng(2).normal(0, 1.0, int((data == 0).sum())))  # a scanner's noisy air
    img = nib.Nifti1Image(data, img.affine)
    auto, both = _with("auto").predict(img), _with("both_passes").predict(img)
    assert auto.info["brain_input"] == "whole head" and np.array_equal(auto.brainmask, both.brainmask)
    assert _dice(auto.brainmask > 0, brain) > 0.99
    strict = _with("auto", brain_keep=0.999)
    # the toy's second-pass brain probability is below 0.999 over most of the brain: a stricter keep shrinks the mask
    assert strict.predict(img).brainmask.sum() < 0.5 * auto.brainmask.sum()
    assert strict.provenance()["settings"]["brain_keep"] == 0.999 and "brain_keep" not in _with("auto").provenance()["settings"]


@pytest.mark.parametrize("labels,channel", [({"0": "background", "1": "PVS"}, None),
                                            ({"0": "background", "1": "PVS", "2": "WMH"}, 1)])
def test_pvs_channel_from_the_labels(labels, channel):
    assert _model(labels=labels)._pvs_class == channel
