"""evaluate(): pairing by file name, failures reported not raised, outputs, and the CLI command."""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mednet_pvs.analysis.evaluate import case_id, evaluate, evaluate_case, write_evaluation
from mednet_pvs.cli.main import main
from mednet_pvs.errors import InputError

AFF = np.diag([0.8, 0.8, 0.8, 1.0])


def _save(path, data, affine=AFF):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.uint8), affine), path)
    return path


def _masks(seed, shape=(20, 20, 20)):
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.uint8)
    for _ in range(6):
        i, j, k = rng.integers(2, 17, 3)
        ref[i : i + 3, j, k] = 1
    pred = ref.copy()
    pred[rng.integers(0, 20), rng.integers(0, 20), rng.integers(0, 20)] = 1
    return pred, ref


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sub-01_ses-1_desc-pvs_mask.nii.gz", "sub-01_ses-1"),
        ("sub-01_ses-1_pvs.nii.gz", "sub-01_ses-1"),
        ("case_007.nii", "case_007"),
        ("case_007_seg.nii.gz", "case_007"),
        ("HCA001_aseg.mgz", "HCA001"),
        ("pvs.nii.gz", "pvs"),
    ],
)
def test_case_id_strips_extensions_and_mask_suffixes(name, expected):
    assert case_id(name) == expected


@pytest.fixture()
def cohort(tmp_path):
    """3 references; predictions for 2 of them plus one without reference; region maps."""
    for i, cid in enumerate(["sub-01", "sub-02", "sub-03"]):
        pred, ref = _masks(i)
        _save(tmp_path / "ref" / f"{cid}_desc-pvs_mask.nii.gz", ref)
        if cid != "sub-03":
            _save(tmp_path / "pred" / f"{cid}_pvs.nii.gz", pred)
        reg = np.full(ref.shape, 2, np.int16)
        reg[10:] = 11
        _save(tmp_path / "regions" / f"{cid}_aseg.nii.gz", reg)
    _save(tmp_path / "pred" / "sub-09_pvs.nii.gz", np.zeros((20, 20, 20)))
    return tmp_path


def test_evaluate_folders_reports_missing_pairs(cohort):
    per_case, summary = evaluate(cohort / "pred", cohort / "ref", regions=cohort / "regions")
    assert list(per_case.case_id) == ["sub-01", "sub-02", "sub-03", "sub-09"]
    assert list(per_case.status) == ["ok", "ok", "missing_pred", "missing_ref"]
    ok = per_case[per_case.status == "ok"]
    assert (ok.recall == 1.0).all() and (ok.dice < 1).all()
    assert math.isnan(per_case.dice[2])
    assert {"wm_dice", "bg_cluster_dice", "hd95_mm", "surface_dice"} <= set(per_case.columns)
    assert summary["n_cases"] == 4 and summary["n_ok"] == 2 and summary["n_failed"] == 2
    assert summary["metrics"]["dice"]["n"] == 2
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(ok.dice.mean())
    assert set(summary["agreement"]) == {"count", "volume_mm3", "wm_count", "wm_volume_mm3", "bg_count", "bg_volume_mm3"}
    assert summary["agreement"]["count"]["n"] == 2
    assert summary["parameters"]["groups"] == ["wm", "bg"]


def test_evaluate_matches_case_metrics(cohort):
    per_case, _ = evaluate(cohort / "pred", cohort / "ref")
    single = evaluate_case(cohort / "pred" / "sub-01_pvs.nii.gz", cohort / "ref" / "sub-01_desc-pvs_mask.nii.gz")
    row = per_case.set_index("case_id").loc["sub-01"]
    for k, v in single.items():
        assert (math.isnan(v) and math.isnan(row[k])) or row[k] == pytest.approx(v), k


def test_grid_mismatch_names_both_files(tmp_path):
    p = _save(tmp_path / "pred" / "a.nii.gz", np.zeros((20, 20, 20)), np.diag([1.0, 1.0, 1.0, 1.0]))
    r = _save(tmp_path / "ref" / "a.nii.gz", np.zeros((20, 20, 20)))
    with pytest.raises(InputError) as e:
        evaluate_case(p, r)
    msg = str(e.value)
    assert str(p) in msg and str(r) in msg and "0.8 x 0.8 x 0.8" in msg and "1 x 1 x 1" in msg
    per_case, summary = evaluate(tmp_path / "pred", tmp_path / "ref")
    assert per_case.status[0] == "error" and "spacing" in per_case.error[0]
    with pytest.raises(InputError):
        evaluate(tmp_path / "pred", tmp_path / "ref", strict=True)
    _save(tmp_path / "pred2" / "a.nii.gz", np.zeros((21, 20, 20)))
    with pytest.raises(InputError, match=r"shapes differ.*\(21, 20, 20\).*\(20, 20, 20\)"):
        evaluate_case(tmp_path / "pred2" / "a.nii.gz", r)


