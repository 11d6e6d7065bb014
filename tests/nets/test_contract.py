"""The network contract: every registered network says what it is (config, name, input divisor,
encoder, optimiser preset, description), so that training and the zoo ask it instead of its family."""
from __future__ import annotations

import pytest
import torch

from mednet_pvs.errors import ConfigError
from mednet_pvs.nets import registry
from mednet_pvs.registries import Registry
from mednet_pvs.nets import (
    Network,
    create_meta_network,
    create_network,
    describe_network,
    encoder_parameters,
    list_networks,
    network_config,
    register_network,
    required_divisor,
)

#: Small versions of the big defaults (built for real, on the CPU).
TINY = {
    "mednext": dict(n_channels=4, exp_r=1, block_counts=(1,) * 9),
    "nnunet": dict(patch_size=(32, 32, 32), spacing=(1, 1, 1), base_features=4, max_features=16),
    "generic_unet_v1": dict(base_num_features=4, max_num_features=16, num_pool=2,
                            pool_op_kernel_sizes=((2, 2, 2),) * 2, conv_kernel_sizes=((3, 3, 3),) * 3),
}
#: The family words each registered name's description starts with, and how its authors trained it.
FAMILY = {"mednext": ("MedNeXt v1, ", "mednext"), "nnunet": ("nnU-Net v2 ", "nnunet"),
          "generic_unet_v1": ("nnU-Net v1 Generic_UNet, ", "nnunet")}


def _family(name: str) -> str:
    return next(f for f in FAMILY if name.startswith(f))


def tiny(name: str) -> torch.nn.Module:
    return create_network(name, **TINY[_family(name)])


@pytest.mark.parametrize("name", list_networks())
def test_every_registered_network_satisfies_the_contract(name):
    net = tiny(name)
    assert isinstance(net, Network)
    assert net.network_name == name and network_config(net).name == name
    assert net.config is not None and network_config(net).kwargs == net.config.to_dict()
    assert required_divisor(net) == tuple(net.required_divisor) and len(net.required_divisor) == 3
    start, preset = FAMILY[_family(name)]
    assert net.optimizer_preset == preset and net.optimizer_preset in ("mednext", "nnunet")
    text = net.description
    assert isinstance(text, str) and text.strip() and "\n" not in text and text.startswith(start), text
    x = torch.zeros(1, 1, *(2 * d for d in net.required_divisor))  # the divisor it declares is one it takes
    with torch.no_grad():
        assert net.eval()(x).shape[2:] == x.shape[2:]


@pytest.mark.parametrize("name", list_networks())
def test_encoder_is_a_strict_subset_of_the_parameters(name):
    net = tiny(name)
    enc = encoder_parameters(net)
    names = {n for n, _ in enc}
    every = {n for n, _ in net.named_parameters()}
    assert names and names < every
    assert all(n.startswith(net.encoder_prefixes) for n in names)
    assert all(p is dict(net.named_parameters())[n] for n, p in enc)
    # the decoder's output layer is never part of the encoder
    assert not any("out_0" in n or "seg_layers" in n for n in names)


def test_encoder_parameters_follow_what_the_network_declares():
    net = tiny("mednext")
    net.encoder_prefixes = ("stem.",)
    assert {n for n, _ in encoder_parameters(net)} == {"stem.weight", "stem.bias"}
    net.encoder_prefixes = ("nothing.",)
    with pytest.raises(ConfigError, match=r"cannot tell the encoder of MedNeXt \(no parameter named nothing\."):
        encoder_parameters(net)
    with pytest.raises(ConfigError, match="cannot tell the encoder of Conv3d .it declares no encoder_prefixes"):
        encoder_parameters(torch.nn.Conv3d(1, 2, 3))


@pytest.mark.parametrize("name", list_networks())
def test_describe_network_needs_no_weights(name):
    with torch.device("meta"):
        net = create_network(name)  # full size: its description names its real widths
    spec = network_config(net)
    assert describe_network(spec) == describe_network(spec.to_dict()) == net.description
    assert describe_network(name) == net.description  # a name means its defaults
    meta = create_meta_network(spec)
    assert all(p.is_meta for p in meta.parameters()) and meta.network_name == name


def test_descriptions_say_what_differs():
    texts = {name: describe_network(name) for name in list_networks()}
    assert texts["mednext"] == texts["mednext_s_k3"]  # the defaults are MedNeXt-S k3: the one pair alike
    assert len(set(texts.values())) == len(texts) - 1
    assert texts["nnunet_resenc_m"] != texts["nnunet_resenc_l"]  # same blocks, planned for other patches
    s3 = describe_network({"name": "mednext_s_k3"})
    assert "32 base channels" in s3 and "kernel 3" in s3 and "blocks (2,2,2,2,2,2,2,2,2)" in s3
    assert "kernel 5" in texts["mednext_s_k5"]
    assert "16 base channels" in describe_network({"name": "mednext", "kwargs": {"n_channels": 16}})
    v1 = texts["generic_unet_v1"]
    assert "32 base features (max 320)" in v1 and "5 poolings 2x2x2" in v1 and "kernels 3x3x3" in v1
    aniso = describe_network({"name": "generic_unet_v1", "kwargs": {
        "num_pool": 2, "pool_op_kernel_sizes": [[1, 2, 2], [2, 2, 2]], "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]]}})
    assert "2 poolings (1x2x2,2x2x2)" in aniso and "kernels (1x3x3,3x3x3,3x3x3)" in aniso
    plain, resenc = texts["nnunet_plain"], texts["nnunet_resenc_l"]
    assert plain.startswith("nnU-Net v2 PlainConvUNet, 6 stages, features (32,64,128,256,320,320)")
    assert "ResidualEncoderUNet" in resenc and "(1,3,4,6,6,6) residual blocks per encoder stage" in resenc
    assert "patch 192x192x192" in resenc


def test_networks_outside_the_contract_are_refused(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", Registry("network", registry._REGISTRY))  # registered for this test only
    register_network("_test_plain_conv")(lambda **kw: torch.nn.Conv3d(1, 2, 3))
    with pytest.raises(ConfigError, match="'_test_plain_conv' builds a Conv3d, which does not satisfy"):
        create_network("_test_plain_conv")
