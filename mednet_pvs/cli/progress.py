"""Progress of ``predict`` and ``demo``: cases and the tiles inside each, readable on a terminal
and in a log file.

    show = progress_display(console, n_cases, quiet=False)
    with show:
        predict_batch(..., on_case=show.case, on_tile=show.tile)
"""
from __future__ import annotations

import time
from typing import Any

_COLOURS = {"done": "green", "skipped": "yellow", "failed": "red"}


def progress_display(console: Any, n_cases: int, *, quiet: bool = False) -> Any:
    """A bar display on a terminal; plain lines otherwise (a log file, a SLURM output); with
    ``quiet`` only failed cases."""
    return BarProgress(console, n_cases) if console.is_terminal and not quiet else PlainProgress(console, quiet)


class BarProgress:
    """On a terminal: a bar over cases and one over the tiles of the case being predicted, with the
    time left."""

    def __init__(self, console, n_cases: int) -> None:  # noqa: ANN001 - rich Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=console)
        self.cases = self.bar.add_task("cases", total=n_cases)
        self.tiles = self.bar.add_task("tiles", total=1, visible=False)

    def __enter__(self) -> BarProgress:
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


class PlainProgress:
    """Not a terminal (a log file, a SLURM output): plain lines, tiles every quarter with the time
    left; ``quiet``: failed cases only."""

    def __init__(self, console, quiet: bool) -> None:  # noqa: ANN001 - rich Console
        self.console, self.quiet, self.clock = console, quiet, time.perf_counter
        self.started: dict[str, float] = {}
        self.shown: dict[str, int] = {}

    def __enter__(self) -> PlainProgress:
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
