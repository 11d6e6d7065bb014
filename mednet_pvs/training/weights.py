"""Initial weights for training (warm start, UpKern); the encoder's parameters (for freezing) are the
network's own (:func:`mednet_pvs.nets.encoder_parameters`, re-exported here)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType
from mednet_pvs.nets import encoder_parameters  # re-exported: the network declares its encoder
from mednet_pvs.safe_load import read_state_dict

__all__ = ["MODULE_PREFIX", "encoder_parameters", "load_initial_weights", "read_weights"]

#: Prefix of the network's keys in this package's Lightning checkpoints.
MODULE_PREFIX = "net."


def read_weights(source: PathType) -> dict[str, torch.Tensor]:
    """The network state dict in a bundle folder (member 0), a Lightning checkpoint of
    :class:`~mednet_pvs.training.module.PVSSegmenter` or a state-dict file."""
    path = Path(source)
    if path.is_dir():
        from mednet_pvs.inference import PVSModel

        return PVSModel.from_pretrained(path, device="cpu").networks[0].state_dict()
    if not path.exists():
        raise InputError(path, "initial weights not found (expected a model folder, a .ckpt or a state-dict file)")
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
