"""Benchmark: can domain-randomised phantoms feed the any-contrast model's training on the fly?

    python benchmarks/bench_domain.py [--samples 4] [--steps 6] [--patch 32] [--out FILE]

Measures, in one process on one thread, the CPU seconds of (a) one training volume: a fresh
``make_domain_phantom`` (1 mm MNI anatomy, ``DomainConfig()``) plus the training preprocessing
(crop, reorientation, z-score) and (b) one optimiser step of the ``synth_any`` network (MedNeXt
k3, 16 channels, 3 classes, deep supervision; batch 2 of ``--patch``^3), and prints how many steps
one volume must serve for the data loader's worker (one core) to keep up with the trainer (the
other): ``volume seconds / step seconds``. The ``synth_any`` config draws 48 patches (24 steps) per
volume.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from mednet_pvs.data.preprocessing import PreprocessConfig, build_preprocessing, subject_from_arrays
    from mednet_pvs.synth.domain import DomainConfig, brain_pvs_labels, make_domain_phantom
    from mednet_pvs.training.module import PVSSegmenter

    make_domain_phantom(DomainConfig(), seed=10**6)  # the MNI anatomy is built once per process (cached): not counted
    pre = build_preprocessing(PreprocessConfig(target_spacing=(1.0, 1.0, 1.0), normalisation="zscore", crop_to_brain=True))
    gen, prep, shapes = [], [], []
    for s in range(args.samples):
        c0 = cpu()
        ph = make_domain_phantom(DomainConfig(), seed=10**6 + 1 + s)
        c1 = cpu()
        sub = pre(subject_from_arrays(ph.image, ph.affine, brain_pvs_labels(ph), ph.brainmask if s % 2 else None))
        c2 = cpu()
        gen.append(c1 - c0)
        prep.append(c2 - c1)
        shapes.append(list(sub["image"].shape[1:]))

    net_kw = dict(in_channels=1, n_classes=3, n_channels=16, exp_r=2, kernel_size=3, block_counts=[1] * 9, deep_supervision=True)
    module = PVSSegmenter("mednext", net_kw, labels={"0": "background", "1": "brain", "2": "PVS"}, target_downsampling="max")
    opt = torch.optim.AdamW(module.parameters(), 1e-3)
    p = args.patch
    x = torch.randn(2, 1, p, p, p)
    y = torch.randint(0, 3, (2, 1, p, p, p))
    steps = []
    for i in range(args.steps + 1):
        c0 = cpu()
        loss = module.loss(module.net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i:  # the first step warms up
            steps.append(cpu() - c0)
    vol = float(np.median(np.add(gen, prep)))
    step = float(np.median(steps))
    lines = [
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.1f}",
        f"domain phantom (1 mm MNI, DomainConfig()): {np.median(gen):.2f} CPU s median of {len(gen)} "
        f"(min {min(gen):.2f}, max {max(gen):.2f}); preprocessing {np.median(prep):.2f} CPU s; volumes {shapes}",
        f"training step (synth_any net, 2 x {p}^3): {step:.2f} CPU s median of {len(steps)}",
        f"one volume costs {vol / step:.1f} steps of training: with one loader worker the data keeps up when each volume "
        f"serves >= {vol / step:.0f} steps (synth_any: 48 patches = 24 steps per volume)",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
        args.out.with_suffix(".json").write_text(json.dumps({"generate_cpu_s": gen, "preprocess_cpu_s": prep, "step_cpu_s": steps,
                                                             "patch": p, "volumes": shapes}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
