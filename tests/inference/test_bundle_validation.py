"""A bundle's ``config.json`` is checked on load, value by value (issue 18, "nothing silently wrong").

Each bad value below is written into a real bundle (saved with the package's own API) and loaded:
the result is one InputError naming ``config.json`` and the key's dotted path, never a traceback
from deep inside, never a silent default.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from mednet_pvs.errors import InputError
from mednet_pvs.inference import FrangiModel, InferenceConfig, PVSModel, load_bundle, read_bundle_config
from mednet_pvs.nets import create_network

MISSING = object()  # delete the key instead of setting it


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """A tiny two-member network bundle and a Frangi bundle, written by ``save_pretrained``."""
    root = tmp_path_factory.mktemp("bundles")
    torch.manual_seed(0)
    nets = [create_network("mednext_s_k3", n_channels=2) for _ in range(2)]
    spec = {"name": "mednext_s_k3", "kwargs": {"n_channels": 2}}
    model = PVSModel(nets, spec, {"target_spacing": None},
                     InferenceConfig.from_dict({"patch_size": (32, 32, 32), "mirror_axes": ()}), name="tiny", device="cpu")
    return {"network": model.save_pretrained(root / "network"),
            "frangi": FrangiModel.for_contrast("T1w").save_pretrained(root / "frangi")}


def _write_variant(src: Path, dst: Path, key: str, value) -> Path:
    """A copy of bundle ``src`` whose config.json has ``value`` at the dotted ``key`` (MISSING: removed)."""
    shutil.copytree(src, dst)
    raw = json.loads((dst / "config.json").read_text())
    *parents, last = key.split(".")
    node = raw
    for p in parents:
        node = node[p]
    if value is MISSING:
        del node[last]
    else:
        node[last] = value
    (dst / "config.json").write_text(json.dumps(raw))  # NaN is written as JSON's NaN literal, as Python reads it
    return dst


# (bundle, dotted key, bad value, what the one line must say after "config.json: ")
CASES = [
    # the values issue 18 lists
    ("network", "inference.threshold", "abc", r'inference\.threshold must be a number, not "abc"'),
    ("network", "meta", [1], r"meta must be a mapping, not \[1\]"),
    ("network", "members", "member_0", r'members must be a list of strings, not "member_0"'),
    ("network", "inference.window.batch_size", 0, r"inference\.window\.batch_size must be >= 1 .*not 0"),
    ("network", "inference.window.patch_size", [100000] * 3, r"inference\.window\.patch_size must be 3 sizes from 1 to 1024 voxels"),
    ("network", "inference", None, r"missing key\(s\) inference for a 'network' model"),
    ("network", "inference.window", None, r"inference\.window must be a mapping \(the sliding window config\), not null"),
    ("network", "inference.window.sigma_scale", -1, r"inference\.window\.sigma_scale must be > 0 .*not -1"),
    ("network", "colour", "red", r"unknown option\(s\) colour for the bundle config \(known: "),
    ("network", "inference.colour", 1, r"inference: unknown option\(s\) colour for the inference config"),
    ("network", "inference.window.colour", 1, r"inference\.window: unknown option\(s\) colour for the sliding window config"),
    ("network", "preprocessing.colour", 1, r"preprocessing: unknown option\(s\) colour for the preprocessing config"),
    ("network", "network.colour", 1, r"network: network spec: unknown key\(s\) \['colour'\]"),
    ("network", "network.kwargs.colour", 1, r"network spec cannot be built: unknown option\(s\) colour"),
    # more of the same kinds
    ("network", "inference.threshold", 1.5, r"inference\.threshold must be in \(0, 1\)"),
    ("network", "inference.threshold", math.nan, r"inference\.threshold must be a number, not NaN"),
    ("network", "inference.threshold", True, r"inference\.threshold must be a number, not true"),
    ("network", "inference.min_cluster_mm3", -1, r"inference\.min_cluster_mm3 must be >= 0"),
    ("network", "inference.window.step", 0, r"inference\.window\.step must be in \(0, 1\]"),
    ("network", "inference.window.batch_size", 2.5, r"inference\.window\.batch_size must be an integer, not 2\.5"),
    ("network", "inference.window.patch_size", [32, 32], r"inference\.window\.patch_size must be a list of 3 integers or an integer"),
    ("network", "inference.window.patch_size", [32.5, 32, 32], r"inference\.window\.patch_size must be a list of 3 integers"),
    ("network", "inference.window.mirror_axes", [0, 0], r"inference\.window\.mirror_axes must be spatial axes among 0, 1, 2, each once"),
    ("network", "inference.window.channels_last", "yes", r"inference\.window\.channels_last must be true or false or null"),
    ("network", "inference.window.skip_empty", None, r"inference\.window\.skip_empty must be true or false, not null"),
    ("network", "preprocessing", None, r"missing key\(s\) preprocessing for a 'network' model"),
    ("network", "preprocessing", [1], r"preprocessing must be a mapping \(the preprocessing config\) or null, not \[1\]"),
    ("network", "preprocessing.normalisation", "minmax", r'preprocessing\.normalisation must be one of "zscore", "percentile", "none"'),
    ("network", "preprocessing.target_spacing", [1, 1], r"preprocessing\.target_spacing must be a list of 3 numbers"),
    ("network", "preprocessing.percentiles", [99, 1], r"preprocessing\.percentiles must satisfy 0 <= low < high <= 100"),
    ("network", "network.kwargs", None, r"network\.kwargs must be a mapping of the options of network 'mednext_s_k3', not null"),
    ("network", "network.name", 3, r"network\.name must be a registry name"),
    ("network", "members", ["member_0", "member_0"], r"members must be distinct, non-empty member names"),
    ("network", "members", [1, 2], r"members must be a list of strings, not \[1, 2\]"),
    ("network", "labels", {"1": 5}, r"labels must be a mapping of strings"),
    ("network", "name", "", r"name must not be empty"),
    ("network", "name", None, r"name must be a string, not null"),
    ("network", "name", MISSING, r"missing key\(s\) name"),
    ("network", "weights_sha256", "xyz", r"weights_sha256 must be 64 lowercase hex digits or null"),
    ("frangi", "frangi", None, r"missing key\(s\) frangi"),
    ("frangi", "frangi.sigmas_mm", [-1], r"frangi\.sigmas_mm must be positive scales in mm"),
    ("frangi", "frangi.sigmas_mm", "1.0", r'frangi\.sigmas_mm must be a list of numbers, not "1\.0"'),
    ("frangi", "frangi.polarity", "up", r'frangi\.polarity must be one of "bright", "dark", not "up"'),
    ("frangi", "frangi.gamma", -2, r"frangi\.gamma must be > 0"),
    ("frangi", "frangi.colour", 1, r"frangi: unknown option\(s\) colour for the Frangi config"),
]


@pytest.mark.parametrize("kind, key, value, said", CASES, ids=[(f"{k}={v!r}" if v is not MISSING else f"{k} missing")[:60] for _, k, v, _ in CASES])  # ids the same in every xdist worker
def test_bad_value_is_one_line_naming_the_file_and_the_key(bundles, tmp_path, kind, key, value, said):
    folder = _write_variant(bundles[kind], tmp_path / "b", key, value)
    with pytest.raises(InputError) as info:
        load_bundle(folder, device="cpu")
    message = str(info.value)
    assert info.value.path == str(folder / "config.json")
    assert message.startswith(f"{folder / 'config.json'}: ") and "\n" not in message
    assert re.search(said, message), f"{said!r} not in {message!r}"


@pytest.mark.parametrize("key, value, field", [
    ("inference.threshold", "abc", "inference.threshold"),
    ("inference.window.batch_size", 0, "inference.window.batch_size"),
    ("inference.window.sigma_scale", -1, "inference.window.sigma_scale"),
    ("meta", [1], "meta"),
    ("members", "member_0", "members"),
])
def test_read_bundle_config_names_config_json_and_the_field(bundles, tmp_path, key, value, field):
    folder = _write_variant(bundles["network"], tmp_path / "b", key, value)
    with pytest.raises(InputError, match=rf"config\.json: {field.replace('.', r'[.]')} must be"):
        read_bundle_config(folder)


def test_older_flat_inference_block_is_checked_too(bundles, tmp_path):
    """Bundles of the first format kept the window's fields beside the threshold; a bad one there is
    named by where it belongs now."""
    folder = _write_variant(bundles["network"], tmp_path / "b", "inference",
                            {"patch_size": [32, 32, 32], "batch_size": 0, "threshold": 0.45})
    with pytest.raises(InputError, match=r"config\.json: inference\.window\.batch_size must be >= 1"):
        load_bundle(folder, device="cpu")


def test_unreadable_config_json_is_named(bundles, tmp_path):
    folder = shutil.copytree(bundles["network"], tmp_path / "b")
    (folder / "config.json").unlink()
    (folder / "config.json").mkdir()  # exists, but cannot be read as a file
    with pytest.raises(InputError, match=r"config\.json: cannot be read"):
        read_bundle_config(folder)


def test_good_bundles_still_load(bundles):
    """The checks refuse nothing that the package writes."""
    model = load_bundle(bundles["network"], device="cpu")
    assert model.inference.window.patch_size == (32, 32, 32) and len(model.networks) == 2
    assert load_bundle(bundles["frangi"]).config.polarity == "dark"
