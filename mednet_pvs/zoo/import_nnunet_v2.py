"""Import trained nnU-Net v2 model folders (``plans.json``, ``dataset.json``, ``fold_N/<checkpoint>``).

    network, facts = load_nnunet_v2_folder("nnUNet_results/Dataset019_PVS/nnUNetTrainer__nnUNetPlans__3d_fullres")

The network is built from the plans' ``architecture`` entry (nnU-Net >= 2.4) and holds the
checkpoint's ``network_weights``; :class:`NnUNetV2Preprocessing` holds what inference must reproduce.
The checkpoint is read with :func:`mednet_pvs.safe_load.torch_load` (``weights_only=True``, no code
runs). Every problem with a file raises :class:`~mednet_pvs.errors.InputError` naming it.
Importing this module does not import torch.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mednet_pvs.errors import ConfigError, InputError

if TYPE_CHECKING:
    from torch import nn

    from mednet_pvs.nets import NnUNetConfig


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
    from mednet_pvs.nets.nnunet import PLAIN, RESENC, NnUNetConfig

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
    from mednet_pvs.nets.nnunet import PLAIN, build_nnunet
    from mednet_pvs.nets.state_dicts import load_exact
    from mednet_pvs.safe_load import torch_load, unwrap_state_dict

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
    net_config = net_config.replace(deep_supervision=False)
    network = build_nnunet(net_config)
    network.nnunet_config = net_config
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


# ------------------------------------------------------------------------------ exact-mode import
MODES = ("exact", "approximate")
#: Readers that hand the network the stored voxel array with reversed axes and the file's spacing:
#: what approximate mode's reorientation (:func:`~mednet_pvs.zoo.import_nnunet_v1.network_orientation`) assumes.
APPROXIMATE_READERS = ("SimpleITKIO", "NibabelIO")

#: nnU-Net's resampling functions whose behaviour :mod:`mednet_pvs.data.nnunet_preprocessing` reproduces.
KNOWN_RESAMPLING = ("resample_data_or_seg_to_shape",)
CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}


def find_v2_folds(folder: Path, checkpoint_name: str) -> list[str]:
    """The fold names (``"0"``, ``"all"``...) of a v2 trainer folder that hold ``checkpoint_name``."""
    names = [p.name[len("fold_"):] for p in sorted(folder.glob("fold_*")) if (p / checkpoint_name).is_file()]
    return sorted(names, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))


def is_nnunet_v2_folder(folder: str | PathLike) -> bool:
    """A folder with ``plans.json``, ``dataset.json`` and at least one ``fold_*`` (a v2 trainer folder)."""
    folder = Path(folder)
    return (folder / "plans.json").is_file() and (folder / "dataset.json").is_file() and any(folder.glob("fold_*"))


def nnunet_v2_pipeline(plans: dict, dataset: dict, cfg: dict, plans_path: Path, dataset_path: Path):
    """The :class:`~mednet_pvs.data.nnunet_preprocessing.NnUNetPipeline` of a plans configuration;
    a reader, normalisation, resampling or label layout that is not reproduced is an InputError naming the file."""
    from mednet_pvs.data.nnunet_preprocessing import (
        NORMALIZATIONS,
        READERS,
        NnUNetPipeline,
    )

    # nnU-Net's predictor reads with plans["image_reader_writer"] (the planner copies dataset.json's
    # overwrite_image_reader_writer there); the dataset's override ("None": none) only where plans lack it
    override = dataset.get("overwrite_image_reader_writer")
    override = None if override in (None, "None") else override
    reader = plans.get("image_reader_writer") or override or "SimpleITKIO"
    if reader not in READERS:
        raise InputError(plans_path if plans.get("image_reader_writer") else dataset_path,
                         f"image reader {reader!r} is not supported in exact mode (supported: {', '.join(READERS)})")
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        fn = cfg.get(key, "resample_data_or_seg_to_shape")
        if fn not in KNOWN_RESAMPLING:
            raise InputError(plans_path, f"{key} {fn!r} is not supported in exact mode (supported: {', '.join(KNOWN_RESAMPLING)})")
    schemes = tuple(cfg.get("normalization_schemes", ()))
    unknown = [s for s in schemes if s not in NORMALIZATIONS]
    if unknown:
        raise InputError(plans_path, f"normalisation scheme(s) {unknown} not known (known: {', '.join(sorted(NORMALIZATIONS))})")
    labels = dataset.get("labels") or {}
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        raise InputError(dataset_path, "region-based labels (lists of label values) are not supported in exact mode yet")
    if "ignore" in labels:
        labels = {k: v for k, v in labels.items() if k != "ignore"}
    channels = dataset.get("channel_names", dataset.get("modality"))
    spacing = tuple(float(s) for s in cfg["spacing"])
    if len(spacing) != 3:
        raise InputError(plans_path, f"spacing {list(spacing)} is not 3D: only 3d configurations are supported")

    def resampling(key: str, default_order: int) -> dict[str, Any]:
        kw = dict(cfg.get(f"{key}_kwargs") or {})
        return {"order": int(kw.get("order", default_order)), "order_z": int(kw.get("order_z", 0)),
                "force_separate_z": kw.get("force_separate_z")}

    try:
        return NnUNetPipeline(
            version=2, reader=reader,
            transpose_forward=tuple(int(i) for i in plans.get("transpose_forward", (0, 1, 2))),
            transpose_backward=tuple(int(i) for i in plans.get("transpose_backward", (0, 1, 2))),
            spacing=spacing, normalization_schemes=schemes,
            use_mask_for_norm=tuple(bool(b) for b in cfg.get("use_mask_for_norm", ())),
            intensity_properties={str(k): {kk: float(vv) for kk, vv in v.items() if isinstance(vv, (int, float))}
                                  for k, v in (plans.get("foreground_intensity_properties_per_channel") or {}).items()},
            resampling_data=resampling("resampling_fn_data", 3),
            resampling_probabilities=resampling("resampling_fn_probabilities", 1),
            channel_names={str(k): str(v) for k, v in channels.items()},
            labels={str(k): int(v) for k, v in labels.items()},
        )
    except ConfigError as e:
        raise InputError(plans_path, str(e)) from None


def import_nnunet_v2(folder: str | PathLike, *, folds: Sequence[int | str] | None = None, checkpoint: str = "final",
                     configuration: str | None = None, device: Any = None, name: str | None = None,
                     mode: str = "exact", training_orientation: str = "RAS"):
    """Import a trained nnU-Net v2 model folder (every fold, or ``folds``) as one model.

    Args:
        folder: the trainer folder (``<Trainer>__<Plans>__<configuration>``: ``plans.json``,
            ``dataset.json``, ``fold_<k>/checkpoint_final.pth``).
        folds: the folds to use (default: every fold that holds the checkpoint).
        checkpoint: ``"final"`` (``checkpoint_final.pth``) or ``"best"`` (``checkpoint_best.pth``).
        configuration: overrides the checkpoints' ``init_args['configuration']``.
        mode: ``"exact"`` (nnU-Net's predictor step for step) or ``"approximate"`` (the project's
            own pipeline, which fine-tuning trains with; :func:`approximate_model`).
        training_orientation: ``mode="approximate"``: axis codes the training scans were stored in.

    Returns:
        ``"exact"``: :class:`~mednet_pvs.inference.nnunet_model.NnUNetModel`; ``"approximate"``:
        :class:`~mednet_pvs.inference.PVSModel`.
    """
    from mednet_pvs.inference.nnunet_model import NnUNetModel
    from mednet_pvs.inference.settings import InferenceConfig
    from mednet_pvs.inference.sliding_window import SlidingWindowConfig
    from mednet_pvs.nets import NetworkSpec

    folder = Path(folder)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, not {checkpoint!r}")
    ckpt_name = CHECKPOINTS[checkpoint]
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    if not is_nnunet_v2_folder(folder):
        raise InputError(folder, "is not an nnU-Net v2 trainer folder (plans.json, dataset.json and fold_* expected)")
    have = find_v2_folds(folder, ckpt_name)
    wanted = [str(f) for f in folds] if folds else have
    if not wanted:
        raise InputError(folder, f"no fold_*/{ckpt_name} found")
    missing = [f for f in wanted if f not in have]
    if missing:
        raise InputError(folder / f"fold_{missing[0]}" / ckpt_name, f"not found; folds with {ckpt_name}: {have or 'none'}")
    networks, facts = [], []
    for fold in wanted:
        net, fact = load_nnunet_v2_folder(folder, fold, checkpoint_name=ckpt_name, configuration=configuration)
        networks.append(net)
        facts.append(fact)
    first = facts[0]
    if not first.trainer_name.startswith("nnUNetTrainer"):
        raise InputError(folder / f"fold_{wanted[0]}" / ckpt_name,
                         f"trainer {first.trainer_name!r} is not known: exact mode runs nnU-Net's nnUNetTrainer and its "
                         "variants (nnUNetTrainer*), whose network the plans' architecture entry describes")
    for fold, fact in zip(wanted[1:], facts[1:]):
        if (fact.configuration, fact.trainer_name, fact.mirroring_axes) != (first.configuration, first.trainer_name, first.mirroring_axes):
            raise InputError(folder / f"fold_{fold}" / ckpt_name,
                             f"differs from fold {wanted[0]} (configuration {fact.configuration!r} vs {first.configuration!r}, "
                             f"trainer {fact.trainer_name!r} vs {first.trainer_name!r}, mirroring {fact.mirroring_axes} vs "
                             f"{first.mirroring_axes}): folds must come from one training setup")
    plans_path, dataset_path = folder / "plans.json", folder / "dataset.json"
    plans, dataset = _read_json(plans_path), _read_json(dataset_path)
    cfg = _configuration(plans, first.configuration, plans_path)
    pipeline = nnunet_v2_pipeline(plans, dataset, cfg, plans_path, dataset_path)
    window = SlidingWindowConfig(patch_size=first.patch_size, step=0.5, batch_size=1,
                                 mirror_axes=first.mirroring_axes or (), channels_last=False)
    spec = NetworkSpec(networks[0].network_name, networks[0].nnunet_config.to_dict())
    entry_meta: dict[str, Any] = {}
    if name is not None:  # imported under a registry entry's name: its figures, licence and citation travel along
        from mednet_pvs.zoo.catalog import find_entry

        entry = find_entry(name)
        if entry is not None:
            if entry.network.get("family") not in (None, "nnunet_v2", spec.name) and "nnunet" not in str(entry.network.get("family")):
                raise ConfigError(f"{name!r} is a {entry.network_label} in the registry, these weights are an nnU-Net v2 "
                                  f"{spec.name}: import them under another --name")
            entry_meta = entry.meta()
    meta = {**entry_meta, "source": "nnU-Net v2", "trainer": first.trainer_name, "plans": first.plans_name,
            "configuration": first.configuration, "folds": wanted, "checkpoint": ckpt_name, "imported_from": str(folder)}
    if mode == "approximate":
        return approximate_model(networks, spec, pipeline, first, plans_path, dataset_path, meta=meta,
                                 name=name or folder.parent.name, training_orientation=training_orientation, device=device)
    return NnUNetModel(networks, spec, pipeline, InferenceConfig(window=window), name=name or folder.parent.name,
                       meta=meta, device=device)


# ------------------------------------------------------------------------ approximate-mode import
def approximate_model(networks: Sequence[nn.Module], spec: Any, pipeline: Any, facts: NnUNetV2Preprocessing,
                      plans_path: Path, dataset_path: Path, *, meta: dict[str, Any], name: str,
                      training_orientation: str = "RAS", device: Any = None) -> Any:
    """nnU-Net v2 folds (weights exact) with the project's own pipeline closest to the plans: a
    trainable :class:`~mednet_pvs.inference.PVSModel` (what ``finetune --from`` starts from).

    Kept from the plans: target spacing, patch size, z-score (inside the nonzero foreground, or,
    ``use_mask_for_norm`` false, over it too: a departure), mirroring axes, Gaussian sigma
    patch / 8, tile step 0.5. Departures (recorded in ``meta["import_notes"]``): the scan is
    reoriented to the axis order the network saw for training scans stored as
    ``training_orientation`` (nnU-Net never reorients), the crop is the nonzero box without
    nnU-Net's hole filling, resampling is a B-spline (TorchIO) rather than scikit-image's
    order-3 ``resize``, probabilities are averaged (not float16 logits) and thresholded at 0.5.
    Only single-channel models with ``ZScoreNormalization`` and a standard reader are taken; any
    other is an :class:`~mednet_pvs.errors.InputError` naming the reason.
    """
    from mednet_pvs.data.preprocessing import PreprocessConfig
    from mednet_pvs.inference import InferenceConfig, PVSModel, SlidingWindowConfig
    from mednet_pvs.zoo.import_nnunet_v1 import network_orientation

    if pipeline.n_channels != 1:
        raise InputError(dataset_path, f"has {pipeline.n_channels} input channels ({', '.join(pipeline.channel_names.values())}): "
                                       "approximate mode (fine-tuning) takes single-channel models only")
    if tuple(pipeline.normalization_schemes) != ("ZScoreNormalization",):
        raise InputError(plans_path, f"normalisation {pipeline.normalization_schemes[0]!r} has no counterpart in the "
                                     "project's preprocessing: approximate mode (fine-tuning) takes ZScoreNormalization only")
    if pipeline.reader not in APPROXIMATE_READERS:
        raise InputError(plans_path, f"image reader {pipeline.reader!r}: approximate mode (fine-tuning) takes "
                                     f"{' or '.join(APPROXIMATE_READERS)} only")
    orientation = network_orientation(training_orientation, pipeline.transpose_forward)
    notes = [
        (f"nnU-Net does not reorient scans; this model reorients them to {orientation}, the axis order the network saw "
         f"for training scans stored as {training_orientation} (transpose_forward {list(pipeline.transpose_forward)})"),
        ("nnU-Net crops to the nonzero box with holes filled and resamples with scikit-image (order 3); mednet-pvs crops "
         "to the nonzero box and resamples with TorchIO B-splines: intensities differ slightly"),
        "nnU-Net averages float16 logits and takes the argmax; mednet-pvs averages probabilities and thresholds at 0.5",
    ]
    if not pipeline.use_mask_for_norm[0]:
        notes.append("the plans normalise over the whole cropped image (use_mask_for_norm False); mednet-pvs takes the "
                     "statistics inside the nonzero foreground (or the brain mask given)")
    preprocessing = PreprocessConfig(
        target_spacing=tuple(pipeline.spacing), orientation=orientation, normalisation="zscore",
        use_brainmask=True, foreground="nonzero", crop_to_brain=True, crop_margin_mm=0.0,
        image_interpolation="bspline", label_interpolation="nearest",
    )
    window = SlidingWindowConfig(patch_size=facts.patch_size, step=0.5, sigma_scale=1.0 / 8,
                                 mirror_axes=facts.mirroring_axes or ())
    meta = {**meta, "mode": "approximate", "training_orientation": training_orientation, "import_notes": notes,
            "contrast": next(iter(pipeline.channel_names.values()), None)}
    return PVSModel(list(networks), spec, preprocessing, InferenceConfig(window, threshold=0.5), name=name, meta=meta,
                    device=device)
