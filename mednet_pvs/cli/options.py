"""One spelling per idea across the ``mednet-pvs`` commands, and the old spellings kept working.

The rule (``tests/cli/test_cli_names.py`` holds every command to it):

* ``-i/--input``: what the command reads - a scan, a folder of scans, a manifest, a cohort folder,
  a predict output folder, an nnU-Net result folder;
* ``-o/--out``: what it writes (a folder, or one file such as a JSON report);
* ``-m/--model``: the model it uses or starts from.

A spelling a command had before the rule (``evaluate --pred``, ``fit-frangi --data``, ``finetune
--from``, ``check-data SOURCE`` as a bare argument, ...) still works: it is hidden from ``--help``
and prints one ``warning:`` line naming the new spelling. :func:`renamed` builds the command class
that does this; options with a fixed set of values are declared with :func:`choices`, so ``--help``
lists the values and a wrong one is refused in one line before anything runs.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from typer.core import TyperCommand

INPUT = ("-i", "--input")
OUT = ("-o", "--out")
MODEL = ("-m", "--model")


def choices(name: str, values: Sequence[str]) -> type[Enum]:
    """A str Enum of ``values`` (member name = value) for an option whose values are a fixed set."""
    return Enum(name, [(v, v) for v in values], type=str)  # type: ignore[return-value]


def plain(value: Any) -> Any:
    """The string behind an option's Enum member (anything else unchanged)."""
    return value.value if isinstance(value, Enum) else value


def _warn(old: str, new: str) -> None:
    """One ``warning:`` line on stderr (``mednet-pvs`` formats warnings so); a FutureWarning, the
    category Python shows to the users of a program, which test runners collect instead."""
    warnings.warn(f"{old} is deprecated and will be removed; use {new}", FutureWarning, stacklevel=3)


def _spelling(option: str, params: Sequence[Any]) -> str:
    """``--input`` -> ``-i/--input`` (every spelling the command gives that option)."""
    for p in params:
        if option in getattr(p, "opts", ()):
            return "/".join(p.opts)
    return option


def rewrite_args(args: Sequence[str], params: Sequence[Any], renames: Mapping[str, str],
                 positional: str | None = None) -> list[str]:
    """``args`` with each old option spelling in ``renames`` replaced by its new one and (with
    ``positional``, e.g. ``"--input"``) a bare argument turned into that option; one warning each.

    ``params`` are the command's click parameters, used to know which options take a value (so a
    value is never mistaken for an option or for the bare argument). Everything after ``--`` is
    left alone."""
    takes_value: set[str] = set()
    for p in params:
        if getattr(p, "param_type_name", "") == "option" and not (getattr(p, "is_flag", False) or getattr(p, "count", False)):
            takes_value.update(p.opts)
    takes_value.update(old for old, new in renames.items() if new in takes_value)
    given = {a.split("=", 1)[0] for a in args}
    wants_positional = positional is not None and not (given & set(_spelling(positional, params).split("/")))
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out.extend(args[i - 1:])
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
            if name in renames:
                _warn(name, _spelling(renames[name], params))
                name = renames[name]
            out.append(name + eq + value if arg.startswith("--") else name + value)
            if name in takes_value and not eq and not value and i < len(args):
                out.append(args[i])  # the option's value, whatever it looks like
                i += 1
        elif wants_positional:
            assert positional is not None
            _warn(f"giving {arg!r} as a bare argument", f"{_spelling(positional, params)} {arg}")
            out.extend([positional, arg])
            wants_positional = False
        else:
            out.append(arg)
    return out


def renamed(renames: Mapping[str, str] | None = None, positional: str | None = None) -> type[TyperCommand]:
    """A command class (``@app.command(name, cls=renamed({"--pred": "--input"}))``) that accepts
    the old spellings ``renames`` (old -> new option name) and, with ``positional``, one bare
    argument as that option; each use prints one deprecation warning."""
    table = dict(renames or {})

    class Renamed(TyperCommand):
        old_spellings: dict[str, str] = table
        positional_alias: str | None = positional

        def parse_args(self, ctx, args):  # click's signature
            return super().parse_args(ctx, rewrite_args(args, self.params, table, positional))

    return Renamed
