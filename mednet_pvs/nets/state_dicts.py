"""State-dict helpers that touch no files: compare key/shape sets, load exactly (and, from
:mod:`mednet_pvs.safe_load`, unwrap checkpoint containers)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from mednet_pvs.errors import ConfigError
from mednet_pvs.safe_load import StateDict, unwrap_state_dict

__all__ = ["StateDict", "alias_groups", "describe_mismatch", "load_exact", "shapes_of", "unwrap_state_dict"]


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
