"""PVSModel: predictions line up with the input grid; bundles round-trip; bad bundles are named."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from mednet_pvs.errors import InputError
from mednet_pvs.inference import InferenceConfig, PVSModel
from mednet_pvs.nets import create_network


class Bright(torch.nn.Module):
    """A 'perfect' PVS detector for a test phantom: logit(PVS) = 4 * (z-scored intensity - 2)."""

    def forward(self, x):
        fg = 4.0 * (x[:, :1] - 2.0)
        return torch.cat([-fg, fg], 1) / 2


def _phantom(affine):
    """A background with bright tubes (the truth) in stored (not reoriented) voxel order."""
    rng = np.random.default_rng(0)
    shape = (40, 36, 30)
    img = rng.normal(100, 5, shape).astype(np.float32)
    truth = np.zeros(shape, bool)
    truth[8:30, 10:12, 10:12] = True
    truth[20:22, 5:30, 20:22] = True
    truth[30:32, 25:27, 3:27] = True
    img[truth] = 250
    return nib.Nifti1Image(img, affine), truth


def _affines():
    ras = np.diag([0.8, 0.8, 0.8, 1.0])
    lps = np.diag([-0.9, -0.9, 1.2, 1.0])
    lps[:3, 3] = [30, 40, -20]
    t = np.deg2rad(25)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    obl = np.eye(4)
    obl[:3, :3] = rot @ np.diag([-1.0, 0.9, 1.1])
    obl[:3, 3] = [10, -5, 3]
    return {"ras": ras, "lps": lps, "oblique": obl}


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("name", ["ras", "lps", "oblique"])
@pytest.mark.parametrize("target", [None, (1.0, 1.0, 1.0)], ids=["native", "resampled"])
def test_prediction_lines_up_with_input(tmp_path, name, target):
    img, truth = _phantom(_affines()[name])
    path = tmp_path / "scan.nii.gz"
    nib.save(img, path)
    model = PVSModel(
        Bright(), None, {"target_spacing": target, "crop_margin_mm": 2.0},
        InferenceConfig.from_dict(dict(patch_size=(32, 32, 32), mirror_axes=(0, 1, 2))), device="cpu",
    )
    pred = model.predict(path)
    assert pred.mask.shape == truth.shape and pred.probabilities.shape == truth.shape
    dice = _dice(pred.mask > 0, truth)
    # Native grid: exact. Resampled to 1 mm and back: the tubes are 2 voxels wide, so edges blur.
    assert dice > (0.99 if target is None else 0.75), dice
    out = pred.save(tmp_path / "out", "scan", probabilities=True)
    back = nib.load(out["mask"])
    assert back.shape == img.shape
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    assert nib.load(out["probabilities"]).get_data_dtype() == np.float32


def test_bundle_roundtrip_ensemble(tmp_path):
    torch.manual_seed(0)
    nets = [create_network("mednext_s_k3", n_channels=4) for _ in range(2)]
    model = PVSModel(nets, {"name": "mednext_s_k3", "kwargs": {"n_channels": 4}}, {"target_spacing": None},
                     InferenceConfig.from_dict(dict(patch_size=(32, 32, 32), mirror_axes=())), name="tiny", meta={"contrast": "T2w"}, device="cpu")
    img, _ = _phantom(np.diag([1.0, 1.0, 1.0, 1.0]))
    a = model.predict(img)
    folder = model.save_pretrained(tmp_path / "bundle")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["members"] == ["member_0", "member_1"] and cfg["meta"]["contrast"] == "T2w"
    again = PVSModel.from_pretrained(folder, device="cpu")
    b = again.predict(img)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert again.inference.window.patch_size == (32, 32, 32) and len(again.networks) == 2


def test_bundle_in_float16_is_half_the_size_and_loads_as_float32(tmp_path):
    from safetensors import safe_open

    torch.manual_seed(0)
    model = PVSModel(create_network("mednext_s_k3", n_channels=4), {"name": "mednext_s_k3", "kwargs": {"n_channels": 4}},
                     {"target_spacing": None}, InferenceConfig.from_dict(dict(patch_size=(32, 32, 32), mirror_axes=())), device="cpu")
    full = model.save_pretrained(tmp_path / "f32") / "model.safetensors"
    half = model.save_pretrained(tmp_path / "f16", dtype=torch.float16) / "model.safetensors"
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    with safe_open(str(half), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    again = PVSModel.from_pretrained(half.parent, device="cpu")
    for (k, a), b in zip(model.networks[0].state_dict().items(), again.networks[0].state_dict().values()):
        assert b.dtype == torch.float32, k
        torch.testing.assert_close(b, a.half().float())  # exactly the float16 rounding of the original
    img, _ = _phantom(np.eye(4))
    p32, p16 = model.predict(img).probabilities, again.predict(img).probabilities
    assert np.abs(p32 - p16).max() < 1e-2


def test_bad_bundles(tmp_path):
    with pytest.raises(InputError, match="model folder not found"):
        PVSModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json: missing"):
        PVSModel.from_pretrained(tmp_path / "empty")
    net = create_network("mednext_s_k3", n_channels=4)
    folder = PVSModel(net, {"name": "mednext_s_k3", "kwargs": {"n_channels": 4}}, None,
                      InferenceConfig.from_dict(dict(patch_size=(32, 32, 32))), device="cpu").save_pretrained(tmp_path / "b")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["network"]["kwargs"]["n_channels"] = 8
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="do not fit the network"):
        PVSModel.from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="model.safetensors: not a readable safetensors"):
        PVSModel.from_pretrained(folder)


def test_brainmask_grid_mismatch_is_named(tmp_path):
    img, _ = _phantom(np.eye(4))
    mpath = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4)), mpath)
    model = PVSModel(Bright(), None, None, InferenceConfig.from_dict(dict(patch_size=(32, 32, 32))), device="cpu")
    with pytest.raises(InputError, match="mask.nii.gz: brain mask grid"):
        model.predict(img, brainmask=mpath)


def test_patch_must_fit_network():
    from mednet_pvs.errors import ConfigError

    with pytest.raises(ConfigError, match=r"multiple of \(16, 16, 16\)"):
        PVSModel(create_network("mednext_s_k3", n_channels=4), None, None, InferenceConfig.from_dict(dict(patch_size=(40, 32, 32))), device="cpu")
