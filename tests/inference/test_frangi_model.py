"""fit_frangi: the inputs it cannot use are refused with one line naming the file (they once ended
in a NameError: ``InputError`` was raised without being imported)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import InputError
from mednet_pvs.inference.frangi_model import fit_frangi


def _save(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), path)


def _cohort(tmp_path, image_cell: str, label_shape=(24, 24, 24)):
    rng = np.random.default_rng(0)
    _save(tmp_path / "t1.nii.gz", rng.normal(size=(24, 24, 24)).astype(np.float32))
    _save(tmp_path / "t2.nii.gz", rng.normal(size=(24, 24, 24)).astype(np.float32))
    label = np.zeros(label_shape, np.uint8)
    label[5:15, 10, 10] = 1
    _save(tmp_path / "pvs.nii.gz", label)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"subject,image,label\nsub-01,{image_cell},pvs.nii.gz\n")
    return manifest


def test_fit_frangi_refuses_several_channels(tmp_path):
    manifest = _cohort(tmp_path, "t1.nii.gz;t2.nii.gz")
    with pytest.raises(InputError, match=r"manifest\.csv: case sub-01: the Frangi baseline takes one image channel, not 2"):
        fit_frangi(manifest, "T1w")


def test_fit_frangi_refuses_a_label_on_another_grid(tmp_path):
    manifest = _cohort(tmp_path, "t1.nii.gz", label_shape=(20, 24, 24))
    with pytest.raises(InputError, match=r"pvs\.nii\.gz: label shape \(20, 24, 24\) does not match the image"):
        fit_frangi(manifest, "T1w")
