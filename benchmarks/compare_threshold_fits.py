#!/usr/bin/env python3
"""Paired comparison of two models' threshold fits (``fit_threshold_synth_any.py`` result files).

    .venv/bin/python benchmarks/compare_threshold_fits.py BASE.txt CANDIDATE.txt

Each file's per-case voxel Dice is read at that file's own best threshold (the one it would ship
with). The whole-head groups share the skull-stripped group's fit case, so the fit's "mean over
groups" counts 12 of its 14 cases twice; here every case (seed) counts once. Prints the candidate
minus the base per case, their mean with its standard error, and how many cases went up or down
(by more than 0.005): a difference within about two standard errors is not a difference.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

_ROW = re.compile(r"^(?P<group>\S.*?)\s+(?P<seed>\d{6,})\s+(?P<n>\d+)\s+(?P<dice>(?:\d\.\d{3}\s+)+)\s*\d+\s*$")


def read_fit(path: Path) -> tuple[dict[int, tuple[str, float]], float]:
    """{seed: (group, Dice at the file's best threshold)} and that threshold."""
    text = Path(path).read_text()
    header = next((ln for ln in text.splitlines() if ln.startswith("group ")), None)
    best = re.search(r"^best threshold: ([0-9.]+)$", text, re.M)
    if header is None or best is None:
        raise SystemExit(f"error: {path}: not a fit_threshold_synth_any.py result (no table header or best threshold)")
    thresholds = [float(t) for t in header.split()[4:-1]]
    col = thresholds.index(float(best.group(1)))
    rows: dict[int, tuple[str, float]] = {}
    for ln in text.splitlines():
        m = _ROW.match(ln)
        if m:
            rows.setdefault(int(m.group("seed")), (re.sub(r" (head|stripped)$", "", m.group("group")), float(m.group("dice").split()[col])))
    if not rows:
        raise SystemExit(f"error: {path}: no per-case rows")
    return rows, float(best.group(1))


def compare(base: Path, cand: Path) -> list[str]:
    a, ta = read_fit(base)
    b, tb = read_fit(cand)
    seeds = sorted(set(a) & set(b))
    if set(a) != set(b):
        raise SystemExit(f"error: the two fits scored other cases ({len(set(a) ^ set(b))} seeds differ)")
    d = np.array([b[s][1] - a[s][1] for s in seeds])
    lines = [f"base {base} (threshold {ta}), candidate {cand} (threshold {tb}); {len(seeds)} distinct fit cases",
             f"{'case':28s} {'seed':>8s} {'base':>6s} {'cand':>6s} {'diff':>7s}"]
    lines += [f"{a[s][0]:28s} {s:8d} {a[s][1]:6.3f} {b[s][1]:6.3f} {b[s][1] - a[s][1]:+7.3f}" for s in seeds]
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    lines.append(f"mean: base {np.mean([a[s][1] for s in seeds]):.3f}, candidate {np.mean([b[s][1] for s in seeds]):.3f}; "
                 f"difference {d.mean():+.3f} +- {se:.3f} (standard error); up {int((d > 0.005).sum())}, "
                 f"down {int((d < -0.005).sum())}, level {int((abs(d) <= 0.005).sum())}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("candidate", type=Path)
    args = ap.parse_args(argv)
    for p in (args.base, args.candidate):
        if not p.is_file():
            raise SystemExit(f"error: {p}: not found")
    print("\n".join(compare(args.base, args.candidate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
