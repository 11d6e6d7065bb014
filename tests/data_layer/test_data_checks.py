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


# ---------------------------------------------------------- issue 18: the shared label rule


RULE = "expected 0 (background) and 1 (PVS) only"


@pytest.mark.parametrize(
    "data, problem",
    [
        (np.array([0, 1, 1], np.uint8), None),
        (np.array([0, 1], np.int16), None),
        (np.array([False, True]), None),
        (np.array([0.0, 1.0], np.float32), None),
        (np.zeros(4, np.uint8), None),  # empty is allowed unless asked otherwise
        (np.array([0, 1, 2], np.uint8), f"values 0, 1, 2: {RULE}"),
        (np.array([-1, 0, 1], np.int16), f"values -1, 0, 1: {RULE}"),
        (np.array([0, 255], np.uint8), f"values 0, 255: {RULE}"),
        (np.array([0.0, 1.0, 2.0]), f"values 0, 1, 2: {RULE}"),
        (np.array([0.0, 0.25, 1.0]), "non-integer values (e.g. 0.25): expected a binary 0/1 mask"),
        (np.array([0.0, np.nan]), "non-integer values (e.g. nan)"),
        (np.zeros(3, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]), "is not a number"),
        (np.zeros(3, np.complex64), "complex voxel type"),
    ],
)
def test_label_value_problem(data, problem):
    from mednet_pvs.data.checks import label_value_problem

    got = label_value_problem(data)
    assert got == problem if problem is None else problem in got


def test_label_value_problem_empty():
    from mednet_pvs.data.checks import label_value_problem

    assert label_value_problem(np.zeros((2, 2), np.uint8), allow_empty=False) == "empty mask: no PVS voxel (all 0)"
    assert label_value_problem(np.zeros((2, 2), np.uint8)) is None


def test_check_data_and_evaluate_share_the_label_rule(tmp_path):
    """check-data's problem for a label is exactly label_value_problem's sentence (0/1/2 and -1)."""
    from mednet_pvs.data.checks import label_value_problem

    m = write_cohort(tmp_path / "c", 3, shape=(16, 16, 16))
    _, lab, _ = brain_volume((16, 16, 16), seed=1)
    three = lab.copy()
    three[0, 0, 0] = 2
    save(three, m.parent / "labels/sub-01_pvs.nii.gz")
    neg = lab.astype(np.int16)
    neg[0, 0, 0] = -1
    save(neg, m.parent / "labels/sub-02_pvs.nii.gz")
    report = validate_cases(load_cases(m), skip_bad=True, workers=1)
    assert report.bad == ["sub-01", "sub-02"]
    assert [p.message for p in report.problems] == [label_value_problem(three), label_value_problem(neg)]
    assert report.problems[1].message == f"values -1, 0, 1: {RULE}"


# ------------------------------------------------- issue 18: one bad file never stops check-data


def _small_cohort(root: Path, n: int = 4) -> Path:
    return write_cohort(root, n, shape=(16, 16, 16))


def _load_image_failing_on(name: str, action):
    from mednet_pvs.data import checks

    real = checks.load_image

    def load_image(path, **kw):
        if name in str(path):
            action()
        return real(path, **kw)

    return load_image


def _raise_type_error():
    raise TypeError("Cannot cast array data\nfrom dtype([('R', 'u1')])")


@pytest.mark.parametrize("workers", [1, 2])
def test_unexpected_error_is_a_problem_of_its_case(tmp_path, monkeypatch, workers):
    from mednet_pvs.data import checks

    m = _small_cohort(tmp_path / "c")
    monkeypatch.setattr(checks, "load_image", _load_image_failing_on("sub-02_T2w", _raise_type_error))
    report = validate_cases(load_cases(m), skip_bad=True, workers=workers)
    assert report.bad == ["sub-02"]
    (p,) = report.problems
    assert p.role == "image" and p.path.endswith("sub-02_T2w.nii.gz")
    assert p.message == "TypeError: Cannot cast array data from dtype([('R', 'u1')])"
    assert report.stats["sub-03"].pvs_voxels > 0  # the cases after it were checked


def test_unexpected_header_error_is_a_problem_of_its_case(tmp_path, monkeypatch):
    from mednet_pvs.data import checks

    m = _small_cohort(tmp_path / "c", 3)
    real = checks.read_header

    def read_header(path, **kw):
        if "sub-01_pvs" in str(path):
            raise RuntimeError("odd header")
        return real(path, **kw)

    monkeypatch.setattr(checks, "read_header", read_header)
    report = validate_cases(load_cases(m), skip_bad=True, workers=1)
    assert report.bad == ["sub-01"] and report.problems[0].message == "RuntimeError: odd header"


@pytest.mark.skipif(
    __import__("multiprocessing").get_start_method(allow_none=False) != "fork",
    reason="the patched reader reaches the workers only when they are forked",
)
def test_a_worker_that_dies_costs_only_its_case(tmp_path, monkeypatch):
    """A file that kills the process checking it (out of memory, a crash in a reader) is reported
    for its case; the cases that shared the broken pool are checked again and come out fine."""
    import os

    from mednet_pvs.data import checks

    m = _small_cohort(tmp_path / "c")
    monkeypatch.setattr(checks, "load_image", _load_image_failing_on("sub-01_T2w", lambda: os._exit(3)))
    report = validate_cases(load_cases(m), skip_bad=True, workers=2)
    assert report.bad == ["sub-01"]
    (p,) = report.problems
    assert p.role == "case" and "voxel checks failed: the process checking it died" in p.message
    assert all(report.stats[k].pvs_voxels for k in ("sub-00", "sub-02", "sub-03"))


@pytest.mark.parametrize("where", ["folder", "unwritable"])
def test_check_data_json_place_checked_before_any_case(tmp_path, capsys, monkeypatch, where):
    from mednet_pvs.data import cases

    m = _small_cohort(tmp_path / "c", 2)
    if where == "folder":
        target, shown, problem = tmp_path, tmp_path, "is a folder"
    else:
        if not Path("/sys").is_dir():
            pytest.skip("needs /sys (Linux)")
        target, shown, problem = Path("/sys/report.json"), "/sys", "output folder is not writable"  # even for root
    read = []
    real = cases.load_cases
    monkeypatch.setattr(cases, "load_cases", lambda *a, **k: read.append(a) or real(*a, **k))
    assert main(["check-data", str(m), "-j", "1", "--json", str(target)]) == 1
    captured = capsys.readouterr()
    assert f"{shown}: {problem}" in captured.err and "Traceback" not in captured.err
    assert read == [] and captured.out == ""  # no case read, no table
    assert not list(tmp_path.rglob("*.json"))
