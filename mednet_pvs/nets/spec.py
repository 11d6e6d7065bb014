"""JSON-friendly network configurations: a base dataclass mixin and the ``{"name", "kwargs"}`` spec.

A weight file always travels with what built it: every network made by this package carries a
:class:`NetworkSpec` (registry name + the full configuration), which a model bundle stores as JSON
and :func:`mednet_pvs.nets.create_network_from_config` turns back into the same network.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mednet_pvs.config import Config, as_json, as_tuple, shown
from mednet_pvs.errors import ConfigError


def dims(values: Any) -> str:
    """A shape or spacing as text: ``(128, 128, 96) -> "128x128x96"``."""
    return "x".join(str(v) for v in values)


def brief(values: Any) -> str:
    """Compact text of a config value for one-line descriptions: ``(2, 2, 2) -> "(2,2,2)"``, kernels
    ``((1, 3, 3), (3, 3, 3)) -> "(1x3x3,3x3x3)"``, and ``((3, 3, 3),) * 6 -> "3x3x3"`` (all the same)."""
    if not isinstance(values, (tuple, list)):
        return str(values)
    if values and all(isinstance(v, (tuple, list)) for v in values):
        shapes = [dims(v) for v in values]
        return shapes[0] if len(set(shapes)) == 1 else f"({','.join(shapes)})"
    return f"({','.join(str(v) for v in values)})"


@dataclass
class NetConfig(Config):
    """Base of the networks' configuration dataclasses.

    Sequence fields are stored as tuples (so configs compare equal after a JSON round trip);
    :meth:`to_dict` writes them as lists.
    """

    _what = "network"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, as_tuple(getattr(self, f.name)))


@dataclass(frozen=True)
class NetworkSpec:
    """What a model bundle's ``config.json`` holds to rebuild a network: ``{"name", "kwargs"}``.

    ``name`` is a registry name (see :func:`mednet_pvs.nets.list_networks`), ``kwargs`` the full
    configuration of that network as plain JSON values.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": as_json(dict(self.kwargs))}

    def to_json(self, **dumps_kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **dumps_kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | "NetworkSpec") -> "NetworkSpec":
        """Read ``{"name": str, "kwargs": {...}}`` (``kwargs`` may be left out: the network's defaults);
        anything else is a ConfigError naming the key (the network's own options are checked when it is built)."""
        if isinstance(d, NetworkSpec):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f'a network spec must be a mapping {{"name": str, "kwargs": dict}}, not {shown(d)}')
        extra = sorted(str(k) for k in set(d) - {"name", "kwargs"})
        if extra:
            raise ConfigError(f"network spec: unknown key(s) {extra}; expected 'name' and 'kwargs'")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f'must be a registry name (a network spec is {{"name": str, "kwargs": dict}}), not {shown(name)}',
                              field="name")
        kwargs = d.get("kwargs", {})
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(f"must be a mapping of the options of network {name!r}, not {shown(kwargs)}", field="kwargs")
        return cls(name=name, kwargs=dict(kwargs))
