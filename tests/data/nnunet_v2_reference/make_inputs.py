"""Step 1 of the nnU-Net v2 reference fixtures: the input scans (run in the project's venv).

    .venv/bin/python tests/data/nnunet_v2_reference/make_inputs.py

Writes ``inputs/*.nii.gz``: one procedural phantom head (seed 1, T2w, and its T1w twin of the same
anatomy for the two-channel model), cropped to 40 x 48 x 36 voxels of 1 mm and stored three ways:
``ras`` (RAS, 1 mm), ``lps`` (the same voxels with the axes permuted (1, 2, 0) and the first two
flipped, world coordinates unchanged: an LPS-permuted storage) and ``aniso`` (resampled to
0.9 x 0.9 x 3 mm, linear). Also three small labelled cases for nnU-Net's planner, in the folder given as the first argument
(default ``/tmp/nnunet_v2_reference_train``; not committed).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from mednet_pvs.synth import PhantomConfig, make_phantom

HERE = Path(__file__).resolve().parent
CROP = (slice(12, 52), slice(8, 56), slice(14, 50))  # 40 x 48 x 36


def _phantom(contrast: str, seed: int) -> np.ndarray:
    """The phantom's image, skull-stripped (zero outside its brain mask, as nnU-Net PVS datasets are)."""
    ph = make_phantom(PhantomConfig(anatomy="procedural", contrast=contrast, burden=3), seed=seed)
    return np.asarray(ph.image, np.float32) * np.asarray(ph.brainmask, bool), np.asarray(ph.label, np.uint8)


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def _lps(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with voxel axes (1, 2, 0) and the new first two axes flipped."""
    out = np.transpose(data, (1, 2, 0))[::-1, ::-1, :]
    n = out.shape
    # voxel (i, j, k) of ``out`` is voxel (k, n0-1-i, n1-1-j) of ``data``
    m = np.zeros((4, 4))
    m[0, 2] = 1
    m[1, 0], m[1, 3] = -1, n[0] - 1
    m[2, 1], m[2, 3] = -1, n[1] - 1
    m[3, 3] = 1
    return np.ascontiguousarray(out), affine @ m


def main() -> None:
    t2 = _phantom("T2w", 1)
    t1 = _phantom("T1w", 1)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-20.0, -24.0, -18.0)
    inp = HERE / "inputs"
    for name, (image, _) in (("T2w", t2), ("T1w", t1)):
        data = image[CROP]
        _save(data, affine, inp / f"ras_{name}.nii.gz")
        d, a = _lps(data, affine)
        _save(d, a, inp / f"lps_{name}.nii.gz")
        zoom = (1 / 0.9, 1 / 0.9, 1 / 3.0)
        aniso = ndi.zoom(data, zoom, order=1)
        a2 = affine.copy()
        a2[:3, :3] = np.diag([0.9, 0.9, 3.0])
        _save(aniso, a2, inp / f"aniso_{name}.nii.gz")
    # three labelled training cases for nnU-Net's fingerprint and planner (other seeds)
    train = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/nnunet_v2_reference_train")
    for seed in (2, 3, 4):
        (a, lab), (b, _) = _phantom("T2w", seed), _phantom("T1w", seed)
        a, b, lab = a[CROP], b[CROP], lab[CROP]
        wmh = (b > 0) & (b < np.percentile(b[b > 0], 2)) & (lab == 0)  # a stand-in third class
        _save(a, affine, train / f"case{seed}_0000.nii.gz")
        _save(b, affine, train / f"case{seed}_0001.nii.gz")
        for name, lb in (("2class", lab), ("3class", lab + 2 * wmh)):
            (train / name).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(lb.astype(np.uint8), affine), train / name / f"case{seed}.nii.gz")


if __name__ == "__main__":
    main()
