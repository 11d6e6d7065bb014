"""The bundle format: one typed config, one reader/writer pair, model kinds, weights checked by sha256,
and bundles written by earlier versions (``tests/data/bundles_0.1.0.dev0``) still loading unchanged."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference import (
    BundleConfig,
    FrangiModel,
    InferenceConfig,
    PVSModel,
    Segmenter,
    load_bundle,
    read_bundle_config,
    register_kind,
    write_bundle,
)
from mednet_pvs.inference.bundle import bundle_kinds, sha256_of
from mednet_pvs.nets import NetworkSpec, create_network

LEGACY = Path(__file__).resolve().parents[1] / "data" / "bundles_0.1.0.dev0"


def tiny_model() -> PVSModel:
    torch.manual_seed(0)
    spec = {"name": "mednext_s_k3", "kwargs": {"n_channels": 2}}
    return PVSModel(create_network("mednext_s_k3", n_channels=2), spec, {"target_spacing": None},
                    InferenceConfig.from_dict({"patch_size": (32, 32, 32), "mirror_axes": ()}), name="tiny", device="cpu")


def test_bundles_of_the_previous_format_load_and_predict_exactly_as_before():
    """Written by mednet-pvs 0.1.0.dev0 (flat inference block, no kind for networks, no sha256);
    the reference outputs were computed by that version (see the folder's README)."""
    ref = np.load(LEGACY / "reference_outputs.npz")
    raw = json.loads((LEGACY / "network" / "config.json").read_text())
    assert "patch_size" in raw["inference"] and "kind" not in raw and "weights_sha256" not in raw  # really the old format
    net = load_bundle(LEGACY / "network", device="cpu")
    assert net.inference.window.patch_size == (32, 32, 32) and net.inference.window.mirror_axes == (0,)
    assert net.inference.threshold == 0.45 and net.inference.min_cluster_mm3 == 1.0 and len(net.networks) == 2
    frangi = load_bundle(LEGACY / "frangi")
    assert isinstance(frangi, FrangiModel) and frangi.config.polarity == "dark"
    for model, key, threshold in ((net, "network", 0.45), (frangi, "frangi", frangi.config.threshold)):
        pred = model.predict((ref["image"], ref["affine"]))
        # float rounding differs with the thread count (the reference: 2 threads, channels-last;
        # under xdist 1 thread, channels-first): 6e-6 at most, which may flip a voxel sitting on the threshold
        np.testing.assert_allclose(pred.probabilities, ref[f"{key}_prob"], rtol=0, atol=2e-5)
        on_threshold = np.abs(ref[f"{key}_prob"] - threshold) < 2e-5
        assert on_threshold.mean() < 1e-3  # a handful of voxels out of 39,168
        np.testing.assert_array_equal(pred.mask[~on_threshold], ref[f"{key}_mask"][~on_threshold])


def test_config_round_trip_is_typed(tmp_path):
    model = tiny_model()
    folder = model.save_pretrained(tmp_path / "b")
    config = read_bundle_config(folder)
    assert isinstance(config.network, NetworkSpec) and isinstance(config.inference, InferenceConfig)
    assert config == model.bundle_config().replace(weights_sha256=config.weights_sha256)
    assert config.weights_sha256 == sha256_of(folder / "model.safetensors")
    raw = json.loads((folder / "config.json").read_text())
    assert list(raw)[:3] == ["format", "name", "kind"] and raw["inference"]["window"]["patch_size"] == [32, 32, 32]
    assert BundleConfig.from_dict(raw) == config


def test_corrupt_weights_are_refused(tmp_path):
    """64 random bytes written into the weights: the file still parses as safetensors, the sha256 catches it."""
    folder = tiny_model().save_pretrained(tmp_path / "b")
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-64:] = os.urandom(64)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"model\.safetensors: sha256 [0-9a-f]{64} does not match the [0-9a-f]{64} recorded in config\.json"):
        load_bundle(folder, device="cpu")


def test_model_kinds_are_registered_and_unknown_kinds_are_named(tmp_path):
    assert {"network", "frangi"} <= set(bundle_kinds())
    with pytest.raises(ConfigError, match="already registered"):
        register_kind("network")(lambda folder, config, device: None)
    write_bundle(tmp_path / "x", BundleConfig(name="x", kind="future-kind"))
    with pytest.raises(InputError, match=r"config\.json: unknown model kind 'future-kind' \(known: .*frangi.*network"):
        load_bundle(tmp_path / "x")
    write_bundle(tmp_path / "y", BundleConfig(name="y", kind="network"))
    with pytest.raises(InputError, match=r"config\.json: missing key\(s\) network, preprocessing, inference, members"):
        load_bundle(tmp_path / "y")
    bad = json.loads((tmp_path / "y" / "config.json").read_text())
    (tmp_path / "y" / "config.json").write_text(json.dumps({**bad, "colour": "red"}))
    with pytest.raises(InputError, match=r"config\.json: unknown option\(s\) colour for the bundle config"):
        read_bundle_config(tmp_path / "y")


def test_a_new_kind_is_one_registration(tmp_path):
    """What a kind needs: a loader registered under its name; the reader and writer stay as they are."""
    from mednet_pvs.inference import bundle

    class Constant:
        def __init__(self, name, meta):
            self.name, self.meta = name, meta

    register_kind("test-constant")(lambda folder, config, device: Constant(config.name, config.meta))
    try:
        write_bundle(tmp_path / "c", BundleConfig(name="c", kind="test-constant", meta={"value": 3}))
        loaded = load_bundle(tmp_path / "c")
        assert isinstance(loaded, Constant) and loaded.meta == {"value": 3}
    finally:
        del bundle._KINDS["test-constant"]


def test_every_model_kind_is_a_segmenter(tmp_path):
    model, frangi = tiny_model(), FrangiModel.for_contrast("T2w")
    for m in (model, frangi):
        assert isinstance(m, Segmenter)
    frangi.save_pretrained(tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["README.md", "config.json"]
    assert read_bundle_config(tmp_path / "f").kind == "frangi" and isinstance(load_bundle(tmp_path / "f"), Segmenter)
    card = (tmp_path / "f" / "README.md").read_text()
    assert "Frangi settings" in card and "@article{low2025mednetpvs" in card  # the one card writer serves every kind


def test_legacy_folder_is_not_modified_by_loading(tmp_path):
    copy = shutil.copytree(LEGACY, tmp_path / "legacy")
    before = {p.name: p.read_bytes() for p in (copy / "network").iterdir()}
    load_bundle(copy / "network", device="cpu")
    assert {p.name: p.read_bytes() for p in (copy / "network").iterdir()} == before
