"""Initial weights for training (warm start, UpKern); the encoder's parameters (for freezing) are the
network's own (:func:`mednet_pvs.nets.encoder_parameters`, re-exported here)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType
from mednet_pvs.nets import encoder_parameters  # re-exported: the network declares its encoder
from mednet_pvs.safe_load import read_state_dict

__all__ = ["EMA_PREFIX", "MODULE_PREFIX", "checkpoint_network_state", "class_rows", "encoder_parameters",
           "load_initial_weights", "read_weights"]

#: Prefix of the network's keys in this package's Lightning checkpoints.
MODULE_PREFIX = "net."
#: Prefix of the weights' moving average (``PVSSegmenter(ema_decay=...)``) in those checkpoints.
EMA_PREFIX = "net_ema.module."


def checkpoint_network_state(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """``(network state dict, averaged)`` of a :class:`~mednet_pvs.training.module.PVSSegmenter`
    checkpoint's ``state_dict``: the weights' moving average where the run kept one (what it
    validated and exports), else the trained network's weights."""
    for prefix, averaged in ((EMA_PREFIX, True), (MODULE_PREFIX, False)):
        sd = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if sd:
            return sd, averaged
    return {}, False


def read_weights(source: PathType) -> dict[str, torch.Tensor]:
    """The network state dict in a bundle folder (member 0), a Lightning checkpoint of
    :class:`~mednet_pvs.training.module.PVSSegmenter` or a state-dict file."""
    return _read(source)[0]


def _read(source: PathType) -> tuple[dict[str, torch.Tensor], dict[int, str] | None]:
    """``(state dict, labels)``: the labels of a bundle folder, ``None`` for other sources."""
    path = Path(source)
    if path.is_dir():
        from mednet_pvs.inference import PVSModel

        model = PVSModel.from_pretrained(path, device="cpu")
        return model.networks[0].state_dict(), dict(model.labels)
    if not path.exists():
        raise InputError(path, "initial weights not found (expected a model folder, a .ckpt or a state-dict file)")
    sd = read_state_dict(path)
    if any(k.startswith(MODULE_PREFIX) for k in sd):  # this package's Lightning checkpoint
        sd = checkpoint_network_state(sd)[0]
    return sd, None


def class_rows(source_labels: Mapping[Any, str], labels: Mapping[Any, str]) -> list[int]:
    """For each output class of ``labels`` (in channel order), the source channel that initialises
    it: the class of the same name (case-insensitive), else the source's background (channel 0).

    >>> class_rows({0: "background", 1: "PVS"}, {0: "background", 1: "brain", 2: "PVS"})
    [0, 0, 1]
    """
    src = {str(v).lower(): int(k) for k, v in source_labels.items()}
    return [src.get(str(v).lower(), 0) for _, v in sorted(labels.items(), key=lambda kv: int(kv[0]))]


def _remap_classes(sd: dict[str, torch.Tensor], net: nn.Module, rows: list[int], n_source: int) -> dict[str, torch.Tensor]:
    """``sd`` with every output tensor (one axis ``n_source`` long in ``sd`` and ``len(rows)`` in
    ``net``, the other axes equal: axis 0 of a convolution's weight and bias, axis 1 of a
    transposed convolution's weight) indexed by ``rows`` along that axis."""
    own = net.state_dict()
    out = dict(sd)
    for k, v in sd.items():
        t = own.get(k)
        if t is None or v.ndim != t.ndim or v.shape == t.shape:
            continue
        for axis in range(min(v.ndim, 2)):
            others = [a for a in range(v.ndim) if a != axis]
            if v.shape[axis] == n_source and t.shape[axis] == len(rows) and all(v.shape[a] == t.shape[a] for a in others):
                out[k] = v.index_select(axis, torch.tensor(rows)).clone()
                break
    return out


def load_initial_weights(net: nn.Module, source: PathType | dict[str, Any], labels: Mapping[Any, str] | None = None) -> nn.Module:
    """Copy ``source``'s weights into ``net``: exactly when the shapes match, with UpKern when only
    MedNeXt kernel sizes differ (e.g. a k3 model initialising a k5 one), and widened
    (:func:`mednet_pvs.nets.widen`: the same function, new channels added) when ``net`` is a wider
    MedNeXt with the same layers (e.g. 16 base channels initialising 32). Returns ``net``.

    ``labels`` (``net``'s output classes) against a bundle whose labels differ: the output layers
    are initialised class by class (:func:`class_rows`: same name, else the source's background),
    e.g. a background/PVS model starting a background/brain/PVS one.
    """
    from mednet_pvs.nets import MedNeXt, upkern, widen
    from mednet_pvs.nets.state_dicts import load_exact

    what = str(source) if not isinstance(source, dict) else "<state dict>"
    sd, src_labels = _read(source) if not isinstance(source, dict) else (dict(source), None)
    if labels is not None and src_labels is not None and len(src_labels) != len(labels):
        sd = _remap_classes(sd, net, class_rows(src_labels, labels), len(src_labels))
    try:
        return load_exact(net, sd, "its weights")
    except ConfigError as exact:
        if not isinstance(net, MedNeXt):
            raise InputError(what, str(exact)) from None
        # same channel counts: UpKern (other kernel sizes); else widened (more channels). Choosing
        # by shape, not by trying one then the other, reports the reason of the one that applies.
        tgt = net.state_dict()
        same_width = all(k not in tgt or tuple(v.shape[:2]) == tuple(tgt[k].shape[:2]) for k, v in sd.items())
        try:
            return upkern(sd, net) if same_width else widen(sd, net)
        except ConfigError as e:
            raise InputError(what, f"cannot initialise {type(net).__name__} from it: {e}") from None
