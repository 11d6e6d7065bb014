"""Network registry: names -> builder functions, like timm's ``register_model`` / ``create_model``,
and the contract (:class:`Network`) that every registered network satisfies.

A builder takes the fields of its network's config dataclass as keyword overrides and returns the
network; the network keeps its config (``model.config``), and :func:`network_config` turns it into
the :class:`~mednet_pvs.nets.spec.NetworkSpec` that :func:`create_network_from_config` rebuilds.
Training and the zoo ask the network (its encoder, optimiser preset, description) instead of
knowing network families by name.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from mednet_pvs.errors import ConfigError
from mednet_pvs.registries import Registry
from mednet_pvs.nets.spec import NetConfig, NetworkSpec


@runtime_checkable
class Network(Protocol):
    """What every registered network is besides an ``nn.Module`` (input (B, C, X, Y, Z) -> logits).

    - ``config``: its full configuration (``config.to_dict()`` is the spec's ``kwargs``);
    - ``network_name``: the registry name it was built under (set by :func:`create_network`);
    - ``required_divisor``: each spatial input size (X, Y, Z) must be a multiple of these;
    - ``encoder_prefixes``: parameter-name prefixes of its encoder (see :func:`encoder_parameters`);
    - ``optimizer_preset``: ``"mednext"`` or ``"nnunet"``, how its authors trained it (a preset of
      :mod:`mednet_pvs.training.optim`);
    - ``description``: one line for people (family, widths, kernels, depth).
    """

    config: NetConfig
    network_name: str
    required_divisor: tuple[int, int, int]
    encoder_prefixes: tuple[str, ...]
    optimizer_preset: str

    @property
    def description(self) -> str: ...


Builder = Callable[..., nn.Module]
_REGISTRY: Registry[Builder] = Registry("network")


def register_network(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(**overrides) -> nn.Module`` under ``name`` (must be new)."""
    return _REGISTRY.register(name)


def list_networks(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (``"mednext_*_k5"``), sorted."""
    return _REGISTRY.names(pattern)


def create_network(name: str, **overrides: Any) -> nn.Module:
    """Build the registered network ``name``; ``overrides`` replace fields of its config.

    >>> net = create_network("mednext_l_k5", in_channels=1, n_classes=2)
    """
    model = _REGISTRY.get_or_explain(name)(**overrides)
    model.network_name = name
    if not isinstance(model, Network):
        raise ConfigError(f"network {name!r} builds a {type(model).__name__}, which does not satisfy the "
                          "mednet_pvs.nets.Network contract (see its docstring)")
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


def create_meta_network(spec: str | Mapping[str, Any] | NetworkSpec) -> nn.Module:
    """The network of ``spec`` (or of a registry name, with its defaults) on the meta device: its
    attributes, modules and shapes without allocating or initialising any weight."""
    spec = NetworkSpec(spec) if isinstance(spec, str) else NetworkSpec.from_dict(spec)
    with torch.device("meta"):
        return create_network_from_config(spec)


def describe_network(spec: str | Mapping[str, Any] | NetworkSpec) -> str:
    """The one-line :attr:`Network.description` of the network that ``spec`` builds (no weights allocated)."""
    return create_meta_network(spec).description


def encoder_parameters(net: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of ``net``'s encoder, as its ``encoder_prefixes`` declare (ConfigError if none)."""
    prefixes = tuple(getattr(net, "encoder_prefixes", None) or ())
    params = [(n, p) for n, p in net.named_parameters() if prefixes and n.startswith(prefixes)]
    if not params:
        why = f"no parameter named {', '.join(prefixes)}..." if prefixes else "it declares no encoder_prefixes"
        raise ConfigError(f"cannot tell the encoder of {type(net).__name__} ({why})")
    return params
