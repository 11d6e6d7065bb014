"""``mednet-pvs fit-frangi``: fits threshold, scales, normalisation and mask erosion (or the threshold
only), saves a model folder, says when the fit found (almost) nothing, refuses bad options in one line."""
from __future__ import annotations

import json

import pytest

from mednet_pvs.cli.main import main
from mednet_pvs.inference.frangi_model import FrangiModel
from mednet_pvs.synth import PhantomConfig, make_cohort
from mednet_pvs.zoo import load_pretrained


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two small T2w phantoms (bright PVS): manifest path."""
    folder = tmp_path_factory.mktemp("cohort")
    make_cohort(folder, 2, PhantomConfig(anatomy="procedural", shape=(32, 32, 32), contrast="T2w", burden=3), seed=5)
    return folder / "manifest.csv"


def _chosen(text: str) -> dict:
    """The settings and Dice of the first output line."""
    first = text.splitlines()[0]
    return {"scales": tuple(float(s) for s in first.split("scales ")[1].split(" mm")[0].split(",")),
            "normalised": first.split(" mm (")[1].startswith("scale-normalised"),
            "polarity": first.split(" tubes")[0].split()[-1],
            "erosion": float(first.split("mask erosion ")[1].split(" mm")[0]),
            "threshold": float(first.split("threshold ")[1].split(":")[0]),
            "dice": float(first.split("mean training Dice ")[1].split()[0]),
            "combinations": int(first.split("best of ")[1].split()[0])}


def test_fit_frangi_fits_the_grid_it_is_given_and_saves_the_choice(cohort, tmp_path, capsys):
    out = tmp_path / "frangi"
    argv = ["fit-frangi", "-i", str(cohort), "-o", str(out), "--contrast", "auto",
            "--scales", "0.5,1", "--scales", "1,1.5,2", "--erosion", "0,3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    got = _chosen(captured.out)
    assert got["combinations"] == 2 * 2 * 2 * 2  # scale sets x normalisation x polarity x erosion
    model = load_pretrained(out)
    cfg = model.config
    assert isinstance(model, FrangiModel) and model.meta["contrast"] == "auto" and model.meta["fitted"] == "all"
    assert cfg.sigmas_mm == got["scales"] and cfg.sigmas_mm in ((0.5, 1.0), (1.0, 1.5, 2.0))
    assert cfg.scale_normalise == got["normalised"]
    assert cfg.mask_erosion_mm == got["erosion"] == 3.0, "the cortical ribbon answers like tubes: the fit erodes"
    assert cfg.polarity == got["polarity"] == "bright", "T2w phantoms: bright PVS, found by the fit"
    assert abs(cfg.threshold - got["threshold"]) <= 1e-3 * cfg.threshold
    assert got["dice"] == pytest.approx(model.meta["train_dice"], abs=1e-3) and got["dice"] > 0.3
    assert "best combinations (mean training Dice):" in captured.out and not captured.err


def test_fit_frangi_threshold_only_keeps_the_given_settings(cohort, tmp_path, capsys):
    out = tmp_path / "frangi"
    argv = ["fit-frangi", "-i", str(cohort), "-o", str(out), "--contrast", "PD", "--fit", "threshold",
            "--scales", "0.75,1.25", "--erosion", "2"]
    assert main(argv) == 0
    got = _chosen(capsys.readouterr().out)
    cfg = load_pretrained(out).config
    assert got["combinations"] == 1 and cfg.sigmas_mm == (0.75, 1.25) and cfg.mask_erosion_mm == 2.0
    assert cfg.polarity == "bright" and cfg.scale_normalise is False is got["normalised"]  # PD: bright PVS; the default normalisation
    assert load_pretrained(out).meta["fitted"] == "threshold"


def test_fit_frangi_warns_on_a_near_zero_dice(cohort, tmp_path, capsys):
    out = tmp_path / "frangi"
    assert main(["fit-frangi", "-i", str(cohort), "-o", str(out), "--contrast", "T1w", "--fit", "threshold"]) == 0
    captured = capsys.readouterr()
    assert _chosen(captured.out)["dice"] < 0.1, "dark tubes looked for on T2w phantoms: the fit finds little"
    assert "warning: the best Frangi Dice on this cohort is" in captured.err
    assert isinstance(load_pretrained(out), FrangiModel)


def test_a_bundle_saved_before_mask_erosion_existed_loads_as_it_was_fitted(cohort, tmp_path, capsys):
    out = tmp_path / "frangi"
    assert main(["fit-frangi", "-i", str(cohort), "-o", str(out), "--fit", "threshold"]) == 0
    path = out / "config.json"
    raw = json.loads(path.read_text())
    assert raw["frangi"]["mask_erosion_mm"] == 3.0 and raw["frangi"]["scale_normalise"] is False
    del raw["frangi"]["mask_erosion_mm"]
    path.write_text(json.dumps(raw))  # an old bundle: scale_normalise saved, no erosion field
    old = load_pretrained(out).config
    assert old.mask_erosion_mm == 0.0 and old.scale_normalise is False
    del raw["frangi"]["scale_normalise"]
    path.write_text(json.dumps(raw))
    assert load_pretrained(out).config.scale_normalise is True  # the default when it was written


@pytest.mark.parametrize("extra, message", [
    (["--scales", "0.5,x"], "error: --scales takes comma-separated numbers > 0 in mm (e.g. 0.5,1,1.5), not '0.5,x'"),
    (["--scales", "0,1"], "error: --scales takes comma-separated numbers > 0 in mm"),
    (["--erosion", "-1"], "error: --erosion takes comma-separated numbers >= 0 in mm (e.g. 0,2,3), not '-1'"),
    (["--erosion", "nan"], "error: --erosion takes comma-separated numbers >= 0 in mm"),
    (["--erosion", ""], "error: --erosion takes comma-separated numbers >= 0 in mm"),
    (["--fit", "threshold", "--erosion", "1,2"], "error: fitting the threshold only takes one erosion, not 2"),
    (["--fit", "threshold", "--scales", "1", "--scales", "2"], "error: fitting the threshold only takes one scale set, not 2"),
    (["--fit", "some"], "error: Invalid value for '--fit'"),
    (["--contrast", "DWI"], "error: Invalid value for '--contrast'"),
])
def test_bad_options_are_one_line_and_nothing_is_written(cohort, tmp_path, capsys, extra, message):
    out = tmp_path / "frangi"
    assert main(["fit-frangi", "-i", str(cohort), "-o", str(out), *extra]) != 0
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
