"""Networks from the original implementations' weight files: MedNeXt v1 and nnU-Net v1's Generic_UNet.

    net = load_mednext_checkpoint("fold_0/model_final_checkpoint.model")       # a ready MedNeXt
    net = load_generic_unet_v1_checkpoint("fold_0/model_final_checkpoint.model")

A source is a path (nnU-Net v1's ``.model``, a raw state-dict file, ``.safetensors``), read with
:func:`mednet_pvs.safe_load.read_state_dict` (no code runs), or an in-memory state dict. The
configuration is read from the weights unless given. Problems with a file raise
:class:`~mednet_pvs.errors.InputError` naming it. Importing this module does not import torch.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

from mednet_pvs.errors import ConfigError, InputError

if TYPE_CHECKING:
    from torch import nn

    from mednet_pvs.nets import GenericUNetV1Config, MedNeXt, MedNeXtConfig

PathOrStateDict = str | PathLike | Mapping[str, Any]


def _load_with(loader: Callable[..., nn.Module], source: PathOrStateDict, config: Any) -> nn.Module:
    """``loader(state_dict, config)`` on a path or an in-memory dict; a file's problems name the file."""
    from mednet_pvs.safe_load import read_state_dict, unwrap_state_dict

    if isinstance(source, Mapping):
        return loader(unwrap_state_dict(source), config)
    try:
        return loader(read_state_dict(source), config)
    except ConfigError as e:
        raise InputError(source, str(e)) from e


def load_mednext_checkpoint(source: PathOrStateDict, config: MedNeXtConfig | None = None) -> MedNeXt:
    """A :class:`~mednet_pvs.nets.MedNeXt` with the weights of an original MedNeXt v1 checkpoint (nnU-Net
    v1's ``model_final_checkpoint.model``, a raw state dict file, safetensors, or an in-memory dict).
    The configuration is read from the weights unless given."""
    from mednet_pvs.nets import load_mednext_state_dict

    return _load_with(load_mednext_state_dict, source, config)  # type: ignore[return-value]


def load_generic_unet_v1_checkpoint(source: PathOrStateDict, config: GenericUNetV1Config | None = None) -> nn.Module:
    """A PlainConvUNet with the weights of an nnU-Net v1 Generic_UNet checkpoint (see
    :mod:`mednet_pvs.nets.generic_unet_v1`). The topology is read from the weights unless given."""
    from mednet_pvs.nets import load_generic_unet_v1

    return _load_with(load_generic_unet_v1, source, config)
