"""nnU-Net baselines: v2 topology planning, presets, output convention, nnU-Net's own classes."""
from __future__ import annotations

import sys

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.residual import BasicBlockD

import mednet_pvs.nets
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.nets import (
    MissingDependency,
    NnUNetConfig,
    create_network,
    get_pool_and_conv_props,
    plan_patch_size,
    required_divisor,
)
from mednet_pvs.nets.nnunet import NNUNET_PRESETS


def tiny(**overrides) -> NnUNetConfig:
    return NnUNetConfig(**{"patch_size": (32, 32, 32), "spacing": (1.0, 1.0, 1.0), "base_features": 4,
                           "max_features": 16, **overrides})


def test_isotropic_topology():
    plan = get_pool_and_conv_props((0.8, 0.8, 0.8), (128, 128, 128))
    assert plan.strides == ((1, 1, 1),) + ((2, 2, 2),) * 5
    assert plan.kernel_sizes == ((3, 3, 3),) * 6
    assert plan.num_pool_per_axis == (5, 5, 5) and plan.divisor == (32, 32, 32)


def test_anisotropic_topology_traced_by_hand():
    # 3 mm slices: in-plane axes pool first, the slice axis joins (and gets 3-kernels) once within 2x.
    plan = get_pool_and_conv_props((3.0, 0.8, 0.8), (40, 192, 160))
    assert plan.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    assert plan.kernel_sizes == ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert plan.num_pool_per_axis == (3, 5, 5) and plan.patch_size == (40, 192, 160)


def test_single_axis_pools_only_while_three_times_min_size_and_patch_is_padded():
    plan = get_pool_and_conv_props((1.0, 1.0, 1.0), (8, 8, 64))
    assert plan.strides == ((1, 1, 1), (2, 2, 2), (1, 1, 2), (1, 1, 2))
    assert plan.divisor == (2, 2, 8)
    assert get_pool_and_conv_props((1.0, 1.0, 1.0), (30, 30, 30)).patch_size == (32, 32, 32)


@pytest.fixture
def on_meta():
    """Build full-size networks without memory or initialisation cost (config checks only)."""
    with torch.device("meta"):
        yield


def test_presets_default_topologies(on_meta):
    plain = create_network("nnunet_plain").config
    assert plain.features_per_stage == (32, 64, 128, 256, 320, 320)
    assert plain.n_blocks_per_stage == (2,) * 6 and plain.n_conv_per_stage_decoder == (2,) * 5
    m = create_network("nnunet_resenc_m").config
    assert m.architecture == "ResidualEncoderUNet" and m.patch_size == (128, 128, 128)
    assert m.n_blocks_per_stage == (1, 3, 4, 6, 6, 6) and m.n_conv_per_stage_decoder == (1,) * 5
    assert create_network("nnunet_resenc_l").config.patch_size == (192, 192, 192)


@pytest.mark.parametrize("name", sorted(NNUNET_PRESETS))
def test_preset_patch_is_what_the_planner_picks(name):
    planner = name.removeprefix("nnunet_")
    cfg, batch = plan_patch_size((0.8, 0.8, 0.8), (256, 256, 256), planner)
    assert cfg.patch_size == NNUNET_PRESETS[name][1] and batch == 2


def test_planner_clips_to_small_images():
    cfg, _ = plan_patch_size((0.8, 0.8, 0.8), (160, 200, 160), "plain")
    assert cfg.patch_size == (128, 160, 112) and all(p <= s for p, s in zip(cfg.patch_size, (160, 200, 160)))


def test_nnunet_classes_and_ops_are_nnunets_own():
    plain = create_network("nnunet_plain", **tiny().to_dict())
    resenc = create_network("nnunet_resenc_m", **tiny(architecture="ResidualEncoderUNet").to_dict())
    assert isinstance(plain, PlainConvUNet) and isinstance(resenc, ResidualEncoderUNet)
    assert isinstance(resenc.encoder.stages[1].blocks[0], BasicBlockD)
    norm = plain.encoder.stages[0][0].convs[0].norm
    assert isinstance(norm, torch.nn.InstanceNorm3d) and norm.eps == 1e-5 and norm.affine
    assert plain.encoder.stages[0][0].convs[0].nonlin.negative_slope == 0.01


@pytest.mark.parametrize("arch", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_same_function_as_a_vanilla_nnunet_network(arch):
    cfg = tiny(architecture=arch)
    ours = create_network("nnunet_plain" if arch == "PlainConvUNet" else "nnunet_resenc_m", **cfg.to_dict())
    cls = PlainConvUNet if arch == "PlainConvUNet" else ResidualEncoderUNet
    ops = dict(conv_op=torch.nn.Conv3d, conv_bias=True, norm_op=torch.nn.InstanceNorm3d,
               norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
               nonlin_kwargs={"inplace": True})
    vanilla = cls(deep_supervision=False, **cfg.arch_kwargs(), **ops)
    assert ours.state_dict().keys() == vanilla.state_dict().keys()
    vanilla.load_state_dict(ours.state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), vanilla.eval()(x))


def test_output_convention():
    net = create_network("nnunet_plain", **tiny().to_dict())
    x = torch.randn(2, 1, 32, 32, 32)
    out = net.train()(x)
    assert isinstance(out, list) and [o.shape for o in out] == [(2, 2, 32 // 2**i, 32 // 2**i, 32 // 2**i)
                                                                 for i in range(net.config.n_stages - 1)]
    with torch.no_grad():
        single = net.eval()(x)
        assert isinstance(single, torch.Tensor) and single.shape == (2, 2, 32, 32, 32)
        net.config.ds_outputs_in_eval = True
        assert torch.equal(net(x)[0], single)
    no_ds = create_network("nnunet_plain", **tiny(deep_supervision=False).to_dict()).train()
    assert isinstance(no_ds(x), torch.Tensor)


def test_input_errors_use_per_axis_divisor():
    net = create_network("nnunet_plain", **tiny(spacing=(3.0, 1.0, 1.0), patch_size=(16, 32, 32)).to_dict())
    assert net.config.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
    assert required_divisor(net) == (4, 8, 8)
    with torch.no_grad():
        net.eval()(torch.zeros(1, 1, 20, 40, 24))  # any multiple of the divisor
    with pytest.raises(InputError, match=r"\(18, 40, 24\).*\(4, 8, 8\)"):
        net(torch.zeros(1, 1, 18, 40, 24))


def test_config_errors():
    with pytest.raises(ConfigError, match="architecture"):
        NnUNetConfig(architecture="UNETR")
    with pytest.raises(ConfigError, match="kernel_sizes"):
        tiny(kernel_sizes=((3, 3, 3),))
    with pytest.raises(ConfigError, match="is a PlainConvUNet"):
        create_network("nnunet_plain", architecture="ResidualEncoderUNet")
    with pytest.raises(ConfigError, match="planner"):
        plan_patch_size((1, 1, 1), (64, 64, 64), "resenc_xxl")


def test_missing_dependency_says_how_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "mednet_pvs.nets.dna_unets", raising=False)
    monkeypatch.delattr(mednet_pvs.nets, "dna_unets", raising=False)
    for name in [m for m in sys.modules if m.split(".")[0] == "dynamic_network_architectures"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails as if not installed
    with pytest.raises(MissingDependency, match="pip install --no-deps dynamic-network-architectures==0.4.4 einops"):
        create_network("nnunet_plain")
