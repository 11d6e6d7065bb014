"""Check a cohort before training and report every problem at once.

:func:`validate_cases` runs two passes:

1. **headers** (:func:`mednet_pvs.io.read_header`, no voxels read): every file exists and is a
   readable 3D NIfTI; every channel, label and brain mask lies on the first image's grid (shape
   and affine; a mismatch names the shape / spacing / origin / orientation difference).
2. **voxels** (in parallel over cases, ``workers`` processes, optional progress bar): images load
   with the same checks as training (:func:`mednet_pvs.io.load_image`: NaN/inf, constant,
   truncated); labels are binary 0/1 and not empty; brain masks have two values and are not
   empty. Statistics are collected on the way: intensity range, PVS volume (mm^3).

The result is a :class:`Report`: the good cases, a list of problems per case, per-case statistics
and a summary; ``mednet-pvs check-data`` prints it as a table.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.data.cases import Case
from mednet_pvs.errors import InputError
from mednet_pvs.io import MAX_ANISOTROPY, ImageInfo, load_image, read_header

#: Largest affine difference (mm, per matrix entry) still counted as the same grid. Headers store
#: float32, so ~1e-5 relative noise is normal.
GRID_ATOL_MM = 1e-3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one case: which file (role and path) and what."""

    case: str
    role: str
    path: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.role} {self.path}" if self.path else self.role
        return f"{self.case}: {where}: {self.message}"


@dataclass
class CaseStats:
    """What the checks learnt about a case (``None`` where the check did not run or failed).

    Attributes:
        shape: grid of the first image (X, Y, Z) voxels.
        spacing: voxel size (mm).
        orientation: axis codes, e.g. ``"RAS"``.
        intensity: (min, max) over the image channels.
        pvs_voxels: number of label voxels equal to 1.
        pvs_volume_mm3: ``pvs_voxels`` times the voxel volume.
    """

    shape: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None
    orientation: str | None = None
    intensity: tuple[float, float] | None = None
    pvs_voxels: int | None = None
    pvs_volume_mm3: float | None = None


