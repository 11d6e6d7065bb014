#!/usr/bin/env python3
"""Prove and time the whole pipeline on one GPU (issue 17); ``--tiny`` runs every code path on the CPU.

    bash benchmarks/gpu_check.sh --device cuda        # pytest -m cuda, then this script (< 8 min on an H100/H200)
    .venv/bin/python benchmarks/gpu_check.py --device cuda [--out benchmarks/results/gpu_check-<date>.json]
    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/x.json     # dry run (CI, < 1 min)

Every figure is measured in this run; nothing is carried over. Printed as it goes and written as
JSON (``--out``, default ``benchmarks/results/gpu_check-<date>.json``, never overwritten: a second
run the same day gets ``-2``...). Sections (JSON keys):

* ``predict``: whole-brain prediction through :meth:`mednet_pvs.inference.PVSModel.predict` for
  MedNeXt-L k5 (``mednext_l_k5``) and nnU-Net ResEnc-M (``nnunet_resenc_m``), random (seeded)
  weights, 128^3 tiles, step 0.5, without and with 8-fold mirroring TTA; tiles per pass: 2, or on a
  GPU what ``PVSModel`` picks from free memory (``batch_size`` in the JSON). The scan is the
  1 mm MNI phantom of :mod:`mednet_pvs.synth` (T2w, as ``bench_inference.py``) padded to the 1 mm
  MNI152 head field of view (182 x 218 x 182), with its brain mask (as a manifest would give it).
  One untimed warm-up call first (on the CPU also one with TTA); then the median of ``--repeats`` calls of seconds (whole
  ``predict``, ``torch.cuda.synchronize()`` around it; its network share from ``Prediction.info``),
  achieved TFLOP/s (FLOPs of one tile forward, counted with ``torch.utils.flop_counter`` on the meta
  device, x tiles run x passes, / seconds) and peak memory (``torch.cuda.max_memory_allocated``,
  reset before each call; on the CPU the peak resident set, as ``bench_inference.PeakMemory``).
* ``monai``: ``bench_inference.py``'s methods on the same network, tiles (128^3), overlap 0.5 and
  tiles per pass (those ``predict`` used), no TTA, on that scan z-scored and padded to the tile lattice: ``ours`` (cropped to the brain,
  as ``PVSModel`` does), ``ours-grid`` (MONAI's tiles) and ``monai`` (``sliding_window_inference``,
  Gaussian); rounds interleaved; speed-up = MONAI seconds / ours (per round, median), and the
  ratio ours / MONAI, with the logits' agreement inside the brain.
* ``precision``: bf16 autocast vs fp32 (TF32 off) through ``sliding_window_predict(autocast=...)``
  on the brain-cropped scan: label Dice of the two masks (target >= 0.999) for the bundled trained
  model ``mednet-pvs-synth-t2w`` (the target: a trained model's confident, sparse mask), and for
  random-weight MedNeXt-L k5 (reported only: a random network's probabilities sit at the threshold
  almost everywhere, so any rounding flips labels there). On the CPU autocast is off: both are fp32.
* ``pipeline``: ``PVSModel.predict(pipeline="device")`` (preprocessing on the GPU) vs
  ``pipeline="torchio"`` (CPU), MedNeXt-L k5, no TTA: seconds of each and the masks' Dice.
* ``batch``: ``mednet_pvs.inference.batch.predict_batch`` over ``--batch-scans`` copies of the scan
  written as NIfTI with a manifest (image, brain mask) in a temporary folder, MedNeXt-L k5, no TTA,
  every output written (mask, stats, clusters): scans per hour.
* ``training``: MedNeXt-L k5, 128^3, batch 2, bf16-mixed (the shipped ``mednext_l_k5_t2w`` config).
  ``step``: ``bench_train.bench`` (step time and peak memory, data in memory). ``loader``: the real
  path: ``PVSSegmenter`` trained by a Lightning ``Trainer`` from ``PVSDataModule`` (the config's
  preprocessing, nnU-Net augmentation, queue and ``--workers`` workers) on a 0.8 mm phantom cohort
  written by ``mednet_pvs.synth.make_cohort`` (in parallel processes), sized so that every measured
  step lies in the first epoch; per step, the time waiting for the next batch (from the end of one
  step to the start of the next: loader and host-to-device copy) vs the whole cycle; share after
  the warm-up steps (target < 10 %), the first batch's wait (workers starting, first queue fill)
  reported apart.
* ``targets``: L-k5 <= 2 s without TTA, <= 10 s with TTA, >= 1.5x MONAI, >= 200 scans/h, bf16
  Dice >= 0.999, data wait < 10 %; each with its measured value and whether it was met.

``--tiny`` (with ``--device cpu``): a dry run in well under a minute on 2 CPU cores (15-20 s measured
on 2 cores shared with other jobs; one torch thread):
MedNeXt and ResEnc networks of ~20 k parameters (2 tiles per scan), a 48 x 32 x 32 procedural phantom
unpadded, 32^3 tiles, one repeat, 2 batch scans, the ``tiny_synthetic`` training config (2 channels,
batch 1, no augmentation) on 2 procedural phantoms (made in 2 processes, as the full run). Every code path above runs, but
its figures are NOT the targets' measurement (the output and the JSON's ``dry_run`` say so). A section that fails is recorded with its error and
the others still run; the exit status is then 1.

Extra rounds (after the first) are run only while the run stays within 60 % of ``--budget-s``, and
TTA is skipped if the no-TTA time says it would not fit, so that the sections after still run.
Module-level imports are the standard library only: the cohort's worker processes (spawned)
import this file and should start quickly.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_inference, bench_train

#: target -> (what, limit, comparison); the values come from the sections.
TARGETS = {
    "predict_l_k5_no_tta_s": ("MedNeXt-L k5 whole-brain predict, no TTA", 2.0, "<="),
    "predict_l_k5_tta_s": ("MedNeXt-L k5 whole-brain predict, 8x TTA", 10.0, "<="),
    "speedup_vs_monai": ("speed-up over MONAI sliding_window_inference (L-k5, no TTA)", 1.5, ">="),
    "scans_per_hour": ("batch throughput, L-k5, no TTA (scans/h)", 200.0, ">="),
    "bf16_dice": ("bf16 autocast vs fp32 label Dice (bundled trained model)", 0.999, ">="),
    "data_wait_share": ("share of a training step waiting for data", 0.10, "<"),
}
TTA_AXES = (0, 1, 2)


# ------------------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """What one run measures: sizes, networks and counts (full or ``--tiny``)."""

    device: Any
    tiny: bool
    repeats: int
    budget_s: float
    phantom: dict  # PhantomConfig fields of the scan
    fov: tuple[int, int, int] | None  # head field of view the scan is padded to
    nets: dict[str, tuple[str, dict]]  # role -> (registry name, kwargs)
    patch: tuple[int, int, int]
    step: float = 0.5
    batch: int = 2
    batch_scans: int = 6
    train_config: str = "mednext_l_k5_t2w"
    cohort_phantom: dict = field(default_factory=dict)
    workers: int = 8
    cohort_parts: int = 8
    train_warmup: int = 3
    train_steps: int = 24
    bench_steps: int = 5
    bench_warmup: int = 1
    train_overrides: dict = field(default_factory=dict)  # {"model": {...}, "data": {...}} over the config
    built: dict = field(default_factory=dict)  # role -> network, built once and shared by the sections
    batch_used: dict = field(default_factory=dict)  # role -> tiles per pass PVSModel chose (GPU: from free memory)


def make_plan(args: argparse.Namespace, device: Any) -> Plan:
    cpus = os.cpu_count() or 1
    if args.tiny:
        # Sizes for 2 loaded CPU cores: 2 tiles per scan, networks of a few thousand parameters.
        tiny_mednext = {"n_channels": 2, "exp_r": 2, "kernel_size": 3, "block_counts": [1] * 9}
        tiny_resenc = {"base_features": 4, "max_features": 16, "n_stages": 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                       "kernel_sizes": [[3, 3, 3]] * 3, "n_blocks_per_stage": [1, 1, 1]}
        plan = Plan(device, True, repeats=args.repeats or 1, budget_s=args.budget_s or 120,
                    phantom={"anatomy": "procedural", "shape": (48, 32, 32), "contrast": "T2w", "burden": 3}, fov=None,
                    nets={"mednext_l_k5": ("mednext", tiny_mednext), "nnunet_resenc_m": ("nnunet_resenc_m", tiny_resenc)},
                    patch=(32, 32, 32), batch_scans=args.batch_scans or 2, train_config="tiny_synthetic",
                    cohort_phantom={"anatomy": "procedural", "shape": (32, 32, 32), "contrast": "T2w"},
                    workers=args.workers or 2, cohort_parts=2, train_warmup=1, train_steps=args.train_steps or 2,
                    bench_steps=1, bench_warmup=0,
                    train_overrides={"model": {"network_kwargs": {"n_channels": 2}}, "data": {"batch_size": 1}})
    else:
        plan = Plan(device, False, repeats=args.repeats or 3, budget_s=args.budget_s or 420,
                    phantom={"anatomy": "mni", "spacing": 1.0, "contrast": "T2w"}, fov=(182, 218, 182),
                    nets={"mednext_l_k5": ("mednext_l_k5", {}), "nnunet_resenc_m": ("nnunet_resenc_m", {})},
                    patch=(128, 128, 128), batch_scans=args.batch_scans or 6, train_config="mednext_l_k5_t2w",
                    cohort_phantom={"anatomy": "mni", "spacing": 0.8, "contrast": "T2w"},
                    workers=args.workers or min(8, cpus), cohort_parts=min(8, cpus),
                    train_steps=args.train_steps or 24)
    return plan


# ------------------------------------------------------------------------------------ helpers
class Clock:
    """Seconds since the start, and whether another round still fits the budget."""

    def __init__(self, budget_s: float) -> None:
        self.t0, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def another_round(self, last_s: float) -> bool:
        return self.elapsed() + last_s < 0.6 * self.budget_s


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else math.nan


def dice(a: Any, b: Any) -> float:
    """Label Dice of two boolean arrays (1 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    n = int(a.sum()) + int(b.sum())
    return 1.0 if n == 0 else 2.0 * int((a & b).sum()) / n


def build_net(spec: tuple[str, dict], patch: tuple[int, ...], device: Any = None, seed: int = 0) -> Any:
    """A registry network with random (seeded) weights, in eval mode, on ``device``."""
    import torch

    from mednet_pvs.nets import create_network

    name, kwargs = spec
    kw = dict(kwargs)
    if name.startswith("nnunet"):
        kw.setdefault("patch_size", tuple(patch))  # nnU-Net's topology is planned for the patch
    torch.manual_seed(seed)
    net = create_network(name, **kw).eval()
    return net if device is None else net.to(device)


def network(plan: Plan, role: str) -> Any:
    """The network of ``role`` (random weights, seeded), built once per run and shared by the sections
    (on the CPU a fresh network's first calls cost seconds)."""
    if role not in plan.built:
        plan.built[role] = build_net(plan.nets[role], plan.patch, plan.device)
    return plan.built[role]


def tile_flops(spec: tuple[str, dict], patch: tuple[int, ...]) -> float:
    """Forward FLOPs of one tile (convolutions and matmuls), counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = build_net(spec, patch)
        x = torch.empty(1, 1, *patch)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x)
    return float(fc.get_total_flops())


def make_scan(plan: Plan) -> dict:
    """The test scan: the phantom's image and brain mask, padded (background value) to the head FOV."""
    import numpy as np

    import bench_inference as bi
    from mednet_pvs.synth import PhantomConfig, make_phantom

    t0 = time.perf_counter()
    ph = make_phantom(PhantomConfig(**plan.phantom), seed=0)
    img, brain = ph.image.astype(np.float32), ph.brainmask > 0
    if plan.fov:
        bg = float(np.median(img[~brain])) if (~brain).any() else 0.0
        img, brain = bi._pad_to(img, plan.fov, bg), bi._pad_to(brain, plan.fov, False)
    return {"image": img, "brain": brain, "affine": ph.affine, "phantom_shape": list(ph.image.shape),
            "shape": list(img.shape), "spacing": float(abs(ph.affine[0, 0])), "seconds": time.perf_counter() - t0}


def window_volume(scan: dict, patch: tuple[int, ...], step: float) -> dict:
    """``bench_inference.make_volume``'s volume from the scan in hand: z-scored inside the brain,
    padded (background value) to the tile lattice, so that MONAI's tiles and ``ours-grid``'s coincide."""
    import numpy as np
    import torch

    import bench_inference as bi

    img, brain = scan["image"], scan["brain"]
    img = (img - img[brain].mean()) / img[brain].std()
    bg = float(np.median(img[~brain])) if (~brain).any() else 0.0
    target = [bi.lattice_size(s, p, step) for s, p in zip(img.shape, patch)]
    img, lat = bi._pad_to(img, target, bg), bi._pad_to(brain, target, False)
    return {"image": torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)), "brain": torch.from_numpy(lat),
            "whole_brain": brain, "info": {"shape": list(img.shape), "brain_fraction": float(lat.mean())}}


