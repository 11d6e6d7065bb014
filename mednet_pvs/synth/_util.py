"""Small shared helpers of the phantom generator: seeded random streams and grid geometry."""
from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent random stream for one part of a phantom (``rng_for(seed, "pvs", "bg_L")``).

    Streams are keyed by name, so changing e.g. the number of lacunes leaves the PVS geometry
    and the noise of the same seed unchanged.
    """
    words = [int(seed) & 0xFFFFFFFF, int(seed) >> 32]
    words += [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1 (a zero vector stays zero)."""
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def perpendiculars(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors that make an orthonormal frame with the unit vector ``d``."""
    a = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = unit(np.cross(d, a))
    return e1, np.cross(d, e1)


def box_around(lo_mm: np.ndarray, hi_mm: np.ndarray, h: float, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """The voxel slices covering grid-mm box [lo, hi] (grid mm = index * h), clipped; None if empty."""
    lo = np.maximum(np.floor(np.asarray(lo_mm) / h).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(hi_mm) / h).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def box_coords(sl: tuple[slice, ...], h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid-mm coordinates of the voxel centres of a box, as broadcastable (n,1,1), (1,m,1), (1,1,k)."""
    x = (np.arange(sl[0].start, sl[0].stop) * h)[:, None, None]
    y = (np.arange(sl[1].start, sl[1].stop) * h)[None, :, None]
    z = (np.arange(sl[2].start, sl[2].stop) * h)[None, None, :]
    return x, y, z


def ramp(signed_dist_mm: np.ndarray, h: float) -> np.ndarray:
    """Partial-volume fraction of a voxel whose centre is ``signed_dist_mm`` inside (>0) an edge."""
    return np.clip(0.5 + signed_dist_mm / h, 0.0, 1.0).astype(np.float32)


def smooth_noise(shape: tuple[int, ...], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in [0, 1] with features about ``cell`` voxels wide (coarse grid, linear zoom)."""
    from scipy import ndimage

    coarse = [max(2, int(np.ceil(n / max(cell, 1.0))) + 1) for n in shape]
    g = rng.random(coarse).astype(np.float32)
    zoom = [n / c for n, c in zip(shape, coarse)]
    out = ndimage.zoom(g, zoom, order=1, mode="nearest", grid_mode=True)
    return out[tuple(slice(0, n) for n in shape)]


def bbox(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels (clipped); None if empty."""
    out = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        if hit.size == 0:
            return None
        out.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, mask.shape[ax])))
    return tuple(out)


def voxel_of(p: np.ndarray, h: float, shape) -> tuple[int, ...] | None:
    """Index of the voxel holding grid-mm point ``p``, or None outside the grid."""
    i = np.rint(np.asarray(p) / h).astype(int)
    if np.any(i < 0) or np.any(i >= np.asarray(shape)):
        return None
    return tuple(int(v) for v in i)
