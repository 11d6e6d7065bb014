"""The inference preprocessing of :mod:`mednet_pvs.data.preprocessing` in torch ops, on any device.

    pre = preprocess_on_device(scan.data, scan.affine, cfg, brainmask=bm, device="cuda")
    probs = sliding_window_predict(nets, pre.image, window, mask=pre.roi, device="cuda")
    back = pre.to_input_grid(probs[1])                    # (X, Y, Z) on the input grid, same device

The same steps as :func:`~mednet_pvs.data.preprocessing.build_preprocessing` (reorient, crop to
the brain, normalise, resample to the target spacing) and :func:`~.preprocessing.to_input_grid`,
computed where the data already is, so that a GPU run moves the scan to the device once and
the mask back once (TorchIO's pipeline works on the CPU with NumPy and SimpleITK).

Every step here is a view or a *separable* resampling: reorientation only permutes and flips
axes, cropping shifts them and resampling to a spacing scales each axis about the volume's centre,
so the map from one grid's voxel indices to the other's has one non-zero per row. Each axis is
interpolated on its own (three 1D passes; trilinear = product of 1D linear weights), with the
conventions of SimpleITK's resampler as TorchIO calls it: linear interpolation clamped to the
edge voxel within half a voxel of the edge, 0 beyond it; nearest rounds halves up; the new grid of
a spacing change keeps the centre and has ``floor(size * old / new)`` voxels. Agreement with the
TorchIO pipeline is tested (tests/data_layer/test_device_preprocessing.py) on RAS, LPS and oblique
grids, isotropic and anisotropic.

Only what inference uses is here: linear images (``image_interpolation="linear"``), a brain mask
resampled nearest or probability-preserving, no artefact augmentation. Other settings go through
TorchIO (:func:`supports`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch

from mednet_pvs.data.preprocessing import PreprocessConfig, box_average, resample_spacing, voxel_extent


def supports(cfg: PreprocessConfig) -> bool:
    """Whether this module can run ``cfg`` (else use the TorchIO pipeline)."""
    return cfg.image_interpolation == "linear"


# ------------------------------------------------------------------------------- resampling


def _axis_map(src_affine: np.ndarray, tgt_affine: np.ndarray) -> list[tuple[int, float, float]]:
    """For each target axis ``a``: ``(source axis k, scale, offset)`` with source index
    ``p = scale * j + offset`` for target index ``j``.

    Raises:
        ValueError: the two grids are not axis-aligned to each other (an oblique resampling).
    """
    m = np.linalg.solve(np.asarray(src_affine, np.float64), np.asarray(tgt_affine, np.float64))
    out = []
    for a in range(3):
        col = m[:3, a]
        k = int(np.argmax(np.abs(col)))
        if np.abs(np.delete(col, k)).max() > 1e-6 * max(abs(col[k]), 1.0):
            raise ValueError("grids are not axis-aligned to each other: separable resampling does not apply")
        out.append((k, float(col[k]), float(m[k, 3])))
    if sorted(k for k, _, _ in out) != [0, 1, 2]:
        raise ValueError("grids are not axis-aligned to each other: separable resampling does not apply")
    return out


def _interp_1d(t: torch.Tensor, dim: int, positions: np.ndarray, mode: str) -> torch.Tensor:
    """Sample ``t`` along ``dim`` at ``positions`` (float64 source indices): SimpleITK's rules
    (linear: clamped within half a voxel of the edge; nearest: halves round up; 0 outside)."""
    n = t.shape[dim]
    p = torch.as_tensor(positions, dtype=torch.float64, device=t.device)
    inside = (p >= -0.5) & (p < n - 0.5)
    shape = [1] * t.ndim
    shape[dim] = len(positions)
    if mode == "nearest":
        idx = torch.floor(p + 0.5).clamp(0, n - 1).long()
        out = t.index_select(dim, idx)
    else:
        base = torch.floor(p).clamp(0, n - 1)
        w1 = (p - base).clamp(0.0, 1.0)
        i0 = base.long()
        i1 = (i0 + 1).clamp(max=n - 1)
        lo, hi = t.index_select(dim, i0), t.index_select(dim, i1)
        w = w1.to(t.dtype).reshape(shape)
        out = lo + (hi - lo) * w
    return out * inside.to(out.dtype).reshape(shape)


def resample_separable(
    data: torch.Tensor,
    src_affine: np.ndarray,
    tgt_shape: Sequence[int],
    tgt_affine: np.ndarray,
    *,
    mode: str = "linear",
) -> torch.Tensor:
    """Resample ``data`` (C, X, Y, Z) from ``src_affine``'s grid onto ``(tgt_shape, tgt_affine)``.

    World coordinates (mm) are matched as by :func:`~mednet_pvs.data.preprocessing.resample_to_grid`
    (TorchIO/SimpleITK), for grids that are axis-aligned to each other (permuted, flipped,
    shifted, scaled). Returns (C, *tgt_shape) on ``data``'s device, float for ``"linear"``.
    """
    t = data if mode == "nearest" else data.float()
    axes = _axis_map(src_affine, tgt_affine)
    for a, (k, scale, offset) in enumerate(axes):
        t = _interp_1d(t, 1 + k, scale * np.arange(int(tgt_shape[a]), dtype=np.float64) + offset, mode)
    return t.permute(0, *(1 + k for k, _, _ in axes))


def spacing_grid(shape: Sequence[int], affine: np.ndarray, spacing: Sequence[float]) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid TorchIO's ``Resample(spacing)`` makes: same centre and directions, ``floor(size *
    old / new)`` voxels (size-1 axes stay 1). Returns ``(shape, affine)``."""
    shape_a = np.asarray(shape, dtype=np.float64)
    old = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    new = np.asarray(spacing, dtype=np.float64)
    new_shape = np.floor(shape_a * old / new)
    new_shape[shape_a == 1] = 1
    scale = new / old  # source voxels per target voxel
    t = np.eye(4)
    t[:3, :3] = np.diag(scale)
    t[:3, 3] = (shape_a - 1) / 2 - scale * (new_shape - 1) / 2
    return tuple(int(v) for v in new_shape), np.asarray(affine, np.float64) @ t  # type: ignore[return-value]


