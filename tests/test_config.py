"""``Config.from_dict`` checks every value against its field's type hint and range (issue 18): a bad
value is a ConfigError naming its dotted path, ``null`` only where the hint is Optional, and
nothing valid today (the shipped training configs included) is refused."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Optional

import pytest
import yaml

from mednet_pvs.config import Config, check_value, describe_type
from mednet_pvs.errors import ConfigError


@dataclass
class Inner(Config):
    """A nested config with a range check."""

    _what = "inner"

    size: int = 1

    def validate(self) -> None:
        if self.size < 1:
            raise ConfigError(f"must be >= 1, not {self.size}", field="size")


@dataclass
class Outer(Config):
    """One field of every kind of hint the configs use."""

    _what = "outer"
    _one_for_all = ("shape",)

    count: int = 1
    scale: float = 1.0
    flag: bool = False
    label: str = "a"
    mode: Literal["x", "y"] = "x"
    shape: tuple[int, int, int] = (1, 1, 1)
    axes: tuple[int, ...] = ()
    spacing: Optional[tuple[float, float, float]] = None
    nested_sizes: tuple[tuple[int, ...], ...] = ()
    names: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    anything: Any = None
    inner: Inner = field(default_factory=Inner)
    maybe_inner: Inner | None = None

    def __post_init__(self) -> None:
        if isinstance(self.shape, int):
            self.shape = (self.shape,) * 3
        super().__post_init__()


GOOD = {
    "count": 3, "scale": 2, "flag": True, "label": "b", "mode": "y", "shape": [4, 5, 6], "axes": [0, 2],
    "spacing": [0.5, 1, 1.5], "nested_sizes": [[1, 2], [3]], "names": {"0": "bg"}, "extra": {"k": [1, "x"]},
    "anything": [1, [2]], "inner": {"size": 2}, "maybe_inner": None,
}


def test_good_values_are_read_and_stored_as_tuples():
    cfg = Outer.from_dict(GOOD)
    assert cfg.shape == (4, 5, 6) and cfg.axes == (0, 2) and cfg.spacing == (0.5, 1, 1.5)
    assert cfg.nested_sizes == ((1, 2), (3,)) and cfg.anything == (1, (2,)) and cfg.inner == Inner(2)
    assert cfg.scale == 2 and cfg.extra == {"k": [1, "x"]}  # an int is a float; free-form values are kept
    assert Outer.from_dict(cfg.to_dict()) == cfg
    assert Outer.from_dict({"shape": 8}).shape == (8, 8, 8)  # _one_for_all: one value for every entry
    assert Outer.from_dict({"maybe_inner": {"size": 3}}).maybe_inner == Inner(3)


@pytest.mark.parametrize("key, value, message", [
    ("count", "3", r'^count must be an integer, not "3"$'),
    ("count", 2.0, r"^count must be an integer, not 2\.0$"),
    ("count", True, r"^count must be an integer, not true$"),
    ("count", None, r"^count must be an integer, not null$"),
    ("scale", "abc", r'^scale must be a number, not "abc"$'),
    ("scale", math.inf, r"^scale must be a number, not Infinity$"),
    ("scale", False, r"^scale must be a number, not false$"),
    ("flag", 1, r"^flag must be true or false, not 1$"),
    ("label", 1, r"^label must be a string, not 1$"),
    ("mode", "z", r'^mode must be one of "x", "y", not "z"$'),
    ("shape", [1, 2], r"^shape must be a list of 3 integers or an integer, not \[1, 2\]$"),
    ("shape", "abc", r'^shape must be a list of 3 integers or an integer, not "abc"$'),
    ("axes", "01", r'^axes must be a list of integers, not "01"$'),
    ("axes", [0, "1"], r'^axes must be a list of integers, not \[0, "1"\]$'),
    ("spacing", [1, 1], r"^spacing must be a list of 3 numbers or null, not \[1, 1\]$"),
    ("nested_sizes", [1, 2], r"^nested_sizes must be a list whose items are each a list of integers, not \[1, 2\]$"),
    ("names", {"0": 1}, r'^names must be a mapping of strings, not \{"0": 1\}$'),
    ("names", ["bg"], r'^names must be a mapping of strings, not \["bg"\]$'),
    ("extra", [1], r"^extra must be a mapping, not \[1\]$"),
    ("inner", None, r"^inner must be a mapping \(the inner config\), not null$"),
    ("inner", 3, r"^inner must be a mapping \(the inner config\), not 3$"),
    ("maybe_inner", 3, r"^maybe_inner must be a mapping \(the inner config\) or null, not 3$"),
    ("inner", {"size": "2"}, r'^inner\.size must be an integer, not "2"$'),
    ("inner", {"size": 0}, r"^inner\.size must be >= 1, not 0$"),
    ("maybe_inner", {"size": 0}, r"^maybe_inner\.size must be >= 1, not 0$"),
    ("inner", {"colour": 1}, r"^inner: unknown option\(s\) colour for the inner config \(known: size\)$"),
    ("colour", 1, r"^unknown option\(s\) colour for the outer config \(known: "),
])
def test_bad_value_names_its_path(key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        Outer.from_dict({key: value})
    assert info.value.field in (key, f"{key}.size", None) or key == "colour"


def test_field_paths_compose():
    with pytest.raises(ConfigError) as info:
        Outer.from_dict({"inner": {"size": 0}})
    assert info.value.field == "inner.size" and info.value.problem == "must be >= 1, not 0"
    outer = info.value.within("model")
    assert outer.field == "model.inner.size" and str(outer) == "model.inner.size must be >= 1, not 0"
    plain = ConfigError("something broke").within("network")
    assert str(plain) == "network: something broke" and str(plain.within("x")) == "x.network: something broke"


def test_validate_runs_on_construction_and_replace():
    with pytest.raises(ConfigError, match="^size must be >= 1, not 0$"):
        Inner(0)
    with pytest.raises(ConfigError, match=r"^inner\.size must be >= 1"):
        Outer().replace(inner={"size": -1})


def test_describe_and_check_value():
    assert describe_type(tuple[int, int, int]) == "a list of 3 integers"
    assert describe_type(Optional[float]) == "a number or null"
    assert describe_type(Literal["a", "b"]) == 'one of "a", "b"'
    assert check_value([1, 2], tuple[int, ...]) == (1, 2)
    with pytest.raises(ConfigError, match=r"^patch must be a list of 3 integers, not 4$"):
        check_value(4, tuple[int, int, int], field="patch")


def test_numpy_scalars_become_python_numbers():
    np = pytest.importorskip("numpy")
    cfg = Outer.from_dict({"count": np.int64(3), "scale": np.float32(0.5), "shape": np.arange(3, 6).tolist()})
    assert type(cfg.count) is int and type(cfg.scale) is float and cfg.shape == (3, 4, 5)


# ------------------------------------------------------------------- the package's own configs


def test_range_checks_of_the_inference_configs():
    from mednet_pvs.inference import InferenceConfig, SlidingWindowConfig

    for bad, message in [
        ({"batch_size": 0}, r"^batch_size must be >= 1"),
        ({"sigma_scale": 0}, r"^sigma_scale must be > 0"),
        ({"patch_size": 1025}, r"^patch_size must be 3 sizes from 1 to 1024 voxels"),
        ({"patch_size": [0, 32, 32]}, r"^patch_size must be 3 sizes from 1 to 1024 voxels"),
        ({"step": 1.5}, r"^step must be in \(0, 1\]"),
        ({"mirror_axes": [1, 1]}, r"^mirror_axes must be spatial axes among 0, 1, 2, each once"),
    ]:
        with pytest.raises(ConfigError, match=message):
            SlidingWindowConfig.from_dict(bad)
    assert SlidingWindowConfig.from_dict({"patch_size": 1024}).patch_size == (1024,) * 3
    with pytest.raises(ConfigError, match=r"^batch_size must be >= 1"):
        SlidingWindowConfig(batch_size=0)  # direct construction too
    with pytest.raises(ConfigError, match=r"^window\.batch_size must be >= 1"):
        InferenceConfig.from_dict({"window": {"batch_size": 0}})
    with pytest.raises(ConfigError, match=r"^window\.batch_size must be >= 1"):
        InferenceConfig.from_dict({"batch_size": 0})  # the older flat form: named where it belongs
    with pytest.raises(ConfigError, match=r"^window must be a mapping \(the sliding window config\), not null"):
        InferenceConfig.from_dict({"window": None})  # not silently the default window
    with pytest.raises(ConfigError, match=r'^threshold must be a number, not "abc"'):
        InferenceConfig.from_dict({"threshold": "abc"})


def test_range_checks_of_preprocessing_and_frangi():
    from mednet_pvs.classical.frangi import FrangiConfig
    from mednet_pvs.data.preprocessing import PreprocessConfig

    assert PreprocessConfig.from_dict({"target_spacing": 1, "orientation": "lps"}).target_spacing == (1.0, 1.0, 1.0)
    for bad, message in [
        ({"target_spacing": [1, 0, 1]}, r"^target_spacing must be 3 positive sizes in mm or null"),
        ({"orientation": "RRS"}, r"^orientation must be 3 axis codes"),
        ({"orientation": 3}, r"^orientation must be a string or null, not 3"),
        ({"crop_margin_mm": -1}, r"^crop_margin_mm must be >= 0"),
        ({"foreground": "all"}, r'^foreground must be one of "nonzero", "mean", not "all"'),
    ]:
        with pytest.raises(ConfigError, match=message):
            PreprocessConfig.from_dict(bad)
    for bad, message in [
        ({"truncate": 0}, r"^truncate must be > 0"),
        ({"min_size_mm3": -1}, r"^min_size_mm3 must be >= 0"),
        ({"threshold": 2}, r"^threshold must be in \[0, 1\]"),
        ({"alpha": 0}, r"^alpha must be > 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            FrangiConfig.from_dict(bad)


def test_augmentation_config_is_checked_like_the_others():
    from mednet_pvs.data.augmentation import AugmentationConfig

    assert AugmentationConfig.from_dict({"preset": "mri", "noise_p": 0}).noise_p == 0
    with pytest.raises(ConfigError, match=r"^the augmentation config must be a mapping, not \[1\]"):
        AugmentationConfig.from_dict([1])
    with pytest.raises(ConfigError, match=r'^noise_p must be a number, not "often"'):
        AugmentationConfig.from_dict({"preset": "mri", "noise_p": "often"})
    with pytest.raises(ConfigError, match=r"^ghosts must be a list of 2 integers, not \[4\]"):
        AugmentationConfig.from_dict({"ghosts": [4]})


def test_network_configs_keep_their_shorthands():
    from mednet_pvs.nets import create_meta_network

    net = create_meta_network({"name": "mednext", "kwargs": {"n_channels": 4, "exp_r": 2, "block_counts": [1] * 9}})
    assert net.config.exp_r == (2,) * 9
    with pytest.raises(ConfigError, match=r'^kernel_size must be an integer, not "3"'):
        create_meta_network({"name": "mednext", "kwargs": {"kernel_size": "3"}})


@pytest.mark.parametrize("name", sorted(p.name for p in (resources.files("mednet_pvs") / "configs").iterdir()
                                        if p.name.endswith(".yaml")))
def test_shipped_training_configs_are_valid(name):
    """The blocks of every shipped YAML that these configs read are accepted as they are."""
    from mednet_pvs.data.augmentation import as_augmentation_config
    from mednet_pvs.data.preprocessing import PreprocessConfig
    from mednet_pvs.inference import InferenceConfig
    from mednet_pvs.nets import create_meta_network

    doc = yaml.safe_load((resources.files("mednet_pvs") / "configs" / name).read_text())
    model, data = doc["model"], doc["data"]
    InferenceConfig.from_dict(model.get("inference") or {})
    PreprocessConfig.from_dict(data.get("preprocessing") or {})
    as_augmentation_config(data.get("augmentation"))
    create_meta_network({"name": model["network"], "kwargs": model.get("network_kwargs") or {}})
