"""Small NIfTI cohorts written with nibabel, for the data-layer tests (imported by their conftest)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def brain_volume(shape=(40, 44, 36), seed: int = 0, n_pvs: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32, label uint8, brainmask uint8): an ellipsoid 'brain' on a zero background
    with short bright tubes (PVS) inside."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = (grid**2).sum(0) < 0.7
    image = np.where(brain, rng.normal(100.0, 8.0, shape), 0.0).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    centre = np.array(shape) // 2
    for _ in range(n_pvs):
        x, y = centre[:2] + rng.integers(-6, 7, 2)
        z0 = centre[2] + rng.integers(-6, 3)
        label[x, y, z0 : z0 + 5] = 1
    image[label > 0] += 60.0
    return image, label, brain.astype(np.uint8)


def save(data: np.ndarray, path: Path, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def write_cohort(
    root: Path,
    n: int = 4,
    *,
    sites: tuple[str, ...] = ("A", "B"),
    shape=(40, 44, 36),
    affine: np.ndarray | None = None,
    brainmask: bool = False,
    sep: str = ",",
    name: str = "manifest.csv",
) -> Path:
    """Write ``n`` cases (images/, labels/, masks/) and a manifest with relative paths; returns it."""
    cols = ["subject", "image", "label", "site"] + (["brainmask"] if brainmask else [])
    rows = [sep.join(cols)]
    for i in range(n):
        img, lab, mask = brain_volume(shape, seed=i)
        save(img, root / "images" / f"sub-{i:02d}_T2w.nii.gz", affine)
        save(lab, root / "labels" / f"sub-{i:02d}_pvs.nii.gz", affine)
        row = [f"sub-{i:02d}", f"images/sub-{i:02d}_T2w.nii.gz", f"labels/sub-{i:02d}_pvs.nii.gz", sites[i % len(sites)]]
        if brainmask:
            save(mask, root / "masks" / f"sub-{i:02d}_brain.nii.gz", affine)
            row.append(f"masks/sub-{i:02d}_brain.nii.gz")
        rows.append(sep.join(row))
    manifest = root / name
    manifest.write_text("\n".join(rows) + "\n")
    return manifest
