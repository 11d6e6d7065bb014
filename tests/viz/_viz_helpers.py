"""Helpers of the picture tests: toy volumes, re-stored copies, rendered pixels."""
from __future__ import annotations

import numpy as np

#: The toy grid (X, Y, Z): 1 mm voxels, RAS, origin at (-15, -18, -12) mm.
SHAPE = (30, 36, 24)


def toy_affine() -> np.ndarray:
    aff = np.eye(4)
    aff[:3, 3] = (-15.0, -18.0, -12.0)
    return aff


def toy_image(seed: int = 0) -> np.ndarray:
    """A head-like ellipsoid of random intensities (every voxel differs: mirror/flip errors show)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    head = (x**2 + y**2 + z**2) < 0.8
    return np.where(head, 100 + 50 * rng.random(SHAPE), 5 * rng.random(SHAPE)).astype(np.float32)


def toy_clusters() -> tuple[np.ndarray, dict[str, tuple[slice, slice, slice]]]:
    """A mask with four clusters of known shape and size (26-connected components)."""
    parts = {
        "cube8": (slice(20, 22), slice(20, 22), slice(8, 10)),  # 2x2x2 = 8 voxels
        "si6": (slice(10, 11), slice(12, 13), slice(6, 12)),  # 6 voxels along z (superior-inferior)
        "lr4": (slice(8, 12), slice(26, 27), slice(16, 17)),  # 4 voxels along x (left-right)
        "dot1": (slice(22, 23), slice(8, 9), slice(18, 19)),  # a single voxel
    }
    mask = np.zeros(SHAPE, np.uint8)
    for sl in parts.values():
        mask[sl] = 1
    return mask, parts


def lps_copy(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same scan stored L->R and P->A flipped (LPS voxel order), same world positions."""
    n0, n1, _ = data.shape
    m = np.array([[-1, 0, 0, n0 - 1], [0, -1, 0, n1 - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    return np.ascontiguousarray(data[::-1, ::-1]), affine @ m


def permuted_copy(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same scan stored with axes (z, x, y) and the new first axis flipped.

    ``new[i, j, k] = data[j, k, n2 - 1 - i]``, so the new affine is ``affine @ M`` with ``M``
    mapping new indices to old ones.
    """
    n2 = data.shape[2]
    new = np.ascontiguousarray(np.transpose(data, (2, 0, 1))[::-1])
    m = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, n2 - 1], [0, 0, 0, 1]], float)
    return new, affine @ m


def oblique(affine: np.ndarray, degrees: float = 12.0) -> np.ndarray:
    """``affine`` rotated by ``degrees`` about the z axis (an oblique acquisition)."""
    t = np.radians(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return rot @ affine


def pixels(fig) -> np.ndarray:
    """The rendered canvas as an (H, W, 4) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def image_axes(fig) -> list:
    """The panels (axes showing an image), in creation order."""
    return [ax for ax in fig.axes if ax.images]


def colour_bars(fig) -> list:
    """The colour bars (inset axes beside a panel)."""
    return [c for ax in fig.axes for c in ax.child_axes]


def letters(ax) -> tuple[str, ...]:
    """Orientation letters of a panel as (left, right, bottom, top)."""
    texts = [t for t in ax.texts if t.get_gid() == "orientation"]
    pos = {t.get_text(): t.get_position() for t in texts}
    left = min(pos, key=lambda s: pos[s][0])
    right = max(pos, key=lambda s: pos[s][0])
    bottom = min(pos, key=lambda s: pos[s][1])
    top = max(pos, key=lambda s: pos[s][1])
    return left, right, bottom, top


def brightest_world(fig, ax) -> np.ndarray:
    """World (data) coordinates of the brightest rendered pixels of a panel, texts and lines hidden."""
    for art in [*ax.texts, *ax.lines]:
        art.set_visible(False)
    buf = pixels(fig)
    h = buf.shape[0]
    bb = ax.get_window_extent()
    rows = slice(int(np.ceil(h - bb.y1)), int(np.floor(h - bb.y0)))
    cols = slice(int(np.ceil(bb.x0)), int(np.floor(bb.x1)))
    lum = buf[rows, cols, :3].astype(int).sum(-1)
    r, c = np.nonzero(lum == lum.max())
    disp = np.stack([cols.start + c + 0.5, h - (rows.start + r + 0.5)], -1)
    return ax.transData.inverted().transform(disp).mean(0)
