"""``mednet-pvs models`` and ``mednet-pvs import-nnunet-v1``: thin commands, one-line errors."""
from __future__ import annotations

import os
import pickle

import torch

from _zoo_helpers import PKL, copy_trainer
from mednet_pvs.cli.main import main
from mednet_pvs.zoo import load_pretrained


def test_models_lists_the_registry(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("mednet-pvs-t2w", "nnunet-pvs-t2w", "mednet-pvs-t1w", "frangi-t2w"):
        assert name in out
    assert "voxel Dice WM 0.88" in out and "not public (import the authors' files)" in out
    assert main(["models", "mednet-*"]) == 0
    out = capsys.readouterr().out
    assert "mednet-pvs-t1w" in out and "frangi" not in out


def test_models_at_80_columns_and_as_json_or_csv(capsys, monkeypatch):
    import csv
    import io
    import json

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "┃" not in out and "│" not in out, "no table squeezed into 80 columns"
    assert "mednet-pvs-t2w  T2w" in out and "    validation: voxel Dice WM 0.88" in out, "one block per model, not a squeezed table"
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"mednet-pvs-t2w", "frangi-t2w"} and all("weights" in r for r in rows)
    assert main(["models", "mednet-*", "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert table and all(r["name"].startswith("mednet-") for r in table) and "contrast" in table[0]
    assert main(["models", "frangi-t2w", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["frangi-t2w"]
    assert main(["models", "--json", "--csv"]) == 1 and "not both" in capsys.readouterr().err


def test_models_name_shows_how_to_get_the_weights(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["models", "mednet-pvs-t2w"]) == 0
    out = capsys.readouterr().out
    assert "voxel Dice white matter: 0.88 (5-fold cross-validation; HCP-Aging T2w)" in out
    assert "data/code availability statement" in out
    command = "mednet-pvs import-nnunet-v1 -i <download>/nnUNet/3d_fullres/<Task>/<Trainer>__<Plans> -o mednet-pvs-t2w --name mednet-pvs-t2w"
    assert f"import: {command}" in out
    assert main(["models", "mednet-pvs-t3w"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'mednet-pvs-t3w'. Did you mean mednet-pvs-t2w" in err


def test_import_writes_a_bundle_that_reproduces_the_reference(tmp_path, capsys, mednext_release, mednext_reference):
    _, x, outputs = mednext_reference
    out = tmp_path / "mednet-pvs-t2w"
    assert main(["import-nnunet-v1", str(mednext_release), "-o", str(out), "--name", "mednet-pvs-t2w", "--folds", "0,1"]) == 0
    err = capsys.readouterr().err
    assert "folds fold_0, fold_1: mednext, 2 member(s)" in err and "warning: the trainer" in err
    assert "exact mode (nnU-Net v1): spacing [0.8, 0.8, 0.8] mm (network axes), transpose [0, 1, 2], nonCT" in err
    assert f"load_pretrained('{out}')" in err
    model = load_pretrained(out, device="cpu")
    assert len(model.networks) == 2 and model.meta["zoo_entry"] == "mednet-pvs-t2w" and model.pipeline.version == 1
    with torch.no_grad():
        assert torch.allclose(model.networks[0](x), outputs[0], atol=1e-5, rtol=0)
    assert main(["import-nnunet-v1", str(mednext_release), "-o", str(out)]) == 1
    assert "already holds a model (config.json); pass --overwrite" in capsys.readouterr().err
    assert main(["import-nnunet-v1", str(mednext_release), "-o", str(out), "--folds", "1", "--overwrite",
                 "--mode", "approximate", "--training-orientation", "LAS"]) == 0
    assert "approximate mode: spacing (0.8, 0.8, 0.8) mm, orientation SAL" in capsys.readouterr().err
    back = load_pretrained(out, device="cpu")
    assert len(back.networks) == 1 and back.preprocessing.orientation == "SAL" and not hasattr(back, "pipeline")
    assert main(["import-nnunet-v1", str(mednext_release), "-o", str(tmp_path / "x"), "--mode", "fast"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mode must be one of exact, approximate, not 'fast'" in err
    assert not (tmp_path / "x").exists()


def test_import_errors_are_one_line(tmp_path, capsys, mednext_release):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    trainer = copy_trainer(mednext_release, tmp_path / "release", folds=("fold_0",))
    (trainer / "fold_0" / PKL).write_bytes(pickle.dumps(Evil()))
    assert main(["import-nnunet-v1", str(trainer), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"{trainer / 'fold_0' / PKL}: refers to posix.system" in err or "refers to os.system" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