@dataclass
class Report:
    """Outcome of :func:`validate_cases`.

    Attributes:
        cases: every case checked, in input order.
        good: the cases without problems (those used when skipping bad ones).
        problems: every problem found, in case order.
        stats: per-case statistics, by :attr:`Case.key`.
    """

    cases: list[Case]
    good: list[Case]
    problems: list[Problem]
    stats: dict[str, CaseStats] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No case has a problem."""
        return not self.problems

    @property
    def bad(self) -> list[str]:
        """Keys of the cases with at least one problem, in input order."""
        keys = {p.case for p in self.problems}
        return [c.key for c in self.cases if c.key in keys]

    def problems_of(self, case: Case | str) -> list[Problem]:
        """The problems of one case (by :class:`Case` or key)."""
        key = case.key if isinstance(case, Case) else case
        return [p for p in self.problems if p.case == key]

    def summary(self) -> dict[str, Any]:
        """Cohort numbers: cases, sites, spacings, shapes, intensity and PVS volume ranges."""
        st = [self.stats[c.key] for c in self.cases if c.key in self.stats]

        def rng(values: list[float]) -> dict[str, float] | None:
            return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))} if values else None

        return {
            "cases": len(self.cases),
            "good": len(self.good),
            "bad": len(self.bad),
            "problems": len(self.problems),
            "sites": dict(sorted(Counter(c.site or "-" for c in self.cases).items())),
            "channels": sorted({len(c.images) for c in self.cases}),
            "spacings_mm": dict(Counter(_fmt_spacing(s.spacing) for s in st if s.spacing).most_common()),
            "orientations": dict(Counter(s.orientation for s in st if s.orientation).most_common()),
            "intensity_min": rng([s.intensity[0] for s in st if s.intensity]),
            "intensity_max": rng([s.intensity[1] for s in st if s.intensity]),
            "pvs_volume_mm3": rng([s.pvs_volume_mm3 for s in st if s.pvs_volume_mm3 is not None]),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: summary, per-case statistics and problems."""
        return {
            "summary": self.summary(),
            "cases": [
                {"case": c.key, "site": c.site, "ok": not self.problems_of(c), **asdict(self.stats.get(c.key, CaseStats()))}
                for c in self.cases
            ],
            "problems": [asdict(p) for p in self.problems],
        }

    def error(self) -> InputError:
        """One :class:`InputError` listing every problem."""
        lines = "; ".join(str(p) for p in self.problems)
        return InputError(None, f"{len(self.bad)} of {len(self.cases)} case(s) have problems: {lines}")

    def raise_if_bad(self) -> None:
        """Raise :meth:`error` when any case has a problem."""
        if self.problems:
            raise self.error()

    def tables(self, *, problems_only: bool = False) -> list[Any]:
        """Rich renderables: per-case table (shape, spacing, intensity, PVS mm^3, problems) and summary."""
        from rich.table import Table

        t = Table(title="cases", show_lines=False)
        for col in ("case", "site", "shape", "spacing (mm)", "orient.", "intensity", "PVS (mm³)", "problems"):
            t.add_column(col, overflow="fold", justify="right" if col == "PVS (mm³)" else "left")
        for c in self.cases:
            probs = self.problems_of(c)
            if problems_only and not probs:
                continue
            s = self.stats.get(c.key, CaseStats())
            t.add_row(
                c.key,
                c.site or "-",
                "x".join(map(str, s.shape)) if s.shape else "-",
                _fmt_spacing(s.spacing) if s.spacing else "-",
                s.orientation or "-",
                f"{s.intensity[0]:.4g} .. {s.intensity[1]:.4g}" if s.intensity else "-",
                f"{s.pvs_volume_mm3:.1f}" if s.pvs_volume_mm3 is not None else "-",
                "\n".join(f"[red]{p.role}: {p.message}[/red]" + (f" [dim]({p.path})[/dim]" if p.path else "") for p in probs)
                or "[green]ok[/green]",
            )
        summ = self.summary()
        s = Table(title="summary", show_header=False)
        s.add_column("what")
        s.add_column("value", overflow="fold")
        s.add_row("cases", f"{summ['cases']} ({summ['good']} ok, {summ['bad']} with problems)")
        s.add_row("sites", ", ".join(f"{k}: {v}" for k, v in summ["sites"].items()))
        s.add_row("channels", ", ".join(map(str, summ["channels"])))
        s.add_row("spacings (mm)", ", ".join(f"{k} ({v})" for k, v in summ["spacings_mm"].items()) or "-")
        s.add_row("orientations", ", ".join(f"{k} ({v})" for k, v in summ["orientations"].items()) or "-")
        for key, name in (("intensity_min", "intensity min"), ("intensity_max", "intensity max"), ("pvs_volume_mm3", "PVS volume (mm³)")):
            r = summ[key]
            s.add_row(name, f"{r['min']:.4g} / {r['median']:.4g} / {r['max']:.4g} (min / median / max)" if r else "-")
        return [t, s]


def _fmt_spacing(spacing: Sequence[float]) -> str:
    return "x".join(f"{v:.3g}" for v in spacing)


# ----------------------------------------------------------------------------------------- grids


def grid_difference(ref: ImageInfo, other: ImageInfo, *, atol: float = GRID_ATOL_MM) -> str | None:
    """Describe how ``other``'s grid differs from ``ref``'s (``None`` when they match).

    Compares shape, spacing (mm), orientation and origin (mm, world position of voxel 0) and
    finally the whole affine (a rotation or shear that the former do not show).
    """
    diffs = []
    if ref.shape != other.shape:
        diffs.append(f"shape {'x'.join(map(str, other.shape))} vs {'x'.join(map(str, ref.shape))}")
    if not np.allclose(ref.spacing, other.spacing, atol=atol):
        d = np.max(np.abs(np.subtract(ref.spacing, other.spacing)))
        diffs.append(f"spacing {_fmt_spacing(other.spacing)} vs {_fmt_spacing(ref.spacing)} mm (differs by {d:.3g} mm)")
    if ref.orientation != other.orientation:
        diffs.append(f"orientation {''.join(other.orientation)} vs {''.join(ref.orientation)}")
    shift = float(np.linalg.norm(ref.affine[:3, 3] - other.affine[:3, 3]))
    if shift > atol:
        diffs.append(f"origin shifted by {shift:.3g} mm")
    if not diffs and not np.allclose(ref.affine, other.affine, atol=atol):
        d = float(np.max(np.abs(ref.affine - other.affine)))
        diffs.append(f"affine differs (largest entry difference {d:.3g})")
    return "; ".join(diffs) or None


