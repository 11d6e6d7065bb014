"""``PVSModel.compile()`` / ``predict --compile``: compiled members run, eager ones are saved."""
from __future__ import annotations

import numpy as np
import pytest

from mednet_pvs.cli.main import main
from mednet_pvs.inference import PVSModel
from mednet_pvs.synth import PhantomConfig, make_phantom
from mednet_pvs.zoo import load_pretrained


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PhantomConfig(anatomy="procedural", shape=(32, 32, 32), contrast="T2w", burden=3), seed=4)


@pytest.mark.slow
def test_compiled_members_predict_and_the_eager_ones_are_saved(tmp_path, phantom):
    model = load_pretrained("mednet-pvs-synth-t2w", device="cpu")
    scan = (phantom.image, phantom.affine)
    eager = model.predict(scan, tta=False)
    digest = model.weights_sha256()
    model.compile(backend="eager")  # dynamo traces the networks; no C++ compiler needed here
    first = model.predict(scan, tta=False)
    second = model.predict(scan, tta=False)
    assert first.info["compiled"] and "compile_warmup" in first.info["seconds"]
    assert "compile_warmup" not in second.info["seconds"]
    np.testing.assert_allclose(first.probabilities, eager.probabilities, atol=1e-5)
    assert model.weights_sha256() == digest
    again = PVSModel.from_pretrained(model.save_pretrained(tmp_path / "m"), device="cpu")
    assert again.weights_sha256() == digest, "a compiled model saves its eager weights (no _orig_mod. keys)"


def test_predict_compile_flag(tmp_path, phantom, capsys, monkeypatch):
    import nibabel as nib

    f = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image, phantom.affine), f)
    calls = []
    real = PVSModel.compile

    def compile_eager(self, **options):
        calls.append(options)
        return real(self, backend="eager")

    monkeypatch.setattr(PVSModel, "compile", compile_eager)
    code = main(["predict", "-i", str(f), "-o", str(tmp_path / "out"), "-m", "mednet-pvs-synth-t2w", "--device", "cpu", "--compile", "--no-tta"])
    assert code == 0, capsys.readouterr().err
    assert calls == [{}], "--compile compiles the model"
    code = main(["predict", "-i", str(f), "-o", str(tmp_path / "out2"), "-m", "frangi-t2w", "--compile"])
    err = capsys.readouterr().err
    assert code == 1 and "no networks to compile" in err and "Traceback" not in err
