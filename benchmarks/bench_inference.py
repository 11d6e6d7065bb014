#!/usr/bin/env python3
"""Benchmark whole-brain sliding-window inference: ours vs MONAI vs TorchIO (time, memory, logits).

    # MedNeXt-S k3, 1 mm phantom brain, patch 64, no TTA, 2 CPU threads, one repeat:
    python benchmarks/bench_inference.py --net mednext_s_k3 --patch 64 --tta off --repeats 1
    # MedNeXt-L k5 at reduced size (two 96^3 tiles) + extrapolation to the whole brain:
    python benchmarks/bench_inference.py --net mednext_l_k5 --patch 96 --region 96 96 144 --which ours-grid,monai
    # PVSModel.predict on a padded 0.7 mm "full head" (peak RSS of the whole pipeline):
    python benchmarks/bench_inference.py --mode model --spacing 0.7 --fov 256 320 320 --net mednext_s_k3 --channels 4

Volume: ``make_phantom(PhantomConfig(anatomy="mni", spacing=..., contrast="T2w"), seed=0)``, z-scored
inside its brain mask, optionally padded to a full-head field of view (``--fov``, padding = the
phantom's background value) or cut to a central ``--region``; then padded (same value) up to the tile
lattice ``patch + k * patch * step`` per axis, so that MONAI, TorchIO and nnU-Net-style tiling place
their tiles at the same positions (otherwise the logits differ at tile borders by design: zero padding
and MedNeXt's per-tile GroupNorm make a tile's output depend on where the tile is). Networks have
random (seeded) weights: time does not depend on them, and agreement is about the implementation.

Methods (``--which``), all on the same network, patch, overlap (``step`` 0.5 = MONAI ``overlap`` 0.5)
and batch size, returning raw logits averaged over tiles (and over mirror flips with ``--tta``):

* ``ours``: :func:`sliding_window_predict` on the volume cropped to the brain's bounding box plus
  ``--crop-margin-mm`` (as :class:`PVSModel` does), tiles without brain skipped. Its tiles sit at
  other positions than MONAI's, so its logits differ at tile seams (reported, not "equal logits").
* ``ours-grid``: :func:`sliding_window_predict` on the full volume (MONAI's tiles), tiles without
  brain skipped: inside the brain the logits equal MONAI's to float rounding.
* ``ours-noskip``: the same with every tile (no skipping); ``ours-nocl``: ``ours-grid`` without
  channels-last (both show where a speed-up comes from).
* ``monai``: ``monai.inferers.sliding_window_inference(mode="gaussian", roi_weight_map=`` our
  nnU-Net Gaussian ``)`` on the full volume; the reference of the ratios. ``monai-cl``: the same with
  the network's weights made channels-last for the call (what ours does on CPU for MedNeXt), to
  separate the sliding window's own share of a speed-up from the memory format's.
* ``torchio``: ``tio.inference.GridSampler`` + ``GridAggregator(overlap_mode="hann")`` on the full
  volume (TorchIO has no Gaussian mode: its logits differ by the weighting; ``--torchio-mode``).

Timing: ``--repeats`` rounds, methods interleaved within each round in one process, the order
rotated per round (the machine is shared: ratios are taken per round and their median reported, and
the load average is printed). Wall time and process CPU time (all threads) are both reported: on a
machine shared with other jobs the wall time of one and the same run varies by up to 2.6x (measured:
five runs doing identical work, 246-648 s), the CPU time much less (descheduled time does not count).
Memory: on CPU the peak resident set of the run (Linux VmHWM, reset before each run through
``/proc/self/clear_refs``), given as growth over the resident set before the run; with
``--memory child`` every method also runs once in a fresh process (the growth printed there is
cleaner: nothing from earlier runs stays in the allocator). On CUDA: ``torch.cuda.max_memory_allocated``.
Logits agreement: max and mean |logit difference| inside the brain mask against ``monai``, and the
fraction of brain voxels whose arg-max class differs.
FLOP/s: forward FLOPs of one tile (``torch.utils.flop_counter`` on the meta device) x tiles x passes / time.

CUDA (when available, ``--device auto``): networks run in bfloat16 autocast for all methods (ours
through ``sliding_window_predict(autocast=True)``, MONAI and TorchIO through the same autocast
wrapper); stitching on the GPU (``--stitch-on-cpu`` for ours). That path has not been run on a GPU
by the author of this script (no GPU on the machine it was written on).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from mednet_pvs.inference import SlidingWindowConfig, gaussian_importance_map, sliding_window_predict, tile_starts
from mednet_pvs.nets import create_network

ALL_METHODS = ("ours", "ours-grid", "ours-noskip", "ours-nocl", "monai", "monai-cl", "torchio")


# ---------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakMemory:
    """Peak memory of a block: CPU resident set (VmHWM after a reset) or CUDA allocated bytes."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base_gib = self.peak_gib = float("nan")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_gib = torch.cuda.memory_allocated() / 2**30
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
                    f.write("5")
                self.base_gib = _status_kib("VmRSS") / 2**20
            except OSError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        elif not math.isnan(self.base_gib):
            self.peak_gib = _status_kib("VmHWM") / 2**20

    @property
    def growth_gib(self) -> float:
        return self.peak_gib - self.base_gib


