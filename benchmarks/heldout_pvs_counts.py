"""How much PVS each held-out case of the any-contrast evaluation carries (labelled voxels and mm^3 on
its stored grid, brain volume): a group whose case has a few dozen PVS voxels gives a voxel Dice
that one stray cluster moves from 0.5 to 0.

    .venv/bin/python benchmarks/heldout_pvs_counts.py [--anatomy procedural|mni] [--cases 1]
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anatomy", default="procedural", choices=("procedural", "mni"))
    ap.add_argument("--cases", type=int, default=1)
    args = ap.parse_args(argv)
    from mednet_pvs.synth.heldout import heldout_cases, heldout_groups, make_heldout_case

    print(f"held-out cases ({args.anatomy} anatomy, {args.cases} per group)")
    print(f"{'group':26s} {'#':>2s} {'stored':6s} {'PVS voxels':>10s} {'PVS mm3':>8s} {'brain mm3':>10s}")
    small = 0
    for case in heldout_cases(heldout_groups(), n=args.cases):
        ph = make_heldout_case(case, anatomy=args.anatomy)
        vox = float(abs(np.linalg.det(ph.affine[:3, :3])))
        n = int((ph.label > 0).sum())
        small += n < 100
        print(f"{case.group.name:26s} {case.index:2d} {case.orientation:6s} {n:10d} {n * vox:8.0f} "
              f"{int((ph.brainmask > 0).sum()) * vox:10.0f}", flush=True)
    print(f"cases with fewer than 100 labelled PVS voxels: {small}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
