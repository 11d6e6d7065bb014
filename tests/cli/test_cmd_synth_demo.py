"""``mednet-pvs synth`` and ``mednet-pvs demo`` end to end through the CLI entry point."""
from __future__ import annotations

import csv
import json
import re

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.cli.main import main


def test_synth_writes_a_cohort(tmp_path, capsys):
    out = tmp_path / "cohort"
    rc = main(["synth", str(out), "--n", "2", "--anatomy", "procedural", "--shape", "48", "--seed", "3",
               "--contrast", "t1w", "--burden", "1", "--sites", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "sub-001" in text and "sub-002" in text and "PVS" in text and "manifest.csv" in text
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [r["site"] for r in rows] == ["site1", "site2"]
    assert all((out / r["image"]).is_file() and r["image"].endswith("_T1w.nii.gz") for r in rows)
    meta = json.loads((out / "sub-001" / "sub-001.json").read_text())
    assert meta["config"]["shape"] == [48, 48, 48] and meta["config"]["burden"] == 1


@pytest.mark.parametrize("args, code, message", [
    (["--contrast", "DWI"], 2, "contrast"),  # a value outside --contrast's choices: a usage error, as --burden 5
    (["--shape", "big"], 1, "shape"),
    (["--spacing", "0"], 1, "spacing"),
    (["--burden", "5"], 2, ""),
    (["--n", "0"], 2, ""),
])
def test_synth_bad_options(tmp_path, capsys, args, code, message):
    assert main(["synth", str(tmp_path), "--anatomy", "procedural", "--n", "1", *args]) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "manifest.csv").exists()


def test_demo_procedural(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--anatomy", "procedural", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "PVS:" in text and "mm^3" in text and "overview.png" in text
    assert "segmented with mednet-pvs-synth-t2w" in text and re.search(r"Dice \d\.\d{3}", text)
    for name in ("phantom_T2w.nii.gz", "phantom_pvs.nii.gz", "phantom_brainmask.nii.gz", "phantom_regions.nii.gz",
                 "phantom.json", "overview.png", "phantom_mask.nii.gz", "phantom_stats.json", "phantom_clusters.csv",
                 "prediction.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "phantom.json").read_text())["pvs_count"] > 0
    mask, image = nib.load(out / "phantom_mask.nii.gz"), nib.load(out / "phantom_T2w.nii.gz")
    assert mask.shape == image.shape and np.allclose(mask.affine, image.affine) and mask.get_data_dtype() == np.uint8
    stats = json.loads((out / "phantom_stats.json").read_text())
    assert stats["count"] == int(re.search(r"segmented with \S+: (\d+) PVS", text).group(1))


def test_demo_without_model_and_with_unknown_model(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "a"), "--anatomy", "procedural", "--model", "none"]) == 0
    assert not (tmp_path / "a" / "phantom_mask.nii.gz").exists() and "segmented" not in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path / "b"), "--anatomy", "procedural", "--model", "no-such-model"]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("contrast, target", [("T2w", 0.8), ("T1w", 0.7)])
def test_demo_default_segments_the_mni_phantom(tmp_path, capsys, monkeypatch, figures, contrast, target):
    """The README's first command: a 1 mm MNI phantom segmented by the bundled model, Dice printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["demo", "--contrast", contrast]) == 0
    text = capsys.readouterr().out
    figures(text)
    assert "mni152" in text
    meta = json.loads((tmp_path / "demo_out" / "phantom.json").read_text())
    assert meta["config"]["anatomy"] == "mni" and meta["config"]["burden"] == 2 and meta["spacing_mm"] == [1.0] * 3
    assert (tmp_path / "demo_out" / "overview.png").is_file() and (tmp_path / "demo_out" / "prediction.png").is_file()
    assert float(re.search(r"truth: Dice (\d\.\d{3})", text).group(1)) >= target


def test_demo_shows_tile_progress_unless_quiet(tmp_path, capsys, monkeypatch):
    from mednet_pvs.inference import PVSModel

    real = PVSModel.predict

    def predict(self, image, *, progress=None, **kw):  # the procedural phantom is one tile: report 8
        for k in range(1, 9):
            if progress is not None:
                progress(k, 8)
        return real(self, image, **kw)

    monkeypatch.setattr(PVSModel, "predict", predict)
    assert main(["demo", "--out", str(tmp_path / "a"), "--anatomy", "procedural"]) == 0
    err = capsys.readouterr().err
    assert "phantom: 2/8 tiles" in err and "s left" in err
    assert main(["demo", "--out", str(tmp_path / "b"), "--anatomy", "procedural", "-q"]) == 0
    assert " tiles, " not in capsys.readouterr().err


def test_demo_whole_head_flair_goes_to_the_any_contrast_model_without_a_brain_mask(tmp_path, capsys, monkeypatch):
    """``--contrast FLAIR --head``: a whole-head domain phantom, segmented by mednet-pvs-synth-any
    from the image alone (the model finds the brain; its brain-mask Dice is printed)."""
    from mednet_pvs.inference import PVSModel

    given = []
    real = PVSModel.predict

    def predict(self, image, *, brainmask=None, **kw):
        given.append(brainmask)
        return real(self, image, brainmask=brainmask, **kw)

    monkeypatch.setattr(PVSModel, "predict", predict)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--anatomy", "procedural", "--contrast", "flair", "--head", "-q"]) == 0
    text = capsys.readouterr().out
    assert "whole head" in text and "segmented with mednet-pvs-synth-any" in text and given == [None]
    brain = float(re.search(r"brain mask found by the model: Dice (\d\.\d{3})", text).group(1))
    assert brain >= 0.8  # measured 0.9x on this phantom; the target (0.95 on average) is checked elsewhere
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["whole_head"] is True and meta["contrast_kind"] == "FLAIR"
    image, mask = nib.load(out / "phantom_FLAIR.nii.gz"), nib.load(out / "phantom_mask.nii.gz")
    assert mask.shape == image.shape and np.allclose(mask.affine, image.affine)
    brainmask = nib.load(out / "phantom_brainmask.nii.gz").get_fdata() > 0
    assert (~brainmask).sum() > brainmask.sum() / 2  # a head: much of the field of view is outside the brain


@pytest.mark.parametrize("contrast, head, model", [("T2w", False, "mednet-pvs-synth-t2w"), ("T1w", True, "mednet-pvs-synth-any"),
                                                   ("PD", False, "mednet-pvs-synth-any"), ("any", False, "mednet-pvs-synth-any")])
def test_demo_model_for_each_contrast_and_head(contrast, head, model):
    from mednet_pvs.demo import demo_model_name

    assert demo_model_name(contrast, head) == model


def test_demo_contrast_outside_the_list_is_a_config_error(tmp_path):
    from mednet_pvs.demo import run_demo
    from mednet_pvs.errors import ConfigError

    with pytest.raises(ConfigError, match="demo contrast must be one of"):
        run_demo(tmp_path / "x", contrast="DWI", model=None)
    assert not (tmp_path / "x").exists()
