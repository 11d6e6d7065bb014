"""``mednet-pvs fit|validate|test``: the LightningCLI of :mod:`mednet_pvs.training.cli`.

Every argument after the command goes to LightningCLI unchanged (``--config``, ``--model.*``,
``--data.*``, ``--trainer.*``, ``--ckpt_path``, ``--print_config``, ``--help``); a ``--ckpt_path FILE``
is first read by the one safe reader (:func:`mednet_pvs.training.cli.check_checkpoint`), so a missing
file, a file that is not a checkpoint or one that could run code is one line naming it.
"""
from __future__ import annotations

import typer

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
_HELP = {
    "fit": "Train a network (LightningCLI: --config NAME|FILE, --model.*, --data.*, --trainer.*; --help for all).",
    "validate": "Validate a checkpoint on the validation cases (--ckpt_path ...).",
    "test": "Test a checkpoint on the split's test cases (--ckpt_path ...).",
}


def _command(app: typer.Typer, name: str) -> None:
    @app.command(name, context_settings=_PASS_THROUGH, add_help_option=False, help=_HELP[name])
    def run(ctx: typer.Context) -> None:
        from mednet_pvs.training.cli import run_cli

        run_cli([name, *ctx.args])


def register(app: typer.Typer) -> None:
    for name in ("fit", "validate", "test"):
        _command(app, name)
