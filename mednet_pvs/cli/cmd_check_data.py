"""``mednet-pvs check-data``: validate a cohort (manifest or BIDS-like folder) before training."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mednet_pvs.cli.options import INPUT, OUT, renamed


def register(app: typer.Typer) -> None:
    @app.command("check-data", cls=renamed({"--json": "--out"}, positional="--input"))
    def check_data(
        source: Path = typer.Option(..., *INPUT, help="Manifest (.csv/.tsv) or BIDS-like cohort folder."),
        workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Processes for the voxel checks (default: CPU count, at most 8)."),
        headers_only: bool = typer.Option(False, "--headers-only", help="Check headers and grids only (no voxels read)."),
        contrast: Optional[list[str]] = typer.Option(None, "--contrast", help="BIDS folders: contrast(s) to use as channels, e.g. T2w (repeat for several)."),
        no_label: bool = typer.Option(False, "--no-label", help="Cases need no label (inference cohort)."),
        allow_empty_label: bool = typer.Option(False, "--allow-empty-label", help="A label without PVS is not a problem."),
        problems_only: bool = typer.Option(False, "--problems-only", help="List only the cases with problems."),
        json_out: Optional[Path] = typer.Option(None, *OUT, help="Also write the report (summary, cases, problems) to this JSON file."),
    ) -> None:
        """Check every case (files, grids, label values, NaN) and print one table; exit 1 if any is bad."""
        from rich.console import Console

        from mednet_pvs.data.cases import load_cases
        from mednet_pvs.data.checks import validate_cases
        from mednet_pvs.io import check_output_file, write_json

        if json_out is not None:
            check_output_file(json_out)  # a bad output place fails now, not after every case is read
        console = Console()
        cases = load_cases(source, require_label=not no_label, contrasts=contrast or None)
        report = validate_cases(
            cases,
            skip_bad=True,
            voxels=not headers_only,
            workers=workers,
            progress=console.is_terminal,
            require_label=not no_label,
            allow_empty_label=allow_empty_label,
        )
        for table in report.tables(problems_only=problems_only):
            console.print(table)
        if json_out is not None:
            write_json(report.to_dict(), json_out)
        if not report.ok:
            typer.secho(f"{len(report.bad)} of {len(report.cases)} case(s) have problems", err=True, fg="red")
            raise typer.Exit(1)
        typer.secho(f"all {len(report.cases)} case(s) ok", fg="green")
