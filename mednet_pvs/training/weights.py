"""Initial weights for training (warm start, UpKern) and the encoder's parameters (for freezing)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType

#: Parameter-name prefixes of the encoder: MedNeXt (stem, encoder stages, down-samplings,
#: bottleneck) and dynamic_network_architectures' U-Nets (``encoder.``).
ENCODER_PREFIXES = ("stem.", "enc_block_", "down_", "bottleneck.", "encoder.")
#: Prefix of the network's keys in this package's Lightning checkpoints.
MODULE_PREFIX = "net."


def encoder_parameters(net: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the encoder of a MedNeXt or nnU-Net network (ConfigError if none)."""
    params = [(n, p) for n, p in net.named_parameters() if n.startswith(ENCODER_PREFIXES)]
    if not params:
        raise ConfigError(f"cannot tell the encoder of {type(net).__name__} (no parameter named {', '.join(ENCODER_PREFIXES)}...)")
    return params


def read_weights(source: PathType) -> dict[str, torch.Tensor]:
    """The network state dict in a bundle folder (member 0), a Lightning checkpoint of
    :class:`~mednet_pvs.training.module.PVSSegmenter` or a state-dict file."""
    path = Path(source)
    if path.is_dir():
        from mednet_pvs.inference import PVSModel

        return PVSModel.from_pretrained(path, device="cpu").networks[0].state_dict()
    if not path.exists():
        raise InputError(path, "initial weights not found (expected a model folder, a .ckpt or a state-dict file)")
    from mednet_pvs.nets import read_state_dict

    sd = read_state_dict(path)
    if any(k.startswith(MODULE_PREFIX) for k in sd):  # this package's Lightning checkpoint
        sd = {k[len(MODULE_PREFIX):]: v for k, v in sd.items() if k.startswith(MODULE_PREFIX)}
    return sd


def load_initial_weights(net: nn.Module, source: PathType | dict[str, Any]) -> nn.Module:
    """Copy ``source``'s weights into ``net``: exactly when the shapes match, with UpKern when only
    MedNeXt kernel sizes differ (e.g. a k3 model initialising a k5 one). Returns ``net``."""
    from mednet_pvs.nets import MedNeXt, upkern
    from mednet_pvs.nets.state_dicts import load_exact

    what = str(source) if not isinstance(source, dict) else "<state dict>"
    sd = read_weights(source) if not isinstance(source, dict) else dict(source)
    try:
        return load_exact(net, sd, "its weights")
    except ConfigError as exact:
        if not isinstance(net, MedNeXt):
            raise InputError(what, str(exact)) from None
        try:  # same layers, other kernel sizes: UpKern
            return upkern(sd, net)
        except ConfigError as e:
            raise InputError(what, f"cannot initialise {type(net).__name__} from it: {e}") from None
