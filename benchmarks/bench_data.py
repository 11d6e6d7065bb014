#!/usr/bin/env python3
"""Benchmark the data layer: cost of each augmentation at 128^3 and patches/s of the data module.

    python benchmarks/bench_data.py                        # both parts, 2 workers
    python benchmarks/bench_data.py --part transforms --repeats 5
    python benchmarks/bench_data.py --part loader --workers 2 --epochs 2 --cohort /tmp/bench_cohort

Part ``transforms``: every transform of the presets applied (probability forced to 1) to a
128^3 subject (float32 image with a brain-like ellipsoid, uint8 label), one thread, median of
``--repeats`` seconds; then each preset's expected cost per volume, ``sum(p_i * cost_i)``, and
the cost of preprocessing (crop + z-score) and of cutting 128^3 patches with each sampler.

Part ``sampling``: fraction of 32^3, 64^3 and 128^3 patches that hold PVS on an MNI phantom (1 mm)
for uniform sampling, TorchIO's ``LabelSampler`` and our ``ForegroundSampler`` (both with a third of
the patches on PVS), against nnU-Net's expectation ``0.33 + 0.67 * uniform``.

Part ``loader``: ``PVSDataModule`` on a cohort of ``--subjects`` (10) MNI-anatomy phantoms (1 mm,
155 x 191 x 160, written once by ``mednet_pvs.synth.make_cohort``), patch 128^3, batch 2,
``samples_per_volume`` 4, queue 16, ``--workers`` loader processes; patches per second over a whole
training epoch (worker start included), for each preset. The first epoch is reported apart (it
includes the first worker start and file cache warm-up). Also CPU seconds per patch (main process
plus workers), which bounds what free cores can deliver: ``cores / CPU-s per patch`` (wall-clock
rates on a shared machine are lower).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchio as tio  # noqa: E402

from mednet_pvs.data.augmentation import (  # noqa: E402
    AugmentationConfig,
    RandomBrightness,
    RandomContrast,
    RandomGammaRetainStats,
    RandomRotateScale,
)
from mednet_pvs.data.preprocessing import PreprocessConfig, build_preprocessing, subject_from_arrays  # noqa: E402
from mednet_pvs.data.sampling import ForegroundSampler, label_sampler  # noqa: E402

PATCH = 128


def _subject(n: int = PATCH, seed: int = 0) -> tio.Subject:
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n)] * 3, indexing="ij"))
    brain = (g**2).sum(0) < 0.8
    img = np.where(brain, rng.normal(1.0, 0.1, (n,) * 3), 0).astype(np.float32)
    lab = (brain & (rng.random((n,) * 3) > 0.995)).astype(np.uint8)
    return subject_from_arrays(img, np.eye(4), lab, brain.astype(np.uint8))


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_transforms(repeats: int) -> None:
    torch.set_num_threads(1)
    cfg = AugmentationConfig.preset("mri")
    s = build_preprocessing(PreprocessConfig(crop_to_brain=False))(_subject())
    transforms = {
        # name: (transform with p=1, probability field in the config)
        "rotation (+-30 deg)": (RandomRotateScale(cfg.rotation_degrees, cfg.scaling, 1.0, 0.0), "rotation_p"),
        "scaling (0.7-1.4)": (RandomRotateScale(cfg.rotation_degrees, cfg.scaling, 0.0, 1.0), "scaling_p"),
        "elastic (7 pts, 7.5 mm)": (tio.RandomElasticDeformation(num_control_points=7, max_displacement=7.5), "elastic_p"),
        "noise": (tio.RandomNoise(std=cfg.noise_std), "noise_p"),
        "blur": (tio.RandomBlur(std=cfg.blur_sigma_mm), "blur_p"),
        "brightness": (RandomBrightness(cfg.brightness), "brightness_p"),
        "contrast": (RandomContrast(cfg.contrast), "contrast_p"),
        "low-res (anisotropy 1-2x)": (tio.RandomAnisotropy(downsampling=cfg.lowres_factor), "lowres_p"),
        "gamma": (RandomGammaRetainStats(cfg.gamma, cfg.gamma_invert_p), "gamma_p"),
        "flip (3 axes, 0.5 each)": (tio.RandomFlip(axes=(0, 1, 2), flip_probability=0.5), "flip_p"),
        "bias field": (tio.RandomBiasField(coefficients=cfg.bias_field_coefficients), "bias_field_p"),
        "motion (2 transforms)": (tio.RandomMotion(degrees=cfg.motion_degrees, translation=cfg.motion_translation_mm), "motion_p"),
        "ghosting": (tio.RandomGhosting(num_ghosts=cfg.ghosts), "ghosting_p"),
        "spike": (tio.RandomSpike(intensity=cfg.spike_intensity), "spike_p"),
    }
    print(f"\n## per-transform cost on a {PATCH}^3 subject (image + label + mask), 1 thread, median of {repeats}")
    print(f"{'transform':28s} {'ms':>9s}   p(nnunet) p(mri)")
    presets = {n: AugmentationConfig.preset(n) for n in ("nnunet", "mri")}
    cost = {}
    for name, (t, pfield) in transforms.items():
        torch.manual_seed(0)
        cost[name] = _time(lambda t=t: t(s), repeats)
        ps = [getattr(presets[n], pfield) for n in ("nnunet", "mri")]
        print(f"{name:28s} {cost[name] * 1e3:9.1f}   {ps[0]:9.2f} {ps[1]:6.2f}")
    for n, c in presets.items():
        expected = sum(cost[name] * getattr(c, pfield) for name, (_, pfield) in transforms.items())
        print(f"expected augmentation cost per volume, preset {n!r}: {expected * 1e3:.0f} ms")
    raw = _subject(seed=1)
    pre = build_preprocessing(PreprocessConfig())
    print(f"preprocessing (RAS, crop to brain, z-score) of a {PATCH}^3 subject: {_time(lambda: pre(raw), repeats) * 1e3:.0f} ms")
    big = build_preprocessing(PreprocessConfig(crop_to_brain=False))(_subject(192, seed=2))
    for name, sampler in (("tio.LabelSampler", label_sampler(PATCH)), ("ForegroundSampler", ForegroundSampler(PATCH))):
        first = _time(lambda sampler=sampler: next(iter(sampler(big, num_patches=1))), repeats)
        gen = sampler(big)
        next(gen)
        print(f"{name}: first {PATCH}^3 patch of a 192^3 volume (set-up included) {first * 1e3:.0f} ms, "
              f"each further one {_time(lambda gen=gen: next(gen), repeats) * 1e3:.1f} ms")


def bench_sampling(n: int) -> None:
    """Fraction of patches holding PVS: uniform vs the label sampler, on an MNI phantom."""
    from mednet_pvs.synth import make_phantom

    torch.manual_seed(0)
    ph = make_phantom(anatomy="mni", seed=3)
    s = build_preprocessing(PreprocessConfig())(subject_from_arrays(ph.image, ph.affine, ph.label, ph.brainmask))
    lab = s["label"].data[0].numpy()
    print(f"\n## PVS in patches, MNI phantom {s['image'].spatial_shape} after crop, {int(lab.sum())} PVS voxels, {n} patches each")
    print(f"{'patch':>6s} {'sampler':>18s} {'centre on PVS':>14s} {'holds PVS':>10s} {'0.33+0.67*uniform':>18s}")
    for patch in (32, 64, 128):
        uniform = sum(bool(p["label"].data.any()) for p in tio.UniformSampler(patch)(s, num_patches=n)) / n
        print(f"{patch:>6d} {'uniform':>18s} {'':>14s} {uniform:10.3f}")
        for name, sampler in (("tio.LabelSampler", label_sampler(patch, 0.33)), ("ForegroundSampler", ForegroundSampler(patch, 0.33))):
            centred = holding = 0
            for p in sampler(s, num_patches=n):
                c = p["location"][:3].numpy() + patch // 2
                centred += int(lab[tuple(c)] > 0)
                holding += int(p["label"].data.any())
            print(f"{'':>6s} {name:>18s} {centred / n:14.3f} {holding / n:10.3f} {0.33 + 0.67 * uniform:18.3f}")
    print("(ForegroundSampler shifts a patch back inside the volume, so its PVS voxel is in the patch but off"
          " centre when near the border: at 128^3 nearly always)")


def _cohort(path: Path | None, n: int) -> Path:
    from mednet_pvs.synth import PhantomConfig, make_cohort

    root = path or Path(tempfile.gettempdir()) / "mednet_pvs_bench_cohort"
    manifest = root / "manifest.csv"
    if manifest.is_file() and len(manifest.read_text().strip().splitlines()) - 1 >= n:
        return manifest
    t = time.perf_counter()
    manifest = make_cohort(root, n, PhantomConfig(anatomy="mni"), seed=0, sites=2)
    print(f"(wrote {n} MNI phantoms in {time.perf_counter() - t:.0f} s to {root})")
    return manifest


def _cpu() -> np.ndarray:
    """CPU seconds of (this process, its reaped children: the loader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return np.array([me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime])


def bench_loader(cohort: Path | None, subjects: int, workers: int, epochs: int, presets: list[str]) -> None:
    from mednet_pvs.data.cases import load_cases
    from mednet_pvs.data.checks import validate_cases
    from mednet_pvs.data.datamodule import PVSDataModule

    manifest = _cohort(cohort, subjects)
    cases = load_cases(manifest)
    for c in cases:
        c.split = "train"
    cases[-1].split = "val"
    t = time.perf_counter()
    validate_cases(cases, workers=workers)
    print(f"\n## validate_cases on {len(cases)} cases (headers + voxels, {workers} workers): {time.perf_counter() - t:.1f} s")
    print(f"\n## PVSDataModule, patch {PATCH}^3, batch 2, samples_per_volume 4, queue 16, {workers} workers, "
          f"{len(cases) - 1} training volumes ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    for preset in presets:
        dm = PVSDataModule(
            cases, augmentation=preset, patch_size=PATCH, batch_size=2, samples_per_volume=4, queue_length=16,
            num_workers=workers, split="manifest", check_voxels=False,
        )  # fmt: skip
        dm.setup("fit")
        loader = dm.train_dataloader()
        rates, cpu = [], []
        for epoch in range(epochs):
            loader.sampler.set_epoch(epoch)
            t, c = time.perf_counter(), _cpu()
            n = 0
            for b in loader:
                n += b["image"].shape[0]
            del b
            dm.queue.set_epoch(epoch)  # drop the epoch's worker iterator so its processes are reaped
            rates.append(n / (time.perf_counter() - t))
            cpu.append((_cpu() - c) / n)
        later = f", later epochs {statistics.mean(rates[1:]):.2f}" if len(rates) > 1 else ""
        main_s, workers_s = np.mean(cpu[1:] or cpu, axis=0)
        per = main_s + workers_s
        print(f"preset {preset!r:9s}: {n} patches/epoch, first epoch {rates[0]:.2f} patches/s{later}; CPU-s per patch: "
              f"{per:.3f} ({main_s:.3f} main process, {workers_s:.3f} workers) -> at most {2 / per:.1f} patches/s on 2 free "
              f"cores, {min(16 / per, 1 / main_s):.0f} on 16 (main process serial: {1 / main_s:.0f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["transforms", "sampling", "loader", "all"], default="all")
    ap.add_argument("--patches", type=int, default=400, help="patches per sampler in the sampling part")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--cohort", type=Path, default=None, help="folder for (or with) the phantom cohort")
    ap.add_argument("--presets", nargs="+", default=["none", "nnunet", "mri"])
    a = ap.parse_args()
    print(f"torch {torch.__version__}, torchio {tio.__version__}, {os.cpu_count()} CPUs")
    if a.part in ("transforms", "all"):
        bench_transforms(a.repeats)
    if a.part in ("sampling", "all"):
        bench_sampling(a.patches)
    if a.part in ("loader", "all"):
        bench_loader(a.cohort, a.subjects, a.workers, a.epochs, a.presets)


if __name__ == "__main__":
    main()
