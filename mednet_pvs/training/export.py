"""From a training checkpoint to a model bundle (``config.json`` + ``model.safetensors`` + ``README.md``).

    export_bundle("run/checkpoints/best-epoch=41-step=10500.ckpt", "my_model/")
    PVSModel.from_pretrained("my_model/").predict("scan.nii.gz")

The checkpoint carries what the bundle needs besides the weights (saved by
:meth:`~mednet_pvs.training.module.PVSSegmenter.on_save_checkpoint`): the network spec,
the datamodule's preprocessing and patch size, the data description and the validation figures
of that epoch. :class:`BundleExport` does this at the end of ``fit`` with the best checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType
from mednet_pvs.training.weights import checkpoint_network_state
from mednet_pvs.training.module import CKPT_KEY, METRICS, PVSSegmenter
from mednet_pvs.training.optim import optim_preset


def read_checkpoint(path: PathType) -> dict[str, Any]:
    """A Lightning checkpoint of :class:`PVSSegmenter` (tensors and plain values only)."""
    from mednet_pvs.safe_load import torch_load

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        ckpt = torch_load(path)
    except InputError as e:  # the file exists: it cannot be read with weights_only=True
        cause = e.__cause__ or e
        raise InputError(path, f"cannot be read as a Lightning checkpoint ({str(cause).splitlines()[0] if str(cause) else type(cause).__name__})") from None
    if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt or "state_dict" not in ckpt:
        raise InputError(path, "not a mednet-pvs training checkpoint (no network spec / preprocessing inside)")
    return ckpt


def export_bundle(
    source: PathType | PVSSegmenter,
    folder: PathType,
    *,
    name: str | None = None,
    preprocessing: dict[str, Any] | None = None,
    patch_size: tuple[int, int, int] | None = None,
    inference: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a model bundle from a checkpoint path (or a module) with :meth:`PVSModel.save_pretrained`.

    Args:
        source: a ``.ckpt`` of :class:`PVSSegmenter`, or the module itself (then
            ``preprocessing`` and ``patch_size`` are required unless it is attached to a Trainer
            with a datamodule).
        folder: the bundle folder to write.
        name: the model's name (default: the folder's name).
        preprocessing, patch_size: override what the checkpoint recorded.
        inference: changes to the recorded :class:`~mednet_pvs.inference.InferenceConfig` (the
            module's ``inference`` with the training patch; checkpoints of older versions: the
            training patch, step 0.5, mirroring on all axes, their threshold).
        meta: extra entries for ``config.json``'s ``meta`` (e.g. ``contrast``, ``licence``).
        dtype: store the weights in this floating type (``torch.float16``: half the size).
    """
    from mednet_pvs.inference import InferenceConfig, PVSModel
    from mednet_pvs.nets import create_network_from_config

    folder = Path(folder)
    if isinstance(source, PVSSegmenter):
        extra = source.export_info()
        state, averaged = source.eval_net().state_dict(), source.net_ema is not None
        hparams, epoch, step, origin = dict(source.hparams), source.current_epoch, source.global_step, None
    else:
        ckpt = read_checkpoint(source)
        extra = ckpt[CKPT_KEY]
        state, averaged = checkpoint_network_state(ckpt["state_dict"])
        hparams, epoch, step, origin = ckpt.get("hyper_parameters", {}), ckpt.get("epoch"), ckpt.get("global_step"), Path(source).name
    preprocessing = preprocessing if preprocessing is not None else extra.get("preprocessing")
    patch_size = patch_size if patch_size is not None else extra.get("patch_size")
    if preprocessing is None or patch_size is None:
        raise InputError(str(source), "does not record the preprocessing and patch size: pass preprocessing= and patch_size=")
    net = create_network_from_config(extra["network"])
    net.load_state_dict(state)
    recorded = InferenceConfig.from_dict(extra.get("inference") or {"threshold": hparams.get("threshold", 0.5)})
    inf = recorded.updated({"patch_size": list(patch_size)}).updated(inference or {})
    figures = {f"val_{k}": v for k, v in extra.get("metrics", {}).items() if k in METRICS}
    preset = hparams.get("optimizer") or "mednext"
    training = {"network": extra["network"]["name"], "optimizer": preset, "lr": optim_preset(preset, lr=hparams.get("lr")).lr,
                "target_downsampling": hparams.get("target_downsampling", "nearest"), "epoch": epoch, "global_step": step}
    if averaged:
        training["weights"] = f"exponential moving average, decay {hparams.get('ema_decay')}"
    if origin:
        training["checkpoint"] = origin
    if "data" in extra:
        training["data"] = extra["data"]
    full_meta = {"metrics": figures, "training": training, **(meta or {})}
    if meta and "training" in meta:
        full_meta["training"] = {**training, **meta["training"]}
    model = PVSModel(net, extra["network"], preprocessing, inf, name=name or folder.name, meta=full_meta, device="cpu",
                     labels=extra.get("labels"))
    return model.save_pretrained(folder, dtype=dtype)


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """Path of the trainer's best checkpoint by ``val/dice``, else of its last one (``None`` if none)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    cbs = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]  # type: ignore[attr-defined]
    for cb in cbs:
        if cb.monitor == "val/dice" and cb.best_model_path:
            return cb.best_model_path
    return next((cb.last_model_path for cb in cbs if cb.last_model_path), None)


class BundleExport(L.Callback):
    """At the end of ``fit``, export the best checkpoint (by ``val/dice``; else the last) as a bundle.

    Args:
        folder: bundle folder (default ``<default_root_dir>/model``); ``""`` turns export off.
        name: the model's name (default: the folder's name).
        weights_dtype: ``"float32"`` or ``"float16"`` (half the size on disk; loaded as float32).
        meta: extra ``config.json`` meta entries (``contrast``, ``licence``, ``training_data``...).
    """

    def __init__(self, folder: str | None = None, name: str | None = None, weights_dtype: str = "float32",
                 meta: dict[str, Any] | None = None) -> None:
        if weights_dtype not in ("float32", "float16", "bfloat16"):
            raise ConfigError(f"weights_dtype must be float32, float16 or bfloat16, not {weights_dtype!r}")
        self.folder, self.name, self.weights_dtype, self.meta = folder, name, weights_dtype, meta
        self.path: Path | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.folder == "" or not trainer.is_global_zero:
            return
        folder = Path(self.folder) if self.folder else Path(trainer.default_root_dir) / "model"
        best = best_checkpoint(trainer)
        self.path = export_bundle(best if best else pl_module, folder, name=self.name, meta=self.meta,  # type: ignore[arg-type]
                                  dtype=None if self.weights_dtype == "float32" else getattr(torch, self.weights_dtype))
