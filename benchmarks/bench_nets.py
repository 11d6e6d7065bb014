#!/usr/bin/env python3
"""Benchmark the networks: forward and forward+backward time and peak memory per patch.

    python benchmarks/bench_nets.py                              # 128^3, batch 2, CPU (+ CUDA bf16 if present)
    python benchmarks/bench_nets.py --patch 64 --batch 1 --repeats 2 --device cpu
    python benchmarks/bench_nets.py --configs synth_any,synth_any_plain --patch 48 --device cpu,cpu-bf16 \
        --modes fwd+bwd --reference synth_any --no-cpu-memory        # the training configs' own networks

For each network and device: ``forward`` is eval mode under ``torch.no_grad`` (inference), ``fwd+bwd``
is training mode (deep supervision on; MedNeXt-M/L with their gradient checkpointing unless
``--no-checkpointing``) with the sum of the outputs' mean squares as loss. Times are the median of
``--repeats`` runs after ``--warmup`` runs, and are also given as ratios to ``--reference`` measured
in the same process. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (in this process); on
CPU the peak resident-set growth (Linux VmHWM, reset before the step) of a fresh child process that
runs the same step once (CPU allocators keep freed memory, so one process cannot measure several
networks' peaks); it includes the gradients' memory but not the weights'.
CUDA runs in bfloat16 autocast (weights in float32), as mixed-precision training does; ``cpu-bf16``
is the CPU under bfloat16 autocast (``--trainer.precision bf16-mixed`` on the CPU). ``--configs``
adds the networks of shipped training configs (``mednet_pvs/configs/<name>.yaml``: ``model.network``
with its ``network_kwargs``, exactly as the config trains it), named by the config.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch

from mednet_pvs.nets import create_network, network_config

DEFAULT_NETS = ("mednext_l_k5", "mednext_s_k3", "nnunet_plain")


def config_network(config: str) -> tuple[str, dict]:
    """The registry name and keyword arguments of a shipped training config's network."""
    import yaml

    from mednet_pvs.training.cli import config_path

    model = yaml.safe_load(config_path(config).read_text())["model"]
    return model["network"], dict(model.get("network_kwargs") or {})


def build(name: str, patch: tuple[int, int, int], checkpointing: bool, configs: tuple[str, ...] = ()) -> torch.nn.Module:
    if name in configs:
        net_name, kwargs = config_network(name)
        kwargs["deep_supervision"] = True  # as trained
        return create_network(net_name, **kwargs)
    overrides: dict = {}
    if name.startswith("nnunet"):
        overrides["patch_size"] = patch  # nnU-Net's topology is planned for the patch
    elif not checkpointing:
        overrides["gradient_checkpointing"] = False
    return create_network(name, **overrides)


def step(net: torch.nn.Module, x: torch.Tensor, mode: str, cpu_bf16: bool = False) -> None:
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if x.is_cuda
           else torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16 else nullcontext())
    if mode == "forward":
        net.eval()
        with torch.no_grad(), amp:
            net(x)
    else:
        net.train()
        net.zero_grad(set_to_none=True)
        with amp:
            out = net(x)
            outs = out if isinstance(out, list) else [out]
            loss = sum(o.float().square().mean() for o in outs)
        loss.backward()
    if x.is_cuda:
        torch.cuda.synchronize()