def pvs_model(plan: Plan, net: Any, role: str, spacing: float, mirror_axes: tuple[int, ...] = TTA_AXES) -> Any:
    """``net`` as a model whose preprocessing resamples to the scan's own spacing (default preprocessing
    otherwise: RAS, crop to the brain, z-score) and whose window is the plan's, with mirroring."""
    from mednet_pvs.inference import InferenceConfig, PVSModel
    from mednet_pvs.nets import network_config

    window = {"patch_size": plan.patch, "step": plan.step, "batch_size": plan.batch, "mirror_axes": mirror_axes}
    return PVSModel(net, network_config(net), {"target_spacing": [spacing] * 3}, InferenceConfig.from_dict({"window": window}),
                    name=role, device=plan.device)


def timed_predict(model: Any, scan: dict, device: Any, **kw: Any) -> dict:
    """One ``predict`` call: seconds (synchronised), tiles, peak memory, its own stage times."""
    import bench_inference as bi

    tiles: list[int] = []
    sync(device)
    with bi.PeakMemory(device) as mem:
        t0 = time.perf_counter()
        pred = model.predict((scan["image"], scan["affine"]), brainmask=(scan["brain"].astype("uint8"), scan["affine"]),
                             progress=lambda done, total: tiles.append(total), **kw)
        sync(device)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tiles": tiles[-1] if tiles else 0, "peak_gib": mem.peak_gib,
            "network_s": pred.info["seconds"]["network"], "preprocess_s": pred.info["seconds"]["preprocess"],
            "pipeline": pred.info.get("pipeline"), "mask_voxels": int(pred.mask.sum()), "mask": pred.mask}


