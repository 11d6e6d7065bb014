"""Benchmark: PVS burden and evaluation metrics on a whole-brain-sized mask.

    python benchmarks/bench_analysis.py [--shape 200 200 200] [--clusters 4000] [--repeats 3]

Builds a 0.8 mm grid with a few thousand random short tubes (digital lines of 2-12 voxels, the
size range of PVS) and a two-label region map (white matter / caudate), then prints the best of
``--repeats`` wall times for: connected components + per-cluster statistics (``pvs_burden``), the
same with regions, and every evaluation metric of one case (``case_metrics``) without and with
regions. The brief's target: components + stats of a whole brain in well under a second.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mednet_pvs.analysis import case_metrics, pvs_burden  # noqa: E402

SPACING = (0.8, 0.8, 0.8)


def random_tubes(shape: tuple[int, int, int], n: int, seed: int) -> np.ndarray:
    """Boolean mask with ``n`` digital line segments of 2-12 voxels in random directions."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(12, np.array(shape) - 13, size=(n, 3))
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    steps = np.arange(12)
    length = rng.integers(2, 13, size=n)
    pts = np.round(start[:, None, :] + steps[None, :, None] * d[:, None, :]).astype(int)  # (n, 12, 3)
    keep = steps[None, :] < length[:, None]
    m = np.zeros(shape, bool)
    m[tuple(pts[keep].T)] = True
    return m


def _best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(200, 200, 200))
    ap.add_argument("--clusters", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    shape = tuple(args.shape)
    ref = random_tubes(shape, args.clusters, 0)
    pred = ref.copy()
    half = shape[0] // 2
    pred[:half] = random_tubes(shape, args.clusters, 1)[:half]  # half the brain re-drawn: ~50 % overlap
    regions = np.full(shape, 2, np.int16)
    c = [s // 2 for s in shape]
    regions[c[0] - 20 : c[0] + 20, c[1] - 20 : c[1] + 20, c[2] - 20 : c[2] + 20] = 11

    b = pvs_burden(ref, SPACING)
    print(f"grid {shape} at {SPACING[0]} mm, {int(ref.sum())} PVS voxels in {b.count} clusters (26-connected)")
    rows = [
        ("pvs_burden (components + per-cluster stats)", lambda: pvs_burden(ref, SPACING)),
        ("pvs_burden with a region map", lambda: pvs_burden(ref, SPACING, regions=regions)),
        ("case_metrics (all metrics, one case)", lambda: case_metrics(pred, ref, SPACING)),
        ("case_metrics with regions (wm, bg)", lambda: case_metrics(pred, ref, SPACING, regions=regions)),
    ]
    for name, fn in rows:
        print(f"  {name:48s} {_best(fn, args.repeats):7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
