"""nnU-Net's own networks (dynamic_network_architectures) with this package's input checks and output
convention, and the :class:`~mednet_pvs.nets.registry.Network` contract. Imported only when such a
network is built (see :func:`mednet_pvs.nets.nnunet.dna`), so ``import mednet_pvs.nets`` does not need
dynamic_network_architectures.

The PlainConvUNet and ResidualEncoderUNet subclasses change no module and no parameter: their state
dicts are nnU-Net v2's. ``GenericUNetV1Topology`` rebuilds the decoder stages whose kernel v1 chooses
differently (same keys, possibly other kernel shapes).
"""
from __future__ import annotations

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import nn

from mednet_pvs.nets.shapes import check_input, divisor_from_strides

#: The ops every nnU-Net v2 (and v1 nnUNetTrainerV2) 3D U-Net uses.
STANDARD_OPS = dict(
    conv_op=nn.Conv3d,
    conv_bias=True,
    norm_op=nn.InstanceNorm3d,
    norm_op_kwargs={"eps": 1e-5, "affine": True},
    dropout_op=None,
    dropout_op_kwargs=None,
    nonlin=nn.LeakyReLU,
    nonlin_kwargs={"inplace": True},  # negative_slope 0.01 (LeakyReLU's default, v1's 1e-2)
)


def _lists(value):
    """Tuples (from configs) as the lists nnU-Net's plans hold."""
    return [_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


class _MednetUNet:
    """Mixin: builds the dynamic_network_architectures class with the standard ops from a config's
    ``arch_kwargs()``, checks inputs and applies the package's deep-supervision convention.

    Input (B, C, X, Y, Z), each spatial axis a multiple of ``required_divisor``. Output: logits
    (B, num_classes, X, Y, Z); with deep supervision in training mode (or ``ds_outputs_in_eval``) a
    list of logits from full resolution down, one per decoder stage.
    """

    decoder: nn.Module
    encoder_prefixes = ("encoder.",)  # the encoder (for freezing)
    optimizer_preset = "nnunet"  # SGD with Nesterov momentum, as nnU-Net trains

    def __init__(self, config, **arch_kwargs) -> None:
        super().__init__(**{k: _lists(v) for k, v in arch_kwargs.items()}, deep_supervision=True, **STANDARD_OPS)
        self.config = config
        self.required_divisor = divisor_from_strides(arch_kwargs["strides"])
        self.apply(InitWeights_He(1e-2))  # nnU-Net's initialisation

    @property
    def description(self) -> str:
        return self.config.describe()

    def forward(self, x: torch.Tensor):
        check_input(x, self.config.input_channels, self.required_divisor)
        cfg = self.config
        self.decoder.deep_supervision = bool(cfg.deep_supervision and (self.training or cfg.ds_outputs_in_eval))
        return super().forward(x)  # type: ignore[misc]


class NnUNetPlainConvUNet(_MednetUNet, PlainConvUNet):
    """nnU-Net v2's default 3D U-Net (PlainConvUNet) with the standard ops."""

    network_name = "nnunet_plain"


class NnUNetResidualEncoderUNet(_MednetUNet, ResidualEncoderUNet):
    """nnU-Net v2's ResEnc 3D U-Net (ResidualEncoderUNet, BasicBlockD) with the standard ops."""

    network_name = "nnunet_resenc_m"

    def __init__(self, config, **arch_kwargs) -> None:
        super().__init__(config, **arch_kwargs)
        self.apply(init_last_bn_before_add_to_0)  # as ResidualEncoderUNet.initialize


class GenericUNetV1Topology(NnUNetPlainConvUNet):
    """A PlainConvUNet wired like nnU-Net v1's Generic_UNet: decoder stage u (0 = deepest) convolves
    with ``kernel_sizes[-(u + 1)]`` (v2 uses ``kernel_sizes[-(u + 2)]``, the skip's stage)."""

    network_name = "generic_unet_v1"

    def __init__(self, config, **arch_kwargs) -> None:
        super().__init__(config, **arch_kwargs)
        enc = self.encoder
        kernels = _lists(arch_kwargs["kernel_sizes"])
        for u, stage in enumerate(self.decoder.stages):
            if kernels[-(u + 1)] == kernels[-(u + 2)]:
                continue
            skip = enc.output_channels[-(u + 2)]
            self.decoder.stages[u] = StackedConvBlocks(
                len(stage.convs), enc.conv_op, 2 * skip, skip, kernels[-(u + 1)], 1, enc.conv_bias, enc.norm_op,
                enc.norm_op_kwargs, enc.dropout_op, enc.dropout_op_kwargs, enc.nonlin, enc.nonlin_kwargs)
            self.decoder.stages[u].apply(InitWeights_He(1e-2))
