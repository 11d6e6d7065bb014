"""``mednet-pvs fit-frangi``: fits, saves a model folder, and says when the fit found (almost) nothing."""
from __future__ import annotations

from mednet_pvs.cli.main import main
from mednet_pvs.inference.frangi_model import FrangiModel
from mednet_pvs.synth import PhantomConfig, make_cohort
from mednet_pvs.zoo import load_pretrained


def test_fit_frangi_saves_a_model_and_warns_on_a_near_zero_dice(tmp_path, capsys):
    make_cohort(tmp_path / "c", 2, PhantomConfig(anatomy="procedural", shape=(32, 32, 32), contrast="T2w", burden=3), seed=5)
    out = tmp_path / "frangi"
    assert main(["fit-frangi", "--data", str(tmp_path / "c" / "manifest.csv"), "-o", str(out), "--contrast", "T2w"]) == 0
    captured = capsys.readouterr()
    threshold = float(captured.out.split("threshold ")[1].split(":")[0])
    dice = float(captured.out.split("mean training Dice ")[1].split()[0])
    model = load_pretrained(out)
    assert isinstance(model, FrangiModel) and abs(model.config.threshold - threshold) <= 1e-3 * threshold
    assert dice < 0.1, "T2w phantoms: bright CSF answers like tubes, the fit finds little (the warning's case)"
    assert "warning: the best Frangi Dice on this cohort is" in captured.err
