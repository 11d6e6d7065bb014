"""The one base of this package's configuration dataclasses.

Every config (network, preprocessing, augmentation, inference, Frangi...) is a dataclass that
serialises to plain JSON (``to_dict``) and back (``from_dict``), so a weight file or a run folder
always travels with what produced it. Sequences are stored as tuples (configs compare equal after
a JSON round trip) and written as lists; unknown keys are a :class:`ConfigError` naming them.
"""
from __future__ import annotations

import dataclasses
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
    """Tuples become lists and mappings dicts, recursively (JSON-ready)."""
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
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming them."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{cls._what} config must be a mapping, not {type(d).__name__}")
        names = cls.field_names()
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for the {cls._what} config (known: {', '.join(sorted(names))})")
        return cls(**{k: as_tuple(v) for k, v in d.items()})

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated; unknown names raise :class:`ConfigError`)."""
        return type(self).from_dict({**self.to_dict(), **changes})
