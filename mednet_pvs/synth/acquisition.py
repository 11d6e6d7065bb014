"""Acquisition effects, applied in scanner order: bias field, PSF blur, thick slices, motion,
Rician noise. Each has its own seeded random stream.

* Bias: ``exp(bias * B)`` with ``B`` a random smooth field (3rd-order Legendre polynomials,
  standardised to unit std in the brain and clipped to +-2), as N4/SPM model it: ``bias=0.2``
  gives about +-20 % (one SD), +-50 % at the very most.
* Blur: Gaussian point-spread function of ``blur_fwhm_mm``.
* Thick slices: each slab of ``slice_thickness_mm`` along ``slice_axis`` is averaged (box slice
  profile) and the slab values are linearly interpolated back onto the phantom grid. The label,
  mask and regions stay at full resolution (SynthSeg-style: the image is degraded, the target is
  not), so every output keeps the same grid and affine.
* Motion: a rigid in-plane shift of up to ``motion_mm`` during random blocks (30 %) of the
  phase-encoding lines (axis 1, A-P), simulated in k-space; this produces ghosting along the
  phase-encoding direction.
* Noise: complex Gaussian of sigma ``noise * mean brain intensity``, magnitude image (Rician).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mednet_pvs.synth._util import rng_for
from mednet_pvs.synth.phantom_config import PhantomConfig


def acquire(img: np.ndarray, brainmask: np.ndarray, h: float, cfg: PhantomConfig, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade the noise-free ``img`` (float32, changed in place where possible); returns (image, meta)."""
    from scipy import ndimage

    meta: dict[str, Any] = {}
    ref = float(img[brainmask].mean()) if brainmask.any() else float(img.mean())
    if cfg.bias > 0:
        field = bias_field(img.shape, brainmask, rng_for(seed, "bias"))
        img *= np.exp(np.float32(cfg.bias) * field)
        meta["bias_range"] = [round(float(np.exp(cfg.bias * field[brainmask].min())), 3),
                              round(float(np.exp(cfg.bias * field[brainmask].max())), 3)]
    if cfg.blur_fwhm_mm > 0:
        sigma = cfg.blur_fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / h
        img = ndimage.gaussian_filter(img, sigma, truncate=3.0, output=np.float32)
    if cfg.slice_thickness_mm is not None and cfg.slice_thickness_mm > h * 1.001:
        img = thick_slices(img, cfg.slice_thickness_mm / h, cfg.slice_axis)
        meta["slice_thickness_mm"] = cfg.slice_thickness_mm
        meta["slice_axis"] = cfg.slice_axis
        meta["label_grid"] = "full resolution (only the image is acquired in thick slices)"
    if cfg.motion_mm > 0:
        img, shifts = motion(img, cfg.motion_mm / h, rng_for(seed, "motion"))
        meta["motion_shifts_mm"] = [[round(float(v) * h, 3) for v in s] for s in shifts]
    if cfg.noise > 0:
        sigma = cfg.noise * ref
        rng = rng_for(seed, "noise")
        re = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
        im = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
        img = np.sqrt(re * re + im * im, dtype=np.float32)
        meta["noise_sigma"] = round(float(sigma), 5)
    return img.astype(np.float32, copy=False), meta


def bias_field(shape: tuple[int, ...], mask: np.ndarray, rng: np.random.Generator, order: int = 3) -> np.ndarray:
    """Smooth random field (sum of Legendre products up to total degree ``order``), unit std in ``mask``."""
    from numpy.polynomial import legendre

    basis = []
    for n in shape:
        x = np.linspace(-1, 1, n)
        basis.append(np.stack([legendre.legval(x, np.eye(order + 1)[k]) for k in range(order + 1)], axis=1))
    k = np.arange(order + 1)
    deg = k[:, None, None] + k[None, :, None] + k[None, None, :]
    c = rng.normal(size=deg.shape) / (1.0 + deg)  # lower orders dominate
    c[(deg > order) | (deg == 0)] = 0
    t = np.einsum("ijk,xi->xjk", c, basis[0])
    t = np.einsum("xjk,yj->xyk", t, basis[1])
    f = (t.reshape(-1, order + 1) @ basis[2].T).reshape(shape).astype(np.float32)
    vals = f[mask] if mask.any() else f
    f -= np.float32(vals.mean())
    f /= np.float32(max(float(vals.std()), 1e-6))
    return np.clip(f, -2.0, 2.0, out=f)


def thick_slices(img: np.ndarray, k: float, axis: int) -> np.ndarray:
    """Average slabs ``k`` voxels thick along ``axis`` and interpolate them back to the grid."""
    from scipy import ndimage

    n = img.shape[axis]
    m = max(1, int(np.ceil(n / k)))
    edges = np.minimum(np.round(np.arange(m + 1) * k).astype(int), n)
    edges = np.unique(edges)
    a = np.moveaxis(img, axis, 0)
    slabs = np.add.reduceat(a, edges[:-1], axis=0) / np.diff(edges)[:, None, None]
    centres = (edges[:-1] + edges[1:] - 1) / 2.0
    pos = np.interp(np.arange(n), centres, np.arange(len(centres)))
    coords = np.broadcast_to(pos[:, None, None], a.shape)
    grid = np.indices(a.shape[1:], sparse=True)
    out = ndimage.map_coordinates(slabs.astype(np.float32),
                                  [coords, np.broadcast_to(grid[0][None], a.shape), np.broadcast_to(grid[1][None], a.shape)],
                                  order=1, mode="nearest")
    return np.moveaxis(out.astype(np.float32), 0, axis)


def motion(img: np.ndarray, max_shift: float, rng: np.random.Generator, pe_axis: int = 1,
           fraction: float = 0.3) -> tuple[np.ndarray, list[np.ndarray]]:
    """k-space motion: blocks of phase-encoding lines acquired with the head shifted (voxels)."""
    from scipy import fft

    n = img.shape[pe_axis]
    k = fft.fftn(img, axes=(0, 1), workers=-1)
    freqs = [fft.fftfreq(img.shape[a]) for a in (0, 1)]
    lines = np.zeros(n, bool)
    shifts = []
    n_blocks = int(rng.integers(1, 4))
    for _ in range(n_blocks):
        width = max(1, int(n * fraction / n_blocks))
        start = int(rng.integers(0, n - width + 1))
        sel = np.zeros(n, bool)
        sel[start : start + width] = True
        sel &= ~lines
        lines |= sel
        s = rng.uniform(-1, 1, 2) * max_shift
        shifts.append(s)
        phase = np.exp(-2j * np.pi * (freqs[0][:, None] * s[0] + freqs[1][None, :] * s[1])).astype(np.complex64)
        ksel = np.fft.ifftshift(sel)  # blocks are contiguous around k-space centre order
        idx = [slice(None)] * img.ndim
        idx[pe_axis] = ksel
        ph = phase[:, ksel] if pe_axis == 1 else phase[ksel, :]
        k[tuple(idx)] *= ph[..., None]
    out = np.abs(fft.ifftn(k, axes=(0, 1), workers=-1)).astype(np.float32)
    return out, shifts