# ---------------------------------------------------------------------------- the pipeline


@dataclass
class DevicePreprocessed:
    """A scan prepared for the network on a device, and the way back to its own grid.

    Attributes:
        image: (C, X', Y', Z') float32 network input.
        roi: (X', Y', Z') bool: the brain mask (or the image foreground) on that grid: tiles
            without it are skipped.
        affine: 4x4 voxel-to-world matrix of ``image``'s grid (mm).
        input_shape, input_affine: the scan's own grid.
    """

    image: torch.Tensor
    roi: torch.Tensor
    affine: np.ndarray
    input_shape: tuple[int, int, int]
    input_affine: np.ndarray

    def to_input_grid(self, data: torch.Tensor, *, mode: str = "linear") -> torch.Tensor:
        """(X', Y', Z') or (C, X', Y', Z') on the network grid -> the same on the input grid
        (0 outside the crop), on ``data``'s device (as :func:`~.preprocessing.to_input_grid`,
        whose ``"linear"``, ``"nearest"`` and ``"area"`` ``mode`` it takes)."""
        squeeze = data.ndim == 3
        t = data[None] if squeeze else data
        if mode == "area":
            t, mode = box_average(t, voxel_extent(self.affine, self.input_affine)), "linear"
        out = resample_separable(t, self.affine, self.input_shape, self.input_affine, mode=mode)
        return out[0] if squeeze else out


def _foreground(image: torch.Tensor, brainmask: torch.Tensor | None, cfg: PreprocessConfig) -> torch.Tensor:
    if cfg.use_brainmask and brainmask is not None:
        return brainmask
    if cfg.foreground == "mean":
        return (image > image.mean(dim=(1, 2, 3), keepdim=True)).any(0)
    return (image != 0).any(0)


def _normalise(image: torch.Tensor, mask: torch.Tensor, cfg: PreprocessConfig, keep_zero: bool) -> torch.Tensor:
    out = image.float().clone()
    for c in range(out.shape[0]):
        x = out[c]
        values = x[mask] if mask.any() else x.flatten()
        if cfg.normalisation == "zscore":
            mean, std = values.mean(), values.std()
            x = (x - mean) / (std if std > 0 else 1.0)
        elif cfg.normalisation == "percentile":
            q = torch.tensor([p / 100 for p in cfg.percentiles], dtype=torch.float64, device=values.device)
            lo, hi = (float(v) for v in _quantile(values.double(), q))
            x = (x.clamp(lo, hi) - lo) / (hi - lo if hi > lo else 1.0)
        if keep_zero:
            x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
        out[c] = x
    return out


