"""nnU-Net v1 ``Generic_UNet`` weights on nnU-Net v2's PlainConvUNet, without v1 code.

nnU-Net v1 (``nnunet/network_architecture/generic_UNet.py``, as ``nnUNetTrainerV2`` configures it:
InstanceNorm3d(eps 1e-5, affine), LeakyReLU(0.01), no dropout, strided-conv pooling, transposed-conv
upsampling) computes the same function as a PlainConvUNet of the same topology, except that

- v1's decoder stage u (0 = deepest) convolves with ``conv_kernel_sizes[-(u + 1)]``, v2's with
  ``kernel_sizes[-(u + 2)]``: :class:`~mednet_pvs.nets.dna_unets.GenericUNetV1Topology` rebuilds those stages;
- v1's transposed convs (``tu.*``) and segmentation heads (``seg_outputs.*``) have no bias: the v2
  biases are set to zero.

Key mapping (n = ``num_conv_per_stage``, P = ``num_pool``)::

    conv_blocks_context.d.blocks.i.{conv,instnorm}     -> encoder.stages.d.0.convs.i.{conv,norm}     (d < P)
    conv_blocks_context.P.j.blocks.i.{conv,instnorm}   -> encoder.stages.P.0.convs.(j*(n-1)+i).{conv,norm}
    conv_blocks_localization.u.j.blocks.i.{...}        -> decoder.stages.u.convs.(j*(n-1)+i).{conv,norm}
    tu.u.weight                                        -> decoder.transpconvs.u.weight
    seg_outputs.u.weight                               -> decoder.seg_layers.u.weight
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from mednet_pvs.errors import ConfigError
from mednet_pvs.nets.spec import NetConfig, brief
from mednet_pvs.nets.nnunet import dna
from mednet_pvs.nets.registry import register_network
from mednet_pvs.nets.state_dicts import StateDict, describe_mismatch, load_exact, shapes_of, unwrap_state_dict


@dataclass
class GenericUNetV1Config(NetConfig):
    """The topology arguments of v1's ``Generic_UNet`` (3D, as nnUNetTrainerV2 builds it)."""

    input_channels: int = 1
    num_classes: int = 2
    base_num_features: int = 32
    num_pool: int = 5
    pool_op_kernel_sizes: tuple[tuple[int, ...], ...] = ((2, 2, 2),) * 5
    conv_kernel_sizes: tuple[tuple[int, ...], ...] = ((3, 3, 3),) * 6
    max_num_features: int = 320
    num_conv_per_stage: int = 2
    feat_map_mul_on_downscale: int = 2
    deep_supervision: bool = True
    ds_outputs_in_eval: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.pool_op_kernel_sizes) != self.num_pool or len(self.conv_kernel_sizes) != self.num_pool + 1:
            raise ConfigError(f"Generic_UNet with num_pool={self.num_pool} needs {self.num_pool} pool kernels and "
                              f"{self.num_pool + 1} conv kernels, got {self.pool_op_kernel_sizes}, "
                              f"{self.conv_kernel_sizes}")
        if self.num_conv_per_stage < 2:
            raise ConfigError("Generic_UNet port needs num_conv_per_stage >= 2 (v1 builds 2 convs for 1)")
        bad = [k for k in self.conv_kernel_sizes if any(i not in (1, 3) for i in k)]
        if bad:
            raise ConfigError(f"Generic_UNet pads only kernels of size 1 and 3, got {bad}")

    def features(self) -> tuple[int, ...]:
        """Features per stage, computed as v1 does (round, then cap, stage by stage)."""
        feats, f = [], self.base_num_features
        for _ in range(self.num_pool + 1):
            feats.append(f)
            f = min(int(round(f * self.feat_map_mul_on_downscale)), self.max_num_features)
        return tuple(feats)

    def describe(self) -> str:
        """One line: ``nnU-Net v1 Generic_UNet, 32 base features (max 320), 5 poolings 2x2x2, kernels 3x3x3, ...``."""
        return ", ".join([
            f"nnU-Net v1 Generic_UNet, {self.base_num_features} base features (max {self.max_num_features})",
            f"{self.num_pool} poolings {brief(self.pool_op_kernel_sizes)}", f"kernels {brief(self.conv_kernel_sizes)}",
            f"{self.num_conv_per_stage} convs per stage", f"{self.input_channels} input channel(s)",
            f"{self.num_classes} classes",
        ])

    def arch_kwargs(self) -> dict:
        n = self.num_pool + 1
        return dict(input_channels=self.input_channels, num_classes=self.num_classes, n_stages=n,
                    features_per_stage=self.features(), kernel_sizes=self.conv_kernel_sizes,
                    strides=((1, 1, 1), *self.pool_op_kernel_sizes), n_conv_per_stage=(self.num_conv_per_stage,) * n,
                    n_conv_per_stage_decoder=(self.num_conv_per_stage,) * (n - 1))


