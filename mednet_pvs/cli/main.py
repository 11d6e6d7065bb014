"""The ``mednet-pvs`` command.

Sub-commands live in ``mednet_pvs/cli/cmd_*.py``; each module defines ``register(app)`` and is
discovered here, so adding a command never edits this file. Command bodies import heavy libraries
(torch, torchio) lazily so that ``mednet-pvs --help`` stays fast.

Errors raised on purpose (:class:`mednet_pvs.errors.MednetError`) become one line on stderr and
exit code 1; usage errors exit with 2 (click's convention).
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from mednet_pvs.errors import MednetError

try:  # typer versions that carry their own click (0.29 does)
    from typer._click.exceptions import ClickException
except ImportError:  # older typer runs on click
    from click.exceptions import ClickException


def _flags_show_no_type() -> None:
    """typer 0.29's help shows ``<bool>`` beside flags that take no value (``--save-probs <bool>``),
    which reads as if a value were expected; a flag's help cell shows no type here."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_mednet_flags", False):  # another typer version, or done already
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - typer's signature
        if self.is_flag:
            return None
        desc = getattr(self, "type_descriptor", None)
        if desc is not None and desc.is_choice and not desc.case_sensitive and self.show_choices and not desc.is_list:
            # typer shows case-insensitive choices casefolded (<t2w|t1w>); show them as declared
            return "<" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + ">"
        return shown(self, ctx)

    display_type_rich._mednet_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()

app = typer.Typer(
    name="mednet-pvs",
    help="Segment enlarged perivascular spaces (PVS) in brain MRI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_commands() -> None:
    import mednet_pvs.cli as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_")):
        importlib.import_module(f"mednet_pvs.cli.{mod}").register(app)


def _print_version(value: bool) -> None:
    """``--version``: handled while parsing (an eager option callback), so no command is needed."""
    if value:
        from mednet_pvs.version import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
) -> None:
    """Segment enlarged perivascular spaces (PVS) in brain MRI."""


_register_commands()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 - warnings' hook signature
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (used by the console script and the tests)."""
    import warnings

    shown = warnings.formatwarning
    warnings.formatwarning = _one_line_warning  # a warning is one line on stderr, not file:line + source
    try:
        code = app(args=argv, prog_name="mednet-pvs", standalone_mode=False)  # an exit code, or a command's None
        return code if isinstance(code, int) else 0
    except SystemExit as e:  # a command may still exit through SystemExit (LightningCLI does)
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except ClickException as e:  # usage error (unknown option, bad choice, missing input): one line
        if type(e).__name__ == "NoArgsIsHelpError":  # the help was shown (rich prints it while building the error)
            return e.exit_code
        text = " ".join(e.format_message().replace("Value error, ", "").split())
        where = f" (see {e.ctx.command_path} --help)" if getattr(e, "ctx", None) is not None else ""
        typer.secho(f"error: {text}{where}", err=True, fg="red")
        return e.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except MednetError as e:
        typer.secho(f"error: {e}", err=True, fg="red")
        return 1
    except OSError as e:  # a file the system refuses (permissions, disk full): name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        typer.secho(f"error: {where}{e.strerror or e}", err=True, fg="red")
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    finally:
        warnings.formatwarning = shown
    return 0


if __name__ == "__main__":
    sys.exit(main())
