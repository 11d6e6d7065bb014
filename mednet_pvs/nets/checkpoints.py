"""The only place in :mod:`mednet_pvs.nets` that reads files: weights and trained-model folders.

Torch files are read with ``torch.load(weights_only=True)`` (no code runs); numpy scalars and
arrays, which nnU-Net's checkpoints hold in their logs, are the only non-torch types admitted.
Every problem with a file raises :class:`~mednet_pvs.errors.InputError` naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.nets.mednext import MedNeXt, MedNeXtConfig, load_mednext_state_dict
from mednet_pvs.nets.nnunet import PLAIN, RESENC, NnUNetConfig, build_nnunet
from mednet_pvs.nets.nnunet_v1 import GenericUNetV1Config, load_generic_unet_v1
from mednet_pvs.nets.state_dicts import StateDict, load_exact, unwrap_state_dict

PathOrStateDict = str | PathLike | Mapping[str, Any]

#: numpy reconstructors admitted by ``torch.load(weights_only=True)`` (nnU-Net logs hold numpy scalars).
_np_multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2 / numpy 1
_NUMPY_SAFE = [_np_multiarray.scalar, _np_multiarray._reconstruct, np.ndarray, np.dtype,
               *{type(np.dtype(t)) for t in "?bBhHiIlLqQefdgFDG"}]


def torch_load(path: str | PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, admitting numpy scalars/arrays; InputError on failure."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure is a problem with this file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(path, f"cannot be read as a PyTorch checkpoint with weights_only=True ({first})") from e


def read_state_dict(path: str | PathLike) -> StateDict:
    """The network weights in a ``.safetensors`` file or a torch checkpoint (raw state dict, or a
    dict holding one under ``state_dict`` / ``network_weights``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise InputError(path, "file not found")
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(path)
        except Exception as e:  # noqa: BLE001
            raise InputError(path, f"cannot be read as safetensors ({e})") from e
    else:
        obj = torch_load(path)
    try:
        return unwrap_state_dict(obj)
    except ConfigError as e:
        raise InputError(path, str(e)) from e


def _load_with(loader, source: PathOrStateDict, config) -> nn.Module:
    """``loader(state_dict, config)`` on a path or an in-memory dict; a file's problems name the file."""
    if isinstance(source, Mapping):
        return loader(unwrap_state_dict(source), config)
    try:
        return loader(read_state_dict(source), config)
    except ConfigError as e:
        raise InputError(source, str(e)) from e


def load_mednext_checkpoint(source: PathOrStateDict, config: MedNeXtConfig | None = None) -> MedNeXt:
    """A :class:`MedNeXt` with the weights of an original MedNeXt v1 checkpoint (nnU-Net v1's
    ``model_final_checkpoint.model``, a raw state dict file, safetensors, or an in-memory dict).
    The configuration is read from the weights unless given."""
    return _load_with(load_mednext_state_dict, source, config)


def load_generic_unet_v1_checkpoint(source: PathOrStateDict, config: GenericUNetV1Config | None = None) -> nn.Module:
    """A PlainConvUNet with the weights of an nnU-Net v1 Generic_UNet checkpoint (see
    :mod:`mednet_pvs.nets.nnunet_v1`). The topology is read from the weights unless given."""
    return _load_with(load_generic_unet_v1, source, config)


# ---------------------------------------------------------------------------------------------------
# nnU-Net v2 trained-model folders


@dataclass(frozen=True)
class NnUNetV2Preprocessing:
    """What inference must reproduce for an imported nnU-Net v2 model.

    Axes (``spacing``, ``patch_size``, ``mirroring_axes``) are in nnU-Net's network order, i.e. after
    ``transpose_forward`` is applied to the image axes. ``spacing`` in mm.
    """

    configuration: str
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    normalization_schemes: tuple[str, ...]  # per input channel, e.g. "ZScoreNormalization", "CTNormalization"
    use_mask_for_norm: tuple[bool, ...]
    foreground_intensity_properties: dict[str, dict[str, float]]  # per channel "0", "1", ...: mean, std, ...
    mirroring_axes: tuple[int, ...] | None  # test-time mirroring the trainer allowed (None: none stored)
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    channel_names: dict[str, str]
    labels: dict[str, Any]
    trainer_name: str
    plans_name: str
    fold: str


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "file not found (an nnU-Net v2 model folder holds plans.json and dataset.json)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise InputError(path, "must hold a JSON object")
    return data


def _configuration(plans: dict, name: str, plans_path: Path, seen: tuple[str, ...] = ()) -> dict:
    """``plans['configurations'][name]`` with ``inherits_from`` resolved, as nnU-Net's PlansManager does."""
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        have = sorted(configs) if isinstance(configs, dict) else []
        raise InputError(plans_path, f"has no configuration {name!r} (has {have})")
    if name in seen:
        raise InputError(plans_path, f"configurations inherit in a circle: {' -> '.join((*seen, name))}")
    config = dict(configs[name])
    parent = config.get("inherits_from")
    if parent:
        config = {**_configuration(plans, parent, plans_path, (*seen, name)), **config}
    return config


def _expect(value: Any, wanted: Any, what: str, plans_path: Path) -> None:
    if value != wanted:
        raise InputError(plans_path, f"{what} is {value!r}; only nnU-Net's standard {wanted!r} is supported")


def _nnunet_config(arch: dict, input_channels: int, num_classes: int, cfg: dict, plans_path: Path) -> NnUNetConfig:
    """The :class:`NnUNetConfig` of a plans ``architecture`` entry (nnU-Net >= 2.4), after checking its ops."""
    cls = str(arch.get("network_class_name", ""))
    kw = arch.get("arch_kwargs")
    known = {f"dynamic_network_architectures.architectures.unet.{c}": c for c in (PLAIN, RESENC)}
    if cls not in known or not isinstance(kw, dict):
        raise InputError(plans_path, f"network {cls!r} is not supported; supported: {sorted(known)}")
    _expect(str(kw.get("conv_op", "")).rsplit(".", 1)[-1], "Conv3d", "conv_op", plans_path)
    _expect(str(kw.get("norm_op", "")).rsplit(".", 1)[-1], "InstanceNorm3d", "norm_op", plans_path)
    _expect({"eps": 1e-5, "affine": True, **(kw.get("norm_op_kwargs") or {})}, {"eps": 1e-5, "affine": True},
            "norm_op_kwargs", plans_path)
    _expect(kw.get("dropout_op"), None, "dropout_op", plans_path)
    _expect(str(kw.get("nonlin", "")).rsplit(".", 1)[-1], "LeakyReLU", "nonlin", plans_path)
    _expect((kw.get("nonlin_kwargs") or {}).get("negative_slope", 0.01), 0.01, "LeakyReLU negative_slope",
            plans_path)
    _expect(kw.get("conv_bias", True), True, "conv_bias", plans_path)
    default_block = "dynamic_network_architectures.building_blocks.residual.BasicBlockD"
    for extra in ("block", "bottleneck_channels", "stem_channels", "nonlin_first"):
        if kw.get(extra) not in (None, False, default_block):
            raise InputError(plans_path, f"{extra}={kw[extra]!r} is not supported (nnU-Net's default only)")
    blocks = kw.get("n_conv_per_stage", kw.get("n_blocks_per_stage"))
    features = kw.get("features_per_stage")
    try:
        return NnUNetConfig(
            architecture=known[cls], input_channels=input_channels, num_classes=num_classes,
            patch_size=cfg["patch_size"], spacing=cfg["spacing"], base_features=features[0],
            max_features=max(features), n_stages=kw["n_stages"], features_per_stage=features,
            kernel_sizes=kw["kernel_sizes"], strides=kw["strides"], n_blocks_per_stage=blocks,
            n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"],
        )
    except (KeyError, TypeError, IndexError, ConfigError) as e:
        raise InputError(plans_path, f"architecture entry is incomplete or inconsistent ({e!r})") from e


def _num_segmentation_heads(labels: dict, dataset_path: Path) -> int:
    """nnU-Net's LabelManager: one head per label, or per foreground region when labels are regions."""
    if not isinstance(labels, dict) or not labels:
        raise InputError(dataset_path, "needs a non-empty 'labels' mapping")
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        return len([k for k in labels if k != "background"])
    return len(labels)


def load_nnunet_v2_folder(folder: str | PathLike, fold: int | str = 0, *, checkpoint_name: str = "checkpoint_final.pth",
                          configuration: str | None = None) -> tuple[nn.Module, NnUNetV2Preprocessing]:
    """Import a trained nnU-Net v2 model folder (``plans.json``, ``dataset.json``, ``fold_N/<checkpoint>``).

    Builds the network of the plans' ``architecture`` entry (nnU-Net >= 2.4) with the checkpoint's
    ``network_weights`` and returns it (eval mode) with the preprocessing facts. The configuration is
    the checkpoint's ``init_args['configuration']`` unless given.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    plans_path, dataset_path = folder / "plans.json", folder / "dataset.json"
    plans, dataset = _read_json(plans_path), _read_json(dataset_path)
    ckpt_path = folder / f"fold_{fold}" / checkpoint_name
    if not ckpt_path.is_file():
        folds = sorted(p.name for p in folder.glob("fold_*") if (p / checkpoint_name).is_file())
        raise InputError(ckpt_path, f"not found; folds with {checkpoint_name}: {folds or 'none'}")
    ckpt = torch_load(ckpt_path)
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(ckpt_path, f"is not an nnU-Net v2 checkpoint: no 'network_weights' (has {keys})")
    init_args = ckpt.get("init_args") if isinstance(ckpt.get("init_args"), dict) else {}
    cfg_name = configuration or init_args.get("configuration")
    if not cfg_name:
        raise InputError(ckpt_path, "names no configuration (init_args['configuration']); pass configuration=")
    cfg = _configuration(plans, cfg_name, plans_path)
    if "architecture" not in cfg:
        raise InputError(plans_path, f"configuration {cfg_name!r} has no 'architecture' entry: plans written "
                                     "by nnU-Net < 2.4 are not supported; re-plan with nnU-Net >= 2.4")
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise InputError(dataset_path, "needs a non-empty 'channel_names' mapping")
    net_config = _nnunet_config(cfg["architecture"], len(channels),
                                _num_segmentation_heads(dataset.get("labels"), dataset_path), cfg, plans_path)
    network = build_nnunet(net_config)
    network.network_name = ("nnunet_plain" if net_config.architecture == PLAIN else
                            "nnunet_resenc_l" if "ResEncUNetL" in str(plans.get("plans_name")) else
                            "nnunet_resenc_m")
    try:
        load_exact(network, unwrap_state_dict(ckpt["network_weights"]), "network_weights")
    except ConfigError as e:
        raise InputError(ckpt_path, f"does not fit the network that {plans_path.name} describes: {e}") from e
    mirror = ckpt.get("inference_allowed_mirroring_axes")
    facts = NnUNetV2Preprocessing(
        configuration=cfg_name,
        spacing=tuple(float(s) for s in cfg["spacing"]),
        patch_size=tuple(int(p) for p in cfg["patch_size"]),
        normalization_schemes=tuple(cfg.get("normalization_schemes", ())),
        use_mask_for_norm=tuple(bool(b) for b in cfg.get("use_mask_for_norm", ())),
        foreground_intensity_properties=dict(plans.get("foreground_intensity_properties_per_channel", {})),
        mirroring_axes=None if mirror is None else tuple(int(a) for a in mirror),
        transpose_forward=tuple(plans.get("transpose_forward", (0, 1, 2))),
        transpose_backward=tuple(plans.get("transpose_backward", (0, 1, 2))),
        channel_names=dict(channels),
        labels=dict(dataset["labels"]),
        trainer_name=str(ckpt.get("trainer_name", "")),
        plans_name=str(plans.get("plans_name", "")),
        fold=str(fold),
    )
    if len(facts.normalization_schemes) != len(channels):
        raise InputError(plans_path, f"configuration {cfg_name!r} lists {len(facts.normalization_schemes)} "
                                     f"normalization schemes for {len(channels)} input channels")
    return network.eval(), facts
