"""Import nnU-Net v1 result folders (how the MedNet-PVS authors publish weights) as one model.

    model = import_nnunet_v1("nnUNet/3d_fullres/Task019_HCP_T2w/nnUNetTrainerV2_MedNeXt_L_kernel5__nnUNetPlansv2.1")
    model.save_pretrained("mednet-pvs-t2w/")      # one bundle: every fold is an ensemble member

Layout read (nnU-Net v1 and the MedNeXt v1 code)::

    nnUNet/3d_fullres/<Task>/<Trainer>__<Plans>/fold_<k>/model_final_checkpoint.model      torch.save
                                                        .../model_final_checkpoint.model.pkl  pickle

Any folder above a trainer folder works when it holds exactly one; a ``fold_<k>`` folder imports
that fold alone.

- ``.model``: read with ``torch.load(weights_only=True)`` (:func:`mednet_pvs.safe_load.torch_load`).
- ``.model.pkl`` (trainer name and plans): read with :func:`mednet_pvs.safe_load.read_pickle`, which builds
  only numpy arrays, dtypes and scalars, ``OrderedDict`` and builtin containers and refuses any
  other class before anything runs (a pickle can otherwise execute arbitrary code).
- The network is built from the state dict alone: a MedNeXt v1 of any size and kernel
  (:func:`~mednet_pvs.nets.infer_mednext_config`), checked against the trainer's name (kernel
  size must agree; a size that differs is a warning kept in ``meta``), or nnU-Net v1's
  Generic_UNet (:func:`~mednet_pvs.nets.infer_generic_unet_v1_config`), checked against the plans.
Two modes:

- ``mode="exact"`` (the default): an :class:`~mednet_pvs.inference.nnunet_model.NnUNetModel` whose
  :class:`~mednet_pvs.data.nnunet_preprocessing.NnUNetPipeline` (``version=1``) runs nnU-Net v1's
  predictor step for step: the stored voxel array (never reoriented, as v1), ``transpose_forward``,
  crop to the nonzero box, resampling to ``plans_per_stage[stage]['current_spacing']`` (order 3,
  v1's separate-z rule), *then* the plans' normalisation, each input channel by its own scheme
  (``nonCT`` inside the resampled nonzero mask when its ``use_mask_for_norm``, else over the whole
  crop; ``CT``/``CT2`` with its ``intensityproperties``), v1's sliding window (softmax
  averaged over mirrorings over all three axes, Gaussian of maximum 1), folds' softmax averaged,
  v1's export. Checked against nnunet 1.7.1's ``predict_from_folder`` in
  ``tests/inference/test_nnunet_v1_exact.py`` (one and two channels, two and three classes).
  Several channels: one file each, in the plans' modality order (``model.predict([t2w, t1w])``).
- ``mode="approximate"`` (single-channel folders only): the project's own pipeline (:class:`~mednet_pvs.inference.PVSModel`:
  TorchIO preprocessing, so it can be fine-tuned). Target spacing and patch from the plans;
  z-score inside the nonzero mask; B-spline resampling after normalising; the scan reoriented to
  :func:`network_orientation` of the orientation the training scans were stored in
  (``training_orientation``, default ``"RAS"``), where v1 takes the stored array as it is.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType
from mednet_pvs.safe_load import read_pickle

if TYPE_CHECKING:  # torch loads when a model is imported, not with this module
    import torch
    from torch import nn

CHECKPOINT = "model_final_checkpoint"
MODES = ("exact", "approximate")
_FOLD = re.compile(r"fold_\d+|all")
_MEDNEXT_TRAINER = re.compile(r"MedNeXt_([SBML])_kernel(\d+)")


class ZooImportWarning(UserWarning):
    """Something about imported weights worth knowing that does not stop the import."""


# -------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class V1Plans:
    """What inference needs from a trainer's ``.model.pkl`` (axes in the network's order)."""

    trainer: str
    stage: int
    spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    transpose_forward: tuple[int, int, int]
    normalization_schemes: tuple[str, ...]  # per input channel (nonCT, CT, CT2, noNorm)
    use_mask_for_norm: tuple[bool, ...]  # per input channel
    num_classes: int  # foreground classes (nnU-Net v1's count, without background)
    modalities: dict[str, str]  # input channel ("0", "1"...) -> the dataset's modality name
    pool_op_kernel_sizes: tuple[tuple[int, ...], ...]
    conv_kernel_sizes: tuple[tuple[int, ...], ...]
    base_num_features: int | None
    transpose_backward: tuple[int, int, int] = (0, 1, 2)
    intensity_properties: dict[str, dict[str, float]] | None = None  # per channel "0": mean, std, percentiles
    export_params: dict[str, Any] | None = None  # the plans' segmentation_export_params, if any

    @property
    def n_channels(self) -> int:
        return len(self.normalization_schemes)

    def facts(self) -> dict[str, Any]:
        """JSON-able summary kept in the bundle's ``meta`` (normalisation and mask flag: one value
        for a single-channel model, a list with one per channel otherwise)."""
        one = self.n_channels == 1
        return {
            "stage": self.stage, "current_spacing": list(self.spacing), "patch_size": list(self.patch_size),
            "transpose_forward": list(self.transpose_forward),
            "normalization": self.normalization_schemes[0] if one else list(self.normalization_schemes),
            "use_mask_for_norm": self.use_mask_for_norm[0] if one else list(self.use_mask_for_norm),
            "num_classes": self.num_classes, "modalities": self.modalities,
        }

    def comparable(self) -> tuple:
        return (self.stage, self.spacing, self.patch_size, self.transpose_forward, self.normalization_schemes,
                self.use_mask_for_norm, self.num_classes, self.modalities, self.export_params)


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in np.asarray(v).ravel())


def parse_plans(info: Any, path: PathType) -> V1Plans:
    """The :class:`V1Plans` of a loaded ``.model.pkl`` dict (``{'init', 'name', 'class', 'plans'}``)."""
    if not isinstance(info, dict) or not isinstance(info.get("plans"), dict):
        raise InputError(path, "is not an nnU-Net v1 trainer pickle: expected a dict with 'plans' (and 'name', 'init')")
    plans = info["plans"]
    try:
        stages = plans["plans_per_stage"]
        init = info.get("init") or ()
        # the trainer's constructor arguments hold its stage (3d_fullres: the last one)
        stage = init[5] if len(init) > 5 and isinstance(init[5], int) and init[5] in stages else max(stages)
        st = stages[stage]
        t = _ints(plans.get("transpose_forward", (0, 1, 2)))
        spacing = tuple(float(s) for s in np.asarray(st["current_spacing"]).ravel())
        patch = _ints(st["patch_size"])
        schemes = dict(plans["normalization_schemes"])
        use_mask = dict(plans.get("use_mask_for_norm") or {})
        modalities = {str(k): str(v) for k, v in dict(plans.get("modalities") or {}).items()}
        num_classes = int(plans["num_classes"])
        pools = tuple(_ints(p) for p in st.get("pool_op_kernel_sizes", ()))
        convs = tuple(_ints(k) for k in st.get("conv_kernel_sizes", ()))
        base = plans.get("base_num_features")
        tb = _ints(plans["transpose_backward"]) if plans.get("transpose_backward") is not None else \
            tuple(int(np.argsort(t)[i]) for i in range(len(t)))
        export = plans.get("segmentation_export_params")
        export = None if export is None else {
            "order": int(export.get("interpolation_order", 1)), "order_z": int(export.get("interpolation_order_z", 0)),
            "force_separate_z": None if export.get("force_separate_z") is None else bool(export["force_separate_z"])}
        props = (plans.get("dataset_properties") or {}).get("intensityproperties") or {}
        intensity = {str(k): {("std" if kk == "sd" else kk): float(vv) for kk, vv in dict(v).items()
                              if kk in ("mean", "sd", "percentile_00_5", "percentile_99_5")}
                     for k, v in dict(props).items() if isinstance(v, dict)}
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(path, f"plans are incomplete or malformed ({type(e).__name__}: {e})") from None
    if sorted(t) != [0, 1, 2] or len(spacing) != 3 or len(patch) != 3:
        raise InputError(path, f"plans are not 3D: transpose_forward {list(t)}, current_spacing {list(spacing)}, patch_size {list(patch)}")
    channels = _channel_keys(schemes, path, "normalization_schemes")
    if modalities and sorted(modalities, key=int) != [str(c) for c in channels]:
        raise InputError(path, f"plans name {len(schemes)} normalisation scheme(s) ({list(schemes.values())}) but "
                               f"modalities {modalities}: one per input channel expected")
    return V1Plans(
        trainer=str(info.get("name") or ""), stage=int(stage), spacing=spacing, patch_size=patch,  # type: ignore[arg-type]
        transpose_forward=t, normalization_schemes=tuple(str(schemes[c]) for c in channels),  # type: ignore[arg-type]
        use_mask_for_norm=tuple(bool(use_mask.get(c, False)) for c in channels),
        num_classes=num_classes, modalities=modalities, pool_op_kernel_sizes=pools, conv_kernel_sizes=convs,
        base_num_features=None if base is None else int(base), transpose_backward=tb,  # type: ignore[arg-type]
        intensity_properties=intensity, export_params=export,
    )


def _channel_keys(per_channel: dict, path: PathType, what: str) -> list[Any]:
    """The keys of a v1 per-channel dict (``{0: ..., 1: ...}``) in channel order; they must be 0..n-1."""
    try:
        keys = sorted(per_channel, key=int)
        ok = [int(k) for k in keys] == list(range(len(keys))) and len(keys) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(path, f"plans' {what} {per_channel} is not one entry per input channel 0, 1, ...")
    return keys


def network_orientation(training_orientation: str, transpose_forward: Sequence[int]) -> str:
    """Axis codes of the array nnU-Net v1's network saw, for training scans stored as ``training_orientation``.

    SimpleITK reverses the NIfTI axes, then ``transpose_forward`` permutes them:
    ``("RAS", (0, 1, 2)) -> "SAR"``, ``("LAS", (0, 1, 2)) -> "SAL"``, ``("RAS", (2, 0, 1)) -> "RSA"``.
    """
    from mednet_pvs.data.preprocessing import PreprocessConfig

    codes = PreprocessConfig(orientation=training_orientation).orientation  # validates the codes
    sitk = str(codes)[::-1]
    return "".join(sitk[int(a)] for a in transpose_forward)


# ------------------------------------------------------------------------------------ folders


def find_folds(folder: PathType, checkpoint: str = CHECKPOINT) -> tuple[Path, list[Path]]:
    """``(trainer folder, fold folders)`` of the one trained model at or below ``folder``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    name = f"{checkpoint}.model"
    if (folder / name).is_file():
        return folder.parent, [folder]
    trainers: dict[Path, list[Path]] = {}
    for ckpt in sorted(folder.rglob(name)):
        if _FOLD.fullmatch(ckpt.parent.name):
            trainers.setdefault(ckpt.parent.parent, []).append(ckpt.parent)
    if not trainers:
        others = sorted({p.name for p in folder.rglob("*.model")})
        hint = f"; it holds {', '.join(others)} (pass checkpoint=...)" if others else ""
        raise InputError(folder, f"no fold_<k>/{name} below: not an nnU-Net v1 result folder "
                                 f"(<Task>/<Trainer>__<Plans>/fold_<k>/{name} + .pkl){hint}")
    if len(trainers) > 1:
        listed = ", ".join(str(p.relative_to(folder)) for p in trainers)
        raise InputError(folder, f"holds {len(trainers)} trained models ({listed}); give one of these folders")
    (trainer_dir, folds), = trainers.items()
    return trainer_dir, sorted(folds, key=_fold_key)


