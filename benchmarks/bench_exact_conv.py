"""exact_conv.ExactSlowConv3d vs PyTorch's own kernels: one forward per network, same input, one thread.

    .venv/bin/python benchmarks/bench_exact_conv.py [--patch 64 128] [--rounds 2]

For each network: the share of convolution FLOPs that PyTorch runs in its direct kernel
(``_ConvBackend.Slow3d``; the rest goes to oneDNN), the CPU seconds per forward with PyTorch
alone and within ``ExactSlowConv3d`` (one mode for a tile's 8 mirrored copies, as ``predict`` uses it;
one copy above 64^3; best of ``--rounds``, interleaved), and whether the outputs are
equal in every bit. Networks: the two-fold ResEnc-M fixture of tests/data/nnunet_v2_reference (3
stages of 4/8/16 features, its own 24 x 32 x 24 patch) and nnU-Net's full-size ResEnc-M (6 stages,
32-320 features) at each ``--patch``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

from mednet_pvs.inference.exact_conv import ExactSlowConv3d

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/data/nnunet_v2_reference/results/Dataset901_PVS/nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres"


def slow3d_share(net: torch.nn.Module, x: torch.Tensor) -> float:
    """Fraction of conv3d FLOPs PyTorch sends to Slow3d for this input (one forward with hooks)."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, i: seen.append((m, i[0].shape)))
             for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.inference_mode():
        net(x)
    for h in hooks:
        h.remove()
    total = slow = 0.0
    for m, shape in seen:
        xi = torch.empty(shape)
        backend = torch._C._select_conv_backend(xi, m.weight, None, list(m.stride), list(m.padding), list(m.dilation),
                                                False, [0, 0, 0], m.groups, None)
        out = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(shape[2:], m.kernel_size, m.stride, m.padding)]
        flops = 2 * m.weight.numel() * out[0] * out[1] * out[2]
        total += flops
        slow += flops * (backend == torch._C._ConvBackend.Slow3d)
    return slow / total


def compare(name: str, net: torch.nn.Module, x: torch.Tensor, rounds: int, copies: int) -> None:
    share = slow3d_share(net, x)
    times: dict[str, list[float]] = {"torch": [], "exact_conv": []}
    outs = {}
    flips = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]  # one tile's 8 mirrored copies, as in TTA
    with torch.inference_mode():
        net(x)  # warm-up
        for _ in range(rounds):
            for mode in times:
                c = time.process_time()
                with ExactSlowConv3d() if mode == "exact_conv" else torch.inference_mode():  # one per tile, as predict
                    outs[mode] = [net(torch.flip(x, f) if f else x) for f in flips[:copies]]
                times[mode].append((time.process_time() - c) / copies)
    t, e = min(times["torch"]), min(times["exact_conv"])
    equal = all(torch.equal(a, b) for a, b in zip(outs["torch"], outs["exact_conv"]))
    print(f"{name:40s} input {tuple(x.shape[2:])}: Slow3d {share:6.1%} of conv FLOPs; CPU s per forward torch {t:7.2f}, "
          f"exact_conv {e:7.2f} ({t / e:.2f}x); equal in every bit {equal}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from mednet_pvs.zoo import load_pretrained

    fixture = load_pretrained(str(FIXTURE), device="cpu")
    compare("fixture ResEnc-M (4/8/16 features)", fixture.networks[0], torch.randn(1, 1, 24, 32, 24), args.rounds, 8)
    full = ResidualEncoderUNet(
        1, 6, [32, 64, 128, 256, 320, 320], torch.nn.Conv3d, 3, [1, 2, 2, 2, 2, 2], [1, 3, 4, 6, 6, 6], 2,
        [1, 1, 1, 1, 1], conv_bias=True, norm_op=torch.nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True},
    ).eval()
    for p in args.patch:
        compare("nnU-Net ResEnc-M, full size", full, torch.randn(1, 1, p, p, p), args.rounds, 8 if p <= 64 else 1)
    print(f"torch {torch.__version__}, 1 thread")


if __name__ == "__main__":
    main()
