#!/usr/bin/env python3
"""Benchmark the CPU backends (issue 19): PyTorch vs ONNX Runtime vs MONAI, side by side in one run.

    .venv/bin/python benchmarks/bench_cpu_backends.py                       # everything below (~20 min on 2 cores)
    .venv/bin/python benchmarks/bench_cpu_backends.py --configs s_k3        # one configuration
    .venv/bin/python benchmarks/bench_cpu_backends.py --configs l_k5 --rounds 3   # medians of 3 interleaved rounds

Volume: ``make_phantom(PhantomConfig(anatomy="mni", spacing=1.0, contrast="T2w"), seed=0)`` (the
whole 1 mm brain) through the bundled model's own preprocessing (TorchIO pipeline: RAS, crop to the
brain + 5 mm, z-score), i.e. exactly what ``PVSModel.predict`` feeds its sliding window.

Configurations (``--configs``; sized for a 2-core machine shared with other jobs: only the first
runs on the whole brain, the others on a central region of it; say so when quoting them):

* ``s_k3``: the bundled MedNeXt-S k3 (trained weights), whole brain, 64^3 tiles, step 0.5, no TTA;
  torch and onnxruntime only (MONAI too with ``--whole-monai``: on 2 loaded cores it alone took
  over 20 minutes); this is the whole-brain agreement.
* ``s_k3_whole_tta``: ``s_k3`` with 8-fold mirroring TTA (MONAI with ``--whole-monai``; about
  25 minutes on 2 quiet cores with it). Not in the default set.
* ``s_k3_region``: the same on a 96 x 96 x 64 central region (4 tiles), all three methods.
* ``s_k3_tta``: the same on a 64^3 central region (1 tile) with 8-fold mirroring TTA.
* ``l_k5``: MedNeXt-L k5 (registry, seeded random weights: speed only), 64^3 region (1 tile).
* ``l_k5_region``: the same on the 96 x 96 x 64 region (4 tiles: full batches of 2, as in a
  whole brain; ``l_k5``'s one tile runs a batch of 1). Not in the default set.
* ``resenc_m``: nnU-Net ResEnc-M (registry, random weights, planned for 64^3), 96 x 96 x 64 region.

Methods, interleaved within each configuration (order rotated per configuration and per round;
``--rounds N`` repeats them and reports medians and each round's ratio), all on the same
network, volume, tiles of 64^3, step 0.5 / overlap 0.5, batch 2 and Gaussian weighting:

* ``torch``: :func:`sliding_window_predict` with the networks (channels-last on CPU for MedNeXt),
  tiles without brain skipped: what ``predict`` runs with ``--backend torch``.
* ``onnxruntime``: the same with :meth:`PVSModel.use_backend("onnxruntime")`'s callables (fp32).
  Its one-time export is timed separately (``convert s``; the cache is a fresh temporary folder).
* ``openvino`` / ``openvino-bf16`` (``--openvino fp32,bf16``): the same with
  :class:`~mednet_pvs.inference.backends.OpenVinoNetwork` compiling the exported graph.
* ``inductor`` (``--inductor``): the same with
  :class:`~mednet_pvs.inference.backends.InductorNetwork` (AOTInductor package built for batch 2
  and these threads; its one-time compilation is timed in the header).
* ``monai``: ``monai.inferers.sliding_window_inference(mode="gaussian", sigma_scale=0.125)`` on the
  same volume (all tiles; channels-first, MONAI's default); with TTA, once per mirror flip, averaged.

``--malloc reuse`` applies :func:`~mednet_pvs.inference.cpu_memory.reuse_freed_memory` (what the CLI
does on the CPU) before anything runs, so every method, MONAI included, allocates the same way.

Figures: wall time and process CPU time (all threads; on a shared machine the CPU time is the
steadier figure), the forward passes' FLOPs (``torch.utils.flop_counter.FlopCounterMode`` on one
tile, x tiles x passes) per wall second and per CPU second, against the FP32 peak derived from
``lscpu``/``/proc/cpuinfo`` (cores x GHz x FLOPs per cycle per core: 2 FMA units x 8 (AVX2) or 16
(AVX-512) float32 lanes x 2), peak resident memory (Linux VmHWM after a reset through
``/proc/self/clear_refs``, as growth over the resident set before the run); agreement with
PyTorch fp32 as the network is written (our sliding window, channels-first, run once untimed):
max |foreground probability difference| and Dice of the labels (the model's threshold,
0.6, for the bundled model; arg-max for the random ones). The ONNX Runtime intra-op threads (1 vs
the physical cores) are timed last on one batch of two 64^3 tiles of the bundled model.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np
import torch

from mednet_pvs.inference import sliding_window_predict
from mednet_pvs.inference.backends import (
    CACHE_ENV,
    OnnxRuntimeNetwork,
    OpenVinoNetwork,
    compile_inductor,
    compile_onnxruntime,
    physical_cores,
)
from mednet_pvs.inference.cpu_memory import reuse_freed_memory
from mednet_pvs.inference.model import tensor_digest
from mednet_pvs.inference.sliding_window import _flip_sets, _forward, tile_starts

CONFIGS = ("s_k3", "s_k3_whole_tta", "s_k3_region", "s_k3_tta", "l_k5", "l_k5_region", "resenc_m")
PATCH = (64, 64, 64)
REGION = (96, 96, 64)
#: the region (None: the whole brain) of each configuration
REGIONS: dict[str, tuple[int, int, int] | None] = {"s_k3": None, "s_k3_whole_tta": None, "s_k3_region": REGION, "s_k3_tta": (64, 64, 64),
                                                   "l_k5": (64, 64, 64), "l_k5_region": REGION, "resenc_m": REGION}


# ------------------------------------------------------------------------------- machine
def fp32_peak() -> dict:
    """FP32 peak of this machine from lscpu flags and the clock in /proc/cpuinfo."""
    flags = ""
    mhz = []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags") and not flags:
                flags = line
            elif line.startswith("cpu MHz"):
                mhz.append(float(line.split(":")[1]))
    try:
        lscpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = ""
    name = re.search(r"Model name:\s*(.+)", lscpu)
    max_mhz = re.search(r"CPU max MHz:\s*([\d.]+)", lscpu)
    ghz = (float(max_mhz.group(1)) if max_mhz else (max(mhz) if mhz else 2000.0)) / 1000
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    fma = 2 if " fma" in flags or lanes == 16 else 1
    per_cycle = 2 * lanes * 2 if fma == 2 else lanes * 2  # 2 FMA pipes x lanes x (mul + add)
    cores = physical_cores()
    return {"cpu": name.group(1).strip() if name else platform.processor(), "cores": cores, "ghz": ghz,
            "isa": "AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE", "flops_per_cycle": per_cycle,
            "peak_gflops": cores * ghz * per_cycle, "per_core_gflops": ghz * per_cycle,
            "derivation": f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle (2 FMA units x {lanes} fp32 lanes x 2)"}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Measure:
    """Wall time, process CPU time and peak RSS growth (VmHWM reset first) of a block."""

    def __enter__(self) -> Self:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        self.rss0 = _status_kib("VmRSS")
        self.load0 = os.getloadavg()[0]
        self.c0, self.t0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
        self.peak_gib = (_status_kib("VmHWM") - self.rss0) / 2**20
        self.load1 = os.getloadavg()[0]


# ------------------------------------------------------------------------------- inputs
def whole_brain() -> tuple[torch.Tensor, torch.Tensor, object]:
    """The 1 mm phantom brain preprocessed as the bundled model does: (image (1, X, Y, Z), brain
    mask (X, Y, Z) bool, the bundled model)."""
    from mednet_pvs.data.preprocessing import (
        BRAINMASK,
        IMAGE,
        build_preprocessing,
        subject_from_arrays,
    )
    from mednet_pvs.synth import PhantomConfig, make_phantom
    from mednet_pvs.zoo import load_pretrained

    ph = make_phantom(PhantomConfig(anatomy="mni", spacing=1.0, contrast="T2w"), seed=0)
    model = load_pretrained("mednet-pvs-synth-t2w", device="cpu")
    subject = build_preprocessing(model.preprocessing)(subject_from_arrays(ph.image, ph.affine, brainmask=ph.brainmask))
    return subject[IMAGE].data.float(), subject[BRAINMASK].data[0] > 0, model


def central(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    c = [(s - r) // 2 for s, r in zip(image.shape[1:], size)]
    sl = tuple(slice(a, a + r) for a, r in zip(c, size))
    return image[(slice(None), *sl)].contiguous(), mask[sl].contiguous()


def build(name: str, bundled) -> torch.nn.Module:
    from mednet_pvs.nets import create_network

    torch.manual_seed(0)
    if name.startswith("s_k3"):
        return bundled.networks[0]
    if name.startswith("l_k5"):
        return create_network("mednext_l_k5", in_channels=1, n_classes=2).eval()
    return create_network("nnunet_resenc_m", input_channels=1, num_classes=2, patch_size=list(PATCH)).eval()


def flops_per_tile(net: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        _forward(net, torch.zeros(1, 1, *PATCH))
    return float(fc.get_total_flops())


# ------------------------------------------------------------------------------- methods
def run_ours(nets, image, mask, window) -> torch.Tensor:
    return sliding_window_predict(nets, image, window, mask=mask, device="cpu")


def run_monai(net, image, window) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    flips = _flip_sets(window.mirror_axes)
    x = image[None]
    total = None
    with torch.no_grad():
        for axes in flips:
            dims = [d + 2 for d in axes]
            xin = torch.flip(x, dims) if dims else x
            y = sliding_window_inference(xin, PATCH, window.batch_size, lambda t: _forward(net, t), overlap=window.step,
                                         mode="gaussian", sigma_scale=window.sigma_scale)
            y = torch.softmax(torch.flip(y, dims) if dims else y, 1)
            total = y if total is None else total + y
    return total[0] / len(flips)


def agreement(ref: torch.Tensor, other: torch.Tensor, threshold: float | None) -> dict:
    a, b = ref[1].numpy(), other[1].numpy()
    la, lb = (a > threshold, b > threshold) if threshold is not None else (ref.argmax(0).numpy() > 0, other.argmax(0).numpy() > 0)
    inter, total = np.logical_and(la, lb).sum(), la.sum() + lb.sum()
    return {"max_prob_diff": float(np.abs(a - b).max()), "dice": float(2 * inter / total) if total else 1.0,
            "labels_differ": float((la != lb).mean()), "label_voxels": int(la.sum())}


def count_tiles(image: torch.Tensor, mask: torch.Tensor | None) -> int:
    starts = [tile_starts(max(s, p), p, 0.5) for s, p in zip(image.shape[1:], PATCH)]
    if mask is None:
        return math.prod(len(s) for s in starts)
    return sum(bool(mask[a:a + PATCH[0], b:b + PATCH[1], c:c + PATCH[2]].any()) for a in starts[0] for b in starts[1] for c in starts[2])


def thread_check(bundled, cache: Path, out: list[str]) -> dict:
    """ONNX Runtime intra-op threads 1 vs physical cores on one batch of 2 x 64^3, 2 rounds interleaved."""
    net = bundled.networks[0]
    runner, _ = compile_onnxruntime(net, tensor_digest(net.state_dict()), 1, PATCH, cache=cache)
    x = torch.randn(2, 1, *PATCH, generator=torch.Generator().manual_seed(0))
    res: dict = {}
    runners = {n: OnnxRuntimeNetwork(runner.path, n) for n in sorted({1, physical_cores()})}
    for r in runners.values():
        r(x)
    for _ in range(2):
        for n, r in runners.items():
            with Measure() as m:
                r(x)
            res.setdefault(n, []).append((m.wall, m.cpu))
    for n, v in res.items():
        line = f"onnxruntime threads {n}: " + ", ".join(f"{w:.2f} s wall / {c:.2f} s CPU" for w, c in v) + " per batch of 2 x 64^3"
        print(line, flush=True)
        out.append(line)
    return {str(k): v for k, v in res.items()}


#: table names of OpenVINO's methods per precision
OV_NAMES = {"fp32": "openvino", "bf16": "openvino-bf16"}


def bench_config(name: str, image, mask, bundled, cache: Path, peak: dict, rotate: int, out: list[str],
                 whole_monai: bool = False, rounds_n: int = 1, openvino_precisions: tuple[str, ...] = (),
                 inductor: bool = False) -> dict:
    from mednet_pvs.inference import SlidingWindowConfig

    tta = name.endswith("_tta")
    region = REGIONS[name]
    if region is not None:
        image, mask = central(image, mask, region)
    window = SlidingWindowConfig(patch_size=PATCH, step=0.5, batch_size=2, mirror_axes=(0, 1, 2) if tta else ())
    net = build(name, bundled)
    flops = flops_per_tile(net)
    passes = 8 if tta else 1
    with Measure() as conv:
        runner, done = compile_onnxruntime(net, tensor_digest(net.state_dict()), 1, PATCH, cache=cache)
    header = (f"[{name}] {type(net).__name__} {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M params, "
              f"{flops / 1e9:.1f} GFLOP per {PATCH[0]}x{PATCH[1]}x{PATCH[2]} tile; volume {list(image.shape[1:])}, TTA {'8x' if tta else 'off'}; "
              f"onnx export {done['convert_s']:.1f} s ({conv.cpu:.1f} CPU s), session {done['load_s']:.2f} s")
    print(header, flush=True)
    out.append(header)
    methods = {"torch": lambda: run_ours([net], image, mask, window),
               "onnxruntime": lambda: run_ours([runner], image, mask, window),
               "monai": lambda: run_monai(net, image, window)}
    for precision in openvino_precisions:  # the same exported graph, compiled by OpenVINO
        ov_net = OpenVinoNetwork(runner.path, runner.threads, precision, cache=cache)
        methods[OV_NAMES[precision]] = lambda n=ov_net: run_ours([n], image, mask, window)
    if inductor:  # PyTorch's AOTInductor, compiled for this batch and these threads
        with Measure() as aoti:
            ind_net, ind_done = compile_inductor(net, tensor_digest(net.state_dict()), 1, PATCH, batch=window.batch_size,
                                                 threads=runner.threads, cache=cache)
        line = (f"  inductor compile {ind_done['convert_s']:.1f} s ({aoti.cpu:.1f} CPU s of this process; the C++ compiler's "
                f"own not counted), load {ind_done['load_s']:.2f} s")
        print(line, flush=True)
        out.append(line)
        methods["inductor"] = lambda: run_ours([ind_net], image, mask, window)
    if region is None and not whole_monai:
        del methods["monai"]
    # the agreement's reference: PyTorch fp32 as the module is written (channels-first), untimed;
    # ``torch`` (channels-last on the CPU for MedNeXt) differs from it by float rounding
    with Measure() as m:
        reference = run_ours([net], image, mask, dataclasses.replace(window, channels_last=False))
    print(f"  reference (torch fp32, channels-first, untimed) {m.wall:.1f} s wall", flush=True)
    results, outputs, rounds = {}, {}, []
    for rnd in range(max(1, rounds_n)):
        k = (rotate + rnd) % len(methods)  # a new order each round: no method is always first or last
        order = list(methods)[k:] + list(methods)[:k]
        this = {}
        for method in order:
            with Measure() as m:
                y = methods[method]()
            outputs.setdefault(method, y)
            this[method] = m
            print(f"  {method:12s} {m.wall:7.1f} s wall {m.cpu:7.1f} s CPU  round {rnd + 1}  "
                  f"peak RSS +{m.peak_gib:.2f} GiB  load {m.load0:.1f}->{m.load1:.1f}", flush=True)
        rounds.append(this)
    for method in methods:
        ms = [r[method] for r in rounds]
        wall, cpu = float(np.median([m.wall for m in ms])), float(np.median([m.cpu for m in ms]))
        tiles = count_tiles(image, None if method == "monai" else mask)
        fl = flops * tiles * passes
        results[method] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_growth_gib": max(m.peak_gib for m in ms), "tiles": tiles,
                           "passes": passes, "gflop": fl / 1e9, "gflops_wall": fl / wall / 1e9,
                           "gflops_per_cpu_s": fl / cpu / 1e9, "load": [ms[0].load0, ms[-1].load1],
                           "rounds": [{"wall_s": m.wall, "cpu_s": m.cpu} for m in ms]}
    threshold = bundled.inference.threshold if name.startswith("s_k3") else None
    for method, r in results.items():
        r["vs_fp32"] = agreement(reference, outputs[method], threshold)
    mon = results.get("monai", results["torch"])  # the reference of the ratios (torch without MONAI)
    ref = "MONAI" if "monai" in results else "torch"
    lines = [(f"  {'method':12s} {'wall s':>8s} {'CPU s':>8s} {'CPU x ' + ref:>11s} {'wall x ' + ref:>12s} {'GFLOP/s':>8s} "
              f"{'% peak':>7s} {'GFLOP/CPU-s':>11s} {'% core':>7s} {'peak+GiB':>8s} {'max dprob':>9s} {'Dice':>7s}")]
    for method in (m for m in ("torch", "onnxruntime", *OV_NAMES.values(), "inductor", "monai") if m in results):
        r = results[method]
        agree = r["vs_fp32"]
        lines.append(f"  {method:12s} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {mon['cpu_s'] / r['cpu_s']:10.2f}x "
                     f"{mon['wall_s'] / r['wall_s']:11.2f}x {r['gflops_wall']:8.1f} {100 * r['gflops_wall'] / peak['peak_gflops']:6.1f}% "
                     f"{r['gflops_per_cpu_s']:11.1f} {100 * r['gflops_per_cpu_s'] / peak['per_core_gflops']:6.1f}% "
                     f"{r['peak_rss_growth_gib']:8.2f} {agree['max_prob_diff']:9.2e} {agree['dice']:7.4f}")
    if len(rounds) > 1:  # the ratio round by round: how much of it is this machine's noise
        for method in (m for m in ("torch", "onnxruntime", *OV_NAMES.values(), "inductor") if m in results and ref.lower() != m):
            per = [r[ref.lower()].cpu / r[method].cpu for r in rounds]
            lines.append(f"  {method} CPU x {ref} per round: " + ", ".join(f"{v:.2f}" for v in per)
                         + f" (median of {len(rounds)} rounds in the table)")
    for line in lines:
        print(line, flush=True)
    out += lines
    return {"network": type(net).__name__, "flops_per_tile": flops, "volume": list(image.shape[1:]), "tta": tta,
            "export_s": done["convert_s"], "export_cpu_s": conv.cpu, "session_s": done["load_s"], "methods": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=",".join(c for c in CONFIGS if c not in ("s_k3_whole_tta", "l_k5_region")),
                    help=f"comma-separated among {', '.join(CONFIGS)}")
    ap.add_argument("--threads", type=int, default=physical_cores(), help="torch and ONNX Runtime threads")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here (and .txt beside it)")
    ap.add_argument("--cache", type=Path, default=None, help="compiled-model cache (default: a fresh temporary folder, so exports are timed)")
    ap.add_argument("--whole-monai", action="store_true", help="also run MONAI on the whole brain (s_k3)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds per configuration (order rotated each "
                    "round); the table gives medians, then the per-round CPU ratios")
    ap.add_argument("--malloc", choices=("default", "reuse"), default="default",
                    help="glibc's allocator for every method alike: its defaults, or reuse_freed_memory() "
                    "(what the CLI sets for CPU runs: large activations served from the heap, freed memory kept)")
    ap.add_argument("--inductor", action="store_true", help="also PyTorch's AOTInductor (--backend inductor)")
    ap.add_argument("--openvino", default="", help="also OpenVINO on the same exported graph at these precisions "
                    "(comma-separated: fp32, bf16; bf16 only where the CPU has it)")
    args = ap.parse_args(argv)
    ov_precisions = tuple(v.strip().lower() for v in args.openvino.split(",") if v.strip())
    if any(v not in OV_NAMES for v in ov_precisions):
        ap.error(f"--openvino takes {', '.join(OV_NAMES)}, not {args.openvino!r}")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        ap.error(f"unknown config(s) {bad}; choose among {CONFIGS}")
    torch.set_num_threads(args.threads)
    import onnxruntime

    if args.malloc == "reuse" and not reuse_freed_memory():
        ap.error("--malloc reuse needs glibc (Linux)")

    peak = fp32_peak()
    out = [f"{peak['cpu']}, {peak['isa']}; FP32 peak {peak['peak_gflops']:.0f} GFLOP/s = {peak['derivation']}",
           f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, threads {args.threads}, python {platform.python_version()}"
           + (f", openvino {__import__('openvino').__version__.split('-')[0]} ({', '.join(ov_precisions)})" if ov_precisions else "")
           + (", inductor (AOTInductor, freezing)" if args.inductor else "")
           + f"; allocator: glibc {'defaults' if args.malloc == 'default' else 'with reuse_freed_memory() (all methods)'}"]
    for line in out:
        print(line, flush=True)
    t0 = time.perf_counter()
    image, mask, bundled = whole_brain()
    report: dict = {"machine": peak, "threads": args.threads, "rounds": args.rounds, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        os.environ[CACHE_ENV] = str(cache)
        for i, name in enumerate(configs):
            report["configs"][name] = bench_config(name, image, mask, bundled, cache, peak, i, out, args.whole_monai,
                                                      args.rounds, ov_precisions, args.inductor)
        report["onnxruntime_threads"] = thread_check(bundled, cache, out)
    report["seconds"] = time.perf_counter() - t0
    out.append(f"total {report['seconds']:.0f} s; load average at the end {os.getloadavg()}")
    print(out[-1])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".txt").write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
