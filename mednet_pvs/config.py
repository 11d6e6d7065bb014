"""The one base of this package's configuration dataclasses.

Every config (network, preprocessing, augmentation, inference, Frangi...) is a dataclass that
serialises to plain JSON (``to_dict``) and back (``from_dict``), so a weight file or a run folder
always travels with what produced it. Sequences are stored as tuples (configs compare equal after
a JSON round trip) and written as lists; unknown keys are a :class:`ConfigError` naming them.
A field whose type is another config (``window: SlidingWindowConfig``, ``Optional`` allowed; any
class with ``to_dict`` / ``from_dict``) is written as a nested mapping and read back into that type.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from mednet_pvs.errors import ConfigError

C = TypeVar("C", bound="Config")


def as_tuple(value: Any) -> Any:
    """Lists (from JSON) become tuples, recursively; other values are returned unchanged."""
    if isinstance(value, (list, tuple)):
        return tuple(as_tuple(v) for v in value)
    return value


def as_json(value: Any) -> Any:
    """Tuples become lists, mappings dicts and configs (anything with ``to_dict``) their
    ``to_dict``, recursively (JSON-ready)."""
    if hasattr(value, "to_dict") and not isinstance(value, Mapping):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: as_json(v) for k, v in value.items()}
    return value


class Config:
    """Mixin for dataclass configs: ``to_dict`` / ``from_dict`` / ``replace``.

    Subclasses set ``_what`` (e.g. ``"preprocessing"``) for error messages.
    """

    _what: ClassVar[str] = "config"

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples written as lists)."""
        return {f.name: as_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def nested_configs(cls) -> dict[str, type]:
        """``{field name: config class}`` of the fields that hold another config (a class with ``from_dict``)."""
        hints = typing.get_type_hints(cls)
        out = {}
        for name in cls.field_names():
            tp = hints[name]
            options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
            sub = [o for o in options if isinstance(o, type) and hasattr(o, "from_dict")]
            if sub:
                out[name] = sub[0]
        return out

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any] | C) -> C:
        """Inverse of :meth:`to_dict` (a config of this type is returned as it is); unknown keys
        raise :class:`ConfigError` naming them."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f"{cls._what} config must be a mapping, not {type(d).__name__}")
        names = cls.field_names()
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for the {cls._what} config (known: {', '.join(sorted(names))})")
        nested = cls.nested_configs()
        return cls(**{k: nested[k].from_dict(v) if k in nested and v is not None else as_tuple(v) for k, v in d.items()})

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated; unknown names raise :class:`ConfigError`)."""
        return type(self).from_dict({**self.to_dict(), **changes})
