"""Fine-tune a model bundle on a new cohort and write a new bundle.

    result = finetune("mednet_t2w/", "t1w_cohort/manifest.csv", "mednet_t1w/", epochs=50)
    result.before["dice"], result.after["dice"]           # validation Dice before / after
    PVSModel.from_pretrained("mednet_t1w/")                # the new bundle

The source bundle's preprocessing and sliding-window patch are reused (so the new model sees
its data exactly as the old one did), as are its foreground oversampling and deep-supervision
targets when its bundle records them; the learning rate is a tenth of the one it was trained with
unless told otherwise, and the encoder can be kept frozen for the first epochs.
Checkpoints and logs go to ``run_dir`` (default ``<out>-run/`` beside the bundle), the bundle
folder holds only ``config.json``, ``model.safetensors`` and ``README.md``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType

if TYPE_CHECKING:
    from mednet_pvs.inference.bundle import BundleConfig

#: Learning rate of fine-tuning relative to the preset's (from-scratch) learning rate.
LR_FACTOR = 0.1


@dataclass
class FinetuneResult:
    """What :func:`finetune` did: the new bundle, validation figures before and after, the run folder."""

    folder: Path
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    best_checkpoint: str | None = None


def resolve_model_folder(source: PathType, run_dir: PathType) -> Path:
    """The bundle folder to start from: ``source`` itself when it is a bundle folder, else
    whatever :func:`~mednet_pvs.zoo.load_pretrained` loads for it (a zoo name, ``hf://`` spec or
    nnU-Net v1 or v2 result folder), saved as a bundle in ``<run_dir>/source_model``. An nnU-Net
    folder is imported in approximate mode (the project's own preprocessing, which training
    uses; :func:`~mednet_pvs.zoo.import_nnunet_v1`, :func:`~mednet_pvs.zoo.import_nnunet_v2.import_nnunet_v2`),
    since exact mode's cannot be trained here."""
    from mednet_pvs.inference.bundle import CONFIG
    from mednet_pvs.zoo import load_pretrained, save_pretrained

    path = Path(source).expanduser()
    if (path / CONFIG).is_file():
        return path
    if path.is_dir():
        from mednet_pvs.errors import MednetError
        from mednet_pvs.zoo.import_nnunet_v1 import find_folds, import_nnunet_v1
        from mednet_pvs.zoo.import_nnunet_v2 import (
            import_nnunet_v2,
            is_nnunet_v2_folder,
        )

        if is_nnunet_v2_folder(path):  # as v1: the trainable (approximate) import, nnU-Net's weights exactly
            return save_pretrained(import_nnunet_v2(path, mode="approximate", device="cpu"), Path(run_dir) / "source_model")
        try:
            find_folds(path)
        except MednetError:
            pass
        else:  # exact mode's pipeline is nnU-Net's, not trainable here: start from the project's own (approximate) one
            return save_pretrained(import_nnunet_v1(path, mode="approximate", device="cpu"), Path(run_dir) / "source_model")
    model = load_pretrained(str(source), device="cpu")
    if not hasattr(model, "networks"):
        raise ConfigError(f"{source!r} is a {type(model).__name__}, which has no network to fine-tune")
    return save_pretrained(model, Path(run_dir) / "source_model")


def default_optimizer(network: str | dict[str, Any]) -> str:
    """The optimiser preset a network's authors trained it with (``"mednext"`` or ``"nnunet"``), as the
    network declares it (``optimizer_preset``); ``network`` is a registry name or a network spec."""
    from mednet_pvs.nets import create_meta_network

    return create_meta_network(network).optimizer_preset


def source_lr(config: BundleConfig, preset: str) -> float:
    """The peak lr the bundle was trained with (recorded by the export), else the preset's."""
    from mednet_pvs.training.optim import optim_preset

    training = config.meta.get("training", {})
    return float(training["lr"]) if training.get("optimizer") == preset and training.get("lr") else optim_preset(preset).lr


