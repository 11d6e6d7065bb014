"""MedNeXt v1 port: same network as the original (outputs, keys, shapes, parameter counts), UpKern, errors."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.nets import (
    MedNeXt,
    MedNeXtConfig,
    create_network,
    infer_mednext_config,
    load_mednext_state_dict,
    padded_shape,
    required_divisor,
    upkern,
    widen,
)
from mednet_pvs.nets.mednext import preset_config


def tiny(**overrides) -> MedNeXtConfig:
    """A small MedNeXt with the L expansion ratios (fast on CPU)."""
    base = dict(n_channels=4, exp_r=(3, 4, 8, 8, 8, 8, 8, 4, 3), block_counts=(1,) * 9, kernel_size=3)
    return MedNeXtConfig(**{**base, **overrides})


def test_reproduces_original_outputs(mednext_tiny):
    args, sd, x, outputs = mednext_tiny
    net = MedNeXt(MedNeXtConfig.from_dict({**args, "ds_outputs_in_eval": True})).eval()
    net.load_state_dict(sd, strict=True)
    with torch.no_grad():
        got = net(x)
    assert isinstance(got, list) and len(got) == 5
    for i, (g, ref) in enumerate(zip(got, outputs)):
        assert g.shape == ref.shape == (1, 2, *(32 // 2**i,) * 3)
        assert torch.allclose(g, ref, atol=1e-5, rtol=0), (i, (g - ref).abs().max().item())


def test_inferred_config_equals_fixture_constructor(mednext_tiny):
    args, sd, *_ = mednext_tiny
    inferred = infer_mednext_config(sd).to_dict()
    assert {k: inferred[k] for k in args} == args


def test_loads_nnunet_v1_container_without_dummy_and_with_module_prefix(mednext_tiny):
    args, sd, x, outputs = mednext_tiny
    wrapped = {"epoch": 1000, "state_dict": {f"module.{k}": v for k, v in sd.items() if k != "dummy_tensor"},
               "optimizer_state_dict": {}, "plot_stuff": ([1.0], [0.5], [0.5], [0.5])}
    net = load_mednext_state_dict(wrapped).eval()
    net.config.ds_outputs_in_eval = True
    with torch.no_grad():
        assert torch.allclose(net(x)[0], outputs[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("k, params", [(3, 61_781_195), (5, 62_994_827)])
def test_large_presets_match_original_keys_shapes_and_params(mednext_ref_dir, k, params):
    ref = json.loads((mednext_ref_dir / f"L_k{k}_ds_state_dict_shapes.json").read_text())
    net = create_network(f"mednext_l_k{k}", in_channels=1, n_classes=2, deep_supervision=True)
    assert ref["params"] == params
    assert sum(p.numel() for p in net.parameters()) == params
    # Same keys, same shapes, same order as the original's state dict (dummy_tensor included).
    assert [(key, list(v.shape)) for key, v in net.state_dict().items()] == [tuple(e) for e in ref["state_dict"]]
    assert net.config.gradient_checkpointing  # the original L trains with outside-block checkpointing


def test_inferred_config_of_full_size_shapes(mednext_ref_dir):
    ref = json.loads((mednext_ref_dir / "L_k5_ds_state_dict_shapes.json").read_text())
    sd = {key: torch.empty(shape, device="meta") for key, shape in ref["state_dict"]}
    assert infer_mednext_config(sd, gradient_checkpointing=True) == preset_config("L", 5)


def test_presets_are_the_originals():
    assert preset_config("S").exp_r == (2,) * 9 and preset_config("S").block_counts == (2,) * 9
    assert preset_config("B").exp_r == (2, 3, 4, 4, 4, 4, 4, 3, 2)
    assert preset_config("M").block_counts == (3, 4, 4, 4, 4, 4, 4, 4, 3)
    assert preset_config("L", 5).kernel_size == 5


def test_infer_rejects_foreign_or_inconsistent_state_dicts(mednext_tiny):
    _, sd, *_ = mednext_tiny
    with pytest.raises(ConfigError, match="not a MedNeXt"):
        infer_mednext_config({"conv.weight": torch.zeros(1)})
    broken = {k: v for k, v in sd.items() if k != "down_1.conv3.bias"}
    with pytest.raises(ConfigError, match="down_1.conv3.bias"):
        infer_mednext_config(broken)


def test_output_convention_train_eval_and_original_flag():
    torch.manual_seed(0)
    net = MedNeXt(tiny())
    x = torch.randn(1, 1, 32, 32, 32)
    out = net.train()(x)
    assert [o.shape[2:] for o in out] == [torch.Size((32 // 2**i,) * 3) for i in range(5)]
    with torch.no_grad():
        single = net.eval()(x)
        assert isinstance(single, torch.Tensor) and single.shape == (1, 2, 32, 32, 32)
        net.config.ds_outputs_in_eval = True
        assert torch.equal(net(x)[0], single)
    no_ds = MedNeXt(tiny(deep_supervision=False)).train()
    assert isinstance(no_ds(x), torch.Tensor) and not hasattr(no_ds, "out_1")


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = MedNeXt(tiny()).train()
    ckpt = MedNeXt(tiny(gradient_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    for net in (plain, ckpt):
        sum(o.square().mean() for o in net(x)).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        if a.requires_grad:
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    assert plain.dummy_tensor.grad is None and not plain.dummy_tensor.requires_grad


@pytest.mark.parametrize("options", [dict(grn=True), dict(norm_type="layer"), dict(do_res=False, do_res_up_down=False)])
def test_variants_run(options):
    net = MedNeXt(tiny(**options)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
    assert ("down_0.res_conv.weight" in net.state_dict()) == net.config.do_res_up_down
    assert infer_mednext_config(net.state_dict(), do_res=net.config.do_res,
                                norm_type=net.config.norm_type).to_dict() == net.config.to_dict()


def test_input_size_errors_name_shape_and_multiple():
    net = MedNeXt(tiny()).eval()
    assert required_divisor(net) == (16, 16, 16)
    assert padded_shape((20, 32, 33), required_divisor(net)) == (32, 32, 48)
    with pytest.raises(InputError, match=r"\(20, 32, 33\).*multiple of \(16, 16, 16\).*\(32, 32, 48\)"):
        net(torch.zeros(1, 1, 20, 32, 33))
    with pytest.raises(InputError, match="1 channel"):
        net(torch.zeros(1, 2, 32, 32, 32))
    with pytest.raises(InputError, match="too small"):
        net(torch.zeros(1, 1, 16, 16, 16))
    with pytest.raises(InputError, match="5D"):
        net(torch.zeros(1, 32, 32, 32))


def test_bad_configs_raise_config_error():
    with pytest.raises(ConfigError, match="kernel_size"):
        MedNeXtConfig(kernel_size=4)
    with pytest.raises(ConfigError, match="block_counts"):
        MedNeXtConfig(block_counts=(2, 2))
    with pytest.raises(ConfigError, match="unknown option"):
        MedNeXtConfig.from_dict({"n_chanels": 4})
    with pytest.raises(ConfigError, match="size"):
        preset_config("XL")


def test_upkern_resizes_depthwise_kernels_and_copies_the_rest():
    torch.manual_seed(0)
    k3 = MedNeXt(tiny(kernel_size=3))
    for p in k3.parameters():  # non-default values everywhere
        p.data.normal_()
    k5 = upkern(k3.state_dict(), MedNeXt(tiny(kernel_size=5)))
    src, dst = k3.state_dict(), k5.state_dict()
    resized = [k for k in dst if dst[k].shape != src[k].shape]
    assert resized and all(k.endswith("conv1.weight") for k in resized)
    assert len(resized) == sum(1 for k in src if k.endswith("conv1.weight"))  # every depthwise kernel
    for k in dst:
        if k in resized:
            s, d = src[k], dst[k]
            assert d.shape[2:] == (5, 5, 5)
            assert torch.equal(d[..., 2, 2, 2], s[..., 1, 1, 1])  # centre
            assert torch.equal(d[..., 0, 0, 0], s[..., 0, 0, 0])  # corners (align_corners=False clamps)
            # trilinear: output 1 sits at input 0.4 along an axis -> 0.6 * s[0] + 0.4 * s[1]
            assert torch.allclose(d[..., 1, 2, 2], 0.6 * s[..., 0, 1, 1] + 0.4 * s[..., 1, 1, 1], atol=1e-6)
        else:
            assert torch.equal(dst[k], src[k]), k
    with torch.no_grad():
        assert k5.eval()(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)


def test_upkern_of_constant_kernels_is_constant_and_needs_same_layers():
    k3 = MedNeXt(tiny(kernel_size=3))
    with torch.no_grad():
        k3.enc_block_0[0].conv1.weight.fill_(0.25)
    k5 = upkern(k3, MedNeXt(tiny(kernel_size=5)))
    assert torch.allclose(k5.enc_block_0[0].conv1.weight, torch.full((4, 1, 5, 5, 5), 0.25))
    with pytest.raises(ConfigError, match="same layers"):
        upkern(k3, MedNeXt(tiny(kernel_size=5, block_counts=(2,) * 9)))
    with pytest.raises(ConfigError, match="spatial"):
        upkern(k3, MedNeXt(tiny(kernel_size=5, n_channels=8)))


def test_upkern_matches_interpolate_on_a_real_layer():
    k3 = MedNeXt(tiny(kernel_size=3))
    k5 = upkern({"state_dict": k3.state_dict()}, MedNeXt(tiny(kernel_size=5)))
    w3 = k3.up_0.conv1.weight  # a transposed depthwise kernel (C, 1, 3, 3, 3)
    assert torch.equal(k5.up_0.conv1.weight, F.interpolate(w3, size=(5, 5, 5), mode="trilinear"))


def test_widen_keeps_the_function_and_gives_the_new_channels_a_gradient():
    torch.manual_seed(0)
    narrow = MedNeXt(tiny(deep_supervision=True))
    for p in narrow.parameters():  # non-default values everywhere (biases and norms too)
        p.data.normal_(0, 0.3)
    wide = widen(narrow.state_dict(), MedNeXt(tiny(n_channels=8, exp_r=(4, 5, 8, 8, 8, 8, 8, 5, 4), deep_supervision=True)))
    x = torch.randn(2, 1, 32, 32, 32)
    for mode in ("eval", "train"):  # the logits and every deep-supervision output
        a, b = getattr(narrow, mode)()(x), getattr(wide, mode)()(x)
        for p, q in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert p.shape == q.shape and torch.allclose(p, q, atol=1e-4), (mode, (p - q).abs().max().item())
    old = narrow.enc_block_0[0].conv3.weight  # (4, 12, 1, 1, 1) inside (8, 32, 1, 1, 1)
    w = wide.enc_block_0[0].conv3.weight
    assert torch.equal(w[:4, :12], old) and not w[:4, 12:].any() and w[4:].abs().sum() > 0
    up = wide.up_0.res_conv.weight  # transposed: (in, out, ...); old outputs do not read new inputs
    assert torch.equal(up[:8, :4], narrow.up_0.res_conv.weight) and not up[8:, :4].any()
    wide.train()
    sum(o.square().mean() for o in wide(x)).backward()
    assert wide.enc_block_0[0].conv3.weight.grad[:4, 12:].abs().sum() > 0  # the zero block learns


def test_widen_refuses_narrower_other_layers_and_layer_norm():
    net = MedNeXt(tiny())
    with pytest.raises(ConfigError, match="at least as wide"):
        widen(MedNeXt(tiny(n_channels=8)), net)
    with pytest.raises(ConfigError, match="same layers"):
        widen(net, MedNeXt(tiny(n_channels=8, block_counts=(2,) * 9)))
    with pytest.raises(ConfigError, match="keeps the classes"):  # not silently: class 1 of 2 is not class 1 of 3
        widen(net, MedNeXt(tiny(n_channels=8, n_classes=3)))
    with pytest.raises(ConfigError, match="keeps the input channels"):
        widen(net, MedNeXt(tiny(n_channels=8, in_channels=2)))
    with pytest.raises(ConfigError, match="layer norm"):
        widen(MedNeXt(tiny(norm_type="layer")), MedNeXt(tiny(n_channels=8, norm_type="layer")))
    k5 = widen(net, MedNeXt(tiny(n_channels=8, kernel_size=5)))  # kernels resized as UpKern does
    assert torch.equal(k5.enc_block_0[0].conv1.weight[:4, :, 2, 2, 2], net.enc_block_0[0].conv1.weight[:, :, 1, 1, 1])
