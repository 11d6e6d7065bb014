"""DICOM in (mednet_pvs.data.dicom): series the tests write with pydicom, converted by dcm2niix, land
at the same place in the world; series that are not 3D anatomical scans are skipped with a reason."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom")
pytest.importorskip("dcm2niix")

import nibabel as nib
from pydicom.uid import generate_uid

from mednet_pvs.data import dicom
from mednet_pvs.data.dicom import (
    MIN_SLICES,
    convert_dicom,
    skip_reason,
    write_dicom_series,
)
from mednet_pvs.errors import InputError

SHAPE = (20, 18, 16)


def _volume(seed: int = 0) -> np.ndarray:
    """Intensities on the grid of RescaleSlope 0.5 / RescaleIntercept -100 (stored exactly)."""
    return np.random.default_rng(seed).integers(0, 4000, SHAPE) * 0.5 - 100.0


def _files(folder):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*"))}


def test_converted_scan_is_at_the_dicom_world_position(tmp_path, oblique_affine):
    """An oblique LPS-going series: every voxel of the converted NIfTI holds the value DICOM put at
    that patient position, and a bright voxel is found at its world position through the affine."""
    aff = oblique_affine()  # rotated 25 degrees about S, 0.6 x 0.7 x 0.9 mm, L/P-going axes
    data = _volume()
    blob = (13, 5, 11)
    data[blob] = 2000.0  # brighter than anything else
    folder = tmp_path / "dicom" / "t2"
    write_dicom_series(data, aff, folder, series_number=3, description="t2_space", slope=0.5, intercept=-100)
    before = _files(tmp_path / "dicom")
    (s,) = convert_dicom(tmp_path / "dicom", tmp_path / "converted")
    assert s.skip is None and s.case_id == "dicom_t2_3_t2_space" and s.description == "3 t2_space"
    assert s.nifti == tmp_path / "converted" / "dicom_t2_3_t2_space.nii.gz" and s.sidecar.is_file()
    img = nib.load(s.nifti)
    conv = np.asanyarray(img.dataobj, dtype=float)
    # the converted grid is the written grid up to flips/permutations: an integer voxel mapping
    to_written = np.linalg.inv(aff) @ img.affine
    assert np.allclose(to_written, np.round(to_written), atol=1e-3), to_written
    ijk = np.indices(conv.shape).reshape(3, -1)
    mapped = np.round(to_written[:3, :3] @ ijk + to_written[:3, 3:]).astype(int)
    np.testing.assert_allclose(data[tuple(mapped)], conv.reshape(-1), atol=1e-3)  # slope/intercept applied
    found = np.unravel_index(np.argmax(conv), conv.shape)
    np.testing.assert_allclose(nib.affines.apply_affine(img.affine, found), nib.affines.apply_affine(aff, blob), atol=1e-3)
    assert _files(tmp_path / "dicom") == before, "the DICOM input is left as it was"


def test_a_folder_of_series_keeps_the_scans_and_skips_the_rest_with_reasons(tmp_path):
    """One folder, one study, seven series as a scanner exports them: two 3D scans (each its own
    case), a localizer, a single slice, a reformat, a series of two orientations, a short stack."""
    aff = np.diag([0.8, 0.8, 1.0, 1.0])
    data, study, d = _volume() + 100, generate_uid(), tmp_path / "study"
    write_dicom_series(data, aff, d, series_number=3, description="t2_space", study_uid=study, prefix="s3_")
    write_dicom_series(data[::-1], aff, d, series_number=4, description="t1_mprage", study_uid=study, prefix="s4_")
    write_dicom_series(data[:, :, :3], aff, d, series_number=1, description="AAHead_Scout", study_uid=study, prefix="s1_")
    write_dicom_series(data[:, :, :1], aff, d, series_number=5, description="single", study_uid=study, prefix="s5_")
    write_dicom_series(data, aff, d, series_number=6, description="t2_mpr_cor", study_uid=study, prefix="s6_",
                       image_type=("DERIVED", "SECONDARY", "MPR"))
    mixed, sagittal = generate_uid(), np.array([[0, 0, 1.0, -5], [0.8, 0, 0, -12], [0, 0.8, 0, -8], [0, 0, 0, 1]])
    write_dicom_series(data, aff, d, series_number=7, description="mixed", study_uid=study, series_uid=mixed, prefix="s7a_")
    write_dicom_series(data, sagittal, d, series_number=7, description="mixed", study_uid=study, series_uid=mixed, prefix="s7b_")
    write_dicom_series(data[:, :, : MIN_SLICES - 2], aff, d, series_number=8, description="short", study_uid=study, prefix="s8_")
    series = convert_dicom(d, tmp_path / "converted")
    kept = {s.case_id for s in series if s.skip is None}
    assert kept == {"study_3_t2_space", "study_4_t1_mprage"}
    assert sorted(p.name for p in (tmp_path / "converted").iterdir()) == sorted(f"{c}.{x}" for c in kept for x in ("json", "nii.gz"))
    why = {s.description: s.skip for s in series if s.skip}
    assert "localizer" in why["1 AAHead_Scout"]
    assert "single slice" in why["5 single"]
    assert "derived" in why["6 t2_mpr_cor"] and "MPR" in why["6 t2_mpr_cor"]
    assert f"only {MIN_SLICES - 2} slices" in why["8 short"]
    split = [s for s in series if s.description == "7 mixed"]
    assert len(split) == 2 and all("orientation varies" in s.skip and "could not stack" in s.skip for s in split), split
    assert all("\n" not in s.skip for s in series if s.skip), "one line each"


@pytest.mark.parametrize(("meta", "shape", "expected"), [
    ({"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"], "Modality": "MR"}, (64, 64, 40), None),
    ({"ImageType": ["ORIGINAL", "PRIMARY", "M"]}, (64, 64, 40, 30), "4D (30 volumes"),
    ({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, (64, 64, 40), "localizer"),
    ({"SeriesDescription": "3-plane loc"}, (64, 64, 40), "localizer"),
    ({"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}, (64, 64, 40), "phase"),
    ({"Modality": "CT"}, (64, 64, 40), "modality CT"),
    ({}, (64, 64, 1), "single slice"),
    ({}, (64, 5, 64), "only 5 slices"),
])
def test_skip_reason_rules(meta, shape, expected):
    reason = skip_reason(meta, shape)
    assert reason is None if expected is None else expected in reason


def test_junk_broken_dicom_and_no_converter(tmp_path, monkeypatch):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "IM0001").write_bytes(b"\0" * 300)
    with pytest.raises(InputError, match="no DICOM files found") as e:
        convert_dicom(junk, tmp_path / "converted")
    assert str(junk) in str(e.value) and not (tmp_path / "converted").exists()

    broken = tmp_path / "broken"  # the DICM marker, nothing after it: dcm2niix makes nothing
    broken.mkdir()
    (broken / "IM0001.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    (s,) = convert_dicom(broken, tmp_path / "converted")
    assert s.nifti is None and s.skip.startswith("dcm2niix made no image from this folder")

    write_dicom_series(_volume() + 100, np.eye(4), tmp_path / "ok")
    monkeypatch.setattr(dicom.shutil, "which", lambda name: None)
    import dcm2niix

    monkeypatch.setattr(dcm2niix, "bin", str(tmp_path / "no-such-binary"))
    with pytest.raises(InputError, match=r"dcm2niix \(the converter\) is not installed: pip install 'mednet-pvs\[dicom\]'"):
        convert_dicom(tmp_path / "ok", tmp_path / "converted2")
    assert not (tmp_path / "converted2").exists()