def build_generic_unet_v1(config: GenericUNetV1Config) -> nn.Module:
    """A PlainConvUNet computing v1's Generic_UNet of ``config`` (input multiple of the pool product)."""
    return dna().GenericUNetV1Topology(config, **config.arch_kwargs())


@register_network("generic_unet_v1")
def generic_unet_v1(**overrides) -> nn.Module:
    """nnU-Net v1's Generic_UNet (3d_fullres, nnUNetTrainerV2) as a PlainConvUNet; fields of
    :class:`GenericUNetV1Config` as overrides (default: 32 features, 5 poolings of 2, kernels 3)."""
    return build_generic_unet_v1(GenericUNetV1Config.from_dict(overrides))


_CONTEXT = re.compile(r"conv_blocks_context\.(\d+)\.(?:(\d+)\.)?blocks\.(\d+)\.(conv|instnorm)\.(weight|bias)$")
_LOCAL = re.compile(r"conv_blocks_localization\.(\d+)\.(\d+)\.blocks\.(\d+)\.(conv|instnorm)\.(weight|bias)$")
_HEADS = re.compile(r"(tu|seg_outputs)\.(\d+)\.weight$")


def v1_key_to_v2(key: str, num_pool: int, num_conv_per_stage: int) -> str:
    """The PlainConvUNet key of a Generic_UNet key (see the module docstring); ConfigError if unknown."""
    n = num_conv_per_stage
    layer = {"conv": "conv", "instnorm": "norm"}
    if m := _CONTEXT.match(key):
        d, j, i, op, p = m.groups()
        if (int(d) == num_pool) != (j is not None):
            raise ConfigError(f"unexpected Generic_UNet key {key!r} for num_pool={num_pool}")
        conv = int(i) + (int(j) * (n - 1) if j is not None else 0)
        return f"encoder.stages.{d}.0.convs.{conv}.{layer[op]}.{p}"
    if m := _LOCAL.match(key):
        u, j, i, op, p = m.groups()
        return f"decoder.stages.{u}.convs.{int(j) * (n - 1) + int(i)}.{layer[op]}.{p}"
    if m := _HEADS.match(key):
        part = {"tu": "transpconvs", "seg_outputs": "seg_layers"}[m.group(1)]
        return f"decoder.{part}.{m.group(2)}.weight"
    raise ConfigError(f"not a Generic_UNet (v1) key: {key!r}")


def v1_bias_free_keys(num_pool: int) -> list[str]:
    """The v2 biases that v1 lacks (transposed convs and segmentation heads): zero after mapping."""
    return [f"decoder.{part}.{u}.bias" for part in ("transpconvs", "seg_layers") for u in range(num_pool)]