def _fold_key(p: Path) -> tuple[int, str]:
    return (int(p.name[5:]), "") if p.name.startswith("fold_") else (10**6, p.name)


def _select(folds: list[Path], wanted: Sequence[int | str] | None, trainer_dir: Path) -> list[Path]:
    if wanted is None:
        return folds
    names = [w if isinstance(w, str) and not w.isdigit() else f"fold_{int(w)}" for w in wanted]
    have = {p.name: p for p in folds}
    missing = [n for n in names if n not in have]
    if missing:
        raise InputError(trainer_dir, f"has no {', '.join(missing)} (folds present: {', '.join(have)})")
    return [have[n] for n in names]


# ------------------------------------------------------------------------------------ networks


def build_network(sd: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """A MedNeXt v1 or a Generic_UNet (as PlainConvUNet) holding ``sd``, read from its keys and shapes."""
    from mednet_pvs.nets import load_generic_unet_v1, load_mednext_state_dict

    if "stem.weight" in sd:
        loader, what = load_mednext_state_dict, "MedNeXt v1"
    elif any(k.startswith("conv_blocks_context.") for k in sd):
        loader, what = load_generic_unet_v1, "nnU-Net v1 Generic_UNet"
    else:
        raise InputError(path, f"weights are neither a MedNeXt v1 nor an nnU-Net v1 Generic_UNet (keys: {', '.join(list(sd)[:4])}, ...)")
    try:
        return loader(sd).eval()
    except ConfigError as e:
        raise InputError(path, f"weights look like a {what} but do not build one: {e}") from None


def check_trainer(trainer: str, net: nn.Module, path: Path) -> list[str]:
    """Check the weights against what the trainer's name says; returns warnings (errors raise)."""
    from mednet_pvs.nets import MedNeXt
    from mednet_pvs.nets.mednext import preset_config

    is_mednext = isinstance(net, MedNeXt)
    if "MedNeXt" in trainer and not is_mednext:
        raise InputError(path, f"the trainer {trainer!r} trains a MedNeXt, but the weights are an nnU-Net Generic_UNet")
    if is_mednext and "MedNeXt" not in trainer:
        return [f"the trainer {trainer!r} does not name a MedNeXt, but the weights are one"]
    m = _MEDNEXT_TRAINER.search(trainer)
    if not (m and is_mednext):
        return []
    size, kernel = m.group(1), int(m.group(2))
    cfg = net.config
    if cfg.kernel_size != kernel:
        raise InputError(path, f"the trainer {trainer!r} says kernel size {kernel}, the weights have kernel size "
                               f"{cfg.kernel_size}: they are not that trainer's weights")
    preset = preset_config(size, kernel)
    fields = ("n_channels", "exp_r", "block_counts")
    if all(getattr(cfg, f) == getattr(preset, f) for f in fields):
        return []
    got = ", ".join(f"{f} {list(getattr(cfg, f)) if isinstance(getattr(cfg, f), tuple) else getattr(cfg, f)}" for f in fields)
    want = ", ".join(f"{f} {list(getattr(preset, f)) if isinstance(getattr(preset, f), tuple) else getattr(preset, f)}" for f in fields)
    return [(f"the trainer {trainer!r} names MedNeXt-{size} ({want}), but the weights have {got}; "
            "the network was built from the weights")]


def _check_against_plans(net: nn.Module, plans: V1Plans, path: Path) -> None:
    from mednet_pvs.nets import GenericUNetV1Config

    out_ch = getattr(getattr(net, "config", None), "n_classes", None) or getattr(getattr(net, "config", None), "num_classes", None)
    if out_ch is not None and out_ch != plans.num_classes + 1:
        raise InputError(path, f"the plans have {plans.num_classes} foreground class(es), the weights output {out_ch} channels "
                               f"(expected {plans.num_classes + 1})")
    cfg = getattr(net, "config", None)
    in_ch = getattr(cfg, "in_channels", None) or getattr(cfg, "input_channels", None)
    if in_ch is not None and in_ch != plans.n_channels:
        raise InputError(path, f"the weights take {in_ch} input channel(s), the plans have {plans.n_channels} "
                               f"({', '.join(plans.normalization_schemes)})")
    if isinstance(cfg, GenericUNetV1Config) and plans.pool_op_kernel_sizes and \
            (cfg.pool_op_kernel_sizes, cfg.conv_kernel_sizes) != (plans.pool_op_kernel_sizes, plans.conv_kernel_sizes):
        raise InputError(path, f"the plans' pool/conv kernels {[list(k) for k in plans.pool_op_kernel_sizes]} / "
                               f"{[list(k) for k in plans.conv_kernel_sizes]} do not match the weights' "
                               f"{[list(k) for k in cfg.pool_op_kernel_sizes]} / {[list(k) for k in cfg.conv_kernel_sizes]}")


# -------------------------------------------------------------------------------------- import


@dataclass
class _Fold:
    folder: Path
    plans: V1Plans
    network: nn.Module
    spec: dict[str, Any]
    epoch: Any


def _read_fold(fold: Path, checkpoint: str) -> tuple[_Fold, list[str]]:
    from mednet_pvs.nets import network_config
    from mednet_pvs.safe_load import torch_load, unwrap_state_dict

    ckpt = fold / f"{checkpoint}.model"
    pkl = fold / f"{checkpoint}.model.pkl"
    if not pkl.is_file():
        raise InputError(pkl, "missing: nnU-Net v1 keeps the plans (spacing, patch size, normalisation) there; "
                              "copy it next to the .model file")
    plans = parse_plans(read_pickle(pkl), pkl)  # the restricted pickle first: nothing of the checkpoint runs before
    obj = torch_load(ckpt)
    try:
        sd = unwrap_state_dict(obj)
    except ConfigError as e:
        raise InputError(ckpt, str(e)) from None
    net = build_network(sd, ckpt)
    warns = check_trainer(plans.trainer, net, pkl)
    _check_against_plans(net, plans, ckpt)
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    epoch = int(epoch) if isinstance(epoch, (int, np.integer)) else None  # JSON-able
    return _Fold(fold, plans, net, network_config(net).to_dict(), epoch), warns


def _notes(plans: V1Plans, orientation: str, training_orientation: str) -> list[str]:
    notes = [
        (f"nnU-Net v1 does not reorient scans; this bundle reorients them to {orientation}, the axis order the network "
        f"saw for training scans stored as {training_orientation} (transpose_forward {list(plans.transpose_forward)}); "
        "scans stored with flipped axes give the same result with mirroring over all axes"),
        ("nnU-Net v1 resamples (3rd-order spline) then normalises; mednet-pvs normalises, then resamples with B-splines: "
        "intensities differ slightly"),
    ]
    if plans.normalization_schemes[0] == "nonCT" and not plans.use_mask_for_norm[0]:
        notes.append("the plans normalise over the whole cropped image (use_mask_for_norm False); mednet-pvs takes the "
                     "statistics inside the nonzero foreground (or the brain mask given)")
    return notes


def import_nnunet_v1(
    folder: PathType,
    *,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = CHECKPOINT,
    name: str | None = None,
    training_orientation: str = "RAS",
    device: str | torch.device | None = None,
    mode: str = "exact",
) -> Any:
    """Import an nnU-Net v1 result folder as one model (folds = ensemble members).

    Args:
        folder: a trainer folder (``<Trainer>__<Plans>``), any folder above one that holds exactly
            one, or a single ``fold_<k>`` folder.
        folds: which folds (``[0, 1]``, ``["all"]``); default every fold found.
        checkpoint: checkpoint stem (``model_final_checkpoint``, ``model_best``).
        name: the model's name; a registry name (``mednet-pvs-t2w``) also attaches that entry's
            data, figures and citation and checks that the weights are that entry's network.
        training_orientation: axis codes the training scans were stored in (``mode="approximate"``
            only; see the module docstring).
        device: where to put the networks (default: CUDA when available).
        mode: ``"exact"`` (nnU-Net v1's own pipeline, an ``NnUNetModel``) or ``"approximate"`` (the
            project's pipeline, a ``PVSModel`` that can be fine-tuned).

    Returns:
        A ready model; ``model.meta`` records the source, the plans' facts and warnings.
    """
    from mednet_pvs.data.preprocessing import PreprocessConfig
    from mednet_pvs.inference import InferenceConfig, PVSModel, SlidingWindowConfig

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    trainer_dir, found = find_folds(folder, checkpoint)
    chosen = _select(found, folds, trainer_dir)
    read, warns = [], []
    for fold in chosen:
        f, w = _read_fold(fold, checkpoint)
        if read and f.spec != read[0].spec:
            raise InputError(fold, f"its network differs from {read[0].folder.name}'s: folds of one model must share one architecture")
        if read and f.plans.comparable() != read[0].plans.comparable():
            raise InputError(fold, f"its plans differ from {read[0].folder.name}'s (spacing, patch size or normalisation)")
        read.append(f)
        warns += [x for x in w if x not in warns]
    plans, first = read[0].plans, read[0]
    from mednet_pvs.data.nnunet_preprocessing import V1_NORMALIZATIONS

    known = tuple(V1_NORMALIZATIONS) if mode == "exact" else ("nonCT", "noNorm")
    unknown = [n for n in plans.normalization_schemes if n not in known]
    if unknown:
        raise InputError(first.folder / f"{checkpoint}.model.pkl",
                         f"normalization {unknown[0]!r} is not known (known in {mode} mode: {', '.join(known)})")
    folder_name = trainer_dir.name
    trainer = plans.trainer or folder_name.split("__")[0]
    if plans.trainer and folder_name.split("__")[0] != plans.trainer:
        warns.append(f"the folder is named {folder_name!r} but its pickle names the trainer {plans.trainer!r}")
    mirror = () if "noMirroring" in trainer else (0, 1, 2)
    entry_meta: dict[str, Any] = {}
    if name is not None:
        entry_meta, w = _entry_meta(name, first.network, plans)
        warns += w
    task = trainer_dir.parent.name
    meta = {
        "contrast": next(iter(plans.modalities.values()), None),
        **entry_meta,
        "source": {
            "format": "nnU-Net v1", "folder": f"{task}/{folder_name}", "task": task, "trainer": trainer,
            "plans": folder_name.split("__", 1)[1] if "__" in folder_name else None,
            "folds": [f.folder.name for f in read], "checkpoint": checkpoint, "epochs": [f.epoch for f in read],
        },
        "nnunet_v1": {**plans.facts(), **({"training_orientation": training_orientation} if mode != "exact" else {})},
        "import_warnings": warns,
    }
    for w in warns:
        warnings.warn(f"{trainer_dir}: {w}", ZooImportWarning, stacklevel=2)
    if mode == "exact":
        return _exact_model(read, plans, mirror, name or f"{task}__{trainer}", meta, device,
                            first.folder / f"{checkpoint}.model.pkl")
    if plans.n_channels != 1:
        raise InputError(first.folder / f"{checkpoint}.model.pkl",
                         f"has {plans.n_channels} input channels ({', '.join(plans.modalities.values())}): approximate "
                         "mode (fine-tuning) takes single-channel models only; use mode='exact'")
    orientation = network_orientation(training_orientation, plans.transpose_forward)
    meta["import_notes"] = _notes(plans, orientation, training_orientation)
    preprocessing = PreprocessConfig(
        target_spacing=plans.spacing, orientation=orientation,
        normalisation="zscore" if plans.normalization_schemes[0] == "nonCT" else "none",
        use_brainmask=True, foreground="nonzero", crop_to_brain=True, crop_margin_mm=0.0,
        image_interpolation="bspline", label_interpolation="nearest",
    )
    inference = InferenceConfig(SlidingWindowConfig(patch_size=plans.patch_size, step=0.5, sigma_scale=1.0 / 8, mirror_axes=mirror), threshold=0.5)
    return PVSModel(
        [f.network for f in read], first.spec, preprocessing, inference,
        name=name or f"{task}__{trainer}", meta=meta, device=device,
    )


def v1_pipeline(plans: V1Plans, pkl: Path) -> Any:
    """The :class:`~mednet_pvs.data.nnunet_preprocessing.NnUNetPipeline` (``version=1``) of a trainer's plans."""
    from mednet_pvs.data.nnunet_preprocessing import NnUNetPipeline

    given = [plans.modalities.get(str(c), "image" if plans.n_channels == 1 else f"channel_{c}")
             for c in range(plans.n_channels)]
    # v1 lets modalities repeat ({0: "CT", 1: "CT"}); channel names must not (``--channel NAME=path``)
    channels = {str(c): f"{n}_{c:04d}" if given.count(n) > 1 else n for c, n in enumerate(given)}
    names = ["PVS"] if plans.num_classes == 1 else [f"label_{k}" for k in range(1, plans.num_classes + 1)]
    export = plans.export_params or {"order": 1, "order_z": 0, "force_separate_z": None}
    try:
        return NnUNetPipeline(
            version=1, reader="SimpleITKIO", transpose_forward=plans.transpose_forward,
            transpose_backward=plans.transpose_backward, spacing=plans.spacing,
            normalization_schemes=plans.normalization_schemes, use_mask_for_norm=plans.use_mask_for_norm,
            intensity_properties=dict(plans.intensity_properties or {}),
            resampling_data={"order": 3, "order_z": 0, "force_separate_z": None}, resampling_probabilities=export,
            channel_names=channels, labels={"background": 0, **{n: k + 1 for k, n in enumerate(names)}},
        )
    except ConfigError as e:
        raise InputError(pkl, str(e)) from None


def _exact_model(read: list[_Fold], plans: V1Plans, mirror: tuple[int, ...], name: str, meta: dict[str, Any],
                 device: Any, pkl: Path) -> Any:
    from mednet_pvs.inference import InferenceConfig, SlidingWindowConfig
    from mednet_pvs.inference.nnunet_model import NnUNetModel

    for c, scheme in enumerate(plans.normalization_schemes):
        props = (plans.intensity_properties or {}).get(str(c), {})
        need = ("mean", "std", "percentile_00_5", "percentile_99_5") if scheme == "CT" else \
            ("percentile_00_5", "percentile_99_5") if scheme == "CT2" else ()
        if any(k not in props for k in need):
            raise InputError(pkl, f"normalization {scheme!r} needs the plans' dataset_properties['intensityproperties'] "
                                  f"(mean, sd, percentile_00_5, percentile_99_5 of channel {c})")
    window = SlidingWindowConfig(patch_size=plans.patch_size, step=0.5, batch_size=1, mirror_axes=mirror,
                                 channels_last=False)
    return NnUNetModel([f.network for f in read], read[0].spec, v1_pipeline(plans, pkl), InferenceConfig(window=window),
                       name=name, meta={**meta, "mode": "nnunet-v1-exact"}, device=device)


def _entry_meta(name: str, net: nn.Module, plans: V1Plans) -> tuple[dict[str, Any], list[str]]:
    """A registry entry's meta for a model imported under its name, after checking the weights fit it."""
    from mednet_pvs.nets import MedNeXt
    from mednet_pvs.zoo.catalog import find_entry

    entry = find_entry(name)
    if entry is None:
        return {}, []
    family = net.network_name  # "mednext" or "generic_unet_v1": the registry's families
    want = entry.network.get("family")
    if want and want != family:
        raise ConfigError(f"{name!r} is a {entry.network_label} ({want}) in the registry, but these weights are a {family}: "
                          "import them under another --name")
    warns = []
    k = entry.network.get("kernel_size")
    if k and isinstance(net, MedNeXt) and net.config.kernel_size != int(k):
        raise ConfigError(f"{name!r} has kernel size {k} in the registry, these weights {net.config.kernel_size}: "
                          "import them under another --name")
    contrasts = {v.lower() for v in plans.modalities.values()}
    if contrasts and entry.contrast.lower() not in contrasts:
        warns.append(f"the registry entry {name!r} is {entry.contrast}, the plans name the input {', '.join(plans.modalities.values())}")
    return entry.meta(), warns
