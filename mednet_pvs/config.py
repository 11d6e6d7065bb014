"""The one base of this package's configuration dataclasses.

Every config (network, preprocessing, augmentation, inference, Frangi...) is a dataclass that
serialises to plain JSON (``to_dict``) and back (``from_dict``), so a weight file or a run folder
always travels with what produced it. Sequences are stored as tuples (configs compare equal after
a JSON round trip) and written as lists. A field whose type is another config (``window:
SlidingWindowConfig``, ``Optional`` allowed; any class with ``to_dict`` / ``from_dict``) is written
as a nested mapping and read back into that type.

``from_dict`` trusts nothing it reads: unknown keys, a value that does not fit its field's type
hint (``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``Literal``, tuples and lists of
those, mappings, nested configs; ``null`` only where the hint is ``Optional``) and a value out of
its range (each class's :meth:`Config.validate`, also run on direct construction) are a
:class:`ConfigError` whose ``field`` is the value's dotted path (``inference.window.batch_size``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

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


def shown(value: Any) -> str:
    """A value as its config file shows it (JSON where possible: ``null``, ``"abc"``), at most 80 characters."""
    try:
        text = json.dumps(as_json(value))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _options(tp: Any) -> tuple[Any, ...] | None:
    """The options of a ``Union`` / ``X | Y`` hint, else ``None``."""
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else None


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "from_dict")


def _is_variadic(args: tuple[Any, ...]) -> bool:
    return len(args) == 2 and args[1] is Ellipsis


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def describe_type(tp: Any) -> str:
    """What a value of the type hint ``tp`` must be, in words (``tuple[int, int, int]`` -> ``"a list of
    3 integers"``, ``float | None`` -> ``"a number or null"``)."""
    options = _options(tp)
    if options is not None:
        text = " or ".join(describe_type(o) for o in options if o is not type(None))
        return f"{text} or null" if type(None) in options else text
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if tp in words:
        return words[tp]
    if tp is Any or tp is object:
        return "any value"
    if _is_config(tp):
        return f"a mapping (the {getattr(tp, '_what', tp.__name__)} config)"
    origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(shown(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and not _is_variadic(args):
            if len(set(args)) == 1 and args[0] in _PLURAL:
                return f"a list of {len(args)} {_PLURAL[args[0]]}"
            return f"a list of {len(args)} items: " + ", ".join(describe_type(a) for a in args)
        item = args[0] if args else Any
        if item in _PLURAL:
            return f"a list of {_PLURAL[item]}"
        return "a list" if item is Any else f"a list whose items are each {describe_type(item)}"
    if origin in (dict, Mapping):
        if len(args) == 2 and args[1] in _PLURAL:
            return f"a mapping of {_PLURAL[args[1]]}"
        return "a mapping" if len(args) < 2 or args[1] is Any else f"a mapping whose values are each {describe_type(args[1])}"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    """A value does not fit a type hint (turned into a ConfigError by :func:`check_value`)."""


def _convert(value: Any, tp: Any) -> Any:
    """``value`` checked against ``tp`` and converted (lists to tuples, numpy scalars to Python's);
    nested configs are read with their ``from_dict`` (whose ConfigErrors pass through)."""
    options = _options(tp)
    if options is not None:
        if value is None:
            if type(None) in options:
                return None
            raise _Mismatch
        for option in options:
            if _is_config(option) and isinstance(value, Mapping):
                return option.from_dict(value)
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option)
            except _Mismatch:
                pass
        raise _Mismatch
    if tp is Any or tp is object:
        return as_tuple(value)
    if _is_config(tp):
        if not isinstance(value, (Mapping, tp)):
            raise _Mismatch
        return tp.from_dict(value)
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return value if type(value) in (int, float) else float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and args and not _is_variadic(args):
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_convert(v, a) for v, a in zip(value, args))
        item = args[0] if args else Any
        return tuple(_convert(v, item) for v in value)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch
        if len(args) != 2:
            return dict(value)
        key, item = args
        return {_convert(k, key): v if item is Any else _convert(v, item) for k, v in value.items()}  # free-form values kept as given
    if isinstance(origin, type):
        if isinstance(value, origin):
            return value
        raise _Mismatch
    return as_tuple(value)  # a hint this reader does not know (a Callable, a TypeVar...): taken as it is


def check_value(value: Any, tp: Any, field: str | None = None) -> Any:
    """``value`` checked against the type hint ``tp`` and converted as :meth:`Config.from_dict` stores
    it (lists as tuples); if it does not fit, a ConfigError ``"<field> must be <tp in words>, not
    <value>"`` (a nested config's own errors pass through, with their field inside that config)."""
    try:
        return _convert(value, tp)
    except _Mismatch:
        raise ConfigError(f"must be {describe_type(tp)}, not {shown(value)}", field=field) from None


def _one_or_all(tp: Any) -> Any:
    """``tp`` where a tuple also takes one value of its item type (``tuple[int, int, int]`` -> ``tuple[int, int, int] | int``)."""
    options = _options(tp)
    if options is not None:
        return typing.Union[tuple(_one_or_all(o) for o in options)]  # type: ignore[return-value]
    if typing.get_origin(tp) is tuple and typing.get_args(tp):
        return typing.Union[tp, typing.get_args(tp)[0]]
    return tp


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    one = getattr(cls, "_one_for_all", ())
    return {f.name: _one_or_all(hints[f.name]) if f.name in one else hints[f.name] for f in dataclasses.fields(cls)}


class Config:
    """Mixin for dataclass configs: ``to_dict`` / ``from_dict`` (type-checked) / ``replace`` / ``validate``.

    Subclasses set ``_what`` (e.g. ``"preprocessing"``) for error messages, ``_one_for_all`` to the
    tuple fields that also take one value used for every entry (``patch_size: 64`` for a cube; the
    class's ``__post_init__`` expands it), and override :meth:`validate` for range checks.
    """

    _what: ClassVar[str] = "config"
    _one_for_all: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a :class:`ConfigError` with ``field=<field name>`` for a value out of its range; run on
        construction (``__post_init__``), hence by :meth:`from_dict` and :meth:`replace` too."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """``{field name: type hint}`` as :meth:`from_dict` checks them (``_one_for_all`` fields also take one value)."""
        return dict(_field_types(cls))

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples written as lists)."""
        return {f.name: as_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def nested_configs(cls) -> dict[str, type]:
        """``{field name: config class}`` of the fields that hold another config (a class with ``from_dict``)."""
        out = {}
        for name, tp in _field_types(cls).items():
            sub = [o for o in (_options(tp) or (tp,)) if _is_config(o)]
            if sub:
                out[name] = sub[0]
        return out

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any] | C) -> C:
        """Inverse of :meth:`to_dict` (a config of this type is returned as it is).

        Every key must be a field, every value must fit its field's type hint (:func:`check_value`)
        and the range checks of :meth:`validate`; otherwise a :class:`ConfigError` whose ``field``
        is the value's path (``window.batch_size``; an outer config prefixes its own field name).
        """
        if isinstance(d, cls):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f"the {cls._what} config must be a mapping, not {shown(d)}")
        names = cls.field_names()
        unknown = sorted(str(k) for k in set(d) - set(names))
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for the {cls._what} config (known: {', '.join(sorted(names))})")
        types_ = _field_types(cls)
        values = {}
        for name, value in d.items():
            try:
                values[name] = _convert(value, types_[name])
            except _Mismatch:
                raise ConfigError(f"must be {describe_type(types_[name])}, not {shown(value)}", field=name) from None
            except ConfigError as e:  # from a nested config: its field, under this one's name
                raise e.within(name) from None
        try:
            return cls(**values)
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:  # a __post_init__ that chokes on a value the hints let through
            raise ConfigError(f"the {cls._what} config cannot be built: {e}") from None

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated; unknown names raise :class:`ConfigError`)."""
        return type(self).from_dict({**self.to_dict(), **changes})
