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
    assert config["inference"]["window"]["patch_size"] == [96, 96, 96] and config["inference"]["window"]["mirror_axes"] == []
    # the entry records command, seed, hardware (both stages), steps and time, and how to go bigger
    training = entry.meta()["training"]
    assert training["command"].startswith("mednet-pvs fit --config synth_any") and "--trainer.accelerator gpu" in training["then"]
    assert "H200" in training["hardware"] and "CPU" in training["hardware"] and "seed" in entry.path.read_text()
    assert {"steps", "minutes", "bigger on a GPU"} <= set(training)
    card = (folder / "README.md").read_text()
    for fig in entry.validation:
        assert f"{fig.value:.3f}" in card, fig
