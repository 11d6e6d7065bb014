"""validate_cases and `mednet-pvs check-data`: every problem reported at once."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _data_helpers import brain_volume, save, write_cohort

from mednet_pvs.cli.main import main
from mednet_pvs.data.cases import load_cases
from mednet_pvs.data.checks import validate_cases
from mednet_pvs.errors import InputError


def _broken_cohort(root: Path) -> Path:
    """8 cases: sub-00 good, each other one broken in one way."""
    m = write_cohort(root, 8, sites=("A", "B", "C"))
    img, lab, _ = brain_volume(seed=1)
    (root / "labels/sub-01_pvs.nii.gz").unlink()  # missing file
    (root / "images/sub-02_T2w.nii.gz").write_bytes(b"\x1f\x8bnot really gzip at all" * 10)  # unreadable
    save(lab, root / "labels/sub-03_pvs.nii.gz", np.diag([1.0, 1.0, 1.2, 1.0]))  # other spacing
    lab4 = lab.copy()
    lab4[0, 0, 0] = 2
    save(lab4, root / "labels/sub-04_pvs.nii.gz")  # values 0/1/2
    save(np.zeros_like(lab), root / "labels/sub-05_pvs.nii.gz")  # empty
    img6 = img.copy()
    img6[1, 2, 3] = np.nan
    img6[4, 5, 6] = np.nan
    save(img6, root / "images/sub-06_T2w.nii.gz")  # NaN voxels
    shifted = np.eye(4)
    shifted[:3, 3] = [3.0, 4.0, 0.0]
    save(lab, root / "labels/sub-07_pvs.nii.gz", shifted)  # origin shifted 5 mm
    return m


EXPECTED = {
    "sub-01": ("label", "file not found"),
    "sub-02": ("image", "not a readable NIfTI file"),
    "sub-03": ("label", "spacing 1x1x1.2 vs 1x1x1 mm (differs by 0.2 mm)"),
    "sub-04": ("label", "values 0, 1, 2: expected 0 (background) and 1 (PVS) only"),
    "sub-05": ("label", "empty mask: no PVS voxel"),
    "sub-06": ("image", "2 NaN and 0 infinite voxels"),
    "sub-07": ("label", "origin shifted by 5 mm"),
}


def _assert_expected(report) -> None:
    assert [c.key for c in report.good] == ["sub-00"]
    assert report.bad == list(EXPECTED)
    for key, (role, text) in EXPECTED.items():
        probs = report.problems_of(key)
        assert len(probs) == 1, probs
        assert probs[0].role == role and text in probs[0].message, probs[0]
        assert probs[0].path is not None and key in probs[0].path  # names the file


def test_every_problem_reported_at_once(tmp_path):
    cases = load_cases(_broken_cohort(tmp_path / "c"))
    with pytest.raises(InputError) as e:
        validate_cases(cases, workers=1)
    msg = str(e.value)
    assert msg.startswith("7 of 8 case(s) have problems")
    for key, (_, text) in EXPECTED.items():
        assert key in msg and text in msg
    _assert_expected(validate_cases(cases, skip_bad=True, workers=1))


def test_parallel_workers_and_progress_give_the_same_report(tmp_path):
    cases = load_cases(_broken_cohort(tmp_path / "c"))
    seen: list[tuple[int, int]] = []
    report = validate_cases(cases, skip_bad=True, workers=2, progress=lambda d, t: seen.append((d, t)))
    _assert_expected(report)
    assert seen == [(i, 8) for i in range(1, 9)]  # every case has a readable file to check


def test_headers_only_skips_voxel_problems(tmp_path):
    cases = load_cases(_broken_cohort(tmp_path / "c"))
    report = validate_cases(cases, skip_bad=True, voxels=False)
    assert report.bad == ["sub-01", "sub-02", "sub-03", "sub-07"]
    assert report.stats["sub-04"].pvs_volume_mm3 is None and report.stats["sub-04"].shape == (40, 44, 36)


def test_statistics_and_summary(tmp_path):
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    m = write_cohort(tmp_path / "c", 3, sites=("A", "A", "B"), affine=aff, brainmask=True)
    report = validate_cases(load_cases(m), workers=1, allow_empty_label=True)
    assert report.ok
    _, lab, _ = brain_volume(seed=1)
    st = report.stats["sub-01"]
    assert st.pvs_voxels == int(lab.sum()) and st.pvs_volume_mm3 == pytest.approx(lab.sum() * 0.5)
    assert st.spacing == (0.5, 0.5, 2.0) and st.orientation == "RAS" and st.intensity[0] == 0.0
    s = report.summary()
    assert s["cases"] == 3 and s["bad"] == 0 and s["sites"] == {"A": 2, "B": 1}
    assert s["spacings_mm"] == {"0.5x0.5x2": 3} and s["pvs_volume_mm3"]["max"] > 0
    json.dumps(report.to_dict())


def test_brainmask_and_allow_empty(tmp_path):
    m = write_cohort(tmp_path / "c", 2, brainmask=True)
    _, lab, mask = brain_volume()
    save(np.zeros_like(lab), m.parent / "labels/sub-00_pvs.nii.gz")
    save((mask * np.arange(mask.shape[0])[:, None, None] % 3).astype(np.uint8), m.parent / "masks/sub-01_brain.nii.gz")
    report = validate_cases(load_cases(m), skip_bad=True, workers=1, allow_empty_label=True)
    assert report.bad == ["sub-01"]
    assert "3 distinct values" in report.problems_of("sub-01")[0].message
    assert report.stats["sub-00"].pvs_volume_mm3 == 0.0


# ------------------------------------------------------------------------------------------- CLI


def test_check_data_command(tmp_path, capsys):
    good = write_cohort(tmp_path / "good", 2)
    assert main(["check-data", str(good), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "sub-01" in out and "all 2 case(s) ok" in out and "PVS" in out

    bad = _broken_cohort(tmp_path / "bad")
    report_json = tmp_path / "report.json"
    assert main(["check-data", str(bad.parent), "-j", "2", "--json", str(report_json)]) == 1
    captured = capsys.readouterr()
    assert "7 of 8 case(s) have problems" in captured.err
    for key in EXPECTED:
        assert key in captured.out
    data = json.loads(report_json.read_text())
    assert data["summary"]["bad"] == 7 and len(data["problems"]) == 7


def test_check_data_bad_manifest_is_one_line_error(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("subject,img\ns1,a\n")
    assert main(["check-data", str(tmp_path / "m.csv")]) == 1
    err = capsys.readouterr().err
    assert "misses required column(s) image, label" in err and "Traceback" not in err