def _header_pass(case: Case, max_anisotropy: float | None, require_label: bool) -> tuple[list[Problem], dict[str, ImageInfo]]:
    problems: list[Problem] = []
    infos: dict[str, ImageInfo] = {}
    if require_label and case.label is None:
        problems.append(Problem(case.key, "label", None, "no label given"))
    for role, path in case.files:
        try:
            infos[role] = read_header(path, max_anisotropy=max_anisotropy if role.startswith("image") else None)
        except InputError as e:
            problems.append(Problem(case.key, role, str(path), e.problem))
    ref_role = case.files[0][0]
    if ref_role in infos:
        ref = infos[ref_role]
        for role, info in infos.items():
            if role != ref_role and (d := grid_difference(ref, info)):
                problems.append(Problem(case.key, role, info.path, f"not on the {ref_role} grid: {d}"))
    return problems, infos


# ---------------------------------------------------------------------------------------- voxels


def _mask_problems(case: Case, role: str, path: Path, data: np.ndarray, *, label: bool, allow_empty: bool) -> tuple[list[Problem], int | None]:
    """Check a label (values exactly 0/1) or a brain mask (two values, not all 0).

    Returns:
        (problems, number of foreground voxels or ``None`` when the values are wrong).
    """
    p = str(path)
    if not np.issubdtype(data.dtype, np.integer):
        sample = data[data != np.round(data)][:3]
        return [Problem(case.key, role, p, f"non-integer values (e.g. {', '.join(f'{v:.3g}' for v in sample)}): expected a binary 0/1 mask")], None
    if data.dtype == np.uint8:  # bincount is ~10x faster than unique on 256^3 voxels
        counts = np.bincount(data.ravel(), minlength=2)
        values = np.flatnonzero(counts)
    else:
        values, counts = np.unique(data, return_counts=True)
    shown = ", ".join(map(str, values[:8].tolist())) + (" ..." if len(values) > 8 else "")
    if label and not set(values.tolist()) <= {0, 1}:
        return [Problem(case.key, role, p, f"values {shown}: expected 0 (background) and 1 (PVS) only")], None
    if not label and len(values) > 2:
        return [Problem(case.key, role, p, f"{len(values)} distinct values ({shown}): expected a binary brain mask")], None
    n_fg = int(np.count_nonzero(data)) if data.dtype != np.uint8 else int(counts[1:].sum())
    if n_fg == 0 and not (label and allow_empty):
        what = "no PVS voxel (all 0)" if label else "all 0 (no brain)"
        return [Problem(case.key, role, p, f"empty mask: {what}")], 0
    return [], n_fg


def check_voxels(case: Case, roles: Sequence[str], *, allow_empty_label: bool = False) -> tuple[list[Problem], CaseStats]:
    """Voxel checks of one case (the ``roles`` whose headers passed); runs in a worker process.

    Returns:
        Problems found and partial statistics (intensity range, PVS volume).
    """
    problems: list[Problem] = []
    stats = CaseStats()
    lo, hi = np.inf, -np.inf
    for role, path in case.files:
        if role not in roles:
            continue
        try:
            scan = load_image(path, kind="image" if role.startswith("image") else "label", max_anisotropy=None)
        except InputError as e:
            problems.append(Problem(case.key, role, str(path), e.problem))
            continue
        if role.startswith("image"):
            lo, hi = min(lo, float(scan.data.min())), max(hi, float(scan.data.max()))
            continue
        probs, n_fg = _mask_problems(case, role, path, scan.data, label=role == "label", allow_empty=allow_empty_label)
        problems += probs
        if role == "label" and n_fg is not None:
            stats.pvs_voxels, stats.pvs_volume_mm3 = n_fg, n_fg * float(np.prod(scan.spacing))
    if np.isfinite(lo):
        stats.intensity = (lo, hi)
    return problems, stats


