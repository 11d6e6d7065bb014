"""Registry: names, wildcards, errors, and the config round trip that a model bundle relies on."""
from __future__ import annotations

import json

import pytest
import torch

from mednet_pvs.errors import ConfigError
from mednet_pvs.nets import (
    MedNeXt,
    NetworkSpec,
    create_network,
    create_network_from_config,
    list_networks,
    network_config,
    register_network,
)


def test_names():
    mednext = [f"mednext_{s}_k{k}" for s in "sbml" for k in (3, 5)]
    assert set(mednext + ["mednext", "nnunet_plain", "nnunet_resenc_m", "nnunet_resenc_l",
                          "generic_unet_v1"]) <= set(list_networks())
    assert list_networks("mednext_*_k5") == ["mednext_b_k5", "mednext_l_k5", "mednext_m_k5", "mednext_s_k5"]
    assert list_networks("nnunet_resenc_?") == ["nnunet_resenc_l", "nnunet_resenc_m"]
    assert list_networks("nothing*") == []


def test_unknown_name_lists_close_matches_and_known_names():
    with pytest.raises(ConfigError, match=r"unknown network 'mednext_l_k7'.*Did you mean mednext_l_k5.*"
                                          r"Known networks: .*nnunet_plain"):
        create_network("mednext_l_k7")


def test_unknown_override_and_duplicate_registration():
    with pytest.raises(ConfigError, match="unknown option.*n_class"):
        create_network("mednext_s_k3", n_class=3)
    with pytest.raises(ConfigError, match="already registered"):
        register_network("mednext_s_k3")(lambda **kw: None)


@pytest.mark.parametrize("name", list_networks())
def test_spec_round_trip_through_json(name):
    with torch.device("meta"):  # full-size architectures, no memory or initialisation
        net = create_network(name)
        spec = network_config(net)
        assert spec.name == name
        text = json.dumps(spec.to_dict())  # what a bundle's config.json holds
        again = create_network_from_config(json.loads(text))
    assert network_config(again) == spec
    assert type(again) is type(net)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_overrides_reach_the_network():
    with torch.device("meta"):
        net = create_network("mednext_m_k5", in_channels=2, n_classes=3, deep_supervision=False)
    assert isinstance(net, MedNeXt)
    assert net.stem.in_channels == 2 and net.out_0.conv_out.out_channels == 3 and not hasattr(net, "out_1")
    spec = network_config(net).to_dict()
    assert spec["kwargs"]["kernel_size"] == 5 and spec["kwargs"]["block_counts"] == [3, 4, 4, 4, 4, 4, 4, 4, 3]


def test_bad_specs():
    with pytest.raises(ConfigError, match="network spec"):
        create_network_from_config({"kwargs": {}})
    with pytest.raises(ConfigError, match="unknown key"):
        create_network_from_config({"name": "mednext", "kwargs": {}, "weights": "x"})
    with pytest.raises(ConfigError, match="no config"):
        network_config(torch.nn.Linear(1, 1))
    assert NetworkSpec.from_dict({"name": "mednext"}).kwargs == {}
