"""exact_conv: PyTorch's direct CPU 3D convolution, bit for bit, only where PyTorch would use it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mednet_pvs.inference import exact_conv
from mednet_pvs.inference.exact_conv import ExactSlowConv3d, slow3d_conv


@pytest.fixture(autouse=True)
def _fresh_verification(monkeypatch):
    monkeypatch.setattr(exact_conv, "_VERIFIED", {})
    monkeypatch.setattr(exact_conv, "FASTER", 1e9)  # routing under test here, not this machine's timing


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CASES = [  # (input shape, weight shape, stride, padding, bias)
    ((1, 8, 12, 16, 10), (4, 8, 3, 3, 3), 1, 1, True),
    ((1, 4, 12, 16, 10), (8, 4, 3, 3, 3), 2, 1, True),      # nnU-Net's strided downsampling
    ((1, 6, 9, 7, 5), (3, 6, 1, 1, 1), 1, 0, True),         # 1x1x1 projection / segmentation head
    ((1, 6, 9, 7, 5), (3, 6, 1, 1, 1), 2, 0, False),        # strided 1x1x1 skip, no bias
    ((2, 5, 8, 8, 8), (5, 5, 3, 3, 3), 1, 1, False),        # two inputs
    ((1, 3, 7, 9, 8), (2, 3, 3, 1, 3), (1, 2, 1), (1, 0, 1), True),
]


@pytest.mark.parametrize("xs, ws, stride, padding, bias", CASES)
def test_slow3d_conv_equals_slow_conv3d_bit_for_bit(one_thread, xs, ws, stride, padding, bias):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(xs, generator=g), torch.randn(ws, generator=g)
    b = torch.randn(ws[0], generator=g) if bias else None
    st = (stride,) * 3 if isinstance(stride, int) else stride
    pd = (padding,) * 3 if isinstance(padding, int) else padding
    ref = torch.ops.aten.slow_conv3d(x, w, list(ws[2:]), b, list(st), list(pd))
    ours = slow3d_conv(x, w, b, st, pd)
    assert ours.shape == F.conv3d(x, w, b, st, pd).shape
    assert torch.equal(ours, ref)


def test_mode_takes_only_what_pytorch_sends_to_slow3d(one_thread, monkeypatch):
    calls = []
    real = exact_conv.slow3d_conv
    monkeypatch.setattr(exact_conv, "slow3d_conv", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    small = torch.randn(1, 8, 12, 16, 10)
    big = torch.randn(1, 32, 40, 40, 40)  # oneDNN at batch 1 (PyTorch's heuristics)
    conv_small, conv_big = torch.nn.Conv3d(8, 4, 3, padding=1), torch.nn.Conv3d(32, 32, 3, padding=1)
    assert torch._C._select_conv_backend(big, conv_big.weight, conv_big.bias, [1] * 3, [1] * 3, [1] * 3, False,
                                         [0] * 3, 1, None) != torch._C._ConvBackend.Slow3d
    with torch.inference_mode():
        ref_small, ref_big = conv_small(small), conv_big(big)
        with ExactSlowConv3d():
            first, second, other = conv_small(small), conv_small(small), conv_big(big)
    assert torch.equal(first, ref_small) and torch.equal(second, ref_small) and torch.equal(other, ref_big)
    assert calls == [small.shape] * 3  # first call: compared, then timed; second: ours
    assert list(exact_conv._VERIFIED.values()) == [True]


def test_a_signature_that_is_not_faster_goes_back_to_pytorch(one_thread, monkeypatch):
    monkeypatch.setattr(exact_conv, "FASTER", 0.0)
    calls = []
    real = exact_conv.slow3d_conv
    monkeypatch.setattr(exact_conv, "slow3d_conv", lambda *a, **k: calls.append(1) or real(*a, **k))
    conv, x = torch.nn.Conv3d(4, 4, 3, padding=1), torch.randn(1, 4, 8, 8, 8)
    with torch.inference_mode(), ExactSlowConv3d():
        for _ in range(3):
            conv(x)
    assert len(calls) == 2 and list(exact_conv._VERIFIED.values()) == [False]


def test_mode_leaves_training_alone(one_thread, monkeypatch):
    monkeypatch.setattr(exact_conv, "slow3d_conv", lambda *a, **k: pytest.fail("taken with gradients on"))
    conv = torch.nn.Conv3d(2, 2, 3, padding=1)
    with ExactSlowConv3d():
        conv(torch.randn(1, 2, 6, 6, 6)).sum().backward()
    assert conv.weight.grad is not None


def test_a_signature_that_differs_goes_back_to_pytorch(one_thread, monkeypatch):
    real = exact_conv.slow3d_conv
    monkeypatch.setattr(exact_conv, "slow3d_conv", lambda *a, **k: real(*a, **k) + 1e-6)  # another BLAS, say
    conv, x = torch.nn.Conv3d(4, 4, 3, padding=1), torch.randn(1, 4, 8, 8, 8)
    with torch.inference_mode():
        ref = conv(x)
        with ExactSlowConv3d():
            outs = [conv(x) for _ in range(3)]
    assert all(torch.equal(o, ref) for o in outs)
    assert list(exact_conv._VERIFIED.values()) == [False]


def test_nnunet_exact_mode_runs_its_convolutions_here(one_thread, monkeypatch):
    """Imported nnU-Net models (exact mode, CPU) go through the mode; the parity with nnU-Net's own
    predictor is tests/inference/test_nnunet_exact.py."""
    from pathlib import Path

    from mednet_pvs.zoo import load_pretrained

    ref = Path(__file__).resolve().parents[1] / "data" / "nnunet_v2_reference"
    calls = []
    real = exact_conv.slow3d_conv
    monkeypatch.setattr(exact_conv, "slow3d_conv", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = load_pretrained(str(ref / "results" / "Dataset901_PVS" / "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres"),
                            device="cpu")
    model.predict(ref / "inputs" / "ras_T2w.nii.gz", tta=False)
    assert len(calls) > len(exact_conv._VERIFIED) > 0
    assert all(exact_conv._VERIFIED.values())


def test_two_paddings_with_one_padded_shape_share_no_borders(one_thread):
    """(8, 10, 8) padded (1, 0, 1) and (10, 8, 8) padded (0, 1, 1) are both 10^3 once padded: the
    second must not find the first's values in its zero border."""
    from mednet_pvs.inference.exact_conv import _Buffers

    g = torch.Generator().manual_seed(1)
    buffers = _Buffers()
    w = torch.randn(2, 3, 3, 3, 3, generator=g)
    for shape, pad in (((1, 3, 8, 10, 8), (1, 0, 1)), ((1, 3, 10, 8, 8), (0, 1, 1)), ((1, 3, 8, 10, 8), (1, 0, 1))):
        x = torch.randn(shape, generator=g) + 5.0
        ref = torch.ops.aten.slow_conv3d(x, w, [3, 3, 3], None, [1, 1, 1], list(pad))
        assert torch.equal(slow3d_conv(x, w, None, (1, 1, 1), pad, buffers), ref)
