"""Inference memory: stitching holds one float32 buffer per class; a 0.7 mm full head fits; the
channels-last memory format changes nothing but speed."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from mednet_pvs.inference import SlidingWindowConfig, sliding_window_predict
from mednet_pvs.nets import create_network


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


needs_linux_peak = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _clear_refs_works(),
    reason="peak RSS is read from /proc/self/status after a reset through /proc/self/clear_refs (Linux)",
)

_PEAK = textwrap.dedent(
    """
    def _kib(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _kib("VmRSS") * 1024

    def peak():
        return _kib("VmHWM") * 1024
    """
)


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (nothing freed earlier hides in its allocator); last line = JSON."""
    done = subprocess.run([sys.executable, "-c", _PEAK + textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_linux_peak
def test_stitching_holds_one_float_buffer_per_class():
    """Peak memory grows with the volume by K float32 buffers (softmax) or K + 1 (logits + weights).

    Measured as the slope of the peak RSS growth between two volume sizes, so that the constant part
    (tiles, the allocator's arenas) cancels. Before the in-place normalisation the softmax path peaked
    at ~4.3 buffers (``torch.where`` / ``ones_like`` / ``1 - sum`` temporaries).
    """
    r = _child(
        """
        import json, torch
        from torch import nn
        from mednet_pvs.inference import SlidingWindowConfig, sliding_window_predict
        torch.set_num_threads(1)
        torch.manual_seed(0)
        net = nn.Conv3d(1, 2, 1).eval()
        cfg = SlidingWindowConfig(patch_size=(64, 64, 64), step=1.0, batch_size=1)
        sliding_window_predict(net, torch.randn(1, 64, 64, 64), cfg)  # warm the kernels and the allocator
        out = {}
        for output in ("probabilities", "logits"):
            growth = {}
            for n in (128, 256):
                img = torch.randn(1, n, n, n)
                mask = torch.ones(n, n, n, dtype=torch.bool)
                base = reset_peak()
                res = sliding_window_predict(net, img, cfg, mask=mask, output=output)
                growth[n] = peak() - base
                del res, img, mask
            out[output] = (growth[256] - growth[128]) / ((256**3 - 128**3) * 4)
        print(json.dumps(out))
        """
    )
    assert r["probabilities"] < 2.4, r  # K = 2 classes: 2 buffers (the background slot holds the weights)
    assert r["logits"] < 3.4, r  # 2 classes + 1 weight buffer


@pytest.mark.slow
@needs_linux_peak
def test_full_head_07mm_fits_in_memory():
    """``PVSModel.predict`` on a 0.7 mm full-head field of view (256 x 320 x 320, the MNI phantom padded)
    stays far below 24 GiB. The network is a cheap 1x1x1 convolution: the network's own activations
    depend on the patch, not on the volume, and are measured by ``benchmarks/bench_nets.py``."""
    r = _child(
        """
        import json, time, numpy as np, torch
        from torch import nn
        from mednet_pvs.inference import InferenceConfig, PVSModel
        from mednet_pvs.synth import PhantomConfig, make_phantom
        torch.set_num_threads(2)
        ph = make_phantom(PhantomConfig(anatomy="mni", spacing=0.7, contrast="T2w"), seed=0)
        img, bm = ph.image, ph.brainmask
        pads = [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(img.shape, (256, 320, 320))]
        img = np.pad(img, pads, constant_values=float(np.median(img[bm == 0])))
        affine = ph.affine.copy()
        del ph, bm
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv3d(1, 2, 1))
        model = PVSModel(net, None, {"target_spacing": (0.7, 0.7, 0.7)},
                         InferenceConfig.from_dict(dict(patch_size=(128, 128, 128), mirror_axes=(), stitch_on_cpu=True)), device="cpu")
        base = reset_peak()
        t0 = time.perf_counter()
        pred = model.predict((img, affine), tta=False)
        print(json.dumps({"growth": peak() - base, "peak": peak(), "seconds": time.perf_counter() - t0,
                          "shape": list(pred.mask.shape), "input_bytes": img.nbytes}))
        """
    )
    assert r["shape"] == [256, 320, 320]
    assert r["peak"] < 8 * 2**30, r  # 24 GiB machine: well within
    assert r["growth"] < 30 * r["input_bytes"], r  # ~ a handful of full-volume copies, not a blow-up


def test_channels_last_is_used_same_logits_and_weights_restored():
    """Channels-last (the CPU default for MedNeXt) really runs the convolutions channels-last, gives
    the channels-first logits to float rounding, and leaves the weights' strides as they were."""
    torch.manual_seed(0)
    torch.set_num_threads(2)  # "auto" turns channels-last on with 2+ threads (the conftest restores the count)
    net = create_network("mednext_s_k3", n_channels=4).eval()
    strides = {name: p.stride() for name, p in net.named_parameters()}
    layouts = []
    net.enc_block_0[0].conv1.register_forward_hook(
        lambda m, i, o: layouts.append("cl" if o.is_contiguous(memory_format=torch.channels_last_3d) else "cf"))
    img = torch.randn(1, 32, 32, 48)
    cfg = dict(patch_size=(32, 32, 32), step=0.5, batch_size=2)
    cf = sliding_window_predict(net, img, SlidingWindowConfig(**cfg, channels_last=False), output="logits")
    cl = sliding_window_predict(net, img, SlidingWindowConfig(**cfg, channels_last=True), output="logits")
    auto = sliding_window_predict(net, img, SlidingWindowConfig(**cfg), output="logits")  # CPU + depthwise: on
    assert layouts == ["cf", "cl", "cl"]
    assert (cf - cl).abs().max().item() < 1e-4 * max(1.0, cf.abs().max().item())
    torch.testing.assert_close(auto, cl)
    assert {name: p.stride() for name, p in net.named_parameters()} == strides


def test_channels_last_under_inference_mode_leaves_trainable_weights():
    """Predicting inside ``torch.inference_mode`` (as Lightning's validate/test do) must hand the
    network back with ordinary tensors: a training step afterwards works."""
    torch.manual_seed(0)
    net = create_network("mednext_s_k3", n_channels=4)
    originals = {name: (p.data_ptr(), p.stride()) for name, p in net.named_parameters()}
    net.eval()
    with torch.inference_mode():
        sliding_window_predict(net, torch.randn(1, 32, 32, 32),
                               SlidingWindowConfig(patch_size=(32, 32, 32), channels_last=True), output="logits")
    assert {name: (p.data_ptr(), p.stride()) for name, p in net.named_parameters()} == originals
    assert not any(p.is_inference() for p in net.parameters())
    net.train()
    out = net(torch.randn(1, 1, 32, 32, 32))
    (out[0] if isinstance(out, (list, tuple)) else out).mean().backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
