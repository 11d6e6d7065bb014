"""State-dict helpers that touch no files: unwrap checkpoint containers, compare key/shape sets, load exactly."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from mednet_pvs.errors import ConfigError

StateDict = dict[str, torch.Tensor]

#: Keys under which training frameworks keep the network's weights inside a checkpoint dict:
#: nnU-Net v1 and Lightning ``state_dict``, nnU-Net v2 ``network_weights``.
CONTAINER_KEYS = ("state_dict", "network_weights")
#: Prefixes that wrappers add to every key: DataParallel/DDP ``module.``, torch.compile ``_orig_mod.``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap_state_dict(obj: Mapping[str, Any]) -> StateDict:
    """The tensors of a raw state dict or of a checkpoint container (``{"state_dict": ...}``).

    Wrapper prefixes (``module.``, ``_orig_mod.``) shared by every key are removed.
    """
    if not isinstance(obj, Mapping):
        raise ConfigError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad or not obj:
        raise ConfigError(
            "not a state dict: " + (f"entries {bad[:5]} are not tensors" if bad else "it is empty")
            + f"; a checkpoint container must hold one under one of {list(CONTAINER_KEYS)}"
        )
    sd = dict(obj)
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def shapes_of(sd: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def describe_mismatch(
    expected: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]], limit: int = 5
) -> str:
    """One line naming missing keys, unexpected keys and shape differences (empty if none)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k}: {tuple(got[k])} vs {tuple(expected[k])}" for k in expected if k in got and
              tuple(got[k]) != tuple(expected[k])]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape (got vs expected)", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def alias_groups(model: nn.Module) -> dict[str, list[str]]:
    """For each canonical state-dict key, the other keys naming the same tensor.

    Some networks (dynamic_network_architectures') register a module twice, so their state dict
    lists one tensor under several keys; the canonical key is the one ``named_parameters`` uses.
    """
    by_id: dict[int, list[str]] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        by_id.setdefault(id(v), []).append(k)
    return {names[0]: names[1:] for names in by_id.values()}


def load_exact(model: nn.Module, sd: Mapping[str, torch.Tensor], what: str = "state dict") -> nn.Module:
    """Load ``sd`` into ``model`` after checking that keys and shapes match exactly.

    ``sd`` may name each tensor by its canonical key only; aliases are filled in. Raises
    :class:`ConfigError` naming the differences instead of a long PyTorch error.
    """
    groups = alias_groups(model)
    aliases = {a for names in groups.values() for a in names}
    canonical = {k: tuple(v.shape) for k, v in model.state_dict().items() if k in groups}
    got = {k: v for k, v in sd.items() if k not in aliases}  # an alias in ``sd`` repeats its canonical tensor
    problem = describe_mismatch(canonical, shapes_of(got))
    if problem:
        raise ConfigError(f"{what} does not fit {type(model).__name__}: {problem}")
    full = dict(got)
    for k, aliases in groups.items():
        for a in aliases:
            full[a] = got[k]
    model.load_state_dict(full, strict=True)
    return model
