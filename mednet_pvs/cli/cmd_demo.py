"""``mednet-pvs demo``: the quick start - make a synthetic PVS phantom and save a picture of it."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the phantom and overview.png."),
        seed: int = typer.Option(0, "--seed", min=0, help="Phantom seed."),
        anatomy: str = typer.Option("mni", "--anatomy", help="mni (full brain, ~5 s) or procedural (64^3, fast)."),
    ) -> None:
        """Make a synthetic PVS phantom (MNI152, 1 mm, T2w, burden 2), save it and overview.png."""
        from mednet_pvs.cli.cmd_synth import canonical_choice
        from mednet_pvs.synth.config import ANATOMIES
        from mednet_pvs.synth.demo import run_demo

        result = run_demo(out, seed, anatomy=canonical_choice(anatomy, ANATOMIES))
        for line in result.summary_lines():
            typer.echo(line)