def test_duplicate_case_ids_are_refused(tmp_path):
    _save(tmp_path / "pred" / "a_pvs.nii.gz", np.zeros((4, 4, 4)))
    _save(tmp_path / "pred" / "a_mask.nii.gz", np.zeros((4, 4, 4)))
    with pytest.raises(InputError, match="two files for case 'a'"):
        evaluate(tmp_path / "pred", tmp_path / "pred")


def test_reference_from_a_manifest_with_regions(cohort):
    lines = ["subject,image,label,regions"]
    for cid in ("sub-01", "sub-02"):
        lines.append(f"{cid},img/{cid}_T2w.nii.gz,ref/{cid}_desc-pvs_mask.nii.gz,regions/{cid}_aseg.nii.gz")
    (cohort / "manifest.csv").write_text("\n".join(lines) + "\n")
    per_case, summary = evaluate(cohort / "pred", cohort / "manifest.csv")
    assert list(per_case.status) == ["ok", "ok", "missing_ref"]  # sub-09 has no reference
    assert "bg_dice" in per_case.columns
    ref_dir, _ = evaluate(cohort / "pred", cohort / "ref", regions=cohort / "regions")
    pd.testing.assert_series_equal(per_case.dice.iloc[:2], ref_dir.dice.iloc[:2])


def test_outputs_are_strict_json_and_csv(cohort, tmp_path):
    per_case, summary = evaluate(cohort / "pred", cohort / "ref")
    paths = write_evaluation(per_case, summary, tmp_path / "eval")
    s = json.loads(paths["summary_json"].read_text())
    assert s["n_failed"] == 2 and s["metrics"]["dice"]["n"] == 2
    table = pd.read_csv(paths["summary_csv"])
    assert {"dice", "count_icc31", "volume_mm3_pearson_r"} <= set(table.metric)
    assert len(pd.read_csv(paths["per_case"])) == 4


def test_cli_evaluate(cohort, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--pred", str(cohort / "pred"), "--ref", str(cohort / "ref"), "--regions", str(cohort / "regions"), "-o", str(out)])
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 1  # two cases could not be evaluated
    assert "warning: burden agreement over 2 case(s)" in captured.err, "r and ICC over 2 cases are not printed bare"
    assert {p.name for p in out.iterdir()} == {"per_case.csv", "summary.csv", "summary.json"}
    assert "cluster_dice" in text and "bg_dice" in text and "missing_pred" in text and "ICC" in text
    # All pairs present: exit 0.
    (cohort / "pred" / "sub-09_pvs.nii.gz").unlink()
    _save(cohort / "pred" / "sub-03_pvs.nii.gz", _masks(2)[0])
    assert main(["evaluate", "--pred", str(cohort / "pred"), "--ref", str(cohort / "ref"), "-o", str(out)]) == 0


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    rc = main(["evaluate", "--pred", str(tmp_path / "nope"), "--ref", str(tmp_path), "-o", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "nope" in err and "not found" in err and "Traceback" not in err


# ------------------------------------------------ issue 18: one bad file never costs the others

SMALL = (16, 16, 16)


def _save_as(path, data, dtype):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), AFF), path)
    return path


def _masks_small(seed):
    """(pred, ref) 0/1 on 16^3: short PVS, the prediction with one extra voxel."""
    rng = np.random.default_rng(seed)
    ref = np.zeros(SMALL, np.uint8)
    for _ in range(4):
        x, y, z = rng.integers(2, 13, 3)
        ref[x : x + 3, y, z] = 1
    pred = ref.copy()
    pred[tuple(rng.integers(0, 16, 3))] = 1
    return pred, ref


@pytest.fixture()
def small(tmp_path):
    """Cases a..d, 16^3, every prediction and reference good (0/1)."""
    for i, cid in enumerate("abcd"):
        pred, ref = _masks_small(i)
        _save(tmp_path / "pred" / f"{cid}.nii.gz", pred)
        _save(tmp_path / "ref" / f"{cid}.nii.gz", ref)
    return tmp_path


def test_reference_labels_follow_the_check_data_rule(small, tmp_path, capsys):
    """Labels 0/1/2 and labels holding -1 fail with check-data's reason; the other cases are scored."""
    from mednet_pvs.data.checks import label_value_problem

    ref = _masks_small(1)[1]
    three = ref.copy()
    three[0, 0, 0] = 2
    _save_as(small / "ref" / "b.nii.gz", three, np.uint8)
    neg = ref.astype(np.int16)
    neg[0, 0, 0] = -1
    _save_as(small / "ref" / "c.nii.gz", neg, np.int16)
    per_case, summary = evaluate(small / "pred", small / "ref")
    rows = per_case.set_index("case_id")
    assert list(rows.status) == ["ok", "error", "error", "ok"]
    reason_b = label_value_problem(three)
    reason_c = label_value_problem(neg)
    assert reason_b == "values 0, 1, 2: expected 0 (background) and 1 (PVS) only"
    assert reason_c == "values -1, 0, 1: expected 0 (background) and 1 (PVS) only"
    assert rows.error["b"] == f"{small / 'ref' / 'b.nii.gz'}: reference is not a binary mask: {reason_b}"
    assert rows.error["c"] == f"{small / 'ref' / 'c.nii.gz'}: reference is not a binary mask: {reason_c}"
    assert np.isfinite(rows.dice[["a", "d"]]).all() and summary["metrics"]["dice"]["n"] == 2
    assert [(f["case_id"], f["error"]) for f in summary["failed"]] == [("b", rows.error["b"]), ("c", rows.error["c"])]

    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(small / "pred"), "--ref", str(small / "ref"), "-o", str(out)]) == 1
    text = capsys.readouterr().out
    assert reason_b in text and reason_c in text
    written = pd.read_csv(out / "per_case.csv").set_index("case_id")
    assert list(written.status) == ["ok", "error", "error", "ok"] and written.error["b"] == rows.error["b"]
    s = json.loads((out / "summary.json").read_text())
    assert s["n_ok"] == 2 and {f["case_id"] for f in s["failed"]} == {"b", "c"}


