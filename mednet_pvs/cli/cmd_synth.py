"""``mednet-pvs synth``: write a cohort of synthetic PVS phantoms and its manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mednet_pvs.cli.options import OUT, choices, plain, renamed

#: mednet_pvs.synth.phantom_config's ANATOMIES and CONTRASTS (not imported here: --help stays fast; a test checks).
Anatomy = choices("Anatomy", ("mni", "procedural"))
Contrast = choices("Contrast", ("T2w", "T1w", "FLAIR", "PD", "random"))


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"64"`` -> (64, 64, 64); ``"64,72,60"`` (or ``x``-separated) -> (64, 72, 60)."""
    from mednet_pvs.errors import ConfigError

    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3:
        raise ConfigError(f"--shape must be N or X,Y,Z (integers), got {text!r}")
    return vals[0], vals[1], vals[2]


def register(app: typer.Typer) -> None:
    @app.command("synth", cls=renamed(positional="--out"))
    def synth(
        outdir: Path = typer.Option(..., *OUT, help="Folder to write the cohort into (created if needed)."),
        n: int = typer.Option(10, "--n", "-n", min=1, help="Number of phantoms."),
        contrast: Contrast = typer.Option("T2w", "--contrast", case_sensitive=False, help="T2w or PD (PVS bright), T1w or FLAIR (PVS dark), or random."),
        spacing: float = typer.Option(1.0, "--spacing", help="Isotropic voxel size in mm (0.8 HCP-like T2w, 1.0 T1w)."),
        burden: int = typer.Option(2, "--burden", min=0, max=4, help="PVS burden 0 (none) to 4 (severe), Potter-style."),
        seed: int = typer.Option(0, "--seed", min=0, help="Cohort seed (subject i uses seed*100003+i)."),
        anatomy: Anatomy = typer.Option("mni", "--anatomy", case_sensitive=False, help="mni (MNI152 brain) or procedural (small analytic head)."),
        shape: str = typer.Option("64", "--shape", help="Grid of the procedural head: N or X,Y,Z."),
        sites: int = typer.Option(1, "--sites", min=1, help="Number of sites named in the manifest (round robin)."),
        confounders: bool = typer.Option(True, "--confounders/--no-confounders", help="Add lacunes, WMH and vessels."),
        noise: float = typer.Option(0.03, "--noise", help="Rician noise sigma relative to mean brain intensity."),
        slice_thickness: Optional[float] = typer.Option(None, "--slice-thickness", help="Simulate thick slices (mm)."),
        motion: float = typer.Option(0.0, "--motion", help="Rigid motion during part of the scan (mm)."),
    ) -> None:
        """Write N synthetic PVS phantoms (image, PVS label, brain mask, regions, JSON) and manifest.csv."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from mednet_pvs.io import check_output_dir
        from mednet_pvs.synth import PhantomConfig, make_cohort

        check_output_dir(outdir)

        cfg = PhantomConfig(
            anatomy=plain(anatomy), shape=parse_shape(shape), spacing=spacing,
            contrast=plain(contrast), burden=burden, confounders=confounders, noise=noise,
            slice_thickness_mm=slice_thickness, motion_mm=motion,
        )
        console = Console(highlight=False)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("phantoms", total=n)

            def done(s: dict) -> None:
                progress.console.print(
                    f"{s['subject']}  {s['site']}  {s['split']:<5}  {s['pvs_count']:4d} PVS  "
                    f"{s['pvs_volume_mm3']:8.1f} mm^3  {s['seconds']:5.1f} s  {s['paths']['image'].name}",
                    soft_wrap=True)
                progress.advance(task)

            manifest = make_cohort(outdir, n, cfg, seed=seed, sites=sites, on_subject=done)
        console.print(f"wrote {n} phantoms ({cfg.anatomy}, {cfg.contrast}, {cfg.spacing:g} mm, burden {burden}) "
                      f"and {manifest}", soft_wrap=True)