def measure(net: torch.nn.Module, x: torch.Tensor, mode: str, warmup: int, repeats: int, cpu_bf16: bool = False) -> dict:
    for _ in range(warmup):
        step(net, x, mode, cpu_bf16)
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(net, x, mode, cpu_bf16)
        times.append(time.perf_counter() - t0)
    result = {"seconds": statistics.median(times)}
    if x.is_cuda:
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def _status_gib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_peak_child(args: argparse.Namespace, name: str, mode: str, device: str) -> float | None:
    """Peak RSS growth (GiB) of one step in a fresh process (Linux only; None if it fails)."""
    cmd = [sys.executable, __file__, "--child", name, mode, "--patch", *map(str, args.patch),
           "--batch", str(args.batch), "--threads", str(args.threads), "--device", device, "--configs", args.configs]
    if not args.checkpointing:
        cmd.append("--no-checkpointing")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        print(f"  (memory child for {name} {mode} failed: {done.stderr.strip().splitlines()[-1:]})")
        return None
    return float(done.stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    name, mode = args.child
    torch.set_num_threads(args.threads)
    net = build(name, tuple(args.patch), args.checkpointing, configs(args))
    x = torch.randn(args.batch, in_channels(net), *args.patch)
    base = _status_gib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS (Linux >= 4.0)
        f.write("5")
    step(net, x, mode, args.device == "cpu-bf16")
    print(max(_status_gib("VmHWM") - base, 0.0))


def configs(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(c for c in args.configs.split(",") if c)


def in_channels(net: torch.nn.Module) -> int:
    kwargs = network_config(net).kwargs
    return int(kwargs.get("in_channels", kwargs.get("input_channels", 1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(DEFAULT_NETS), help="comma-separated registry names")
    p.add_argument("--reference", default="nnunet_plain", help="network the ratios refer to")
    p.add_argument("--patch", type=int, nargs="+", default=[128], help="patch size: one or three integers")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto",
                   help="auto (CPU, and CUDA too when available) or a comma-separated list of cpu, cpu-bf16, cuda")
    p.add_argument("--configs", default="", help="comma-separated shipped training configs whose networks to add")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    p.add_argument("--modes", default="forward,fwd+bwd")
    p.add_argument("--no-checkpointing", dest="checkpointing", action="store_false",
                   help="train MedNeXt-M/L without gradient checkpointing")
    p.add_argument("--no-cpu-memory", dest="cpu_memory", action="store_false",
                   help="skip the child processes that measure CPU peak memory")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.patch = args.patch * 3 if len(args.patch) == 1 else args.patch
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)
    names = [n for n in args.nets.split(",") if n] + list(configs(args))
    if args.reference not in names:
        names.append(args.reference)
    devices = ["cpu", "cuda"] if args.device == "auto" else args.device.split(",")
    unknown = sorted(set(devices) - {"cpu", "cpu-bf16", "cuda"})
    if unknown:
        p.error(f"--device: unknown {', '.join(unknown)} (choose from auto, cpu, cpu-bf16, cuda)")
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    modes = args.modes.split(",")
    print(f"patch {tuple(args.patch)}, batch {args.batch}, repeats {args.repeats} (+{args.warmup} warm-up), "
          f"torch {torch.__version__}, CPU threads {args.threads}"
          + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    results: dict = {}
    for device in devices:
        for name in names:
            torch_device = "cuda" if device == "cuda" else "cpu"
            net = build(name, tuple(args.patch), args.checkpointing, configs(args)).to(torch_device)
            n_params = sum(q.numel() for q in net.parameters())
            x = torch.randn(args.batch, in_channels(net), *args.patch, device=torch_device)
            for mode in modes:
                r = measure(net, x, mode, args.warmup, args.repeats, device == "cpu-bf16")
                if device != "cuda" and args.cpu_memory:
                    r["peak_gib"] = cpu_peak_child(args, name, mode, device)
                r["params"] = n_params
                results[(device, name, mode)] = r
                print(f"  {device:8} {name:16} {mode:8} {r['seconds']:9.3f} s  "
                      f"peak {r.get('peak_gib') or float('nan'):7.2f} GiB", flush=True)
            del net, x
    print(f"\nratios to {args.reference} (time, peak memory), same process and settings:")
    print(f"{'device':8} {'network':16} {'params':>11} " + " ".join(f"{m + ' time':>14} {m + ' mem':>12}"
                                                                    for m in modes))
    for device in devices:
        for name in names:
            cells = []
            for mode in modes:
                r, ref = results[(device, name, mode)], results[(device, args.reference, mode)]
                mem = (r.get("peak_gib") or 0) / ref["peak_gib"] if ref.get("peak_gib") else float("nan")
                cells.append(f"{r['seconds'] / ref['seconds']:13.2f}x {mem:11.2f}x")
            print(f"{device:8} {name:16} {results[(device, name, modes[0])]['params']:11,d} " + " ".join(cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"device": d, "network": n, "mode": m, **r} for (d, n, m), r in results.items()], f, indent=1)


if __name__ == "__main__":
    main()
