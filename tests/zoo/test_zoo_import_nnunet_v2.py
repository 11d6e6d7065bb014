"""Importing nnU-Net v2 trained-model folders (plans.json, dataset.json, fold_N/checkpoint_final.pth)."""
from __future__ import annotations

import json
import pydoc
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mednet_pvs.errors import InputError
from mednet_pvs.nets import network_config
from mednet_pvs.zoo import load_nnunet_v2_folder

ARCH = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 4,
        "features_per_stage": [4, 8, 16, 16],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2, 2],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}
FG = {"0": {"max": 900.0, "mean": 310.5, "median": 300.0, "min": 2.0, "percentile_00_5": 40.0,
            "percentile_99_5": 700.0, "std": 80.25}}


def nnunet_network(arch: dict, input_channels: int, num_classes: int) -> torch.nn.Module:
    """What nnU-Net v2's get_network_from_plans builds (vanilla dynamic_network_architectures class)."""
    kw = dict(arch["arch_kwargs"])
    for key in arch["_kw_requires_import"]:
        if kw[key] is not None:
            kw[key] = pydoc.locate(kw[key])
    cls = pydoc.locate(arch["network_class_name"])
    return cls(input_channels=input_channels, num_classes=num_classes, deep_supervision=True, **kw)


def write_nnunet_v2_folder(root: Path, arch: dict = ARCH) -> torch.nn.Module:
    """A trained-model folder as nnU-Net v2 (>= 2.4) writes it; returns the network saved in fold_0."""
    dataset = {"channel_names": {"0": "T2w"}, "labels": {"background": 0, "PVS": 1}, "numTraining": 4,
               "file_ending": ".nii.gz"}
    plans = {
        "dataset_name": "Dataset019_PVS", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [2.0, 0.8, 0.8],
        "original_median_shape_after_transp": [80, 256, 256], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [2, 0, 1], "transpose_backward": [1, 2, 0],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2, "patch_size": [16, 32, 32], "median_image_size_in_voxels": [80, 256, 256],
                "spacing": [2.0, 0.8, 0.8], "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False], "resampling_fn_data": "resample_data_or_seg_to_shape",
                "architecture": arch, "batch_dice": False,
            },
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        },
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": FG,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    torch.manual_seed(0)
    net = nnunet_network(arch, 1, 2)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    (root / "fold_0").mkdir()
    # The keys of nnU-Net v2's nnUNetTrainer.save_checkpoint; logs hold numpy scalars as nnU-Net's do.
    torch.save({
        "network_weights": net.state_dict(),
        "optimizer_state": opt.state_dict(),
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)],
                    "dice_per_class_or_region": [[np.float64(0.5)]], "train_losses": [np.float32(-0.3)],
                    "val_losses": [np.float32(-0.2)], "lrs": [0.01], "epoch_start_timestamps": [time.time()],
                    "epoch_end_timestamps": [time.time()]},
        "_best_ema": np.float64(0.5),
        "current_epoch": 1000,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset,
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }, root / "fold_0" / "checkpoint_final.pth")
    return net


def test_imports_nnunet_v2_folder(tmp_path):
    saved = write_nnunet_v2_folder(tmp_path / "model")
    net, facts = load_nnunet_v2_folder(tmp_path / "model", fold=0)
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        saved.eval().decoder.deep_supervision = False
        assert torch.equal(net(x), saved(x))
    assert not net.training
    assert facts.configuration == "3d_fullres" and facts.fold == "0"
    assert facts.spacing == (2.0, 0.8, 0.8) and facts.patch_size == (16, 32, 32)
    assert facts.normalization_schemes == ("ZScoreNormalization",) and facts.use_mask_for_norm == (False,)
    assert facts.foreground_intensity_properties == FG
    assert facts.mirroring_axes == (0, 1, 2)
    assert facts.transpose_forward == (2, 0, 1) and facts.transpose_backward == (1, 2, 0)
    assert facts.trainer_name == "nnUNetTrainer" and facts.labels == {"background": 0, "PVS": 1}
    spec = network_config(net)
    assert spec.name == "nnunet_plain" and spec.kwargs["kernel_sizes"][0] == [1, 3, 3]
    # An inherited configuration resolves to its parent's architecture.
    _, cascade = load_nnunet_v2_folder(tmp_path / "model", configuration="3d_cascade_fullres")
    assert cascade.configuration == "3d_cascade_fullres" and cascade.patch_size == (16, 32, 32)


def test_imports_resenc_folder(tmp_path):
    arch = json.loads(json.dumps(ARCH))
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    kw = arch["arch_kwargs"]
    kw["n_blocks_per_stage"] = [1, 3, 4, 6]
    kw["n_conv_per_stage_decoder"] = [1, 1, 1]
    del kw["n_conv_per_stage"]
    saved = write_nnunet_v2_folder(tmp_path / "m", arch)
    net, _ = load_nnunet_v2_folder(tmp_path / "m")
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        saved.eval().decoder.deep_supervision = False
        assert torch.equal(net(x), saved(x))
    assert network_config(net).kwargs["architecture"] == "ResidualEncoderUNet"


def test_bad_nnunet_v2_folders_name_the_file(tmp_path):
    root = tmp_path / "model"
    write_nnunet_v2_folder(root)
    with pytest.raises(InputError, match=r"fold_3.checkpoint_final.pth.*not found.*fold_0"):
        load_nnunet_v2_folder(root, fold=3)
    with pytest.raises(InputError, match=r"plans.json.*no configuration '2d'"):
        load_nnunet_v2_folder(root, configuration="2d")
    ckpt = root / "fold_0" / "checkpoint_final.pth"
    sd = torch.load(ckpt, weights_only=False)["network_weights"]
    torch.save({"state_dict": sd}, ckpt)
    with pytest.raises(InputError, match=r"checkpoint_final.pth.*no 'network_weights'"):
        load_nnunet_v2_folder(root)
    torch.save({"network_weights": {k: v for k, v in sd.items() if "seg_layers.2" not in k},
                "init_args": {"configuration": "3d_fullres"}}, ckpt)
    with pytest.raises(InputError, match=r"checkpoint_final.pth.*does not fit.*seg_layers.2"):
        load_nnunet_v2_folder(root)
    plans = json.loads((root / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "torch.nn.ReLU"
    (root / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(InputError, match=r"plans.json.*nonlin is 'ReLU'"):
        load_nnunet_v2_folder(root)
    del plans["configurations"]["3d_fullres"]["architecture"]
    (root / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(InputError, match=r"plans.json.*nnU-Net < 2.4"):
        load_nnunet_v2_folder(root)
    (root / "plans.json").unlink()
    with pytest.raises(InputError, match=r"plans.json.*file not found"):
        load_nnunet_v2_folder(root)
    with pytest.raises(InputError, match="is not a folder"):
        load_nnunet_v2_folder(tmp_path / "nope")
