"""NIfTI I/O: grids kept voxel for voxel, atomic writes, one clear error per bad input."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import InputError
from mednet_pvs.io import atomic_path, load_image, read_header, save_like, write_json


def _img(shape=(8, 9, 10), affine=None, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=shape).astype(dtype)
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine)


def _oblique_lps_affine():
    """LPS-ish, oblique (rotated 20 degrees about z), anisotropic 0.7 x 0.8 x 1.5 mm."""
    t = np.deg2rad(20)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([-0.7, -0.8, 1.5])
    aff[:3, 3] = [90.0, 120.0, -60.0]
    return aff


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("affine", [np.diag([0.8, 0.8, 0.8, 1.0]), _oblique_lps_affine()], ids=["ras", "oblique_lps"])
def test_roundtrip_keeps_grid(tmp_path, suffix, affine):
    src = tmp_path / f"in{suffix}"
    img = _img(affine=affine)
    img.header.set_slope_inter(2.0, 5.0)  # a scaled input must not scale the output mask
    nib.save(img, src)
    before = src.read_bytes()
    scan = load_image(src)
    assert scan.shape == (8, 9, 10)
    np.testing.assert_allclose(scan.affine, affine, atol=1e-5)
    mask = (scan.data > scan.data.mean()).astype(np.uint8)
    out = save_like(mask, scan, tmp_path / "out" / f"mask{suffix}")
    back = nib.load(out)
    assert back.shape == img.shape
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    assert nib.aff2axcodes(back.affine) == nib.aff2axcodes(img.affine)
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), mask)
    assert src.read_bytes() == before, "input was modified"


def test_4d_singleton_is_squeezed(tmp_path):
    p = tmp_path / "x.nii.gz"
    nib.save(_img(shape=(6, 7, 8, 1)), p)
    scan = load_image(p)
    assert scan.shape == (6, 7, 8)
    out = save_like(np.zeros(scan.shape, np.uint8), scan, tmp_path / "m.nii.gz")
    assert nib.load(out).shape == (6, 7, 8)


def test_in_memory_sources():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    aff = np.diag([1.0, 2.0, 1.5, 1.0])
    for src in [(arr, aff), nib.Nifti1Image(arr, aff)]:
        scan = load_image(src)
        assert scan.spacing == (1.0, 2.0, 1.5)
        assert scan.path is None


def test_read_header_reads_no_voxels(tmp_path):
    p = tmp_path / "x.nii.gz"
    nib.save(_img(affine=_oblique_lps_affine()), p)
    info = read_header(p)
    assert info.shape == (8, 9, 10)
    assert info.orientation == tuple(nib.aff2axcodes(_oblique_lps_affine()))
    np.testing.assert_allclose(info.spacing, (0.7, 0.8, 1.5), atol=1e-5)


def test_label_kind_keeps_integers_and_allows_empty(tmp_path):
    p = tmp_path / "lab.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), p)
    scan = load_image(p, kind="label")
    assert scan.data.dtype == np.uint8
    with pytest.raises(InputError, match="empty"):
        load_image(p)


# ----------------------------------------------------------------------------- bad inputs


def _write(tmp_path: Path, name: str, img) -> Path:
    p = tmp_path / name
    nib.save(img, p)
    return p


def _bad_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}
    p = tmp_path / "notes.nii.gz"
    p.write_text("this is not an image")
    cases["not_nifti"] = (p, "not a readable NIfTI file: not a valid gzip stream")
    p = tmp_path / "garbage.nii"
    p.write_bytes(b"\x00not an image header" * 40)
    cases["garbage_nii"] = (p, "not a readable NIfTI file")
    p = tmp_path / "table.csv"
    p.write_text("a,b\n1,2\n")
    cases["wrong_suffix"] = (p, "not a NIfTI file")
    full = _write(tmp_path, "full.nii.gz", _img(shape=(40, 40, 40)))
    p = tmp_path / "truncated.nii.gz"
    p.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    cases["truncated_gzip"] = (p, "truncated or corrupt")
    p = tmp_path / "zero.nii.gz"
    p.write_bytes(b"")
    cases["zero_bytes"] = (p, r"empty \(0 bytes\)")
    cases["missing"] = (tmp_path / "nope.nii.gz", "file not found")
    cases["4d"] = (_write(tmp_path, "bold.nii.gz", _img(shape=(5, 5, 5, 3))), "4D image with 3 volumes")
    cases["2d"] = (_write(tmp_path, "slice.nii.gz", _img(shape=(5, 5))), "2D")
    cases["no_voxels"] = (_write(tmp_path, "novox.nii", _img(shape=(5, 0, 5))), "no voxels")
    cases["constant"] = (_write(tmp_path, "const.nii.gz", nib.Nifti1Image(np.zeros((5, 5, 5), np.float32), np.eye(4))), "every voxel equals 0")
    d = np.ones((5, 5, 5), np.float32)
    d[0, 0, :3] = np.nan
    d[1, 1, 1] = np.inf
    cases["nan_inf"] = (_write(tmp_path, "nan.nii.gz", nib.Nifti1Image(d, np.eye(4))), "3 NaN and 1 infinite voxels")
    sing = np.eye(4)
    sing[2, 2] = 0.0
    img = _img()
    img.set_sform(sing, code=1)
    img.set_qform(None, code=0)
    cases["singular_affine"] = (_write(tmp_path, "sing.nii.gz", img), "singular affine")
    cases["anisotropy"] = (_write(tmp_path, "thick.nii.gz", _img(affine=np.diag([0.4, 0.4, 6.0, 1.0]))), r"extreme anisotropy: spacing 0\.4 x 0\.4 x 6 mm")
    return cases


CASES = ["not_nifti", "garbage_nii", "wrong_suffix", "truncated_gzip", "zero_bytes", "missing", "4d", "2d", "no_voxels", "constant", "nan_inf", "singular_affine", "anisotropy"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_names_file_and_problem(tmp_path, case):
    path, pattern = _bad_cases(tmp_path)[case]
    with pytest.raises(InputError, match=pattern) as ei:
        load_image(path)
    assert str(path) in str(ei.value)
    assert ei.value.path == str(path)


@pytest.mark.parametrize("case", ["truncated_gzip", "4d", "nan_inf", "anisotropy", "not_nifti"])
def test_cli_bad_input_one_line_no_traceback(tmp_path, case, capsys):
    from mednet_pvs.cli.main import main

    path, pattern = _bad_cases(tmp_path)[case]
    code = main(["info", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]


def test_anisotropy_override(tmp_path):
    p = _write(tmp_path, "thick.nii.gz", _img(affine=np.diag([0.4, 0.4, 6.0, 1.0])))
    assert load_image(p, max_anisotropy=None).spacing == pytest.approx((0.4, 0.4, 6.0))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "stats.json"
    write_json({"a": 1}, dest)
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert dest.read_text().strip().startswith("{")
    assert [f.name for f in tmp_path.iterdir()] == ["stats.json"]


def test_save_like_rejects_wrong_shape(tmp_path):
    scan = load_image(_img())
    with pytest.raises(ValueError, match="does not match the reference grid"):
        save_like(np.zeros((3, 3, 3)), scan, tmp_path / "x.nii.gz")
    assert not any(tmp_path.iterdir())


def test_atomic_write_uses_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_safe_case_id_joins_nested_ids_and_refuses_escapes():
    from mednet_pvs.errors import InputError
    from mednet_pvs.io import safe_case_id

    assert safe_case_id("site1/sub-01") == "site1_sub-01"
    assert safe_case_id("sub 01:ses 2") == "sub_01_ses_2"
    assert safe_case_id("A:001") == "A_001", "a colon is not a drive letter unless a separator follows"
    for bad in ("../x", "/tmp/x", "C:\\x", "D:/x", ".hidden", "a/./b", "", "x" * 201):
        with pytest.raises(InputError):
            safe_case_id(bad)
