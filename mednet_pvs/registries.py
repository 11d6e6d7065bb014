"""The one shape of this package's registries: a name -> object table filled by a decorator.

    NETWORKS = Registry("network")
    @NETWORKS.register("mednext_s_k3")
    def build(**kw): ...
    NETWORKS.get("mednext_s_k5")   # ConfigError: unknown network 'mednext_s_k5'. Did you mean mednext_s_k3? Known networks: ...

Used for the networks (:mod:`mednet_pvs.nets.registry`) and the model kinds of a bundle
(:mod:`mednet_pvs.inference.bundle`).
"""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import TypeVar

from mednet_pvs.errors import ConfigError

T = TypeVar("T")


class Registry(dict[str, T]):
    """A dict of named objects that refuses a name registered twice and names close matches of an
    unknown one.

    Args:
        what: what the names are, for messages (``"network"``, ``"model kind"``).
    """

    def __init__(self, what: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.what = what

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (a new name)."""

        def deco(obj: T) -> T:
            if name in self:
                raise ConfigError(f"{self.what} {name!r} is already registered")
            self[name] = obj
            return obj

        return deco

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        return sorted(n for n in self if fnmatch.fnmatchcase(n, pattern))

    def get_or_explain(self, name: str) -> T:
        """The object registered as ``name``; a ConfigError naming close matches and every known name otherwise."""
        if name not in self:
            close = difflib.get_close_matches(name, list(self), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.what} {name!r}.{hint} Known {self.what}s: {', '.join(self.names())}")
        return self[name]
