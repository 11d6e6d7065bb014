"""Input-shape rules shared by all networks: which spatial sizes a network takes, and clear errors.

Every network in this package downsamples by integer strides, so each spatial axis of its input
must be a multiple of the product of that axis' strides (16 for MedNeXt's four 2x poolings). Inference
code pads to :func:`required_divisor` instead of hitting a shape error deep inside a decoder.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from mednet_pvs.errors import ConfigError, InputError

INPUT_NAME = "<input tensor>"


def divisor_from_strides(strides: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Per-axis product of the stage strides, e.g. ``[[1,1,1],[2,2,2],[1,2,2]] -> (2, 4, 4)``."""
    return tuple(math.prod(axis) for axis in zip(*strides))


def required_divisor(net: nn.Module) -> tuple[int, int, int]:
    """Each spatial size (X, Y, Z) of ``net``'s input must be a multiple of these numbers."""
    div = getattr(net, "required_divisor", None)
    if div is None:
        raise ConfigError(f"{type(net).__name__} does not declare the input sizes it takes (no 'required_divisor')")
    return tuple(div)  # type: ignore[return-value]


def padded_shape(spatial: Sequence[int], divisor: Sequence[int]) -> tuple[int, ...]:
    """The smallest shape >= ``spatial`` whose axes are multiples of ``divisor``."""
    return tuple(-(-s // d) * d for s, d in zip(spatial, divisor))


def check_input(x: torch.Tensor, in_channels: int, divisor: Sequence[int]) -> None:
    """Raise :class:`InputError` unless ``x`` is (B, in_channels, X, Y, Z) with X, Y, Z multiples of ``divisor``."""
    if x.ndim != 2 + len(divisor):
        raise InputError(
            INPUT_NAME,
            f"expected a {2 + len(divisor)}D tensor (B, C, X, Y, Z), got shape {tuple(x.shape)}",
        )
    if x.shape[1] != in_channels:
        raise InputError(INPUT_NAME, f"expected {in_channels} channel(s) (dim 1), got shape {tuple(x.shape)}")
    spatial = tuple(int(s) for s in x.shape[2:])
    if any(s % d for s, d in zip(spatial, divisor)):
        raise InputError(
            INPUT_NAME,
            f"spatial shape {spatial} is not a multiple of {tuple(divisor)} per axis, which this network "
            f"needs; pad the input to {padded_shape(spatial, divisor)} (see mednet_pvs.nets.required_divisor)",
        )
