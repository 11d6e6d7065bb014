"""The bundled any-contrast model (issue 15): shipped in the package, loads offline, finds the brain
itself, records how it was trained; a slow re-check on two unseen held-out phantoms."""
from __future__ import annotations

import json

import pytest
import torch

from mednet_pvs.zoo import get_entry, load_pretrained
from mednet_pvs.zoo.catalog import BUNDLED_DIR

NAME = "mednet-pvs-synth-any"


def test_any_contrast_bundle_is_small_float16_offline_and_finds_the_brain(monkeypatch):
    from safetensors import safe_open

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any download attempt fails
    entry = get_entry(NAME)
    assert entry.weights.kind == "bundled" and entry.contrast == "any"
    folder = BUNDLED_DIR / str(entry.weights.folder)
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 20 * 2**20  # the limit (it is about 2 MB)
    with safe_open(str(weights), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    model = load_pretrained(NAME, device="cpu")
    assert model.predicts_brain and model.meta["contrast"] == "any"
    assert model.labels == {0: "background", 1: "brain", 2: "PVS"} or list(model.labels.values()) == ["background", "brain", "PVS"]
    config = json.loads((folder / "config.json").read_text())
    window = config["inference"]["window"]
    assert window["patch_size"] == [64, 64, 64] and window["mirror_axes"] == [] and window["pad_mode"] == "replicate"
    # session 17: both passes, brain Dice 0.921 -> 0.943 on the scored groups; session 18: auto, 0.951
    assert config["inference"]["brain_mask"] == "auto" and config["inference"]["brain_keep"] == 0.8
    # session 22: a 0.8 mm scan stays at 0.8 mm (fit cases 0.321 -> 0.383; threshold refitted to 0.6 on 26 fit cases)
    assert config["preprocessing"]["target_spacing"] == [1.0, 1.0, 1.0] and config["preprocessing"]["finest_spacing"] == 0.8
    # session 23: stages 5, 6 and 11 averaged weight by weight into one network (a model soup: held-out
    # voxel Dice 0.385 -> 0.397 in half the ensemble's time), threshold 0.5, clusters under 2 mm^3 removed
    assert config["inference"]["threshold"] == 0.5 and config["inference"]["min_cluster_mm3"] == 2.0
    assert len(model.networks) == 1 and model.meta["weights_averaged"]["networks"] == 3
    assert [r["global_step"] for r in model.meta["member_runs"]] == [4417, 4299, 1400]  # the runs averaged
    # the entry records command, seed, hardware (both stages), steps and time, and how to go bigger
    training = entry.meta()["training"]
    assert training["command"].startswith("mednet-pvs fit --config synth_any") and "--trainer.accelerator gpu" in training["then"]
    assert "H200" in training["hardware"] and "CPU" in training["hardware"] and "seed" in entry.path.read_text()
    assert {"steps", "minutes", "bigger on a GPU"} <= set(training)
    card = (folder / "README.md").read_text()
    assert "finer axes kept down to 0.8" in card
    for fig in entry.validation:
        assert f"| {fig.value:g} |" in card, fig  # the card writes figures with :g (0.410 -> 0.41)


#: Two unseen held-out phantoms (index 2 of their groups: the benchmark scores 0 and 1, the
#: threshold was fitted on the groups' fit cases), procedural anatomy: (contrast, resolution, head).
CI_CASES = (("FLAIR", "1mm", True), ("T2w", "thick", False))
#: Regression floors, about 0.1 under what the shipped model measured on these two cases (PVS voxel
#: Dice, brain-mask Dice). NOT the issue's target: issue 15 asks for PVS voxel Dice >= 0.7 on both;
#: the interim model (stage 5, 64^3 tiles) measured FLAIR whole head 0.486 (brain 0.961) and T2w
#: 1x1x5 mm slices 0.397 (brain 0.969; 47 labelled PVS voxels on the 5 mm grid). Stage 4 measured
#: 0.476 (0.913) and 0.376 (0.974), stage 3 0.510 (0.905) and 0.324 (0.971), stage 2 0.596 (0.946)
#: and 0.070 (0.966). Stages 4 and 5 kept the floors or raised them. With the brain mask from both
#: passes (session 17, same weights): 0.486 (brain 0.952) and 0.397 (brain 0.983). The two-member
#: ensemble with brain_mask auto (session 18): 0.514 (brain 0.945) and 0.379 (brain 0.971). With
#: finest_spacing 0.8 and threshold 0.6 (session 22; neither case is finer than 1 mm, so only the
#: threshold changed here): 0.540 (brain 0.945) and 0.450 (brain 0.971). The soup of the two members
#: (one network, threshold 0.85, clusters under 2 mm^3 removed; session 23): 0.532 (brain 0.946) and
#: 0.463 (brain 0.971); the soup of stages 5, 6 and 11 (threshold 0.5), shipped: 0.517 (brain 0.938)
#: and 0.392 (brain 0.974).
FLOORS = {"FLAIR-1mm-head": (0.4, 0.85), "T2w-thick-stripped": (0.3, 0.85)}


@pytest.mark.slow
def test_any_contrast_model_on_two_unseen_phantoms(figures):
    from mednet_pvs.analysis import case_metrics
    from mednet_pvs.analysis.metrics import voxel_metrics
    from mednet_pvs.synth.heldout import heldout_case, heldout_groups, make_heldout_case

    model = load_pretrained(NAME, device="cpu")
    lines = []
    for contrast, res, head in CI_CASES:
        group = next(g for g in heldout_groups((contrast,), (res,)) if g.head == head)
        ph = make_heldout_case(heldout_case(group, 2), anatomy="procedural")
        pred = model.predict((ph.image, ph.affine))  # the image alone: the model finds the brain
        assert pred.mask.shape == ph.image.shape
        pvs = case_metrics(pred.mask, ph.label, ph.affine)["dice"]
        brain = voxel_metrics(pred.brainmask > 0, ph.brainmask > 0)["dice"]
        key = f"{contrast}-{res}-{'head' if head else 'stripped'}"
        lines.append(f"{key}: PVS voxel Dice {pvs:.3f}, brain-mask Dice {brain:.3f} (issue 15 target: PVS >= 0.7)")
        floor_pvs, floor_brain = FLOORS[key]
        assert pvs >= floor_pvs and brain >= floor_brain, lines[-1]
    figures(f"{NAME} on two unseen held-out phantoms:", "\n".join(lines))
