"""evaluate(): pairing by file name, failures reported not raised, outputs, and the CLI command."""
from __future__ import annotations

import json
import math

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
    text = capsys.readouterr().out
    assert rc == 1  # two cases could not be evaluated
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
