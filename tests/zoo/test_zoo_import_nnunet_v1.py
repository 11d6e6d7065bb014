"""Importing nnU-Net v1 result folders: networks, plans, one ensemble, safe pickles."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch

from _zoo_helpers import PKL, copy_trainer, ds_outputs, edit_pickle, scan
from mednet_pvs.data.preprocessing import IMAGE, build_preprocessing, subject_from_arrays
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference import SlidingWindowConfig, sliding_window_predict
from mednet_pvs.safe_load import read_pickle
from mednet_pvs.zoo.import_nnunet_v1 import ZooImportWarning, import_nnunet_v1, network_orientation


def _import(folder, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZooImportWarning)
        return import_nnunet_v1(folder, device="cpu", **kw)


def test_mednext_folds_become_one_ensemble_with_the_plans_preprocessing(mednext_release):
    with pytest.warns(ZooImportWarning, match=r"names MedNeXt-L .* but the weights have n_channels 4"):
        exact = import_nnunet_v1(mednext_release, device="cpu")
    p = exact.pipeline  # exact mode (the default): nnU-Net v1's own pipeline, read from the plans
    assert (p.version, p.spacing, p.normalization_schemes, p.channel_names) == (1, (0.8, 0.8, 0.8), ("nonCT",), {"0": "T2w"})
    assert exact.inference.window.patch_size == (128, 128, 128) and len(exact.networks) == 2
    with pytest.warns(ZooImportWarning):
        model = import_nnunet_v1(mednext_release, device="cpu", mode="approximate")
    assert len(model.networks) == 2
    assert model.network.name == "mednext"
    kw = model.network.kwargs
    assert (kw["n_channels"], kw["kernel_size"], kw["block_counts"]) == (4, 5, [2, 1, 1, 1, 2, 1, 1, 1, 2])
    w0, w1 = (dict(n.state_dict()) for n in model.networks)
    assert not torch.equal(w0["stem.weight"], w1["stem.weight"])  # fold 1 is a different member
    pre, inf = model.preprocessing, model.inference
    assert pre.target_spacing == (0.8, 0.8, 0.8) and pre.orientation == "SAR"
    assert (pre.normalisation, pre.foreground, pre.crop_margin_mm, pre.image_interpolation) == ("zscore", "nonzero", 0.0, "bspline")
    assert inf.window.patch_size == (128, 128, 128) and inf.window.mirror_axes == (0, 1, 2) and inf.window.step == 0.5
    meta = model.meta
    assert meta["source"]["folds"] == ["fold_0", "fold_1"] and meta["source"]["epochs"] == [500, 500]
    assert meta["source"]["trainer"] == "nnUNetTrainerV2_MedNeXt_L_kernel5_lr_3e_4_500epochs"
    assert meta["contrast"] == "T2w" and meta["nnunet_v1"]["use_mask_for_norm"] is True
    assert len(meta["import_warnings"]) == 1 and "names MedNeXt-L" in meta["import_warnings"][0]


def test_fold0_reproduces_the_original_mednext_outputs(mednext_release, mednext_reference):
    sd, x, outputs = mednext_reference
    model = _import(mednext_release, folds=[0])
    net = model.networks[0]
    for k, v in sd.items():
        assert torch.equal(net.state_dict()[k], v), k
    with torch.no_grad(), ds_outputs(net):
        got = net(x)
    assert len(got) == len(outputs) == 5
    for g, ref in zip(got, outputs):
        assert torch.allclose(g, ref, atol=1e-5, rtol=0), (g - ref).abs().max().item()


def test_generic_unet_imports_and_reproduces_the_v1_outputs(generic_release, generic_reference):
    _, x, outputs = generic_reference
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: name and weights agree
        model = import_nnunet_v1(generic_release, device="cpu")
    assert model.network.name == "generic_unet_v1" and len(model.networks) == 1
    assert model.inference.window.patch_size == (16, 32, 32) and model.meta["import_warnings"] == []
    net = model.networks[0]
    with torch.no_grad(), ds_outputs(net):
        got = net(x)
    assert len(got) == len(outputs) == 3
    for g, ref in zip(got, outputs):
        assert torch.allclose(g, ref, atol=1e-5, rtol=0), (g - ref).abs().max().item()


def test_two_fold_ensemble_is_the_mean_of_its_folds(mednext_release):
    both = _import(mednext_release)
    folds = [_import(mednext_release, folds=[k]) for k in (0, 1)]
    # sliding window alone: two overlapping tiles, one mirror axis, probabilities averaged over members
    image = torch.from_numpy(scan((16, 16, 48))[0])[None]
    image = (image - image.mean()) / image.std()
    window = SlidingWindowConfig(patch_size=(16, 16, 32), mirror_axes=(2,))
    ens = sliding_window_predict(both.networks, image, window, device="cpu")
    single = [sliding_window_predict(m.networks, image, window, device="cpu") for m in folds]
    assert torch.allclose(ens, (single[0] + single[1]) / 2, atol=1e-5)
    assert not torch.allclose(single[0], single[1], atol=1e-4)  # the folds really differ
    # the whole predictor: preprocessing, stitching, back onto the input grid (small patches: depthwise 3D convolutions are slow on CPU)
    data, affine = scan((48, 16, 16))
    probs = []
    for m in (both, *folds):
        m.inference = m.inference.updated({"patch_size": (16, 16, 32)})
        probs.append(m.predict((data, affine), tta=False).probabilities)
    assert probs[0].shape == data.shape
    np.testing.assert_allclose(probs[0], (probs[1] + probs[2]) / 2, atol=1e-5)


@pytest.mark.parametrize(
    ("stored", "transpose", "expected"), [("RAS", (0, 1, 2), "SAR"), ("LAS", (0, 1, 2), "SAL"), ("RAS", (2, 0, 1), "RSA")]
)
def test_network_orientation(stored, transpose, expected):
    assert network_orientation(stored, transpose) == expected


@pytest.mark.parametrize(("signs", "training_orientation"), [((1, 1, 1), "RAS"), ((-1, 1, 1), "LAS")])
def test_transpose_forward_and_spacing_give_nnunet_v1s_array(tmp_path, mednext_release, signs, training_orientation):
    """A scan stored like the training scans reaches the network exactly as nnU-Net v1 presents it:
    SimpleITK order (NIfTI axes reversed), then transpose_forward, at current_spacing, z-scored."""
    trainer = copy_trainer(mednext_release, tmp_path, folds=("fold_0",))

    def anisotropic(info):  # a sagittal-like set-up: the coarse axis is SimpleITK's last
        st = info["plans"]["plans_per_stage"][0]
        info["plans"]["transpose_forward"], info["plans"]["transpose_backward"] = [2, 0, 1], [1, 2, 0]
        st["current_spacing"] = np.array([2.0, 0.8, 0.8])
        st["patch_size"] = np.array([16, 32, 32])

    edit_pickle(trainer / "fold_0" / PKL, anisotropic)
    model = _import(trainer, training_orientation=training_orientation, mode="approximate")
    assert _import(trainer).pipeline.transpose_backward == (1, 2, 0)  # exact mode: v1's own transposes
    expected_orientation = network_orientation(training_orientation, (2, 0, 1))
    assert model.preprocessing.orientation == expected_orientation
    assert model.preprocessing.target_spacing == (2.0, 0.8, 0.8) and model.inference.window.patch_size == (16, 32, 32)
    data, affine = scan((10, 24, 20), spacing=(2.0, 0.8, 0.8), signs=signs)
    pre = build_preprocessing(model.preprocessing)(subject_from_arrays(data, affine))
    # nnU-Net v1: sitk array (z, y, x) = data.T, then .transpose(transpose_forward), z-score in the nonzero mask
    v1 = data.transpose(2, 1, 0).transpose(2, 0, 1)
    v1 = (v1 - v1.mean()) / v1.std()
    assert tuple(pre[IMAGE].spacing) == pytest.approx((2.0, 0.8, 0.8))
    np.testing.assert_allclose(pre[IMAGE].data[0].numpy(), v1, atol=2e-3)


# ---------------------------------------------------------------------------------------- safety


class _RunsCode:
    """Pickles to a call of ``func(*args)``: what a malicious .pkl holds."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    cmd = f"touch {marker}"
    return {
        "os.system": _RunsCode(os.system, cmd),
        "eval": _RunsCode(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess": _RunsCode(subprocess.call, ["touch", str(marker)]),
        "getattr": _RunsCode(getattr, "os", "sep"),
        "nested in plans": {"name": "nnUNetTrainerV2", "plans": {"x": [1, _RunsCode(os.system, cmd)]}},
    }


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("which", ["os.system", "eval", "subprocess", "getattr", "nested in plans"])
def test_malicious_plans_pickle_is_refused_without_running(tmp_path, mednext_release, which, protocol):
    marker = tmp_path / "pwned"
    trainer = copy_trainer(mednext_release, tmp_path / "release", folds=("fold_0",))
    bad = trainer / "fold_0" / PKL
    bad.write_bytes(pickle.dumps(_payloads(marker)[which], protocol=protocol))
    with pytest.raises(InputError, match=r"model_final_checkpoint\.model\.pkl.*refers to \S+\.(system|eval|call|getattr).*refused"):
        import_nnunet_v1(trainer, device="cpu")
    assert not marker.exists()
    with pytest.raises(InputError):
        read_pickle(bad)
    assert not marker.exists()
    # the same bytes really run code when unpickled normally: the test would catch a weakened reader
    if which == "os.system":
        pickle.loads(bad.read_bytes())
        assert marker.exists()


def test_malicious_checkpoint_is_refused_without_running(tmp_path, mednext_release):
    marker = tmp_path / "pwned"
    trainer = copy_trainer(mednext_release, tmp_path / "release", folds=("fold_0",))
    torch.save({"state_dict": _RunsCode(os.system, f"touch {marker}")}, trainer / "fold_0" / "model_final_checkpoint.model")
    with pytest.raises(InputError, match=r"model_final_checkpoint\.model: cannot be read .* weights_only=True"):
        import_nnunet_v1(trainer, device="cpu")
    assert not marker.exists()


def test_release_plans_read_with_the_restricted_reader(mednext_release):
    info = read_pickle(mednext_release / "fold_0" / PKL)
    stage = info["plans"]["plans_per_stage"][0]
    assert isinstance(stage["current_spacing"], np.ndarray) and stage["current_spacing"].tolist() == [0.8, 0.8, 0.8]
    assert info["plans"]["normalization_schemes"] == {0: "nonCT"}


# ------------------------------------------------------------------------------ names and folders


def test_trainer_kernel_must_match_the_weights(tmp_path, mednext_release):
    trainer = copy_trainer(mednext_release, tmp_path, folds=("fold_0",))
    edit_pickle(trainer / "fold_0" / PKL, lambda info: info.update(name="nnUNetTrainerV2_MedNeXt_L_kernel3"))
    with pytest.raises(InputError, match=r"model\.pkl: the trainer 'nnUNetTrainerV2_MedNeXt_L_kernel3' says kernel size 3, "
                                         r"the weights have kernel size 5"):
        _import(trainer)


def test_mednext_trainer_with_generic_unet_weights_is_refused(tmp_path, generic_release):
    trainer = copy_trainer(generic_release, tmp_path)
    edit_pickle(trainer / "fold_0" / PKL, lambda info: info.update(name="nnUNetTrainerV2_MedNeXt_L_kernel5"))
    with pytest.raises(InputError, match="trains a MedNeXt, but the weights are an nnU-Net Generic_UNet"):
        _import(trainer)


def test_generic_unet_weights_must_match_the_plans(tmp_path, generic_release):
    trainer = copy_trainer(generic_release, tmp_path)
    edit_pickle(trainer / "fold_0" / PKL,
                lambda info: info["plans"]["plans_per_stage"][0].update(pool_op_kernel_sizes=[[2, 2, 2]] * 3))
    with pytest.raises(InputError, match=r"model_final_checkpoint\.model: the plans' pool/conv kernels"):
        _import(trainer)


def test_folder_forms_and_fold_selection(tmp_path, release_root, mednext_release):
    with pytest.raises(InputError, match=r"3d_fullres: holds 2 trained models \(Task019_HCP_T2w/.*Task030_nnunet_HCP_T2w/.*give one"):
        _import(release_root)
    assert len(_import(mednext_release.parent).networks) == 2  # the task folder holds one trainer
    assert len(_import(mednext_release / "fold_1").networks) == 1
    assert _import(mednext_release, folds=["1"]).meta["source"]["folds"] == ["fold_1"]
    with pytest.raises(InputError, match=r"has no fold_3 \(folds present: fold_0, fold_1\)"):
        _import(mednext_release, folds=[3])
    with pytest.raises(InputError, match="not an nnU-Net v1 result folder"):
        _import(tmp_path)


def test_incomplete_or_inconsistent_folders_name_the_file(tmp_path, mednext_release, generic_release):
    trainer = copy_trainer(mednext_release, tmp_path / "a")
    (trainer / "fold_1" / PKL).unlink()
    with pytest.raises(InputError, match=r"fold_1/model_final_checkpoint\.model\.pkl: missing"):
        _import(trainer)
    mixed = copy_trainer(mednext_release, tmp_path / "b", folds=("fold_0",))
    shutil.copytree(generic_release / "fold_0", mixed / "fold_1")
    with pytest.raises(InputError, match=r"fold_1: its network differs from fold_0's"):
        _import(mixed)
    ct = copy_trainer(mednext_release, tmp_path / "c", folds=("fold_0",))
    edit_pickle(ct / "fold_0" / PKL, lambda info: info["plans"].update(normalization_schemes={0: "CT"}))
    with pytest.raises(InputError, match=r"model\.pkl: normalization 'CT' is not known \(known in approximate mode: nonCT, noNorm\)"):
        _import(ct, mode="approximate")
    with pytest.raises(InputError, match=r"model\.pkl: normalization 'CT' needs the plans' dataset_properties\['intensityproperties'\]"):
        _import(ct)


def test_registry_name_attaches_the_entry_and_checks_the_network(mednext_release, generic_release):
    model = _import(mednext_release, name="mednet-pvs-t2w")
    assert model.name == "mednet-pvs-t2w"
    assert model.meta["zoo_entry"] == "mednet-pvs-t2w" and model.meta["metrics"][0]["value"] == 0.88
    assert "arXiv:2508.20256" in model.meta["citation"]
    with pytest.raises(ConfigError, match=r"'mednet-pvs-t2w' is a MedNeXt-L k5 \(mednext\) in the registry, "
                                          r"but these weights are a generic_unet_v1"):
        _import(generic_release, name="mednet-pvs-t2w")
    assert _import(generic_release, name="nnunet-pvs-t2w").meta["metrics"][0]["value"] == 0.89
