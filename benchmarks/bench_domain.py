"""Benchmark: can domain-randomised phantoms feed the any-contrast model's training on the fly?

    python benchmarks/bench_domain.py [--samples 4] [--steps 6] [--patch 32] [--out FILE]
    python benchmarks/bench_domain.py --feed [--patch 96 --batch 8 --spv 48 --workers 14 --gpu-step 0.128]

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
    ap.add_argument("--patch", type=int, default=None, help="patch edge (default 32; 96 with --feed)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--feed", action="store_true", help="the queue's costs and the projected GPU feed (see above)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--spv", type=int, default=48, help="samples per volume")
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--gpu-step", type=float, default=0.128, help="seconds per GPU step (session 8's H200 run)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.feed:
        args.patch = args.patch or 96
        return feed(args)
    args.patch = args.patch or 32

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


def feed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torchio as tio
    import yaml

    torch.set_num_threads(1)
    from mednet_pvs.data.datamodule import PVSDataModule
    from mednet_pvs.data.sampling import CENTRES_KEY, ForegroundSampler, patch_loader
    from mednet_pvs.synth.domain import make_domain_phantom

    data = yaml.safe_load((ROOT / "mednet_pvs/configs/synth_any.yaml").read_text())["data"]
    data.update(patch_size=args.patch, batch_size=args.batch, samples_per_volume=args.spv, queue_length=4 * args.spv,
                num_workers=0, seed=10**6)
    dm = PVSDataModule(**data)
    dm.setup("fit")
    queue = dm.queue
    make_domain_phantom(dm._phantom_config(), seed=10**7)  # the MNI anatomy is built once per process: not counted
    vols, subjects = [], []
    for i in range(args.samples):  # what a loader worker does per volume (IndexedSubjects: phantom, transform, centres)
        c0 = cpu()
        subjects.append(queue.subjects_dataset[i])
        vols.append(cpu() - c0)

    class Loaded(torch.utils.data.Dataset):  # the subjects as they arrive from the workers
        def __len__(self) -> int:
            return 10**6

        def __getitem__(self, i: int) -> tio.Subject:
            return subjects[i % len(subjects)]

    def old_collate(patches):  # the previous collate_subjects: a float copy of each patch, then a stack
        return {k: torch.stack([p[k].data.float() for p in patches]) for k in ("image", "label")}

    class OldSampler(ForegroundSampler):  # the previous sampler: centres found when the queue refills, TorchIO's crop
        def _generate_patches(self, subject, num_patches=None):
            subject = {k: v for k, v in subject.items() if k != CENTRES_KEY}
            subject = tio.Subject(subject)
            centres = self.centres(subject)
            subject[CENTRES_KEY] = centres
            return super()._generate_patches(subject, num_patches)

        extract_patch = tio.data.sampler.sampler.PatchSampler.extract_patch

    queue.subjects_dataset = Loaded()
    queue.subject_sampler = torch.utils.data.SequentialSampler(range(10**6))
    new_sampler = queue.sampler
    old_sampler = OldSampler(args.patch, new_sampler.foreground_fraction, boundary_fraction=new_sampler.boundary_fraction)
    n_batches = 4 * args.spv // args.batch  # one whole refill of the queue per measurement
    per_batch: dict[str, list[float]] = {"current": [], "previous": []}
    for r in range(args.rounds):
        for name in (("current", "previous") if r % 2 == 0 else ("previous", "current")):
            queue.sampler = new_sampler if name == "current" else old_sampler
            queue.set_epoch(r)
            loader = patch_loader(queue, args.batch)
            if name == "previous":
                loader.collate_fn = old_collate
            it = iter(loader)
            c0 = cpu()
            for _ in range(n_batches):
                next(it)
            per_batch[name].append((cpu() - c0) / n_batches)
    vol = float(np.median(vols))
    need = args.batch / args.gpu_step
    work = args.workers * args.spv / vol
    lines = [f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.1f}; "
             f"patch {args.patch}^3, batch {args.batch}, {args.spv} patches per volume, {args.rounds} interleaved rounds",
             f"loader worker, per training volume (phantom + preprocessing + patch centres): {vol:.2f} CPU s median of {len(vols)} "
             f"(min {min(vols):.2f}, max {max(vols):.2f})",
             f"GPU demand at {args.gpu_step:.3f} s per step: {need:.1f} patches/s; {args.workers} workers can give {work:.1f} patches/s"]
    for name, v in per_batch.items():
        m = float(np.median(v))
        sync, overlap = min(args.batch / (m + args.gpu_step), work), min(args.batch / max(m, args.gpu_step), work)
        lines.append(f"training process, {name} queue: {1000 * m:.1f} ms CPU per batch (rounds: {', '.join(f'{1000 * x:.1f}' for x in v)}); "
                     f"feeds {sync:.1f} patches/s with synchronised steps (GPU waits {1 - sync * args.gpu_step / args.batch:.0%} of the time), "
                     f"{overlap:.1f} overlapped ({1 - overlap * args.gpu_step / args.batch:.0%})")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
        args.out.with_suffix(".json").write_text(json.dumps({"volume_cpu_s": vols, "batch_cpu_s": per_batch, "gpu_step_s": args.gpu_step,
                                                             "patch": args.patch, "batch": args.batch, "spv": args.spv,
                                                             "workers": args.workers}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
