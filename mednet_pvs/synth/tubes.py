"""Curved tubes: smooth random-walk centrelines and their partial-volume rendering.

A centreline follows a direction field (radial, vertical, along the hippocampus...) plus a smooth
sinusoidal wiggle, in steps of half a voxel, and stops where a caller's ``ok(point)`` fails (edge
of the structure, another PVS, a confounder). Rendering works only inside the bounding boxes of
short pieces of the centreline (8 steps each), never on the whole volume.

Partial volume: the occupancy of a voxel is a distance-based ramp one voxel wide around the tube
wall, ``clip(0.5 + (r_eff - d) / h, 0, 1)`` with ``d`` the distance from the voxel centre to the
centreline and ``h`` the voxel size, so ``occupancy >= 0.5`` <=> ``d <= r_eff``. A tube thinner than
a voxel is drawn with ``r_eff = h / 2`` and the voxels its centreline passes through count as at
least half occupied, so every PVS is one connected line (as a rater would trace it); its image
signal is scaled by ``(r / r_eff)**2`` so that the PVS volume in the image stays right.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mednet_pvs.synth._util import box_around, box_coords, perpendiculars, unit

Field = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (point, previous tangent) -> unit vector
Ok = Callable[[np.ndarray], bool]


@dataclass
class Wiggle:
    """Smooth perpendicular perturbation ``a1 sin(2 pi s / l1 + p1) e1 + a2 sin(2 pi s / l2 + p2) e2``."""

    e1: np.ndarray
    e2: np.ndarray
    amp: tuple[float, float]
    wavelength: tuple[float, float]
    phase: tuple[float, float]

    @classmethod
    def random(cls, d0: np.ndarray, curvature: float, rng: np.random.Generator) -> "Wiggle":
        e1, e2 = perpendiculars(unit(d0))
        return cls(e1, e2, tuple(rng.uniform(0, curvature, 2)), tuple(rng.uniform(8.0, 30.0, 2)),
                   tuple(rng.uniform(0, 2 * np.pi, 2)))

    def __call__(self, s: float) -> np.ndarray:
        w = 2 * np.pi * s
        return (self.amp[0] * np.sin(w / self.wavelength[0] + self.phase[0]) * self.e1
                + self.amp[1] * np.sin(w / self.wavelength[1] + self.phase[1]) * self.e2)


def trace(p0: np.ndarray, length: float, step: float, field: Field, ok: Ok, wiggle: Wiggle,
          d0: np.ndarray) -> np.ndarray:
    """Centreline of about ``length`` mm through ``p0`` (half on each side), in grid mm.

    Returns the (n, 3) points, ``step`` apart; shorter when ``ok`` stops the growth.
    """
    t0 = unit(field(p0, d0) + wiggle(0.0))
    fwd = _grow(p0, t0, length / 2, step, +1, field, ok, wiggle)
    bwd = _grow(p0, t0, length - (len(fwd) - 1) * step, step, -1, field, ok, wiggle)  # the rest, if cut short
    return np.concatenate([bwd[::-1], fwd[1:]])


def _grow(p0, t0, target, step, sign, field, ok, wiggle) -> np.ndarray:
    pts = [np.asarray(p0, float)]
    p, t, s = pts[0], t0, 0.0
    turn = min(1.0, step / 2.0)  # the tangent turns towards the field over ~2 mm
    while s + step <= target + 1e-9:
        want = unit(field(p, t) + wiggle(sign * (s + step)))
        t = unit(t + turn * (want - t))
        q = p + sign * step * t
        if not ok(q):
            break
        pts.append(q)
        p, s = q, s + step
    return np.asarray(pts)


def arc_length(pts: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()) if len(pts) > 1 else 0.0


@dataclass
class Rendered:
    """One tube rendered in its own box: ``occ`` (label-defining occupancy) and ``frac`` (signal)."""

    box: tuple[slice, ...]
    occ: np.ndarray  # float32; label = occ >= 0.5
    frac: np.ndarray  # float32 PVS volume fraction the image shows

    @property
    def label(self) -> np.ndarray:
        return self.occ >= 0.5


def render(pts: np.ndarray, radius: float, h: float, shape: tuple[int, int, int], chunk: int = 8) -> Rendered | None:
    """Partial-volume rendering of the tube of centreline ``pts`` (grid mm) and ``radius`` (mm)."""
    r_eff = max(radius, 0.5 * h)
    pad = r_eff + h
    box = box_around(pts.min(0) - pad, pts.max(0) + pad, h, shape)
    if box is None or len(pts) < 2:
        return None
    occ = np.zeros(tuple(s.stop - s.start for s in box), np.float32)
    base = np.array([s.start for s in box])
    for a in range(0, len(pts) - 1, chunk):
        seg = pts[a : min(a + chunk, len(pts) - 1) + 1]
        sl = box_around(seg.min(0) - pad, seg.max(0) + pad, h, shape)
        if sl is None:
            continue
        gx, gy, gz = box_coords(sl, h)
        dims = (gx.shape[0], gy.shape[1], gz.shape[2])
        P = np.stack(np.broadcast_arrays(gx, gy, gz), axis=-1).reshape(-1, 1, 3)
        A, AB = seg[:-1][None], np.diff(seg, axis=0)[None]
        L2 = np.maximum((AB**2).sum(-1), 1e-12)
        AP = P - A
        t = np.clip((AP * AB).sum(-1) / L2, 0.0, 1.0)
        d = np.sqrt(((AP - t[..., None] * AB) ** 2).sum(-1).min(axis=1)).reshape(dims)
        o = np.clip(0.5 + (r_eff - d) / h, 0.0, 1.0).astype(np.float32)
        loc = tuple(slice(s.start - b, s.stop - b) for s, b in zip(sl, base))
        np.maximum(occ[loc], o, out=occ[loc])
    vox = np.unique(np.rint(pts / h).astype(int), axis=0) - base
    inside = np.all((vox >= 0) & (vox < occ.shape), axis=1)
    vox = vox[inside]
    occ[vox[:, 0], vox[:, 1], vox[:, 2]] = np.maximum(occ[vox[:, 0], vox[:, 1], vox[:, 2]], 0.5)
    frac = occ * min(1.0, (radius / r_eff) ** 2)
    return Rendered(box, occ, frac)
