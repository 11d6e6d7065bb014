"""Network registry: names -> builder functions, like timm's ``register_model`` / ``create_model``.

A builder takes the fields of its network's config dataclass as keyword overrides and returns the
network; the network keeps its config (``model.config``), and :func:`network_config` turns it into
the :class:`~mednet_pvs.nets.config.NetworkSpec` that :func:`create_network_from_config` rebuilds.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Mapping

from torch import nn

from mednet_pvs.errors import ConfigError
from mednet_pvs.nets.config import NetworkSpec

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register_network(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(**overrides) -> nn.Module`` under ``name`` (must be new)."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"network name {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_networks(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (``"mednext_*_k5"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _builder(name: str) -> Builder:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown network {name!r}.{hint} Known networks: {', '.join(list_networks())}")
    return _REGISTRY[name]


def create_network(name: str, **overrides: Any) -> nn.Module:
    """Build the registered network ``name``; ``overrides`` replace fields of its config.

    >>> net = create_network("mednext_l_k5", in_channels=1, n_classes=2)
    """
    model = _builder(name)(**overrides)
    model.network_name = name
    return model


def network_config(model: nn.Module) -> NetworkSpec:
    """The spec (registry name + full config) that rebuilds ``model``'s architecture."""
    config = getattr(model, "config", None)
    name = getattr(model, "network_name", None)
    if config is None or name is None:
        raise ConfigError(f"{type(model).__name__} was not built by mednet_pvs.nets (it has no config)")
    return NetworkSpec(name, config.to_dict())


def create_network_from_config(spec: Mapping[str, Any] | NetworkSpec) -> nn.Module:
    """Rebuild a network from ``{"name": ..., "kwargs": {...}}`` (what :func:`network_config` gives)."""
    spec = NetworkSpec.from_dict(spec)
    return create_network(spec.name, **spec.kwargs)