def map_v1_state_dict(state_dict: Mapping[str, torch.Tensor], config: GenericUNetV1Config) -> StateDict:
    """A Generic_UNet state dict renamed for the PlainConvUNet of ``config``, with the zero biases added."""
    sd = unwrap_state_dict(state_dict)
    out = {v1_key_to_v2(k, config.num_pool, config.num_conv_per_stage): v for k, v in sd.items()}
    for key in v1_bias_free_keys(config.num_pool):
        weight = out.get(key[: -len("bias")] + "weight")
        if weight is None:
            raise ConfigError(f"Generic_UNet state dict lacks the weight of {key}")
        n_out = weight.shape[1] if ".transpconvs." in key else weight.shape[0]  # (in, out, ...) vs (out, in, ...)
        out[key] = torch.zeros(n_out, dtype=weight.dtype, device=weight.device)
    return out


def load_generic_unet_v1(state_dict: Mapping[str, torch.Tensor],
                         config: GenericUNetV1Config | None = None) -> nn.Module:
    """A PlainConvUNet holding a v1 Generic_UNet state dict (topology inferred when ``config`` is None)."""
    config = config or infer_generic_unet_v1_config(state_dict)
    model = build_generic_unet_v1(config)
    return load_exact(model, map_v1_state_dict(state_dict, config), "Generic_UNet (v1) state dict")


def infer_generic_unet_v1_config(state_dict: Mapping[str, torch.Tensor]) -> GenericUNetV1Config:
    """The Generic_UNet topology of a v1 state dict, from its keys and shapes alone.

    Read: ``num_pool`` (number of ``tu``), pool kernels (the ``tu`` kernels), conv kernels (first conv
    of each encoder stage), features per stage (hence ``base_num_features`` and ``max_num_features``:
    the largest stage; a cap the network never reached cannot be seen and does not change it),
    ``num_conv_per_stage``, ``input_channels``, ``num_classes``. ``deep_supervision`` is not in the
    weights (v1 always builds every head) and is set True, as nnUNetTrainerV2 trains.
    The result is checked: its network must have exactly the state dict's keys and shapes.
    """
    sd = unwrap_state_dict(state_dict)
    tu = sorted(int(k.split(".")[1]) for k in sd if _HEADS.match(k) and k.startswith("tu."))
    num_pool = len(tu)
    if not num_pool or tu != list(range(num_pool)):
        raise ConfigError(f"not a Generic_UNet (v1) state dict: transposed convs tu.{tu}")

    def first_conv(d: int) -> torch.Tensor:
        key = f"conv_blocks_context.{d}.{'0.' if d == num_pool else ''}blocks.0.conv.weight"
        if key not in sd:
            raise ConfigError(f"not a Generic_UNet (v1) state dict: no {key!r}")
        return sd[key]

    convs = [first_conv(d) for d in range(num_pool + 1)]
    feats = [int(w.shape[0]) for w in convs]
    n_conv = len({k.split(".")[3] for k in sd if k.startswith("conv_blocks_context.0.blocks.")})
    mul = feats[1] // feats[0] if feats[1] % feats[0] == 0 and feats[1] > feats[0] else 2
    config = GenericUNetV1Config(
        input_channels=int(convs[0].shape[1]), num_classes=int(sd["seg_outputs.0.weight"].shape[0]),
        base_num_features=feats[0], num_pool=num_pool,
        pool_op_kernel_sizes=tuple(tuple(sd[f"tu.{num_pool - 1 - p}.weight"].shape[2:]) for p in range(num_pool)),
        conv_kernel_sizes=tuple(tuple(w.shape[2:]) for w in convs), max_num_features=max(feats),
        num_conv_per_stage=n_conv, feat_map_mul_on_downscale=mul,
    )
    if config.features() != tuple(feats):
        raise ConfigError(f"Generic_UNet features per stage {feats} do not follow base x {mul}, capped")
    with torch.device("meta"):
        model = build_generic_unet_v1(config)
    expected = {k: tuple(v.shape) for k, v in model.named_parameters()}
    problem = describe_mismatch(expected, shapes_of(map_v1_state_dict(sd, config)))
    if problem:
        raise ConfigError(f"state dict is not a Generic_UNet (v1) of the inferred topology: {problem}")
    return config