def _quantile(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``torch.quantile`` (linear, as NumPy's default) without its 16M-element limit."""
    if values.numel() <= 1 << 24:
        return torch.quantile(values, q)
    s = values.sort().values
    pos = q * (s.numel() - 1)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def preprocess_on_device(
    image: np.ndarray | torch.Tensor,
    affine: np.ndarray,
    cfg: PreprocessConfig,
    *,
    brainmask: np.ndarray | torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> DevicePreprocessed:
    """Run ``cfg``'s inference preprocessing on ``device`` (the scan is moved there once).

    Args:
        image: (X, Y, Z) or (C, X, Y, Z) voxels as stored.
        affine: 4x4 voxel-to-world (mm) of ``image``.
        cfg: the model's preprocessing (:func:`supports` it).
        brainmask: optional (X, Y, Z) mask on the same grid.
        device: where to compute.

    Returns:
        :class:`DevicePreprocessed`.
    """
    dev = torch.device(device)
    pin = dev.type == "cuda"
    img = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image)
    img = img[None] if img.ndim == 3 else img
    img = (img.pin_memory() if pin else img).to(dev, non_blocking=pin).float()
    input_shape = tuple(int(s) for s in img.shape[1:])
    input_affine = np.asarray(affine, np.float64)
    bm = None
    if brainmask is not None:
        bm = torch.as_tensor(np.ascontiguousarray(brainmask)).to(dev) > 0
    aff = input_affine

    if cfg.orientation is not None and "".join(nib.aff2axcodes(aff)) != cfg.orientation:  # as tio.ToOrientation
        transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(aff), nib.orientations.axcodes2ornt(tuple(cfg.orientation)))
        img = _apply_ornt(img, transform)
        bm = None if bm is None else _apply_ornt(bm[None], transform)[0]
        aff = aff @ nib.orientations.inv_ornt_aff(transform, input_shape)

    if cfg.crop_to_brain:  # as CropToMask
        mask = _foreground(img, bm, cfg)
        if mask.any():
            spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
            margin = np.ceil(cfg.crop_margin_mm / spacing).astype(int)
            lo, hi = [], []
            for ax in range(3):
                hits = torch.nonzero(mask.any(dim=tuple(a for a in range(3) if a != ax))).flatten()
                lo.append(max(int(hits[0]) - int(margin[ax]), 0))
                hi.append(min(int(hits[-1]) + 1 + int(margin[ax]), mask.shape[ax]))
            img = img[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            bm = None if bm is None else bm[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            shift = np.eye(4)
            shift[:3, 3] = lo
            aff = aff @ shift

    mask = _foreground(img, bm, cfg)
    if cfg.normalisation != "none":  # as NormalizeIntensity
        keep_zero = cfg.foreground == "nonzero" and not (cfg.use_brainmask and bm is not None)
        img = _normalise(img, mask, cfg, keep_zero)

    spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    target = None if cfg.target_spacing is None else resample_spacing(spacing, cfg.target_spacing, cfg.finest_spacing)
    if target is not None and not np.allclose(spacing, target, atol=1e-4):  # as ResampleToSpacing
        shape, new_aff = spacing_grid(img.shape[1:], aff, target)
        img = resample_separable(img, aff, shape, new_aff, mode="linear")
        if bm is not None:
            if cfg.label_interpolation == "linear":
                bm = resample_separable(bm[None].float(), aff, shape, new_aff, mode="linear")[0] >= 0.5
            else:
                bm = resample_separable(bm[None], aff, shape, new_aff, mode="nearest")[0]
        aff = new_aff
    roi = bm if bm is not None else _foreground(img, None, cfg)
    return DevicePreprocessed(image=img.contiguous(), roi=roi.contiguous(), affine=aff, input_shape=input_shape, input_affine=input_affine)  # type: ignore[arg-type]


def _apply_ornt(t: torch.Tensor, transform: np.ndarray) -> torch.Tensor:
    """``nibabel.orientations.apply_orientation`` on the spatial axes of (C, X, Y, Z), as views."""
    flips = [1 + ax for ax, (_, flip) in enumerate(transform) if flip == -1]
    if flips:
        t = t.flip(flips)
    order = np.argsort(transform[:, 0].astype(int))  # output axis i takes input axis order[i]
    return t.permute(0, *(1 + int(a) for a in order))