def batch_used(model: Any, plan: Plan) -> int:
    """Tiles per pass of ``model``'s last predict: on a GPU ``PVSModel`` chooses them from free memory
    (``auto_batch_size``, remembered per tile size), else the window's."""
    sizes = getattr(model, "_batch_sizes", None) if plan.device.type == "cuda" else None
    return int(next(iter(sizes.values()))) if sizes else plan.batch


def free(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------- sections
def section_predict(plan: Plan, clock: Clock, scan: dict, role: str) -> dict:
    spec = plan.nets[role]
    flops = tile_flops(spec, plan.patch)
    net = network(plan, role)
    model = pvs_model(plan, net, role, scan["spacing"])
    out: dict[str, Any] = {"network": spec[0], "kwargs": spec[1], "params": sum(p.numel() for p in net.parameters()),
                           "flops_per_tile": flops, "patch": list(plan.patch), "step": plan.step, "batch_size": plan.batch,
                           "input_shape": scan["shape"],
                           "memory_kind": "cuda_max_allocated" if plan.device.type == "cuda" else "peak_rss"}
    # One untimed call first (the network's first calls build its kernels). On the CPU also one with
    # TTA: oneDNN builds kernels per memory layout too, and the mirrored tiles bring new ones.
    t0 = time.perf_counter()
    for tta in (False,) if plan.device.type == "cuda" else (False, None):
        model.predict((scan["image"], scan["affine"]), brainmask=(scan["brain"].astype("uint8"), scan["affine"]), tta=tta)
    sync(plan.device)
    out["warmup_s"] = time.perf_counter() - t0
    out["batch_size"] = plan.batch_used[role] = batch_used(model, plan)
    for key, tta in (("no_tta", False), ("tta", None)):
        passes = 2 ** len(TTA_AXES) if tta is None else 1
        if tta is None and not plan.tiny:  # would the TTA run fit? (the no-TTA network time x 8)
            est = out["no_tta"]["network_s"] * passes + out["no_tta"]["preprocess_s"]
            if clock.elapsed() + est > plan.budget_s * 0.8:
                out[key] = {"skipped": f"would take about {est:.0f} s (budget {plan.budget_s:.0f} s)"}
                print(f"  {role}: TTA skipped ({out[key]['skipped']})")
                continue
        runs = []
        while not runs or (len(runs) < plan.repeats and clock.another_round(runs[-1]["seconds"])):
            r = timed_predict(model, scan, plan.device, tta=tta)
            r.pop("mask")
            runs.append(r)
        s, net_s = median([r["seconds"] for r in runs]), median([r["network_s"] for r in runs])
        tiles = runs[0]["tiles"]
        out[key] = {"seconds": s, "seconds_runs": [r["seconds"] for r in runs], "network_s": net_s,
                    "preprocess_s": median([r["preprocess_s"] for r in runs]), "tiles": tiles, "passes": passes,
                    "tflops": flops * tiles * passes / s / 1e12, "tflops_network": flops * tiles * passes / net_s / 1e12,
                    "peak_gib": max(r["peak_gib"] for r in runs), "pipeline": runs[0]["pipeline"],
                    "mask_voxels": runs[0]["mask_voxels"], "repeats": len(runs)}
        o = out[key]
        print(f"  {role} ({spec[0]}), {'8x TTA' if tta is None else 'no TTA'}: {s:.2f} s (network {net_s:.2f} s, "
              f"{o['pipeline']} preprocessing {o['preprocess_s']:.2f} s), {tiles} tiles x {passes} pass(es), "
              f"{o['tflops']:.3g} TFLOP/s ({o['tflops_network']:.3g} in the network), peak {o['peak_gib']:.2f} GiB, "
              f"{len(runs)} run(s)", flush=True)
    del model, net
    if role != "mednext_l_k5":  # only L-k5 is used again
        plan.built.pop(role, None)
    free(plan.device)
    return out


def section_monai(plan: Plan, clock: Clock, scan: dict) -> dict:
    import torch

    import bench_inference as bi

    spec = plan.nets["mednext_l_k5"]
    vol = window_volume(scan, plan.patch, plan.step)
    batch = plan.batch_used.get("mednext_l_k5", plan.batch)  # the tiles per pass predict used, for every method
    args = bi.parse(["--patch", *map(str, plan.patch), "--step", str(plan.step), "--batch", str(batch),
                     "--spacing", str(scan["spacing"]), "--device", plan.device.type])
    args.mirror_axes = ()
    net = bi.Counted(network(plan, "mednext_l_k5"))
    methods = ["ours", "ours-grid", "monai"]
    with torch.no_grad():
        for m in methods:  # warm-up: the first call of each builds its kernels / MONAI's buffers
            bi.run_method(m, net, vol, args, plan.device)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    outs: dict[str, Any] = {}
    rnd = 0
    while rnd == 0 or (rnd < plan.repeats and clock.another_round(sum(runs[m][-1]["seconds"] for m in methods))):
        for m in methods[rnd % len(methods):] + methods[:rnd % len(methods)]:  # order rotated per round
            r = bi.timed_run(m, net, vol, args, plan.device)
            out = r.pop("out")
            if rnd == 0:
                outs[m] = out.cpu()
            runs[m].append(r)
        rnd += 1
    res: dict[str, Any] = {"network": spec[0], "volume_shape": vol["info"]["shape"], "rounds": rnd,
                           "patch": list(plan.patch), "overlap": 1 - plan.step, "batch_size": batch}
    for m in methods:
        agree = bi.agreement(outs[m], outs["monai"], vol["brain"])
        res[m] = {"seconds": median([r["seconds"] for r in runs[m]]), "seconds_runs": [r["seconds"] for r in runs[m]],
                  "tiles": runs[m][0]["tiles"], "peak_gib": max(r["peak_gib"] for r in runs[m]),
                  "logits_max_abs_diff_vs_monai": agree["max_abs"], "argmax_differs_vs_monai": agree["argmax_differs"]}
    for m in ("ours", "ours-grid"):
        res[m]["speedup_vs_monai"] = median([o["seconds"] / r["seconds"] for o, r in zip(runs["monai"], runs[m])])
        res[m]["ratio_ours_over_monai"] = median([r["seconds"] / o["seconds"] for o, r in zip(runs["monai"], runs[m])])
    res["speedup_vs_monai"] = res["ours"]["speedup_vs_monai"]
    res["ratio_ours_over_monai"] = res["ours"]["ratio_ours_over_monai"]
    for m in methods:
        r = res[m]
        extra = f", {r['speedup_vs_monai']:.2f}x MONAI (ours/MONAI {r['ratio_ours_over_monai']:.2f})" if m != "monai" else ""
        print(f"  {m:10} {r['seconds']:.2f} s, {r['tiles']} tiles, peak {r['peak_gib']:.2f} GiB, "
              f"max |dlogit| vs MONAI {r['logits_max_abs_diff_vs_monai']:.2e}{extra}", flush=True)
    del net, outs
    free(plan.device)
    return res


@contextmanager
def no_tf32():
    """Plain fp32 on CUDA (TF32 off for convolutions and matmuls) for the block."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def bf16_vs_fp32(net: Any, window: Any, vol: dict, device: Any, threshold: float, margin: int) -> dict:
    """Masks of one brain-cropped volume with bf16 autocast and in fp32: Dice, probability difference, times."""
    import bench_inference as bi
    from mednet_pvs.inference import sliding_window_predict

    box = bi.brain_box(vol["brain"], margin)
    x, m = vol["image"][box][None].to(device), vol["brain"][box].to(device)
    fg, secs = {}, {}
    for amp in (True, False):
        with no_tf32() if not amp else _nothing():
            sync(device)
            t0 = time.perf_counter()
            probs = sliding_window_predict(net, x, window, mask=m, device=device, autocast=amp)
            sync(device)
            secs[amp] = time.perf_counter() - t0
        fg[amp] = probs[1:].sum(0).float().cpu().numpy()
        del probs
    a, b = fg[True] > threshold, fg[False] > threshold
    return {"dice": dice(a, b), "max_abs_prob_diff": float(abs(fg[True] - fg[False]).max()),
            "mask_voxels_bf16": int(a.sum()), "mask_voxels_fp32": int(b.sum()), "threshold": threshold,
            "seconds_bf16": secs[True], "seconds_fp32": secs[False], "autocast_active": device.type == "cuda"}


@contextmanager
def _nothing():
    yield


def section_precision(plan: Plan, scan: dict) -> dict:
    from mednet_pvs.zoo import load_pretrained

    vol = window_volume(scan, plan.patch, plan.step)
    margin = int(round(5.0 / scan["spacing"]))
    res: dict[str, Any] = {"autocast_active": plan.device.type == "cuda",
                           "note": "fp32 = TF32 off" if plan.device.type == "cuda" else "CPU: autocast is off, both runs are fp32"}
    bundled = load_pretrained("mednet-pvs-synth-t2w", device=plan.device)
    window = bundled.inference.window.replace(mirror_axes=())
    if plan.tiny:
        window = window.replace(patch_size=plan.patch)
    res["bundled"] = {"model": "mednet-pvs-synth-t2w", "patch": list(window.patch_size),
                      **bf16_vs_fp32(bundled.networks[0], window, vol, plan.device, bundled.inference.threshold, margin)}
    del bundled
    spec = plan.nets["mednext_l_k5"]
    net = network(plan, "mednext_l_k5")
    window = pvs_model(plan, net, "l", scan["spacing"], mirror_axes=()).inference.window
    res["mednext_l_k5"] = {"network": spec[0], "random_weights": True, **bf16_vs_fp32(net, window, vol, plan.device, 0.5, margin)}
    res["dice"] = res["bundled"]["dice"]
    for k in ("bundled", "mednext_l_k5"):
        r = res[k]
        print(f"  {k:12} bf16 vs fp32: label Dice {r['dice']:.5f} ({r['mask_voxels_bf16']} / {r['mask_voxels_fp32']} mask voxels), "
              f"max |dp| {r['max_abs_prob_diff']:.2e}, {r['seconds_bf16']:.2f} s vs {r['seconds_fp32']:.2f} s"
              f"{'' if r['autocast_active'] else ' (CPU: both fp32)'}", flush=True)
    del net
    free(plan.device)
    return res


def section_pipeline(plan: Plan, clock: Clock, scan: dict) -> dict:
    """``predict(pipeline="device")`` vs ``pipeline="torchio"``: time and mask agreement."""
    net = network(plan, "mednext_l_k5")
    model = pvs_model(plan, net, "pipeline", scan["spacing"])
    res: dict[str, Any] = {"network": plan.nets["mednext_l_k5"][0]}
    masks = {}
    for how in ("device", "torchio"):
        timed_predict(model, scan, plan.device, tta=False, pipeline=how)  # warm-up
        runs = []
        while not runs or (len(runs) < plan.repeats and clock.another_round(runs[-1]["seconds"])):
            runs.append(timed_predict(model, scan, plan.device, tta=False, pipeline=how))
        masks[how] = runs[0]["mask"]
        res[how] = {"seconds": median([r["seconds"] for r in runs]), "preprocess_s": median([r["preprocess_s"] for r in runs]),
                    "network_s": median([r["network_s"] for r in runs]), "peak_gib": max(r["peak_gib"] for r in runs),
                    "repeats": len(runs)}
    res["dice"] = dice(masks["device"], masks["torchio"])
    res["speedup_device_vs_torchio"] = res["torchio"]["seconds"] / res["device"]["seconds"]
    print(f"  pipeline device {res['device']['seconds']:.2f} s (preprocess {res['device']['preprocess_s']:.2f} s) vs "
          f"torchio {res['torchio']['seconds']:.2f} s (preprocess {res['torchio']['preprocess_s']:.2f} s): "
          f"{res['speedup_device_vs_torchio']:.2f}x, mask Dice {res['dice']:.5f}", flush=True)
    del model, net
    free(plan.device)
    return res


def section_batch(plan: Plan, scan: dict) -> dict:
    import nibabel as nib

    from mednet_pvs.inference.batch import collect_inputs, predict_batch

    net = network(plan, "mednext_l_k5")
    model = pvs_model(plan, net, "batch", scan["spacing"])
    with tempfile.TemporaryDirectory(prefix="gpu_check_batch_") as tmp:
        d = Path(tmp)
        (d / "in").mkdir()
        rows = []
        t0 = time.perf_counter()
        for i in range(plan.batch_scans):
            sid = f"scan-{i + 1:03d}"
            nib.save(nib.Nifti1Image(scan["image"], scan["affine"]), d / "in" / f"{sid}_T2w.nii.gz")
            nib.save(nib.Nifti1Image(scan["brain"].astype("uint8"), scan["affine"]), d / "in" / f"{sid}_brainmask.nii.gz")
            rows.append({"subject": sid, "image": f"{sid}_T2w.nii.gz", "brainmask": f"{sid}_brainmask.nii.gz"})
        with open(d / "in" / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["subject", "image", "brainmask"])
            w.writeheader()
            w.writerows(rows)
        write_s = time.perf_counter() - t0
        cases = collect_inputs(d / "in" / "manifest.csv")
        # warm-up (one scan, not counted): the network's first call builds its kernels
        model.predict(cases[0].image, brainmask=cases[0].brainmask, tta=False)
        sync(plan.device)
        t0 = time.perf_counter()
        report = predict_batch(cases, d / "out", model, tta=False)
        sync(plan.device)
        seconds = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"batch prediction failed for {len(report.failed)} case(s): {report.failed}")
    res = {"network": plan.nets["mednext_l_k5"][0], "scans": len(report.done), "seconds": seconds,
           "seconds_per_scan": seconds / len(report.done), "scans_per_hour": 3600.0 * len(report.done) / seconds,
           "input_shape": scan["shape"], "inputs_write_s": write_s, "tta": False}
    print(f"  predict_batch: {res['scans']} scans in {seconds:.1f} s ({res['seconds_per_scan']:.2f} s/scan, "
          f"all outputs written) = {res['scans_per_hour']:.0f} scans/h", flush=True)
    del model, net
    free(plan.device)
    return res


def _cohort_part(outdir: str, n: int, config: dict, seed: int) -> str:
    """One process's share of the cohort (module level: spawned workers import it)."""
    from mednet_pvs.synth import PhantomConfig, make_cohort

    return str(make_cohort(outdir, n, PhantomConfig(**config), seed=seed, split_fractions=(1.0, 0.0, 0.0)))


def make_cohort_parallel(root: Path, n: int, config: dict, parts: int) -> Path:
    """``make_cohort`` in ``parts`` spawned processes (``part<k>/``), then one manifest over them all
    (subjects renamed ``p<k>-sub-...``, all ``train`` but the last, ``val``)."""
    import concurrent.futures
    import multiprocessing

    parts = max(1, min(parts, n))
    sizes = [n // parts + (k < n % parts) for k in range(parts)]
    if parts == 1:
        manifests = [Path(_cohort_part(str(root / "part0"), n, config, 0))]
    else:
        with concurrent.futures.ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("spawn")) as ex:
            futures = [ex.submit(_cohort_part, str(root / f"part{k}"), sizes[k], config, k) for k in range(parts)]
            manifests = [Path(f.result()) for f in futures]
    rows: list[dict] = []
    for k, m in enumerate(manifests):
        with open(m, newline="") as f:
            for row in csv.DictReader(f):
                row["subject"] = f"p{k}-{row['subject']}"
                for col in ("image", "label", "brainmask", "regions"):
                    if row.get(col):
                        row[col] = f"part{k}/{row[col]}"
                rows.append(row)
    rows[-1]["split"] = "val"  # the datamodule wants a validation case (never used here)
    out = root / "manifest.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def section_training(plan: Plan) -> dict:
    import bench_train as bt
    import yaml

    from mednet_pvs.training.cli import config_path

    cfg = yaml.safe_load(Path(config_path(plan.train_config)).read_text())
    s = bt.settings_from_config(plan.train_config)
    over = plan.train_overrides
    cfg["model"]["network_kwargs"] = {**(cfg["model"].get("network_kwargs") or {}), **over.get("model", {}).get("network_kwargs", {})}
    cfg["data"].update(over.get("data", {}))
    s["kwargs"], s["patch"], s["batch"] = cfg["model"]["network_kwargs"], cfg["data"]["patch_size"], cfg["data"]["batch_size"]
    # 1. the step alone, data in memory (bench_train): step time and peak memory
    step = bt.bench(s["network"], s["kwargs"], s["patch"], s["batch"], s["optimizer"], plan.bench_steps, plan.bench_warmup,
                    plan.device.type)
    print(f"  step ({s['network']}, {s['patch']}^3 x {s['batch']}, {step['precision']}): {step['step_s']:.3f} s/step, "
          f"peak {step['peak_mem_MiB'] / 1024:.2f} GiB ({step['peak_mem_kind']})", flush=True)
    free(plan.device)
    # 2. the real path: PVSDataModule (workers, queue, augmentation) -> Lightning -> PVSSegmenter
    loader = training_with_loader(plan, cfg)
    return {"config": plan.train_config, "step": step, "loader": loader, "data_wait_share": loader["wait_share"]}


def training_with_loader(plan: Plan, cfg: dict) -> dict:
    import logging
    import warnings

    import lightning as L

    from mednet_pvs.data.datamodule import PVSDataModule
    from mednet_pvs.training.module import PVSSegmenter

    data = cfg["data"]
    cuda = plan.device.type == "cuda"
    steps = plan.train_warmup + plan.train_steps
    per_subject = max(data["samples_per_volume"] // data["batch_size"], 1)
    n = math.ceil((steps + 1) / per_subject) + 1  # every measured step inside the first epoch (+1: validation)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*deprecated.*", module="lightning")

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.ends: list[float] = []
            self.epoch_start = math.nan

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self.epoch_start = time.perf_counter()

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            sync(plan.device)
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            sync(plan.device)
            self.ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="gpu_check_train_") as tmp:
        t0 = time.perf_counter()
        manifest = make_cohort_parallel(Path(tmp) / "cohort", n, plan.cohort_phantom, plan.cohort_parts)
        cohort_s = time.perf_counter() - t0
        dm = PVSDataModule(str(manifest), preprocessing=data.get("preprocessing"), augmentation=data.get("augmentation", "nnunet"),
                           patch_size=data["patch_size"], batch_size=data["batch_size"],
                           samples_per_volume=data["samples_per_volume"], queue_length=data["queue_length"],
                           num_workers=plan.workers, split="manifest", seed=0)
        t0 = time.perf_counter()
        dm.setup("fit")
        setup_s = time.perf_counter() - t0
        module = PVSSegmenter(**{k: v for k, v in cfg["model"].items() if k != "image_every_n_epochs"}, image_every_n_epochs=0)
        timer = StepTimer()
        trainer = L.Trainer(accelerator="gpu" if cuda else "cpu", devices=[plan.device.index or 0] if cuda else 1,
                            precision="bf16-mixed" if cuda else "32-true", max_steps=steps, limit_val_batches=0,
                            num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[timer], default_root_dir=tmp)
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        fit_s = time.perf_counter() - t0
    starts, ends = timer.starts, timer.ends
    if len(ends) < steps:
        raise RuntimeError(f"training ran {len(ends)} of {steps} steps")
    waits = [starts[0] - timer.epoch_start] + [starts[k] - ends[k - 1] for k in range(1, len(starts))]
    computes = [e - s for s, e in zip(starts, ends)]
    w = plan.train_warmup
    wait, comp = sum(waits[w:]), sum(computes[w:])
    res = {"network": cfg["model"]["network"], "precision": trainer.precision, "patch": data["patch_size"],
           "batch_size": data["batch_size"], "workers": plan.workers, "augmentation": data.get("augmentation"),
           "cohort_subjects": n, "cohort_phantom": plan.cohort_phantom, "cohort_s": cohort_s, "setup_s": setup_s,
           "fit_s": fit_s, "warmup_steps": w, "measured_steps": len(computes) - w, "first_batch_wait_s": waits[0],
           "step_s": comp / max(len(computes) - w, 1), "wait_s_per_step": wait / max(len(computes) - w, 1),
           "wait_share": wait / (wait + comp), "max_wait_s": max(waits[w:]) if waits[w:] else math.nan,
           "waits_s": waits, "computes_s": computes}
    print(f"  loader ({n} phantoms made in {cohort_s:.1f} s, setup {setup_s:.1f} s, {plan.workers} workers, "
          f"{res['precision']}): {res['step_s']:.3f} s/step computing, {res['wait_s_per_step']:.3f} s/step waiting "
          f"= {100 * res['wait_share']:.1f} % of each step (first batch waited {waits[0]:.1f} s; "
          f"{res['measured_steps']} steps after {w} warm-up)", flush=True)
    return res


# ------------------------------------------------------------------------------------- report
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment(plan: Plan) -> dict:
    import lightning
    import monai
    import torch

    dev = plan.device
    env = {"device": dev.type, "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
           "cudnn_benchmark": torch.backends.cudnn.benchmark, "monai": monai.__version__, "lightning": lightning.__version__,
           "python": platform.python_version(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "host": platform.node()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(gpu_memory_gib=props.total_memory / 2**30, gpu_capability=f"{props.major}.{props.minor}",
                   gpu_count=torch.cuda.device_count())
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        env["git_dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                               capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def targets(results: dict, dry_run: bool) -> list[dict]:
    def get(*path: str) -> Any:
        d: Any = results
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None
        return d

    values = {"predict_l_k5_no_tta_s": get("predict", "mednext_l_k5", "no_tta", "seconds"),
              "predict_l_k5_tta_s": get("predict", "mednext_l_k5", "tta", "seconds"),
              "speedup_vs_monai": get("monai", "speedup_vs_monai"), "scans_per_hour": get("batch", "scans_per_hour"),
              "bf16_dice": get("precision", "dice"), "data_wait_share": get("training", "data_wait_share")}
    rows = []
    for key, (what, limit, op) in TARGETS.items():
        v = values[key]
        met = None if v is None else bool(v <= limit if op == "<=" else v >= limit if op == ">=" else v < limit)
        rows.append({"target": key, "what": what, "limit": limit, "op": op, "value": v, "met": met,
                     "counts": not dry_run and v is not None})
    return rows


def default_out() -> Path:
    base = ROOT / "benchmarks" / "results" / f"gpu_check-{datetime.date.today().isoformat()}"
    out, k = base.with_suffix(".json"), 2
    while out.exists():
        out, k = base.parent / f"{base.name}-{k}.json", k + 1
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Sections and figures: see the module docstring.")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    p.add_argument("--tiny", action="store_true", help="dry run: tiny networks and volumes, 1 repeat (CI, on the CPU)")
    p.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/gpu_check-<date>.json)")
    p.add_argument("--sections", default="predict,monai,precision,pipeline,batch,training",
                   help="comma-separated subset to run (e.g. to rerun one)")
    p.add_argument("--repeats", type=int, help="timed rounds (default 3; --tiny 1); extra rounds only within the budget")
    p.add_argument("--budget-s", type=float, help="seconds the whole run should stay under (default 420; --tiny 120)")
    p.add_argument("--batch-scans", type=int, help="scans in the batch throughput run (default 6; --tiny 2)")
    p.add_argument("--train-steps", type=int, help="measured training steps with the real loader (default 24; --tiny 3)")
    p.add_argument("--workers", type=int, help="data loader workers (default min(8, CPUs); --tiny 2)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default torch's; --tiny 1: the tiny networks' "
                   "many small ops slow down 10-100x when two threads share cores with other jobs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    dev_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev_name == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    device = torch.device(dev_name)
    threads = args.threads or (1 if args.tiny else None)
    if threads:
        torch.set_num_threads(threads)
    plan = make_plan(args, device)
    clock = Clock(plan.budget_s)
    dry = plan.tiny or device.type != "cuda"
    out_path = args.out or default_out()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    results: dict[str, Any] = {"dry_run": dry, "tiny": plan.tiny,
                               "started": datetime.datetime.now().isoformat(timespec="seconds"),
                               "environment": environment(plan),
                               "plan": {"phantom": plan.phantom, "fov": plan.fov, "nets": plan.nets, "patch": plan.patch,
                                        "step": plan.step, "batch_size": plan.batch, "repeats": plan.repeats,
                                        "budget_s": plan.budget_s, "sections": sections}}
    if dry:
        results["note"] = ("DRY RUN: tiny networks/volumes or no GPU; these figures show that every code path runs "
                           "and are NOT the targets' measurement")
        print(f"gpu_check: {results['note']}.")
    env = results["environment"]
    print(f"device {env['device']} ({env['device_name']}), torch {env['torch']}, CUDA {env['cuda'] or '-'}, "
          f"cuDNN {env['cudnn'] or '-'}, MONAI {env['monai']}, {env['cpu_count']} CPUs, {env['torch_threads']} torch threads",
          flush=True)
    scan = make_scan(plan)
    results["scan"] = {k: v for k, v in scan.items() if k not in ("image", "brain", "affine")}
    print(f"scan: phantom {scan['phantom_shape']} ({plan.phantom['anatomy']}, {scan['spacing']:g} mm)"
          f"{' padded to ' + str(scan['shape']) if plan.fov else ''}, made in {scan['seconds']:.1f} s; "
          f"tiles {plan.patch}, step {plan.step}, batch {plan.batch}", flush=True)
    failed = []

    def run(name: str, fn: Any, *a: Any) -> Any:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        try:
            r = fn(*a)
        except Exception as e:  # noqa: BLE001 - one broken section must not cost the others (GPU time is scarce)
            traceback.print_exc()
            failed.append(name)
            r = {"error": f"{type(e).__name__}: {e}"}
            free(device)
        r["section_s"] = time.perf_counter() - t0
        return r

    if "predict" in sections:
        results["predict"] = {role: run(f"predict {role}", section_predict, plan, clock, scan, role) for role in plan.nets}
    if "monai" in sections:
        results["monai"] = run("monai", section_monai, plan, clock, scan)
    if "precision" in sections:
        results["precision"] = run("precision", section_precision, plan, scan)
    if "pipeline" in sections:
        results["pipeline"] = run("pipeline", section_pipeline, plan, clock, scan)
    if "batch" in sections:
        results["batch"] = run("batch", section_batch, plan, scan)
    if "training" in sections:
        results["training"] = run("training", section_training, plan)
    results["targets"] = targets(results, dry)
    print("targets" + (" (DRY RUN: not the targets' measurement)" if dry else "") + ":")
    for t in results["targets"]:
        v = "not measured" if t["value"] is None else f"{t['value']:.4g}"
        verdict = "-" if t["met"] is None else ("met" if t["met"] else "NOT met")
        print(f"  {t['what']:<62} {t['op']} {t['limit']:<6g} {v:>12}  {verdict}{' (dry run)' if dry and t['met'] is not None else ''}")
    results["seconds_total"] = clock.elapsed()
    results["failed_sections"] = failed
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {out_path} ({results['seconds_total']:.1f} s{', budget ' + str(int(plan.budget_s)) + ' s' if not plan.tiny else ''})"
          + (f"; FAILED sections: {', '.join(failed)}" if failed else ""))
    if not plan.tiny and results["seconds_total"] > 480:
        print(f"note: the run took {results['seconds_total'] / 60:.1f} min, over the 8 min it is meant to fit; "
              "lower --budget-s / --repeats or run --sections in parts")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
