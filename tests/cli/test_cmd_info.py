"""``mednet-pvs info``: every file is checked; each bad one is one line on stderr, exit 1."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import mednet_pvs.io
from mednet_pvs.cli.main import main


def _save(path, data):
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 0.8, 1.0])), str(path))
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    a = _save(tmp_path / "a.nii.gz", rng.random((16, 16, 16), dtype=np.float32))
    bad = rng.random((16, 16, 16), dtype=np.float32)
    bad[1, 2, 3] = np.nan
    nan = _save(tmp_path / "nan.nii.gz", bad)
    b = _save(tmp_path / "b.nii.gz", rng.random((16, 12, 16), dtype=np.float32))
    return a, nan, tmp_path / "missing.nii.gz", b


def test_every_file_checked_and_each_bad_one_is_one_line(files, capsys):
    a, nan, missing, b = files
    assert main(["info", str(a), str(nan), str(missing), str(b)]) == 1
    out, err = capsys.readouterr()
    assert "16x16x16" in out and "16x12x16" in out  # both good files, including the one after the bad ones
    lines = err.strip().splitlines()
    assert lines == [
        f"error: {nan}: 1 NaN and 0 infinite voxels (of 4096); fix or mask them before use",
        f"error: {missing}: file not found",
    ]
    assert "Traceback" not in err


def test_all_good_exits_0(files, capsys):
    a, _, _, b = files
    assert main(["info", str(a), str(b)]) == 0
    out, err = capsys.readouterr()
    assert "16x16x16" in out and err == ""


def test_unexpected_error_is_one_line_and_the_others_are_checked(files, capsys, monkeypatch):
    """Not only InputError: any exception reading a file is reported for that file and the next
    file is still checked."""
    a, _, _, b = files
    real = mednet_pvs.io.load_image

    def load_image(src, **kw):
        if str(src) == str(a):
            raise TypeError("data type not understood\nsecond line")
        return real(src, **kw)

    monkeypatch.setattr(mednet_pvs.io, "load_image", load_image)
    assert main(["info", str(a), str(b)]) == 1
    out, err = capsys.readouterr()
    assert "16x12x16" in out
    assert err.strip().splitlines() == [f"error: {a}: TypeError: data type not understood second line"]


def test_info_json_and_csv_for_programs(tmp_path, capsys):
    import csv
    import io
    import json

    import nibabel as nib
    import numpy as np

    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(8 * 9 * 10, dtype=np.float32).reshape(8, 9, 10), np.diag([0.5, 1, 2, 1])), good)
    assert main(["info", str(good), "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["shape"] == [8, 9, 10] and rec["spacing_mm"] == [0.5, 1.0, 2.0] and rec["orientation"] == "RAS" and rec["max"] == 719.0
    missing = tmp_path / "missing.nii.gz"
    assert main(["info", str(good), str(missing), "--csv"]) == 1
    out = capsys.readouterr()
    (row,) = list(csv.DictReader(io.StringIO(out.out)))
    assert row["shape"] == "8x9x10" and row["file"] == str(good)
    assert f"error: {missing}" in out.err, "bad files still go to stderr, one line each"
