"""``mednet-pvs predict``: segment PVS in one scan, a folder, or a manifest (thin wrapper)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        inputs: Path = typer.Option(..., "-i", "--input", help="A NIfTI scan, a folder of scans, a manifest .csv/.tsv or a BIDS-like folder."),
        outdir: Path = typer.Option(..., "-o", "--out", help="Output folder (one subfolder per case, plus summary.csv)."),
        model: str = typer.Option(..., "-m", "--model", help="A registry name (mednet-pvs models), hf://owner/repo@<commit>, a model folder, or an nnU-Net v1 result folder."),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
        tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation (default: the model's setting)."),
        step: Optional[float] = typer.Option(None, help="Sliding-window step as a fraction of the patch (default: the model's, 0.5)."),
        save_probs: bool = typer.Option(False, "--save-probs", help="Also write the PVS probability map."),
        regions: Optional[Path] = typer.Option(None, help="Region map (aseg/SynthSeg) for per-region burden: a file, or a folder of <case id>*.nii.gz."),
        brainmask: Optional[Path] = typer.Option(None, help="Brain mask for a single input scan."),
        preview: bool = typer.Option(False, "--preview", help="Also write a PNG overview per case."),
        shard: Optional[str] = typer.Option(None, help="K/N: process only this share of the inputs (e.g. SLURM array task K of N)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Redo cases whose outputs already exist (also those made by another model or settings)."),
        max_anisotropy: float = typer.Option(8.0, "--max-anisotropy", min=1.0, help="Largest coarsest/finest voxel size ratio accepted."),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the networks (pays minutes of compilation once per run; then faster)."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only failed cases and the final line (no progress)."),
    ) -> None:
        """Segment PVS, write masks, stats and a summary; cases already done are skipped."""
        from rich.console import Console

        from mednet_pvs.inference.batch import collect_inputs, parse_shard, predict_batch, select_shard
        from mednet_pvs.zoo import load_pretrained

        from mednet_pvs.errors import ConfigError
        from mednet_pvs.io import check_output_dir

        console = Console(stderr=True, soft_wrap=True)
        shard_kn = parse_shard(shard)
        check_output_dir(outdir)
        cases = collect_inputs(inputs, regions=regions, brainmask=brainmask)
        todo = select_shard(cases, shard_kn)
        net = load_pretrained(model, device=device)
        if compile_:
            if not hasattr(net, "compile"):
                raise ConfigError(f"--compile: {model} has no networks to compile")
            net.compile()
        if not quiet:
            console.print(f"model: {net!r}; {len(todo)} case(s)" + (f" (shard {shard})" if shard else ""))
        show = _BarProgress(console, len(todo)) if console.is_terminal and not quiet else _PlainProgress(console, quiet)
        with show:
            report = predict_batch(
                cases, outdir, net, tta=tta, step=step, save_probs=save_probs, preview=preview,
                overwrite=overwrite, shard=shard_kn, on_case=show.case, on_tile=None if quiet else show.tile,
                max_anisotropy=max_anisotropy, model_source=model,
            )
        console.print(
            f"{len(report.done)} done, {len(report.skipped)} skipped (already done), {len(report.failed)} failed"
            f" in {report.seconds['total']:.1f} s" + (f"; summary: {report.summary}" if report.summary else "")
        )
        if report.failed:
            raise typer.Exit(1)


_COLOURS = {"done": "green", "skipped": "yellow", "failed": "red"}


class _BarProgress:
    """On a terminal: a bar over cases and one over the tiles of the case being predicted, with the
    time left."""

    def __init__(self, console, n_cases: int) -> None:  # noqa: ANN001 - rich Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=console)
        self.cases = self.bar.add_task("cases", total=n_cases)
        self.tiles = self.bar.add_task("tiles", total=1, visible=False)

    def __enter__(self) -> _BarProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def case(self, case_id: str, status: str, message: str) -> None:
        self.bar.console.print(f"[{_COLOURS[status]}]{status:>7}[/] {case_id}: {message}", highlight=False)
        self.bar.advance(self.cases)

    def tile(self, case_id: str, done: int, total: int) -> None:
        if done <= 0 or self.bar.tasks[self.tiles].description != case_id:
            self.bar.reset(self.tiles, total=total, description=case_id, visible=True)
        self.bar.update(self.tiles, completed=done, total=total)


class _PlainProgress:
    """Not a terminal (a log file, a SLURM output): plain lines, tiles every quarter with the time
    left; ``quiet``: failed cases only."""

    def __init__(self, console, quiet: bool) -> None:  # noqa: ANN001 - rich Console
        import time

        self.console, self.quiet, self.clock = console, quiet, time.perf_counter
        self.started: dict[str, float] = {}
        self.shown: dict[str, int] = {}

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def case(self, case_id: str, status: str, message: str) -> None:
        if not self.quiet or status == "failed":
            self.console.print(f"{status:>7} {case_id}: {message}", highlight=False, markup=False)

    def tile(self, case_id: str, done: int, total: int) -> None:
        now = self.clock()
        start = self.started.setdefault(case_id, now)
        quarter = 4 * done // max(total, 1)
        if quarter <= self.shown.get(case_id, 0) or done >= total:
            return
        self.shown[case_id] = quarter
        left = (now - start) / done * (total - done) if done else float("nan")
        self.console.print(f"        {case_id}: {done}/{total} tiles, {left:.0f} s left", highlight=False, markup=False)
