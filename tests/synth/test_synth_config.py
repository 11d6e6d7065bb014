"""PhantomConfig: defaults, (de)serialisation, validation."""
from __future__ import annotations

import json

import pytest

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth import PhantomConfig, make_phantom


def test_defaults_are_valid_and_round_trip_through_json():
    cfg = PhantomConfig()
    assert cfg.anatomy == "mni" and cfg.contrast == "T2w" and cfg.spacing == 1.0 and cfg.shape == (64, 64, 64)
    again = PhantomConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_round_trip_keeps_tuples_and_burden_mapping():
    cfg = PhantomConfig(anatomy="procedural", shape=(48, 56, 50), burden={"basal_ganglia": 4}, width_mm=(0.6, 2.0),
                        slice_thickness_mm=3.0)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["shape"] == [48, 56, 50]
    again = PhantomConfig.from_dict(d)
    assert again == cfg and again.shape == (48, 56, 50) and again.width_mm == (0.6, 2.0)
    assert again.burden_of("basal_ganglia") == 4 and again.burden_of("midbrain") == 0


@pytest.mark.parametrize("field, value", [
    ("anatomy", "mouse"), ("contrast", "DWI"), ("burden", 5), ("burden", -1), ("burden", True),
    ("burden", {"cortex": 2}), ("spacing", 0.0), ("spacing", float("nan")), ("shape", (16, 16, 16)),
    ("shape", (64, 64)), ("width_mm", (2.0, 1.0)), ("length_mm", (0.0, 5.0)), ("wmh", 4), ("lacunes", -1),
    ("noise", -0.1), ("slice_thickness_mm", 0.5), ("slice_axis", 3), ("motion_mm", -1.0),
])
def test_invalid_values_are_config_errors_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        PhantomConfig(**{field: value})


def test_from_dict_rejects_unknown_keys():
    d = PhantomConfig().to_dict()
    d["burdn"] = 3
    with pytest.raises(ConfigError, match="burdn"):
        PhantomConfig.from_dict(d)


def test_make_phantom_overrides_are_checked():
    with pytest.raises(ConfigError, match="colour"):
        make_phantom(anatomy="procedural", colour="red")
    with pytest.raises(ConfigError, match="seed"):
        make_phantom(anatomy="procedural", seed=-1)
    with pytest.raises(ConfigError, match="config"):
        make_phantom({"anatomy": "procedural"})


def test_overrides_do_not_change_the_given_config():
    cfg = PhantomConfig(anatomy="procedural", burden=1)
    ph = make_phantom(cfg, seed=0, burden=0, confounders=False)
    assert cfg.burden == 1
    assert ph.meta["config"]["burden"] == 0
