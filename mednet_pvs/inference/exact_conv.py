"""PyTorch's direct CPU 3D convolution (``slow_conv3d``), bit for bit, with a faster unfold.

On the CPU, PyTorch runs a float32 3D convolution with one input in its direct kernel
(``_ConvBackend.Slow3d``) whenever its oneDNN heuristics say no (few channels, small feature
maps: most layers of small nnU-Net networks and the deep layers of every one). That kernel copies
the input into a (C*kd*kh*kw, D*H*W) column matrix and makes one BLAS ``sgemm`` call with the
bias as ``beta * C``. :class:`ExactSlowConv3d` makes the same ``sgemm`` call (same matrices, same
leading dimensions, through ``torch.addmm``, which PyTorch sends to the same BLAS), but builds the
column matrix with one strided copy.

Why hand-written: PyTorch's column copy is the slow part. Measured on this project's 2-core AVX2
machine, one thread, torch 2.13.0 (MKL 2024.2): a (1, 8, 24, 32, 24) input, 8 -> 4 channels,
3^3 kernel: 14.4 ms per call in ``slow_conv3d``, 10.3 ms here; 4 -> 4: 7.8 vs 4.8 ms; 8 -> 8 at
12x16x12: 1.75 vs 0.91 ms; outputs equal in every bit (``benchmarks/bench_nnunet_parity.py``
shows the whole-model effect).

Exactness is checked, not assumed: the first call of every distinct (shapes, stride, padding)
signature runs PyTorch's own kernel too, compares every bit and the time; a signature that differs
(another BLAS, another build) or is not faster (:data:`FASTER`) goes back to PyTorch for good, so
outputs never change, only speed.
Only calls PyTorch itself would send to ``Slow3d`` are taken (``torch._C._select_conv_backend``).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_CONV3D = (F.conv3d, torch.conv3d)

#: Taken only where the first call ran in under this fraction of PyTorch's time: the strided copy
#: wins on wide feature maps with few channels and loses on small ones with many (measured on the
#: full-size ResEnc-M at 64^3: its 256- and 320-channel layers at 8^3 and below were slower here).
FASTER = 0.9

#: (input shape, weight shape, bias?, stride, padding) -> True when this module's computation was
#: found bit-identical to PyTorch's on the first call and faster, False otherwise.
_VERIFIED: dict[tuple, bool] = {}


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(int(i) for i in v)  # type: ignore[return-value]


class _Buffers:
    """Scratch tensors reused across calls, one per shape: a fresh 16 MB column matrix per call
    costs page faults that made the copy 15 ms instead of 2.5 ms (same machine, in a full forward)."""

    def __init__(self) -> None:
        self._store: dict[tuple, torch.Tensor] = {}

    def get(self, shape: tuple[int, ...], *, zeros_around: tuple[int, ...] | None = None) -> torch.Tensor:
        """A (C, ...) scratch tensor of ``shape``; ``zeros_around``: the padding of a zero-bordered
        one (part of the key: another padding of the same shape would find stale borders)."""
        zeros = zeros_around is not None
        key = (shape, zeros_around)
        buf = self._store.get(key)
        if buf is None:
            buf = self._store[key] = torch.zeros(shape) if zeros else torch.empty(shape)
        return buf


def columns(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
            buffers: _Buffers | None = None) -> torch.Tensor:
    """``slow_conv3d``'s column matrix of one input.

    Args:
        x: (C, D, H, W) float tensor.
        kernel, stride, padding: per spatial axis.
        buffers: scratch space to reuse (the result is then only valid until the next call).

    Returns:
        (C * kd * kh * kw, oD * oH * oW), row-major (the (M, K) column-major matrix BLAS sees).
    """
    buffers = buffers or _Buffers()
    c, d, h, w = x.shape
    if any(padding):  # the borders of this buffer are never written: they stay zero
        padded = buffers.get((c, d + 2 * padding[0], h + 2 * padding[1], w + 2 * padding[2]), zeros_around=tuple(padding))
        padded[:, padding[0]:padding[0] + d, padding[1]:padding[1] + h, padding[2]:padding[2] + w] = x
        x = padded
    else:
        x = x.contiguous()
    c, d, h, w = x.shape
    if tuple(kernel) == (1, 1, 1) and tuple(stride) == (1, 1, 1):
        return x.reshape(c, -1)
    out = [(n - k) // s + 1 for n, k, s in zip((d, h, w), kernel, stride)]
    sc, sd, sh, sw = x.stride()
    view = x.as_strided((c, *kernel, *out), (sc, sd, sh, sw, sd * stride[0], sh * stride[1], sw * stride[2]))
    cols = buffers.get((c * kernel[0] * kernel[1] * kernel[2], out[0] * out[1] * out[2]))
    cols.view(view.shape).copy_(view)
    return cols


def slow3d_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
                padding: Sequence[int], buffers: _Buffers | None = None) -> torch.Tensor:
    """``slow_conv3d``'s arithmetic: per input, bias then one ``sgemm`` (weight @ columns).

    Args:
        x: (N, C, D, H, W) float32, CPU. weight: (O, C, kd, kh, kw).

    Returns:
        (N, O, oD, oH, oW), a new tensor.
    """
    o = weight.shape[0]
    kernel = tuple(weight.shape[2:])
    w2 = weight.reshape(o, -1)
    spatial = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(x.shape[2:], kernel, stride, padding)]
    result = torch.empty((x.shape[0], o, *spatial), dtype=x.dtype)
    for sample, out in zip(x, result.view(x.shape[0], o, -1)):
        cols = columns(sample, kernel, stride, padding, buffers)
        if bias is not None:
            out.copy_(bias[:, None].expand_as(out))
            torch.addmm(out, w2, cols, out=out)
        else:
            torch.mm(w2, cols, out=out)
    return result


class ExactSlowConv3d(TorchFunctionMode):
    """Within this mode, every float32 CPU ``conv3d`` that PyTorch would run in ``Slow3d`` runs in
    :func:`slow3d_conv` instead, once its signature has been found bit-identical; everything else
    is untouched.

        with ExactSlowConv3d():
            out = net(x)
    """

    def __init__(self) -> None:
        super().__init__()
        self._buffers = _Buffers()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func not in _CONV3D:
            return func(*args, **kwargs)
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        call = dict(zip(names, args)) | kwargs
        x, weight, bias = call["input"], call["weight"], call.get("bias")
        stride, padding = _triple(call.get("stride", 1)), call.get("padding", 0)
        dilation, groups = _triple(call.get("dilation", 1)), int(call.get("groups", 1))
        if (isinstance(padding, str) or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 5
                or torch.is_grad_enabled()):
            return func(*args, **kwargs)
        padding = _triple(padding)
        backend = torch._C._select_conv_backend(x, weight, bias, list(stride), list(padding), list(dilation), False,
                                                [0, 0, 0], groups, None)
        if backend != torch._C._ConvBackend.Slow3d or dilation != (1, 1, 1) or groups != 1:
            return func(*args, **kwargs)
        key = (tuple(x.shape), tuple(weight.shape), bias is not None, stride, padding)
        ok = _VERIFIED.get(key)
        if ok is None:
            ref = func(*args, **kwargs)
            same = torch.equal(ref, slow3d_conv(x, weight, bias, stride, padding, self._buffers))
            t0 = time.perf_counter()  # timed warm, both: PyTorch's second call against ours
            func(*args, **kwargs)
            t1 = time.perf_counter()
            slow3d_conv(x, weight, bias, stride, padding, self._buffers)
            ok = _VERIFIED[key] = same and time.perf_counter() - t1 < FASTER * (t1 - t0)
            return ref
        return slow3d_conv(x, weight, bias, stride, padding, self._buffers) if ok else func(*args, **kwargs)