def test_prediction_follows_the_same_rule(small):
    """A prediction of 0/255 or a probability map is refused for its case, not silently binarised."""
    pred, _ = _masks_small(1)
    _save_as(small / "pred" / "b.nii.gz", pred * 255, np.uint8)
    _save_as(small / "pred" / "c.nii.gz", pred * 0.7, np.float32)
    rows = evaluate(small / "pred", small / "ref")[0].set_index("case_id")
    assert list(rows.status) == ["ok", "error", "error", "ok"]
    assert "prediction is not a binary mask: values 0, 255: expected 0 (background) and 1 (PVS) only" in rows.error["b"]
    assert "prediction is not a binary mask: non-integer values (e.g. 0.7" in rows.error["c"]


def test_rgb_file_among_good_cases(small, tmp_path, capsys):
    """An RGB NIfTI (structured R, G, B dtype) costs only its own case; the others are written."""
    rgb = small / "ref" / "b.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SMALL, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]), AFF), rgb)
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(small / "pred"), "--ref", str(small / "ref"), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    written = pd.read_csv(out / "per_case.csv").set_index("case_id")
    assert list(written.status) == ["ok", "error", "ok", "ok"]
    assert written.error["b"].startswith(f"{rgb}: ") and np.isfinite(written.dice[["a", "c", "d"]]).all()
    assert json.loads((out / "summary.json").read_text())["n_ok"] == 3


def test_any_exception_is_recorded_for_its_case(small, monkeypatch):
    """Whatever a reader or a metric raises (TypeError, RuntimeError...) fails that case only,
    recorded as '<file>: <type>: <message>' on one line; strict=True still raises it."""
    ev = importlib.import_module("mednet_pvs.analysis.evaluate")  # the package exports a function of that name

    real_load, real_metrics = ev.load_image, ev.case_metrics
    bad_ref = small / "ref" / "b.nii.gz"

    def load_image(src, **kw):
        if str(src) == str(bad_ref):
            raise TypeError("data type not understood\n(structured)")
        return real_load(src, **kw)

    calls = []

    def case_metrics(*args, **kw):
        calls.append(1)
        if len(calls) == 2:  # the third case (b fails before its metrics)
            raise RuntimeError("boom")
        return real_metrics(*args, **kw)

    monkeypatch.setattr(ev, "load_image", load_image)
    monkeypatch.setattr(ev, "case_metrics", case_metrics)
    rows = evaluate(small / "pred", small / "ref")[0].set_index("case_id")
    assert list(rows.status) == ["ok", "error", "error", "ok"]
    assert rows.error["b"] == f"{bad_ref}: TypeError: data type not understood (structured)"
    assert rows.error["c"] == f"{small / 'pred' / 'c.nii.gz'}: RuntimeError: boom"
    calls.clear()
    with pytest.raises(InputError, match="TypeError"):
        evaluate(small / "pred", small / "ref", strict=True)


@pytest.mark.parametrize("where", ["existing_file", "unwritable"])
def test_cli_output_folder_checked_before_any_case(small, tmp_path, capsys, monkeypatch, where):
    ev = importlib.import_module("mednet_pvs.analysis.evaluate")  # the package exports a function of that name

    if where == "existing_file":
        out = tmp_path / "results"
        out.write_text("keep me")
        problem = "output folder is an existing file"
    else:
        if not Path("/sys").is_dir():
            pytest.skip("needs /sys (Linux)")
        out, problem = "/sys", "output folder is not writable"  # even for root, whom chmod does not stop
    read = []
    real = ev.load_image
    monkeypatch.setattr(ev, "load_image", lambda *a, **k: read.append(a) or real(*a, **k))
    rc = main(["evaluate", "--pred", str(small / "pred"), "--ref", str(small / "ref"), "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    assert f"{out}: {problem}" in captured.err and "Traceback" not in captured.err
    assert read == [] and captured.out == ""  # no case was read, nothing printed
    if where == "existing_file":
        assert out.read_text() == "keep me"
    assert not list(tmp_path.rglob("per_case.csv")) and not list(tmp_path.rglob("summary.json"))
