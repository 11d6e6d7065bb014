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
from concurrent.futures.process import BrokenProcessPool
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
        from rich.markup import escape
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
                "\n".join(f"[red]{escape(p.role)}: {escape(p.message)}[/red]" + (f" [dim]({escape(p.path)})[/dim]" if p.path else "") for p in probs)
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
        except Exception as e:  # noqa: BLE001 -- one odd file is a problem of its case, never the end of the check
            problems.append(Problem(case.key, role, str(path), _unexpected(e)))
    ref_role = case.files[0][0]
    if ref_role in infos:
        ref = infos[ref_role]
        for role, info in infos.items():
            if role != ref_role and (d := grid_difference(ref, info)):
                problems.append(Problem(case.key, role, info.path, f"not on the {ref_role} grid: {d}"))
    return problems, infos


# ---------------------------------------------------------------------------------------- voxels


def _shown(values: np.ndarray) -> str:
    return ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values[:8].tolist()) + (" ..." if len(values) > 8 else "")


def _value_check(data: np.ndarray, *, label: bool, allow_empty: bool) -> tuple[str | None, int | None]:
    """The one rule for the values of a PVS label (exactly 0/1) or a brain mask (two values, not all 0).

    Returns:
        ``(problem or None, number of foreground voxels or None when the values are wrong)``.
    """
    data = np.asarray(data)
    if data.dtype.names or not (data.dtype == bool or np.issubdtype(data.dtype, np.number)):
        return f"voxel type {data.dtype} is not a number: expected a binary 0/1 mask", None
    if np.issubdtype(data.dtype, np.complexfloating):
        return f"complex voxel type {data.dtype}: expected a binary 0/1 mask", None
    if data.dtype != bool and not np.issubdtype(data.dtype, np.integer):
        bad = data[data != np.round(data)]  # NaN and inf included
        if bad.size:
            sample = ", ".join(f"{v:.3g}" for v in bad[:3].tolist())
            return (
                f"non-integer values (e.g. {sample}): expected a binary 0/1 mask "
                "(a probability map? threshold it first)"
            ), None
    if data.size:
        lo, hi = data.min(), data.max()  # two fast passes; np.unique only when the values are wrong
        if label and (lo < 0 or hi > 1):
            return f"values {_shown(np.unique(data))}: expected 0 (background) and 1 (PVS) only", None
        if not label and lo != hi and np.count_nonzero((data != lo) & (data != hi)):
            values = np.unique(data)
            return f"{len(values)} distinct values ({_shown(values)}): expected a binary brain mask", None
    n_fg = int(np.count_nonzero(data))
    if n_fg == 0 and not (label and allow_empty):
        return f"empty mask: {'no PVS voxel (all 0)' if label else 'all 0 (no brain)'}", 0
    return None, n_fg


def label_value_problem(data: np.ndarray, *, allow_empty: bool = True) -> str | None:
    """What is wrong with the values of a binary PVS label or mask, or ``None`` when they are fine.

    The one rule used by ``check-data`` (:func:`validate_cases`) and by
    :func:`mednet_pvs.analysis.evaluate.evaluate` (references and predictions): voxels are exactly
    0 (background) or 1 (PVS), stored as integers, booleans or integral floats. Anything else
    -- values 0/1/2, 255, -1, fractions (a probability map), NaN, a colour or complex type -- is a
    problem, never silently binarised.

    Args:
        data: the label's voxels (any shape).
        allow_empty: an all-0 label (no PVS) is fine; ``False`` makes it a problem (training
            cohorts, unless ``--allow-empty-label``).

    Returns:
        One sentence naming the problem (e.g. ``"values 0, 1, 2: expected 0 (background) and 1
        (PVS) only"``), or ``None``.
    """
    return _value_check(data, label=True, allow_empty=allow_empty)[0]


def _mask_problems(case: Case, role: str, path: Path, data: np.ndarray, *, label: bool, allow_empty: bool) -> tuple[list[Problem], int | None]:
    """Check a label (values exactly 0/1, :func:`label_value_problem`) or a brain mask (two values, not all 0).

    Returns:
        (problems, number of foreground voxels or ``None`` when the values are wrong).
    """
    problem, n_fg = _value_check(data, label=label, allow_empty=allow_empty)
    return ([Problem(case.key, role, str(path), problem)] if problem else []), n_fg


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
            if role.startswith("image"):
                lo, hi = min(lo, float(scan.data.min())), max(hi, float(scan.data.max()))
                continue
            probs, n_fg = _mask_problems(case, role, path, scan.data, label=role == "label", allow_empty=allow_empty_label)
        except InputError as e:
            problems.append(Problem(case.key, role, str(path), e.problem))
            continue
        except Exception as e:  # noqa: BLE001 -- one odd file is a problem of its case, never the end of the check
            problems.append(Problem(case.key, role, str(path), _unexpected(e)))
            continue
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
        try:
            probs, infos = _header_pass(case, max_anisotropy, require_label)
        except Exception as e:  # noqa: BLE001 -- a case that breaks the checks is reported, the others go on
            probs, infos = [Problem(case.key, "case", None, f"header checks failed ({_unexpected(e)})")], {}
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
                try:
                    results[i] = check_voxels(c, roles[c.key], allow_empty_label=allow_empty)
                except Exception as e:  # noqa: BLE001
                    results[i] = _voxels_failed(c, e)
                bar.advance()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(check_voxels, c, roles[c.key], allow_empty_label=allow_empty): i for i, c in enumerate(cases)}
                for fut in as_completed(futures):
                    try:
                        results[futures[fut]] = fut.result()
                    except BrokenProcessPool:
                        continue  # a worker died (killed for memory, crashed): which case did it is found below
                    except Exception as e:  # noqa: BLE001
                        results[futures[fut]] = _voxels_failed(cases[futures[fut]], e)
                    bar.advance()
            # After a worker died every unfinished case failed with it: check each again alone, in a
            # fresh process, so that only the case that kills its process is reported.
            for i in [i for i in range(n) if i not in results]:
                with ProcessPoolExecutor(max_workers=1) as solo:
                    try:
                        results[i] = solo.submit(check_voxels, cases[i], roles[cases[i].key], allow_empty_label=allow_empty).result()
                    except Exception as e:  # noqa: BLE001
                        results[i] = _voxels_failed(cases[i], e)
                bar.advance()
    finally:
        bar.close()
    for i, c in enumerate(cases):
        yield c, results[i]


def _unexpected(e: BaseException) -> str:
    """An exception that is not an :class:`InputError`, as one line: its type and message."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _voxels_failed(case: Case, e: BaseException) -> tuple[list[Problem], CaseStats]:
    if isinstance(e, BrokenProcessPool):
        why = "the process checking it died (out of memory, or a crash while reading its files)"
    else:
        why = _unexpected(e)
    return [Problem(case.key, "case", None, f"voxel checks failed: {why}")], CaseStats()


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
