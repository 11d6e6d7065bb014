"""Benchmark: how long one synthetic PVS phantom takes.

    python benchmarks/bench_synth.py [--repeats 3] [--quick]

For each case the "cold" time is measured in a fresh Python process (imports, nilearn's template
loading and the anatomy build included: what the first phantom of ``mednet-pvs demo`` or a test
session costs); "warm" is the best of ``--repeats`` further phantoms with other seeds in one
process (the anatomy is cached per grid, as in ``make_cohort``). Targets: a 1 mm MNI phantom in
under 10 s cold, a 64^3 procedural phantom well under 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "procedural 64^3, 1 mm, T2w, burden 2": dict(anatomy="procedural"),
    "procedural 96^3, 1 mm, T2w, burden 4": dict(anatomy="procedural", shape=(96, 96, 96), burden=4),
    "MNI 1 mm, T2w, burden 2": dict(anatomy="mni"),
    "MNI 1 mm, random, burden 4, 3 mm slices, motion": dict(anatomy="mni", contrast="random", burden=4,
                                                              slice_thickness_mm=3.0, motion_mm=2.0),
    "MNI 0.8 mm, T2w, burden 2": dict(anatomy="mni", spacing=0.8),
}
QUICK = ("procedural 64^3, 1 mm, T2w, burden 2", "MNI 1 mm, T2w, burden 2")


def _cold(kw: dict) -> dict:
    """Run in a fresh process: import + first phantom."""
    code = (
        "import json, sys, time; t0 = time.perf_counter()\n"
        "from mednet_pvs.synth import make_phantom\n"
        f"ph = make_phantom(seed=0, **{kw!r})\n"
        "print(json.dumps({'seconds': time.perf_counter() - t0, 'pvs': ph.meta['pvs_count'], "
        "'shape': list(ph.image.shape)}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only the 64^3 procedural and the 1 mm MNI case")
    args = ap.parse_args(argv)

    from mednet_pvs.synth import make_phantom

    print(f"{'case':<50} {'shape':>15} {'PVS':>5} {'cold s':>7} {'warm s':>7}")
    results = {}
    for name, kw in CASES.items():
        if args.quick and name not in QUICK:
            continue
        cold = _cold(kw)
        warm = []
        make_phantom(seed=0, **kw)  # build the cached anatomy in this process
        for r in range(args.repeats):
            t0 = time.perf_counter()
            make_phantom(seed=r + 1, **kw)
            warm.append(time.perf_counter() - t0)
        results[name] = {"cold_s": round(cold["seconds"], 3), "warm_s": round(min(warm), 3), "pvs": cold["pvs"],
                         "shape": cold["shape"]}
        shape = "x".join(map(str, cold["shape"]))
        print(f"{name:<50} {shape:>15} {cold['pvs']:>5} {cold['seconds']:7.2f} {min(warm):7.2f}", flush=True)
    print(json.dumps({"cpu_count": os.cpu_count(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
