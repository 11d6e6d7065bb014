"""``mednet-pvs report``: one self-contained HTML page to check a predict output folder at a glance."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        folder: Path = typer.Option(..., "-i", "--input", help="A predict output folder (what predict -o wrote); only read."),
        out: Path = typer.Option(Path("report.html"), "-o", "--out", help="The HTML file to write (not inside the folder)."),
        sites: Path | None = typer.Option(None, "--sites", help="Manifest/site table (.csv/.tsv with a site column) or BIDS folder "
                                             "naming each case's site (default: found above the inputs, else the case id prefix)."),
        outlier_z: float = typer.Option(3.0, "--outlier-z", min=0.0, help="Flag cases whose PVS count or volume has |robust z| above this."),
        no_pictures: bool = typer.Option(False, "--no-pictures", help="Numbers and flags only (no per-case pictures; fast)."),
        jobs: int = typer.Option(1, "-j", "--jobs", min=1, help="Cases read and drawn at once (processes)."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the final line."),
    ) -> None:
        """Write a cohort QC report: per case a PVS projection and slices with the mask, count, volume,
        per-region burden and flags (failed, empty, outlier, input missing); plots by site; a sortable table."""
        import time

        from mednet_pvs.inference.report import write_report

        t0 = time.perf_counter()
        progress = None if quiet else (lambda cid, i, n: typer.echo(f"  [{i}/{n}] {cid}", err=True))
        path = write_report(folder, out, sites=sites, outlier_z=outlier_z, pictures=not no_pictures, on_case=progress,
                            jobs=jobs)
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