def validate_cases(
    cases: Sequence[Case],
    skip_bad: bool = False,
    *,
    voxels: bool = True,
    workers: int | None = None,
    progress: bool | Callable[[int, int], None] = False,
    require_label: bool = True,
    allow_empty_label: bool = False,
    max_anisotropy: float | None = MAX_ANISOTROPY,
) -> Report:
    """Check every case and report all problems at once.

    Args:
        cases: the cohort (:func:`~mednet_pvs.data.cases.load_cases`).
        skip_bad: return a report whose ``good`` cases exclude the bad ones instead of raising.
        voxels: also read voxels (NaN, label values, empty masks); ``False``: headers only.
        workers: processes for the voxel pass (default: CPU count, at most 8; 1 = in process).
        progress: show a rich progress bar (``True``), or a callback ``(done, total)``.
        require_label: a case without a label is a problem.
        allow_empty_label: a label without PVS is not a problem (healthy controls).
        max_anisotropy: largest voxel-size ratio accepted for images (``None``: no limit).

    Returns:
        A :class:`Report` (``report.good``: cases to use).

    Raises:
        InputError: one error listing every problem, when any case is bad and ``skip_bad`` is false.
    """
    cases = list(cases)
    if not cases:
        raise InputError(None, "no cases to check")
    problems: dict[str, list[Problem]] = {}
    stats: dict[str, CaseStats] = {}
    readable: dict[str, list[str]] = {}
    for case in cases:
        probs, infos = _header_pass(case, max_anisotropy, require_label)
        problems[case.key] = probs
        bad_roles = {p.role for p in probs}
        readable[case.key] = [r for r in infos if r not in bad_roles]
        ref = infos.get(case.files[0][0])
        if ref is not None:
            stats[case.key] = CaseStats(shape=ref.shape, spacing=ref.spacing, orientation="".join(ref.orientation))
    if voxels:
        todo = [c for c in cases if readable[c.key]]
        for case, (probs, vstats) in _map_voxels(todo, readable, workers, progress, allow_empty_label):
            problems[case.key] += probs
            s = stats.setdefault(case.key, CaseStats())
            s.intensity, s.pvs_voxels, s.pvs_volume_mm3 = vstats.intensity, vstats.pvs_voxels, vstats.pvs_volume_mm3
    flat = [p for c in cases for p in problems[c.key]]
    report = Report(cases=cases, good=[c for c in cases if not problems[c.key]], problems=flat, stats=stats)
    if not skip_bad:
        report.raise_if_bad()
    return report


def _map_voxels(cases: list[Case], roles: dict[str, list[str]], workers: int | None, progress: Any, allow_empty: bool):
    """Yield ``(case, check_voxels(case))`` in input order, in parallel when ``workers > 1``."""
    n = len(cases)
    workers = min(workers or min(os.cpu_count() or 1, 8), max(n, 1))
    bar = _Progress(progress, n)
    results: dict[int, Any] = {}
    try:
        if workers <= 1:
            for i, c in enumerate(cases):
                results[i] = check_voxels(c, roles[c.key], allow_empty_label=allow_empty)
                bar.advance()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(check_voxels, c, roles[c.key], allow_empty_label=allow_empty): i for i, c in enumerate(cases)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.advance()
    finally:
        bar.close()
    for i, c in enumerate(cases):
        yield c, results[i]


class _Progress:
    """A rich progress bar, a ``(done, total)`` callback, or nothing."""

    def __init__(self, how: bool | Callable[[int, int], None], total: int) -> None:
        self.total, self.done, self.callback, self.bar = total, 0, None, None
        if callable(how):
            self.callback = how
        elif how:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("checking voxels"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task("voxels", total=total)
            self.bar.start()

    def advance(self) -> None:
        self.done += 1
        if self.callback:
            self.callback(self.done, self.total)
        if self.bar is not None:
            self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
