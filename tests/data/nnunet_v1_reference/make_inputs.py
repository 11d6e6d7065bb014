"""The inputs of the nnU-Net v1 exact-mode references (run in the project's venv).

    .venv/bin/python tests/data/nnunet_v1_reference/make_inputs.py

The T2w and T1w phantoms of ``../nnunet_v2_reference/inputs`` (one anatomy, one grid) (``ras``: RAS 1 mm; ``lps``: the same voxels
LPS-permuted; ``aniso``: 0.9 x 0.9 x 3 mm), each padded with zeros on its own voxel axes (unequal
margins, the affine's origin moved so that the voxels keep their world position): nnU-Net's crop to
the nonzero box then removes something, and the way back has to put it back. Writes
``inputs/{ras,lps,aniso}_{T2w,T1w}.nii.gz`` (the T1w: the second channel of the two-channel models).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "nnunet_v2_reference" / "inputs"
PAD = ((3, 5), (2, 0), (1, 2))  # zeros (before, after) along the stored voxel axes i, j, k


def main() -> None:
    out = HERE / "inputs"
    out.mkdir(exist_ok=True)
    for case, contrast in itertools.product(("ras", "lps", "aniso"), ("T2w", "T1w")):
        img = nib.load(SOURCE / f"{case}_{contrast}.nii.gz")
        data = np.pad(np.asarray(img.dataobj, np.float32), PAD)
        affine = img.affine.copy()
        affine[:3, 3] -= affine[:3, :3] @ np.array([p[0] for p in PAD], float)
        new = nib.Nifti1Image(data, affine)
        new.set_qform(affine, code=1)
        new.set_sform(affine, code=1)
        nib.save(new, out / f"{case}_{contrast}.nii.gz")


if __name__ == "__main__":
    main()
