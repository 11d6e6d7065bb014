"""Benchmark: where should Skeleton Recall's tubed skeleton be made, in the trainer or in the data workers?

    python benchmarks/bench_skeleton.py [--volumes 3] [--repeats 3] [--out FILE]

Measures, on one thread, the seconds of (a) one fresh training volume of the ``synth_any`` config
(``make_domain_phantom`` with that config's source; its label of background/brain/PVS) against the
tubed skeleton of that whole volume's PVS (``mednet_pvs.data.skeleton.tubed_skeleton_array``, what
``--data.skeleton_classes`` adds in the loader workers once per volume), and (b) the in-process
cost the loss pays per batch without it (``tubed_skeleton`` over the four deep-supervision levels
of the ``synth_any`` net), for the CPU batch (2 x 48^3) and the GPU batch (8 x 96^3), cut from the
same volumes around PVS. Prints each as a ratio: skeleton / volume for the workers, and the
per-batch cost against a step time given with ``--step`` (seconds; default 0.128, the H200 step of
the GPU stage in the zoo entry).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each per-batch skeleton")
    ap.add_argument("--step", type=float, default=0.128, help="GPU step seconds to compare the 8 x 96^3 batch with")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    import yaml

    torch.set_num_threads(1)
    from mednet_pvs.data.skeleton import tubed_skeleton_array
    from mednet_pvs.synth.domain import DomainConfig, brain_pvs_labels, make_domain_phantom
    from mednet_pvs.training.losses import downsample_target, tubed_skeleton

    src = yaml.safe_load((ROOT / "mednet_pvs/configs/synth_any.yaml").read_text())["data"]["source"]
    cfg = DomainConfig(**{k: v for k, v in src.items() if k not in ("source", "generator")})
    rows, labels = [], []
    for i in range(args.volumes):
        t = time.perf_counter()
        lab = brain_pvs_labels(make_domain_phantom(cfg, seed=9_000_000 + i))
        gen = time.perf_counter() - t
        t = time.perf_counter()
        skel = tubed_skeleton_array(lab, [2])
        sk = time.perf_counter() - t
        rows.append({"shape": list(lab.shape), "pvs_voxels": int((lab == 2).sum()), "tube_voxels": int((skel == 2).sum()),
                     "volume_s": round(gen, 3), "skeleton_s": round(sk, 4), "ratio": round(sk / gen, 4)})
        labels.append(lab)
        print(f"volume {i}: {lab.shape}, {rows[-1]['pvs_voxels']} PVS voxels: phantom {gen:.2f} s, whole-volume skeleton {sk:.3f} s "
              f"({100 * sk / gen:.1f} %)")

    def batch(n: int, p: int) -> torch.Tensor:
        rng = np.random.default_rng(0)
        out = np.zeros((n, 1, p, p, p), np.float32)
        for b in range(n):
            lab = labels[b % len(labels)]
            pvs = np.argwhere(lab == 2)
            c = pvs[rng.integers(len(pvs))] if len(pvs) else np.array(lab.shape) // 2
            lo = np.clip(c - p // 2, 0, np.array(lab.shape) - p)
            out[b, 0] = lab[lo[0]:lo[0] + p, lo[1]:lo[1] + p, lo[2]:lo[2] + p]
        return torch.from_numpy(out)

    per_batch = {}
    for n, p in ((2, 48), (8, 96)):
        target = batch(n, p)
        levels = [downsample_target(target, [p // 2**k] * 3, "max") for k in range(4)]
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            for lv in levels:
                tubed_skeleton(lv, [2])
            best = min(best, time.perf_counter() - t)
        per_batch[f"{n}x{p}^3"] = round(best, 4)
        print(f"in the trainer, batch {n} x {p}^3, 4 levels: {best:.3f} s per step")
    vol = float(np.mean([r["volume_s"] for r in rows]))
    skl = float(np.mean([r["skeleton_s"] for r in rows]))
    print(f"workers: skeleton {skl:.3f} s per volume = {100 * skl / vol:.1f} % of a fresh volume ({vol:.2f} s)")
    print(f"trainer: 8 x 96^3 skeleton {per_batch['8x96^3']:.3f} s = {per_batch['8x96^3'] / args.step:.2f} x a {args.step} s GPU step")
    if args.out:
        args.out.write_text(json.dumps({"volumes": rows, "trainer_per_batch_s": per_batch, "gpu_step_s": args.step,
                                        "machine": platform.machine(), "python": platform.python_version(),
                                        "torch": torch.__version__}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