def finetune(
    source: PathType,
    data: PathType | Sequence[Any] | dict[str, Any],
    out: PathType,
    *,
    epochs: int = 50,
    steps_per_epoch: int | None = 250,
    lr: float | None = None,
    optimizer: str | None = None,
    freeze_encoder_epochs: int = 0,
    split: str = "kfold",
    fold: int | str = 0,
    patch_size: int | tuple[int, int, int] | None = None,
    batch_size: int = 2,
    augmentation: str | dict[str, Any] | None = "nnunet",
    samples_per_volume: int = 4,
    num_workers: int = 2,
    seed: int = 0,
    logger: str = "csv",
    name: str | None = None,
    run_dir: PathType | None = None,
    validate_before: bool = True,
    datamodule_kwargs: dict[str, Any] | None = None,
    module_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune the first network of bundle ``source`` on ``data``; write the best epoch as a bundle in ``out``.

    Args:
        source: a model folder, zoo name, ``hf://`` spec or nnU-Net v1/v2 result folder
            (anything :func:`~mednet_pvs.zoo.load_pretrained` takes).
        data: manifest / BIDS folder / list of cases / synthetic mapping (:class:`~mednet_pvs.data.PVSDataModule`).
        out: the new bundle folder.
        epochs, steps_per_epoch: training length (optimiser steps per epoch; ``None`` = one pass
            over ``samples_per_volume`` patches of every training case).
        lr: peak learning rate (default: :data:`LR_FACTOR` times the lr the source was trained
            with, as its bundle records it, else times the preset's).
        optimizer: ``"mednext"`` or ``"nnunet"`` (default: by network family).
        freeze_encoder_epochs: epochs during which the encoder stays fixed.
        split, fold: as :class:`~mednet_pvs.data.PVSDataModule` (``"kfold"``, ``"kfold:K"``,
            ``"manifest"`` for the manifest's fixed split, a split file, ``"loso"``).
        patch_size: training patch (default: the bundle's sliding-window patch).
        batch_size, augmentation, samples_per_volume, num_workers, seed: data settings.
        logger: ``"csv"``, ``"wandb"``, ``"tensorboard"`` or ``"none"``.
        name: the new model's name (default: ``out``'s folder name).
        run_dir: checkpoints and logs (default ``<out>-run/``).
        validate_before: score the source model on the validation cases first (``result.before``).
        datamodule_kwargs, module_kwargs, trainer_kwargs: anything else for
            :class:`~mednet_pvs.data.PVSDataModule`,
            :class:`~mednet_pvs.training.module.PVSSegmenter` and ``lightning.Trainer``
            (e.g. ``{"devices": 2, "strategy": "ddp"}``).
    """
    import lightning as L

    from mednet_pvs.inference.bundle import CONFIG, read_bundle_config
    from mednet_pvs.training.cli import checkpoint_callbacks, default_precision, make_logger
    from mednet_pvs.data import PVSDataModule
    from mednet_pvs.training.export import best_checkpoint, export_bundle, read_checkpoint
    from mednet_pvs.training.module import CKPT_KEY, PVSSegmenter

    out = Path(out)
    run = Path(run_dir) if run_dir is not None else out.with_name(out.name + "-run")
    folder = resolve_model_folder(source, run)
    config = read_bundle_config(folder)
    if config.kind == "nnunet":
        raise InputError(folder / CONFIG, "is an imported nnU-Net model in exact mode (nnU-Net's own preprocessing), "
                                          "which cannot be trained: fine-tune from the nnU-Net result folder itself "
                                          "(imported in approximate mode)")
    try:
        config.require("network", "preprocessing", "inference")
    except ConfigError as e:
        raise InputError(folder / CONFIG, str(e)) from None
    spec, inference = config.network, config.inference
    source_training = config.meta.get("training", {})
    source_data = source_training.get("data") or {}
    fg = {"foreground_fraction": source_data["foreground_fraction"]} if "foreground_fraction" in source_data else {}
    preset = optimizer or default_optimizer(spec)
    patch = patch_size if patch_size is not None else inference.window.patch_size
    # validation as the source infers (tile: the training patch); the export keeps the source's tile
    validation = inference.to_dict()
    validation["window"].pop("patch_size")

    L.seed_everything(seed, workers=True)
    dm = PVSDataModule(
        data, preprocessing=config.preprocessing, augmentation=augmentation, patch_size=patch, batch_size=batch_size,
        samples_per_volume=samples_per_volume, num_workers=num_workers, split=split, fold=fold, seed=seed,
        run_dir=run, **{**fg, **(datamodule_kwargs or {})},
    )
    module = PVSSegmenter(
        network=spec.name, network_kwargs=dict(spec.kwargs), optimizer=preset,  # type: ignore[arg-type]
        lr=lr if lr is not None else source_lr(config, preset) * LR_FACTOR, init_from=str(folder),
        freeze_encoder_epochs=freeze_encoder_epochs, inference=validation,
        **{"target_downsampling": source_training.get("target_downsampling", "nearest"), **(module_kwargs or {})},
    )
    tkw: dict[str, Any] = dict(max_epochs=epochs, limit_train_batches=steps_per_epoch, default_root_dir=str(run),
                               num_sanity_val_steps=0, logger=make_logger(logger, run))
    tkw.update(trainer_kwargs or {})
    if freeze_encoder_epochs and tkw.get("strategy") == "ddp":  # frozen parameters get no gradient
        tkw["strategy"] = "ddp_find_unused_parameters_true"
    precision = default_precision(tkw.get("accelerator", "auto"))
    if "precision" not in tkw and precision:
        tkw["precision"] = precision
    tkw["callbacks"] = [*checkpoint_callbacks(run), *tkw.get("callbacks", [])]
    trainer = L.Trainer(**tkw)

    before: dict[str, float] = {}
    if validate_before:
        trainer.validate(module, datamodule=dm, verbose=False)
        before = {k: v for k, v in module.val_metrics.items() if isinstance(v, float)}
    trainer.fit(module, datamodule=dm)
    best = best_checkpoint(trainer)
    after = dict(read_checkpoint(best)[CKPT_KEY].get("metrics", {})) if best else dict(module.val_metrics)
    after = {k: v for k, v in after.items() if isinstance(v, float)}
    result = FinetuneResult(out, before, after, run, best)
    if trainer.is_global_zero:
        meta = {**{k: v for k, v in config.meta.items() if k not in ("metrics", "training")},
                "metrics_before_finetuning": {f"val_{k}": v for k, v in before.items()},
                "training": {"finetuned_from": f"{config.name} ({folder})"}}
        export_bundle(best or module, out, name=name, inference=inference.to_dict(), meta=meta)  # infers as the source did
    return result
