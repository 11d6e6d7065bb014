"""State-dict helpers that touch no files: compare key/shape sets, load exactly (and, from
:mod:`mednet_pvs.safe_load`, unwrap checkpoint containers)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Mapping

import torch
from torch import nn

from mednet_pvs.errors import ConfigError
from mednet_pvs.safe_load import StateDict, unwrap_state_dict

__all__ = ["StateDict", "alias_groups", "average_state_dicts", "describe_mismatch", "load_exact", "shapes_of",
           "soup_spread", "unwrap_state_dict"]


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


def _check_one_network(sds: Sequence[Mapping[str, torch.Tensor]], what: str) -> None:
    """Two or more state dicts of one network (same keys and shapes), else a ConfigError naming ``what``."""
    if len(sds) < 2:
        raise ConfigError(f"{what} needs two or more state dicts, got {len(sds)}")
    for i, sd in enumerate(sds[1:], 1):
        why = describe_mismatch(shapes_of(sds[0]), shapes_of(sd))
        if why:
            raise ConfigError(f"state dict {i} is not the same network as state dict 0: {why}")


def average_state_dicts(sds: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None) -> StateDict:
    """The weighted mean of state dicts of one network (a "model soup", Wortsman et al. 2022,
    arXiv:2203.05482): one network instead of an ensemble of several, for runs fine-tuned from the
    same start. Floating-point tensors are averaged in float32 and returned in the first state
    dict's dtype; others (counters) are taken from the first.

    Args:
        sds: two or more state dicts with the same keys and shapes.
        weights: one non-negative weight per state dict (normalised to sum 1); ``None`` = equal.
    """
    _check_one_network(sds, "averaging")
    w = [1.0] * len(sds) if weights is None else [float(x) for x in weights]
    if len(w) != len(sds) or min(w) < 0 or sum(w) <= 0:
        raise ConfigError(f"need one non-negative weight per state dict ({len(sds)}), not summing to 0: got {list(w)}")
    w = [x / sum(w) for x in w]
    first = sds[0]
    return {k: (sum(wi * sd[k].float() for wi, sd in zip(w, sds)).to(v.dtype) if v.is_floating_point() else v.clone())
            for k, v in first.items()}


def soup_spread(sds: Sequence[Mapping[str, torch.Tensor]]) -> float:
    """How far apart the networks a soup would average lie: the largest distance of one state dict's
    floating-point weights from their mean, relative to the mean's norm. Runs fine-tuned from one
    start lie in one basin and close (two networks 10 % of their norm apart, as stages 5 and 6 of
    the shipped ``mednet-pvs-synth-any`` soup: 0.05); networks from different random starts do not
    (MedNeXt k3 16 channels, measured: two random initialisations 0.68, three 0.85, the shipped
    soup and one of them 0.65), and their mean is no network at all.
    """
    _check_one_network(sds, "a spread")
    keys = [k for k, v in sds[0].items() if v.is_floating_point()]
    flat = [torch.cat([sd[k].float().flatten() for k in keys]) for sd in sds]
    mean = torch.stack(flat).mean(0)
    return float(max(torch.linalg.vector_norm(f - mean) for f in flat) / torch.linalg.vector_norm(mean).clamp_min(1e-12))


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
