"""InferenceConfig: one block holding the sliding window, read from today's nested form and the
older flat one."""
from __future__ import annotations

import pytest

from mednet_pvs.errors import ConfigError
from mednet_pvs.inference import InferenceConfig, SlidingWindowConfig


def test_window_is_a_block_of_its_own():
    config = InferenceConfig.from_dict({"window": {"patch_size": [64, 64, 64], "mirror_axes": [0]}, "threshold": 0.4})
    assert isinstance(config.window, SlidingWindowConfig)
    assert config.window.patch_size == (64, 64, 64) and config.window.mirror_axes == (0,) and config.threshold == 0.4
    assert config.to_dict()["window"]["patch_size"] == [64, 64, 64] and "patch_size" not in config.to_dict()
    assert InferenceConfig.from_dict(config.to_dict()) == config


def test_flat_form_of_earlier_bundles_reads_the_same():
    flat = {"patch_size": [64, 64, 64], "step": 0.5, "sigma_scale": 0.125, "mirror_axes": [0], "batch_size": 2,
            "threshold": 0.4, "min_cluster_mm3": 0.0, "stitch_on_cpu": False}
    nested = InferenceConfig.from_dict({"window": {"patch_size": [64, 64, 64], "mirror_axes": [0]}, "threshold": 0.4})
    assert InferenceConfig.from_dict(flat) == nested


def test_defaults_and_updates():
    default = InferenceConfig()
    assert default.window.patch_size == (128, 128, 128) and default.window.mirror_axes == (0, 1, 2) and default.window.step == 0.5
    assert InferenceConfig.from_dict({"patch_size": 64}).window.patch_size == (64, 64, 64)  # one int: a cube
    changed = default.updated({"step": 0.25, "window": {"batch_size": 4}, "min_cluster_mm3": 2.0})
    assert (changed.window.step, changed.window.batch_size, changed.min_cluster_mm3) == (0.25, 4, 2.0)
    assert changed.window.patch_size == default.window.patch_size
    assert default.output_resampling == "linear"  # nnU-Net's way back unless a bundle asks otherwise
    assert default.updated({"output_resampling": "area"}).output_resampling == "area"
    assert default.brain_mask == "first_pass"  # bundles made before the option predict as they did
    assert default.updated({"brain_mask": "both_passes"}).brain_mask == "both_passes"
    assert default.brain_keep == 0.5 and default.updated({"brain_mask": "auto", "brain_keep": 0.8}).brain_keep == 0.8


@pytest.mark.parametrize("bad, message", [
    ({"threshold": 1.5}, "threshold must be in"),
    ({"min_cluster_mm3": -1}, "min_cluster_mm3 must be >= 0"),
    ({"output_resampling": "cubic"}, "output_resampling must be one of linear, area"),
    ({"brain_mask": "given"}, "brain_mask must be one of first_pass, both_passes, auto"),
    ({"brain_keep": 1.0}, "brain_keep must be in"),
    ({"step": 0}, "step must be in"),
    ({"mirror_axes": [3]}, "mirror_axes must be spatial axes"),
    ({"window": {"colour": 1}}, "unknown option.*colour.*sliding window"),
    ({"patch_size": 64, "window": {"patch_size": 32}}, "given both inside 'window' and beside it"),
])
def test_bad_settings_are_named(bad, message):
    with pytest.raises(ConfigError, match=message):
        InferenceConfig.from_dict(bad)
