#!/usr/bin/env python3
"""Fit the any-contrast model's PVS probability threshold on the held-out set's *fit* cases.

    .venv/bin/python benchmarks/fit_threshold_synth_any.py [--model mednet-pvs-synth-any] [--threads 2]

Each group's ``fit_case`` (a seed block of its own, never scored by ``bench_synth_any.py``; the
whole-head groups share the skull-stripped group's case, or with ``--head-cases`` each has its own,
as ``--brain`` makes: 26 distinct cases instead of 14) is made on the procedural anatomy,
predicted once (tile step 1.0, as the benchmark), and its PVS probability map thresholded at each
candidate; the threshold with the best mean voxel Dice over the groups is printed (then shipped
with ``zoo/build_bundled.py ... --threshold T --write``). Writes
``benchmarks/results/synth_any_threshold_fit.txt``.

``--brain``: also make each whole-head group's own fit case (the whole-head group's ``role="fit"``
seed block, never scored) and print the brain-mask Dice the model finds from the image alone, per
group and on average, with that of the skull-stripped fit cases above (from the same
predictions): those cannot choose between models on what whole heads test (session 16's stage 6
lost 0.03 of scored brain Dice unseen by the fit).

``--min-cluster MM3 ...``: also remove predicted clusters (26-connected) smaller than each size, as
the bundle's ``min_cluster_mm3`` does, at every threshold, and print the mean voxel Dice and
cluster Dice over the groups on that grid; the pair (threshold, size) with the best mean of the two
(both are issue 15 targets) is printed. The per-case table above stays without removal.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8)
OUT = Path(__file__).resolve().parent / "results" / "synth_any_threshold_fit.txt"


def best_threshold(mean: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[float, str]:
    """The threshold of the best mean Dice, and a warning when it is the grid's first or last
    value (the true optimum may lie beyond it: session 13's first fit stopped at the old top, 0.5)."""
    i = int(np.nanargmax(mean))
    edge = "lower" if i == 0 else "upper" if i == len(thresholds) - 1 else ""
    warn = f"warning: the best threshold is the grid's {edge} end; widen --thresholds and fit again" if edge else ""
    return thresholds[i], warn


def cluster_grid(probs: np.ndarray, truth: np.ndarray, affine: np.ndarray, thresholds: tuple[float, ...],
                 sizes: tuple[float, ...]) -> np.ndarray:
    """(len(thresholds), len(sizes), 2): voxel Dice and cluster Dice of ``probs > t`` with its
    clusters smaller than each size (mm^3, on ``affine``'s grid) removed, against ``truth``."""
    from mednet_pvs.analysis.clusters import label_clusters
    from mednet_pvs.analysis.metrics import detection_scores, match_clusters, voxel_metrics

    ref, n_ref = label_clusters(truth, affine)
    out = np.full((len(thresholds), len(sizes), 2), np.nan)
    for i, t in enumerate(thresholds):
        for j, m in enumerate(sizes):
            lab, n = label_clusters(probs > t, affine, m)
            match = match_clusters(lab, n, ref, n_ref)
            out[i, j] = voxel_metrics(lab > 0, truth)["dice"], detection_scores(match.pred_hit, match.ref_hit)["cluster_dice"]
    return out


def cluster_lines(grids: list[np.ndarray], thresholds: tuple[float, ...], sizes: tuple[float, ...]) -> list[str]:
    """The ``--min-cluster`` section: mean voxel Dice and cluster Dice over the cases per (threshold,
    size), and the pair with the best mean of the two."""
    mean = np.nanmean(np.stack(grids), axis=0)  # (T, S, 2)
    both = mean.mean(axis=2)
    i, j = np.unravel_index(int(np.nanargmax(both)), both.shape)
    head = "min cluster mm^3  " + " ".join(f"{t:>11}" for t in thresholds)
    lines = [f"minimum cluster size: mean voxel Dice / cluster Dice over {len(grids)} groups", head]
    for k, m in enumerate(sizes):
        lines.append(f"{m:16g}  " + " ".join(f"{mean[a, k, 0]:5.3f}/{mean[a, k, 1]:5.3f}" for a in range(len(thresholds))))
    lines.append(f"best threshold and minimum cluster (mean of voxel and cluster Dice): {thresholds[i]} and "
                 f"{sizes[j]:g} mm^3 (voxel Dice {mean[i, j, 0]:.3f}, cluster Dice {mean[i, j, 1]:.3f})")
    return lines


def taken_for(pred: Any) -> str | None:
    """What ``brain_mask: auto`` took the input for (``"whole head"`` / ``"skull-stripped"``), else ``None``."""
    return (getattr(pred, "info", None) or {}).get("brain_input")


def brain_fit(model: Any, stripped: dict[str, tuple[float, str | None]] | None = None,
              heads: dict[str, tuple[float, str | None]] | None = None) -> list[str]:
    """Brain-mask Dice on each whole-head group's own fit case (image alone, tile step 1.0), then
    the means; ``stripped``: the skull-stripped fit cases' brain-mask Dice and what ``brain_mask:
    auto`` took the input for (``predict``'s ``info["brain_input"]``), by group name (from the PVS
    loop's predictions), added to the means; ``heads``: the whole-head fit cases' the same way (from
    the PVS loop with ``--head-cases``), instead of predicting them again. With ``auto`` each line
    says what the input was taken for."""
    from mednet_pvs.analysis.metrics import voxel_metrics
    from mednet_pvs.synth.heldout import heldout_case, heldout_groups, make_heldout_case

    lines, scores = ["brain-mask Dice on the fit cases (image alone)"], []
    for name, (d, seen) in (stripped or {}).items():
        lines.append(f"{name:26s} {'':8s}  brain Dice {d:.3f}" + (f"        taken for: {seen}" if seen else ""))
    for g in heldout_groups(legacy=False, heads=(True,)):
        case = heldout_case(g, 0, "fit")
        t0 = time.perf_counter()
        if g.name in (heads or {}):  # predicted in the PVS loop (--head-cases)
            d, seen = heads[g.name]  # type: ignore[index]
        else:
            ph = make_heldout_case(case, anatomy="procedural")
            pred = model.predict((ph.image, ph.affine), step=1.0)
            if pred.brainmask is None:
                return [f"brain-mask Dice: {model.name} returns no brain mask"]
            d, seen = voxel_metrics(pred.brainmask > 0, ph.brainmask > 0)["dice"], taken_for(pred)
        scores.append(d)
        lines.append(f"{g.name:26s} {case.seed:8d}  brain Dice {d:.3f} {time.perf_counter() - t0:4.0f} s"
                     + (f"  taken for: {seen}" if seen else ""))
        print(lines[-1], flush=True)
    lines.append(f"mean brain-mask Dice over {len(scores)} whole-head fit cases: {float(np.mean(scores)):.3f}")
    if stripped:
        flat = [d for d, _ in stripped.values()]
        both = [*scores, *flat]
        lines.append(f"mean brain-mask Dice over {len(stripped)} skull-stripped fit cases: {float(np.mean(flat)):.3f}; "
                     f"over all {len(both)}: {float(np.mean(both)):.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mednet-pvs-synth-any")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS),
                    help="the grid of PVS probability thresholds, ascending (default %(default)s; widen it when the best is at an end)")
    ap.add_argument("--brain", action="store_true", help="also score the brain mask on each whole-head group's own fit case")
    ap.add_argument("--head-cases", action="store_true", help="fit the PVS threshold on each whole-head group's own fit "
                    "case too (26 distinct cases, not 14: the scored groups are half whole heads)")
    ap.add_argument("--min-cluster", type=float, nargs="+", metavar="MM3",
                    help="also score removing predicted clusters smaller than each size (mm^3) at every threshold")
    args = ap.parse_args(argv)
    import torch

    from mednet_pvs import load_pretrained
    from mednet_pvs.analysis.metrics import voxel_metrics
    from mednet_pvs.synth.heldout import fit_case, heldout_case, heldout_groups, make_heldout_case

    grid = tuple(args.thresholds)
    if list(grid) != sorted(set(grid)) or not all(0 < t < 1 for t in grid):
        raise SystemExit(f"error: --thresholds must be distinct, ascending and inside (0, 1), got {list(grid)}")
    sizes = tuple(args.min_cluster or ())
    if sizes and (list(sizes) != sorted(set(sizes)) or sizes[0] < 0):
        raise SystemExit(f"error: --min-cluster sizes must be distinct, ascending and >= 0 mm^3, got {list(sizes)}")
    torch.set_num_threads(args.threads)
    model = load_pretrained(args.model, device="cpu")
    w = model.inference.window  # say what the fit ran with: session 14's fit ran the run export's 8-fold mirroring unnoticed
    lines = [f"PVS threshold fit of {args.model} on the held-out fit cases (procedural anatomy, tile step 1.0)",
             f"tile {'x'.join(map(str, w.patch_size))}, test-time mirroring {list(w.mirror_axes) or 'none'}, padding {w.pad_mode}, "
             f"back to the input grid {model.inference.output_resampling}",
             "group                      seed     PVS voxels  " + " ".join(f"{t:>5}" for t in grid) + "   s"]
    table, per_group = [], []
    stripped_brain: dict[str, tuple[float, str | None]] = {}  # --brain: the skull-stripped fit cases' brain-mask Dice, what auto took them for
    head_brain: dict[str, tuple[float, str | None]] = {}  # --brain --head-cases: the whole-head fit cases' the same
    clusters: dict[str, np.ndarray] = {}  # --min-cluster: each case's (threshold, size, [voxel, cluster Dice]) grid
    done: dict[str, tuple[int, list[float]]] = {}  # without --head-cases the whole-head groups share the stripped group's fit case: made and predicted once
    for g in heldout_groups():
        case = heldout_case(g, 0, "fit") if args.head_cases and g.head else fit_case(g)
        t0 = time.perf_counter()
        if repr(case) not in done:
            ph = make_heldout_case(case, anatomy="procedural")
            truth = ph.label > 0
            pred = model.predict((ph.image, ph.affine), step=1.0)
            probs = pred.probabilities
            done[repr(case)] = int(truth.sum()), [voxel_metrics(probs > t, truth)["dice"] for t in grid]
            if sizes:
                clusters[repr(case)] = cluster_grid(probs, truth, ph.affine, grid, sizes)
            if args.brain and not g.legacy and pred.brainmask is not None:
                brain = (voxel_metrics(pred.brainmask > 0, ph.brainmask > 0)["dice"], taken_for(pred))
                if g.head and args.head_cases:
                    head_brain[g.name] = brain
                else:
                    stripped_brain[g.name.replace(" head", " stripped")] = brain
        n_truth, row = done[repr(case)]
        table.append(row)
        if sizes:
            per_group.append(clusters[repr(case)])
        lines.append(f"{g.name:26s} {case.seed:8d} {n_truth:10d}  " + " ".join(f"{v:5.3f}" for v in row)
                     + f" {time.perf_counter() - t0:4.0f}")
        print(lines[-1], flush=True)
    mean = np.nanmean(np.asarray(table), axis=0)
    best, warn = best_threshold(mean, grid)
    tail = ["mean over groups           " + " " * 20 + " ".join(f"{v:5.3f}" for v in mean), f"best threshold: {best}",
            *([warn] if warn else []),
            *(cluster_lines(per_group, grid, sizes) if sizes else []),
            *(brain_fit(model, stripped_brain, head_brain) if args.brain else []),
            f"command: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}"]
    args.out.write_text("\n".join(lines + tail) + "\n")
    print("\n".join(tail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
