"""nnU-Net v1 Generic_UNet weights run on dynamic_network_architectures' PlainConvUNet."""
from __future__ import annotations

import json

import pytest
import torch

from mednet_pvs.errors import ConfigError
from mednet_pvs.nets import (
    GenericUNetV1Config,
    create_network,
    infer_generic_unet_v1_config,
    load_generic_unet_v1,
    map_v1_state_dict,
)
from mednet_pvs.nets.generic_unet_v1 import v1_bias_free_keys, v1_key_to_v2
from mednet_pvs.nets.nnunet import build_nnunet

TOPOLOGY_KEYS = ("input_channels", "base_num_features", "num_classes", "num_pool", "num_conv_per_stage",
                 "feat_map_mul_on_downscale", "pool_op_kernel_sizes", "conv_kernel_sizes", "max_num_features")


def test_reproduces_v1_outputs(generic_unet_tiny):
    args, sd, x, outputs = generic_unet_tiny
    config = GenericUNetV1Config.from_dict({k: args[k] for k in TOPOLOGY_KEYS} | {"ds_outputs_in_eval": True})
    net = load_generic_unet_v1(sd, config).eval()
    with torch.no_grad():
        got = net(x)
    assert len(got) == len(outputs) == 3
    for g, ref in zip(got, outputs):
        assert g.shape == ref.shape
        assert torch.allclose(g, ref, atol=1e-5, rtol=0), (g - ref).abs().max().item()
    for key in v1_bias_free_keys(config.num_pool):  # v1 has none of these biases
        assert not net.state_dict()[key].any()


def test_inferred_topology_equals_fixture_constructor(generic_unet_tiny):
    args, sd, *_ = generic_unet_tiny
    inferred = infer_generic_unet_v1_config(sd).to_dict()
    assert {k: inferred[k] for k in TOPOLOGY_KEYS} == {k: args[k] for k in TOPOLOGY_KEYS}
    assert inferred["deep_supervision"] is args["deep_supervision"] is True
    # What the fixture's v1 set-up fixes, the port builds: InstanceNorm(eps 1e-5, affine), LeakyReLU(0.01),
    # no dropout, strided-conv pooling, transposed-conv upsampling.
    assert (args["norm_op"], args["nonlin"], args["dropout_op"]) == (
        "InstanceNorm3d(eps=1e-5, affine=True)", "LeakyReLU(0.01)", "Dropout3d(p=0)")
    assert args["convolutional_pooling"] and args["convolutional_upsampling"] and not args["upscale_logits"]
    net = load_generic_unet_v1(sd)
    mods = list(net.modules())
    norms = [m for m in mods if isinstance(m, torch.nn.InstanceNorm3d)]
    assert norms and all(m.eps == 1e-5 and m.affine for m in norms)
    assert all(m.negative_slope == 0.01 for m in mods if isinstance(m, torch.nn.LeakyReLU))
    assert not any(isinstance(m, (torch.nn.Dropout3d, torch.nn.MaxPool3d)) for m in mods)
    assert sum(isinstance(m, torch.nn.ConvTranspose3d) for m in mods) == args["num_pool"]


def test_v2_decoder_kernels_would_not_fit(generic_unet_tiny):
    """The fixture's first kernel (1, 3, 3) makes v1's and v2's decoder wiring differ."""
    args, sd, *_ = generic_unet_tiny
    config = infer_generic_unet_v1_config(sd)
    v2 = build_nnunet(_v2_config(config))
    mapped = map_v1_state_dict(sd, config)
    bad = [k for k, v in v2.state_dict().items() if k in mapped and mapped[k].shape != v.shape]
    assert bad == ["decoder.stages.2.convs.0.conv.weight", "decoder.stages.2.convs.1.conv.weight"]


def _v2_config(c: GenericUNetV1Config):
    from mednet_pvs.nets import NnUNetConfig

    kw = c.arch_kwargs()
    return NnUNetConfig(input_channels=c.input_channels, num_classes=c.num_classes, patch_size=(16, 32, 32),
                        n_stages=kw["n_stages"], features_per_stage=kw["features_per_stage"],
                        kernel_sizes=kw["kernel_sizes"], strides=kw["strides"],
                        n_blocks_per_stage=kw["n_conv_per_stage"],
                        n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"])


def test_full_size_v1_keys_shapes_and_params(nnunet_v1_ref_dir):
    """Checked: (1) the topology inferred from the v1 keys/shapes is the fixture's constructor; (2) every
    v1 key maps to a distinct PlainConvUNet parameter of the same shape, and the only parameters left
    unmapped are the 5 transposed-conv and 5 head biases v1 lacks; (3) v1's count (31,194,784) is the
    PlainConvUNet's count minus those biases (800 + 10 = 810)."""
    ref = json.loads((nnunet_v1_ref_dir / "generic_unet_v1_fullres_5pool_shapes.json").read_text())
    shapes = ref["state_dict_shapes"]
    sd = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    config = infer_generic_unet_v1_config(sd)
    assert {k: config.to_dict()[k] for k in ref["constructor"]} == ref["constructor"]
    assert config == GenericUNetV1Config()  # the registry default is this full-size topology
    with torch.device("meta"):
        net = create_network("generic_unet_v1")
    params = dict(net.named_parameters())  # canonical names, aliases removed
    mapped = {v1_key_to_v2(k, config.num_pool, config.num_conv_per_stage): tuple(v) for k, v in shapes.items()}
    assert len(mapped) == len(shapes)  # one-to-one
    assert mapped == {k: tuple(p.shape) for k, p in params.items() if k in mapped}
    missing = sorted(set(params) - set(mapped))
    assert missing == sorted(v1_bias_free_keys(5))
    bias_count = sum(params[k].numel() for k in missing)
    assert bias_count == 320 + 256 + 128 + 64 + 32 + 5 * 2
    assert sum(p.numel() for p in params.values()) - bias_count == ref["params"] == 31_194_784
    assert sum(torch.Size(v).numel() for v in shapes.values()) == ref["params"]


def test_v1_errors(generic_unet_tiny):
    _, sd, *_ = generic_unet_tiny
    with pytest.raises(ConfigError, match="not a Generic_UNet"):
        infer_generic_unet_v1_config({"stem.weight": torch.zeros(1, 1, 1, 1, 1)})
    with pytest.raises(ConfigError, match="not a Generic_UNet .v1. key"):
        v1_key_to_v2("decoder.stages.0.convs.0.conv.weight", 3, 2)
    with pytest.raises(ConfigError, match="not a Generic_UNet .v1. state dict: transposed convs"):
        load_generic_unet_v1({k: v for k, v in sd.items() if k != "tu.1.weight"})
    with pytest.raises(ConfigError, match="num_pool"):
        GenericUNetV1Config(num_pool=4)
