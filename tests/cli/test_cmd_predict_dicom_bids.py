"""``mednet-pvs predict`` on a DICOM folder and with ``--layout bids``: options parsed, one line per
problem, nothing written on a refused run."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("pydicom")
pytest.importorskip("dcm2niix")

from mednet_pvs.cli.main import main
from mednet_pvs.data.dicom import write_dicom_series
from mednet_pvs.synth import make_phantom


@pytest.fixture(scope="module")
def dicom(tmp_path_factory):
    """A DICOM study folder: a T2 series (one subfolder) and a localizer (another)."""
    root = tmp_path_factory.mktemp("cli_dicom") / "study"
    ph = make_phantom(anatomy="procedural", shape=(32, 32, 32), burden=3, seed=3)
    img = np.round(ph.image * 1000)
    write_dicom_series(img, ph.affine, root / "series3", series_number=3, description="T2 SPACE")
    write_dicom_series(img[:, :, :2], ph.affine, root / "series1", series_number=1, description="localizer")
    return root


def test_predict_dicom_into_bids(tmp_path, dicom, capsys):
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"1 input\(s\) without BIDS entities.*study_series3_3_T2_SPACE -> sub-studyseries33T2SPACE"):
        code = main(["predict", "-i", str(dicom), "-o", str(out), "-m", "frangi-t2w", "--layout", "bids", "--save-probs"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "study_series1_1_localizer: not segmented: a localizer/scout" in err
    assert "1 done, 0 skipped (already done), 0 failed, 1 not segmented (not 3D anatomical scans)" in err
    assert "Traceback" not in err
    converted = out / "converted" / "study_series3_3_T2_SPACE"
    assert converted.with_suffix(".nii.gz").is_file() and json.loads(converted.with_suffix(".json").read_text())["SeriesNumber"] == 3
    anat = out / "sub-studyseries33T2SPACE" / "anat"
    assert (anat / "sub-studyseries33T2SPACE_desc-pvs_mask.nii.gz").is_file()
    assert (anat / "sub-studyseries33T2SPACE_desc-pvs_probseg.nii.gz").is_file()
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    assert "converted" in (out / ".bidsignore").read_text().split()
    rows = {r["case_id"]: r for r in csv.DictReader((out / "summary.csv").read_text().splitlines())}
    assert rows["study_series1_1_localizer"]["status"] == "skipped" and "localizer" in rows["study_series1_1_localizer"]["reason"]
    run = json.loads((out / "run.json").read_text())
    assert run["outputs"]["layout"] == "bids" and "study_series1_1_localizer" in run["excluded"]


def test_predict_refuses_bad_layout_and_junk_in_one_line(tmp_path, dicom, capsys):
    out = tmp_path / "out"
    assert main(["predict", "-i", str(dicom), "-o", str(out), "-m", "frangi-t2w", "--layout", "nested"]) != 0
    err = capsys.readouterr().err
    assert "--layout must be one of flat, bids, not 'nested'" in err and "Traceback" not in err
    assert not out.exists(), "nothing written (not even the conversion)"
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("x")
    assert main(["predict", "-i", str(junk), "-o", str(out), "-m", "frangi-t2w"]) != 0
    err = capsys.readouterr().err
    assert f"{junk}: folder holds no .nii/.nii.gz files and no DICOM files" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
