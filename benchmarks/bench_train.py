"""Training step time and peak memory of a network / patch / batch (what a GPU budget is planned with).

    .venv/bin/python benchmarks/bench_train.py --config tiny_synthetic
    .venv/bin/python benchmarks/bench_train.py --config mednext_l_k5_t2w --patch 64 --batch 1 --steps 3
    .venv/bin/python benchmarks/bench_train.py --network nnunet_plain --kwargs '{"patch_size": [64,64,64]}' --patch 64

One training step = forward (deep supervision) + Dice/CE loss + backward + gradient clipping +
optimiser step, exactly the module's own loss and optimiser preset, on random images with a sparse
random label. Precision: ``bf16-mixed`` autocast on CUDA (as training uses there), fp32 on CPU.
Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on CPU the peak resident set size
(RSS, sampled every 5 ms) during the timed steps minus the RSS before the network was built.
Prints one table row per run (and ``--json`` for a machine-readable line).
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
import yaml


class PeakRSS:
    """Peak resident set size of this process (bytes), sampled in a thread while active."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._proc = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def settings_from_config(name: str) -> dict[str, Any]:
    """Network, kwargs, patch, batch and optimiser of a shipped config."""
    from mednet_pvs.training.cli import config_path

    cfg = yaml.safe_load(Path(config_path(name)).read_text())
    patch = cfg["data"]["patch_size"]
    return {"network": cfg["model"]["network"], "kwargs": cfg["model"].get("network_kwargs") or {},
            "patch": patch if isinstance(patch, int) else patch[0], "batch": cfg["data"]["batch_size"],
            "optimizer": cfg["model"].get("optimizer", "mednext")}


def bench(network: str, kwargs: dict[str, Any], patch: int, batch: int, optimizer: str, steps: int, warmup: int,
          device: str) -> dict[str, Any]:
    from mednet_pvs.training.module import PVSSegmenter
    from mednet_pvs.training.optim import build_optimizer

    dev = torch.device(device)
    base_rss = psutil.Process().memory_info().rss
    module = PVSSegmenter(network, kwargs, optimizer=optimizer).to(dev)  # type: ignore[arg-type]
    net, loss_fn = module.net.train(), module.loss
    opt = build_optimizer(net.parameters(), module.optim)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, patch, patch, patch, generator=g).to(dev)
    y = (torch.rand(batch, 1, patch, patch, patch, generator=g) > 0.995).float().to(dev)
    bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = loss_fn(out, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), module.optim.grad_clip or float("inf"))
        opt.step()

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    with PeakRSS() as rss:
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else rss.peak - base_rss
    mean = statistics.mean(times)
    return {
        "network": network, "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2), "patch": patch,
        "batch": batch, "device": str(dev), "threads": torch.get_num_threads(), "precision": "bf16-mixed" if bf16 else "32",
        "step_s": round(mean, 4), "step_s_std": round(statistics.pstdev(times), 4),
        "voxels_per_s": round(batch * patch**3 / mean), "peak_mem_MiB": round(peak / 2**20, 1),
        "peak_mem_kind": "cuda_max_allocated" if dev.type == "cuda" else "rss_increase",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="a shipped config name (network, kwargs, patch, batch, optimiser from it)")
    ap.add_argument("--network", default="mednext_l_k5")
    ap.add_argument("--kwargs", default="{}", help="network overrides as JSON")
    ap.add_argument("--patch", type=int, help="cubic patch edge (voxels)")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--optimizer", default=None, choices=["mednext", "nnunet"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    s = settings_from_config(a.config) if a.config else {"network": a.network, "kwargs": {}, "patch": 128, "batch": 2,
                                                          "optimizer": "mednext"}
    s["kwargs"] = {**s["kwargs"], **json.loads(a.kwargs)}
    if s["network"].startswith("nnunet") and a.patch:
        s["kwargs"]["patch_size"] = [a.patch] * 3  # nnU-Net's topology follows the patch
    r = bench(s["network"], s["kwargs"], a.patch or s["patch"], a.batch or s["batch"], a.optimizer or s["optimizer"],
              a.steps, a.warmup, a.device)
    if a.json:
        print(json.dumps(r))
    print(f"{r['network']:<14} {r['params_M']:>7} M  patch {r['patch']:>3}^3 x{r['batch']}  {r['device']}/{r['threads']}t "
          f"{r['precision']:<10}  {r['step_s']:.3f} +- {r['step_s_std']:.3f} s/step  {r['voxels_per_s']:>9} vox/s  "
          f"peak {r['peak_mem_MiB']:.0f} MiB ({r['peak_mem_kind']})")


if __name__ == "__main__":
    main()