# ---------------------------------------------------------------------------------- volume
def lattice_size(size: int, patch: int, step: float) -> int:
    """Smallest size >= ``size`` on which tiles of ``patch`` at stride ``patch * step`` end flush."""
    stride = max(int(round(patch * step)), 1)
    return patch if size <= patch else patch + math.ceil((size - patch) / stride) * stride


def _pad_to(arr: np.ndarray, shape, value) -> np.ndarray:
    pads = [(max(t - s, 0) // 2, max(t - s, 0) - max(t - s, 0) // 2) for s, t in zip(arr.shape, shape)]
    return np.pad(arr, pads, constant_values=value)


def make_volume(args: argparse.Namespace) -> dict:
    """The benchmark volume: z-scored phantom (optionally padded to a FOV / cut to a region) on the tile lattice."""
    from mednet_pvs.synth import PhantomConfig, make_phantom

    t0 = time.perf_counter()
    ph = make_phantom(PhantomConfig(anatomy="mni", spacing=args.spacing, contrast="T2w"), seed=args.seed)
    img = ph.image.astype(np.float32)
    brain = ph.brainmask > 0
    mean, std = float(img[brain].mean()), float(img[brain].std())
    img = (img - mean) / std
    bg = float(np.median(img[~brain])) if (~brain).any() else 0.0
    info = {"phantom_shape": list(img.shape), "phantom_seconds": time.perf_counter() - t0}
    whole_brain = brain.copy()
    if args.fov:
        img, brain = _pad_to(img, args.fov, bg), _pad_to(brain, args.fov, False)
    if args.region:  # a central cut (for the slow networks): centred on the brain
        centre = np.argwhere(brain).mean(0).round().astype(int)
        sl = []
        for c, r, s in zip(centre, args.region, img.shape):
            a = int(min(max(c - r // 2, 0), max(s - r, 0)))
            sl.append(slice(a, a + r))
        img, brain = img[tuple(sl)], brain[tuple(sl)]
        img, brain = _pad_to(img, args.region, bg), _pad_to(brain, args.region, False)
    if args.lattice:
        target = [lattice_size(s, p, args.step) for s, p in zip(img.shape, args.patch)]
        img, brain = _pad_to(img, target, bg), _pad_to(brain, target, False)
    info["shape"] = list(img.shape)
    info["brain_fraction"] = float(brain.mean())
    return {"image": torch.from_numpy(np.ascontiguousarray(img)), "brain": torch.from_numpy(brain),
            "whole_brain": whole_brain, "info": info}


def brain_box(brain: torch.Tensor, margin: int) -> tuple[slice, ...]:
    idx = torch.nonzero(brain)
    lo, hi = idx.min(0).values.tolist(), idx.max(0).values.tolist()
    return tuple(slice(max(a - margin, 0), min(b + margin + 1, s)) for a, b, s in zip(lo, hi, brain.shape))


# -------------------------------------------------------------------------------- networks
def build_net(args: argparse.Namespace) -> nn.Module:
    torch.manual_seed(args.seed)
    kw: dict = {}
    if args.net.startswith("nnunet"):
        kw["patch_size"] = tuple(args.patch)  # nnU-Net's topology is planned for the patch
    if args.channels:
        if not args.net.startswith("mednext"):
            raise SystemExit("--channels applies to MedNeXt networks only")
        kw["n_channels"] = args.channels
    return create_network(args.net, **kw).eval()


def flops_per_tile(args: argparse.Namespace) -> float:
    """Forward FLOPs of one tile (convolutions and matmuls), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.device("meta"):
            net = build_net(args)
            x = torch.empty(1, 1, *args.patch)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(x)
        return float(fc.get_total_flops())
    except Exception as e:  # noqa: BLE001 - a network that cannot run on meta: no FLOP/s
        print(f"  (FLOP count failed: {e})")
        return float("nan")


class Counted(nn.Module):
    """Counts the tiles (batch items) that go through ``net``; the parameters stay ``net``'s."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.tiles = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tiles += x.shape[0]
        return self.net(x)


def flip_predictor(net: nn.Module, axes: tuple[int, ...], amp: bool):
    """Logits averaged over every mirror combination of ``axes`` (as ours does), for MONAI/TorchIO."""
    import itertools

    flips = [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]

    def predict(x: torch.Tensor) -> torch.Tensor:
        total = None
        for f in flips:
            dims = [d + 2 for d in f]
            with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
                y = net(torch.flip(x, dims) if dims else x)
            y = y.float()
            y = torch.flip(y, dims) if dims else y
            total = y if total is None else total + y
        return total / len(flips)

    return predict


# --------------------------------------------------------------------------------- methods
def run_method(method: str, net: Counted, vol: dict, args: argparse.Namespace, device: torch.device) -> torch.Tensor:
    """Logits (K, X, Y, Z) on the full volume's grid (NaN outside the crop for ``ours``)."""
    image, brain = vol["image"], vol["brain"]
    patch, mirror = tuple(args.patch), args.mirror_axes
    amp = device.type == "cuda"
    if method.startswith("ours"):
        cfg = SlidingWindowConfig(patch_size=patch, step=args.step, batch_size=args.batch, mirror_axes=mirror,
                                  stitch_on_cpu=args.stitch_on_cpu, skip_empty=method != "ours-noskip",
                                  channels_last=False if method == "ours-nocl" else None)
        if method == "ours":
            box = brain_box(brain, int(round(args.crop_margin_mm / args.spacing)))
            x, m = image[box], brain[box]
        else:
            box, x, m = None, image, brain
        out = sliding_window_predict(net, x[None].to(device), cfg, mask=m.to(device), output="logits",
                                     device=device, autocast=True)
        if box is None:
            return out
        full = torch.full((out.shape[0], *image.shape), float("nan"), device=out.device)
        full[(slice(None), *box)] = out
        return full
    predictor = flip_predictor(net, mirror, amp)
    if method in ("monai", "monai-cl"):
        from monai.inferers import sliding_window_inference

        from mednet_pvs.inference.sliding_window import _ChannelsLast  # private: the same weight conversion as ours

        gauss = gaussian_importance_map(patch, 1 / 8, device=device)
        with _ChannelsLast([net], method == "monai-cl"):  # channels-last weights make the convolutions channels-last
            out = sliding_window_inference(
                image[None, None].to(device), roi_size=patch, sw_batch_size=args.batch, predictor=predictor,
                overlap=1 - args.step, mode="gaussian", roi_weight_map=gauss, sw_device=device,
                device=torch.device("cpu") if args.stitch_on_cpu else device)
        return torch.as_tensor(out)[0]
    if method == "torchio":
        import torchio as tio

        subject = tio.Subject(image=tio.ScalarImage(tensor=image[None]))
        overlap = tuple(p - max(int(round(p * args.step)), 1) for p in patch)
        sampler = tio.inference.GridSampler(subject, patch, overlap)
        loader = torch.utils.data.DataLoader(sampler, batch_size=args.batch)
        aggregator = tio.inference.GridAggregator(sampler, overlap_mode=args.torchio_mode)
        for batch in loader:
            aggregator.add_batch(predictor(batch["image"][tio.DATA].to(device)), batch[tio.LOCATION])
        return aggregator.get_output_tensor()
    raise ValueError(f"unknown method {method!r}")


def timed_run(method: str, net: Counted, vol: dict, args: argparse.Namespace, device: torch.device) -> dict:
    net.tiles = 0
    load0 = os.getloadavg()[0]
    with PeakMemory(device) as mem, torch.no_grad():  # MONAI and TorchIO leave this to the caller
        t0, c0 = time.perf_counter(), time.process_time()
        out = run_method(method, net, vol, args, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "tiles": net.tiles // max(len(_flips(args.mirror_axes)), 1),
            "forward_tiles": net.tiles, "peak_gib": mem.peak_gib, "growth_gib": mem.growth_gib,
            "load": (load0, os.getloadavg()[0]), "out": out}


def _flips(axes) -> list:
    import itertools

    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def agreement(out: torch.Tensor, ref: torch.Tensor, brain: torch.Tensor) -> dict:
    a, b = out.float().cpu()[:, brain], ref.float().cpu()[:, brain]
    ok = torch.isfinite(a).all(0)
    a, b = a[:, ok], b[:, ok]
    d = (a - b).abs()
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "ref_max_abs": float(b.abs().max()),
            "argmax_differs": float((a.argmax(0) != b.argmax(0)).float().mean()), "compared": float(ok.float().mean())}


# ------------------------------------------------------------------------------ extrapolate
def count_tiles(brain: torch.Tensor, patch, step: float, skip: bool) -> int:
    starts = [tile_starts(s, p, step) for s, p in zip(brain.shape, patch)]
    n = 0
    for a in starts[0]:
        for b in starts[1]:
            for c in starts[2]:
                if not skip or bool(brain[a:a + patch[0], b:b + patch[1], c:c + patch[2]].any()):
                    n += 1
    return n


def whole_brain_tiles(vol: dict, args: argparse.Namespace) -> dict:
    """Tiles a whole-brain run would take (for the extrapolation of a ``--region`` run)."""
    brain = torch.from_numpy(vol["whole_brain"])
    if args.fov:
        brain = torch.from_numpy(_pad_to(brain.numpy(), args.fov, False))
    full = torch.from_numpy(_pad_to(brain.numpy(), [lattice_size(s, p, args.step) for s, p in zip(brain.shape, args.patch)], False))
    box = brain_box(brain, int(round(args.crop_margin_mm / args.spacing)))
    return {"ours": count_tiles(brain[box], args.patch, args.step, True),
            "ours-grid": count_tiles(full, args.patch, args.step, True),
            "ours-noskip": count_tiles(full, args.patch, args.step, False),
            "ours-nocl": count_tiles(full, args.patch, args.step, True),
            "monai": count_tiles(full, args.patch, args.step, False),
            "monai-cl": count_tiles(full, args.patch, args.step, False),
            "torchio": count_tiles(full, args.patch, args.step, False),
            "shape": list(full.shape)}


# ------------------------------------------------------------------------------ model mode
def model_mode(args: argparse.Namespace, device: torch.device) -> dict:
    """Peak RSS of ``PVSModel.predict`` (preprocessing + sliding window + back to the input grid)."""
    from mednet_pvs.inference import InferenceConfig, PVSModel
    from mednet_pvs.synth import PhantomConfig, make_phantom

    ph = make_phantom(PhantomConfig(anatomy="mni", spacing=args.spacing, contrast="T2w"), seed=args.seed)
    img = ph.image.astype(np.float32)
    bg = float(np.median(img[ph.brainmask == 0]))
    if args.fov:
        img = _pad_to(img, args.fov, bg)
    affine = ph.affine.copy()
    del ph
    net = build_net(args)
    model = PVSModel(net, None, {"target_spacing": (args.spacing,) * 3},
                     InferenceConfig.from_dict(dict(patch_size=tuple(args.patch), mirror_axes=args.mirror_axes,
                                     batch_size=args.batch, stitch_on_cpu=args.stitch_on_cpu)), device=device)
    tiles = []
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        pred = model.predict((img, affine), progress=lambda d, n: tiles.append(n))
        seconds = time.perf_counter() - t0
    r = {"input_shape": list(img.shape), "input_gib": img.nbytes / 2**30, "seconds": seconds,
         "tiles": tiles[-1] if tiles else 0, "rss_before_gib": mem.base_gib, "peak_rss_gib": mem.peak_gib,
         "growth_gib": mem.growth_gib, "info": pred.info["seconds"], "load": os.getloadavg()}
    print(json.dumps(r, indent=1))
    return r


# ------------------------------------------------------------------------------------ main
def child_memory(args: argparse.Namespace, method: str) -> dict | None:
    cmd = [sys.executable, __file__, *args.argv, "--child", method]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        print(f"  (memory child for {method} failed: {done.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["window", "model"], default="window",
                   help="window: compare sliding windows; model: PVSModel.predict peak memory")
    p.add_argument("--net", default="mednext_s_k3", help="registry name (mednext_s_k3, mednext_l_k5, nnunet_plain, ...)")
    p.add_argument("--channels", type=int, default=0, help="MedNeXt n_channels override (0 = the preset's)")
    p.add_argument("--patch", type=int, nargs="+", default=[64], help="tile size: one or three integers")
    p.add_argument("--step", type=float, default=0.5, help="tile step as a fraction of the patch (MONAI overlap = 1 - step)")
    p.add_argument("--batch", type=int, default=2, help="tiles per forward pass (all methods)")
    p.add_argument("--spacing", type=float, default=1.0, help="phantom voxel size (mm)")
    p.add_argument("--fov", type=int, nargs=3, help="pad the phantom to this full-head field of view (voxels)")
    p.add_argument("--region", type=int, nargs=3, help="use a central cut of this size only (slow networks)")
    p.add_argument("--no-lattice", dest="lattice", action="store_false",
                   help="do not pad the volume to the tile lattice (MONAI's tiles then differ from ours)")
    p.add_argument("--crop-margin-mm", type=float, default=5.0, help="margin around the brain for 'ours' (PVSModel: 5)")
    p.add_argument("--tta", choices=["off", "on", "both"], default="off", help="8-fold mirroring (axes 0, 1, 2)")
    p.add_argument("--which", default="ours,ours-grid,monai,torchio", help=f"comma-separated, of {', '.join(ALL_METHODS)}")
    p.add_argument("--reference", default="monai", help="method the ratios and logit differences refer to")
    p.add_argument("--torchio-mode", choices=["hann", "average"], default="hann")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the untimed forward passes (batch sizes 1 and --batch, both memory formats) before timing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--stitch-on-cpu", action="store_true")
    p.add_argument("--memory", choices=["inproc", "child", "none"], default="inproc",
                   help="child: also run each method once in a fresh process for its peak memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    args.patch = tuple(args.patch * 3 if len(args.patch) == 1 else args.patch)
    return args


def main(argv=None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    tta_settings = {"off": [()], "on": [(0, 1, 2)], "both": [(), (0, 1, 2)]}[args.tta]
    if args.mode == "model":
        args.mirror_axes = tta_settings[0]
        r = model_mode(args, device)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(r, f, indent=1)
        return
    vol = make_volume(args)
    net = Counted(build_net(args).to(device))
    if args.child:  # one run in a fresh process: print its memory as JSON
        args.mirror_axes = tta_settings[0]
        r = timed_run(args.child, net, vol, args, device)
        r.pop("out")
        print(json.dumps(r))
        return

    methods = args.which.split(",")
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; choose from {ALL_METHODS}")
    flops = flops_per_tile(args)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"{args.net}{f' (n_channels {args.channels})' if args.channels else ''}: {n_params:,d} parameters, "
          f"{flops / 1e9:.1f} GFLOP per {args.patch} tile forward; torch {torch.__version__}, "
          f"device {device}{' (' + torch.cuda.get_device_name() + ', bf16 autocast)' if device.type == 'cuda' else ''}, "
          f"CPU threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    print(f"volume {vol['info']['shape']} at {args.spacing} mm (phantom {vol['info']['phantom_shape']}"
          f"{', fov ' + str(args.fov) if args.fov else ''}{', region ' + str(args.region) if args.region else ''}), "
          f"brain {100 * vol['info']['brain_fraction']:.0f}% of it; patch {args.patch}, step {args.step}, "
          f"batch {args.batch}, repeats {args.repeats}; TorchIO overlap_mode {args.torchio_mode!r}", flush=True)
    if args.warmup:  # the first call of a shape/format builds oneDNN/cuDNN kernels: keep it out of the timings
        for b in sorted({1, args.batch}):  # b tiles side by side = one batch of b
            x = torch.zeros(1, b * args.patch[0], *args.patch[1:], device=device)
            for cl in (False, True):
                cfg = SlidingWindowConfig(patch_size=args.patch, step=1.0, batch_size=b, skip_empty=False, channels_last=cl)
                sliding_window_predict(net, x, cfg, output="logits", device=device)
    results: dict = {"args": {k: v for k, v in vars(args).items() if k != "argv"}, "volume": vol["info"],
                     "flops_per_tile": flops, "params": n_params, "runs": []}
    for mirror in tta_settings:
        args.mirror_axes = mirror
        tta = "TTA 8x" if mirror else "no TTA"
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        outs: dict[str, torch.Tensor] = {}
        for rep in range(args.repeats):
            for m in methods[rep % len(methods):] + methods[:rep % len(methods)]:  # rotate the order per round
                r = timed_run(m, net, vol, args, device)
                out = r.pop("out")
                if rep == 0:
                    outs[m] = out.cpu()
                del out
                runs[m].append(r)
                print(f"  [{tta}, round {rep + 1}] {m:12} {r['seconds']:8.1f} s (CPU {r['cpu_seconds']:7.1f} s)  tiles {r['tiles']:4d}  "
                      f"peak RSS +{r['growth_gib']:.2f} GiB (abs {r['peak_gib']:.2f})  load {r['load'][0]:.1f}->{r['load'][1]:.1f}",
                      flush=True)
        ref = args.reference if args.reference in methods else methods[0]
        child = {m: child_memory(args, m) for m in methods} if args.memory == "child" and device.type == "cpu" else {}
        print(f"\n{tta}: times are medians over {args.repeats} round(s); speed-up = reference time / method time, "
              f"per round, median; logits vs {ref} inside the brain")
        head = (f"{'method':12} {'time s':>8} {'x vs ' + ref:>12} {'x vs torchio':>13} {'CPU s':>8} {'CPU x vs ' + ref:>16} "
                f"{'tiles':>6} {'GFLOP/s':>8} "
                f"{'peak+ GiB':>10} {'child+ GiB':>10} {'max|dlogit|':>12} {'mean|dlogit|':>13} {'argmax diff':>11}")
        print(head)
        for m in methods:
            times = [r["seconds"] for r in runs[m]]
            def ratio(other: str, key: str = "seconds") -> float:
                if other not in runs:
                    return float("nan")
                return statistics.median(o[key] / r[key] for o, r in zip(runs[other], runs[m]))
            agree = agreement(outs[m], outs[ref], vol["brain"])
            fwd = runs[m][0]["forward_tiles"]
            gflops = fwd * flops / statistics.median(times) / 1e9
            c = child.get(m)
            cpu = [r["cpu_seconds"] for r in runs[m]]
            row = {"method": m, "tta": bool(mirror), "seconds": times, "median_s": statistics.median(times),
                   "cpu_seconds": cpu, "median_cpu_s": statistics.median(cpu), "cpu_speedup_vs_ref": ratio(ref, "cpu_seconds"),
                   "speedup_vs_ref": ratio(ref), "speedup_vs_torchio": ratio("torchio"), "tiles": runs[m][0]["tiles"],
                   "gflops": gflops, "growth_gib": max(r["growth_gib"] for r in runs[m]),
                   "peak_gib": max(r["peak_gib"] for r in runs[m]), "child_growth_gib": c["growth_gib"] if c else None,
                   "loads": [r["load"] for r in runs[m]], **{f"logits_{k}": v for k, v in agree.items()}}
            results["runs"].append(row)
            print(f"{m:12} {row['median_s']:8.1f} {row['speedup_vs_ref']:11.2f}x {row['speedup_vs_torchio']:12.2f}x "
                  f"{row['median_cpu_s']:8.1f} {row['cpu_speedup_vs_ref']:15.2f}x "
                  f"{row['tiles']:6d} {gflops:8.1f} {row['growth_gib']:10.2f} "
                  f"{(c['growth_gib'] if c else float('nan')):10.2f} {agree['max_abs']:12.2e} {agree['mean_abs']:13.2e} "
                  f"{agree['argmax_differs']:11.2e}")
        print(f"(reference |logit| max in the brain: {agree['ref_max_abs']:.2f}; 'ours' is compared on the "
              f"{100 * agreement(outs[methods[0]], outs[ref], vol['brain'])['compared']:.0f}% of brain voxels inside its crop)")
        if device.type == "cuda" and args.net == "mednext_l_k5" and not args.region:
            limit = 10.0 if mirror else 2.0
            for m in methods:
                t = statistics.median(r["seconds"] for r in runs[m])
                print(f"  target (issue): {m} {t:.2f} s {'<=' if t <= limit else '>'} {limit:g} s for a 1 mm whole brain, "
                      f"{runs[m][0]['forward_tiles'] * flops / t / 1e12:.1f} TFLOP/s")
        if args.region:
            counts = whole_brain_tiles(vol, args)
            print(f"EXTRAPOLATION (not measured) to the whole brain (lattice {counts['shape']}): "
                  "per-tile time of this run x whole-brain tile count")
            for m in methods:
                n = max(runs[m][0]["tiles"], 1)
                per_tile = statistics.median(r["seconds"] for r in runs[m]) / n
                per_tile_cpu = statistics.median(r["cpu_seconds"] for r in runs[m]) / n
                est, est_cpu = per_tile * counts[m], per_tile_cpu * counts[m]
                results.setdefault("extrapolated", []).append({"method": m, "tta": bool(mirror), "per_tile_s": per_tile,
                                                               "per_tile_cpu_s": per_tile_cpu, "tiles": counts[m],
                                                               "seconds": est, "cpu_seconds": est_cpu})
                print(f"  {m:12} {per_tile:7.1f} s/tile (CPU {per_tile_cpu:7.1f} s) x {counts[m]:4d} tiles = "
                      f"{est:8.0f} s wall ({est / 60:.1f} min), {est_cpu:8.0f} s CPU ({est_cpu / 60:.1f} min)")
        print(flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
