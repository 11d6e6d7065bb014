"""``mednet-pvs finetune``: adapt a model bundle to a new cohort and write a new bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mednet_pvs.cli.options import INPUT, MODEL, OUT, choices, plain, renamed

Augmentation = choices("Augmentation", ("nnunet", "mri", "none"))
Accelerator = choices("Accelerator", ("auto", "cpu", "gpu", "cuda", "mps", "tpu"))
#: Lightning's precision names (a subset of ``lightning.fabric.plugins.precision.precision._PRECISION_INPUT_STR``).
Precision = choices("Precision", ("bf16-mixed", "16-mixed", "32-true", "bf16-true", "16-true", "64-true"))
Logger = choices("Logger", ("csv", "wandb", "tensorboard", "none"))


def register(app: typer.Typer) -> None:
    @app.command("finetune", cls=renamed({"--from": "--model", "--data": "--input"}))
    def finetune_cmd(
        source: str = typer.Option(..., *MODEL, help="Model to start from: zoo name, model folder, hf://owner/repo@rev or nnU-Net v1 result folder."),
        data: Path = typer.Option(..., *INPUT, help="Cohort: manifest .csv/.tsv or BIDS-like folder."),
        out: Path = typer.Option(..., *OUT, help="Folder for the new model bundle."),
        epochs: int = typer.Option(50, "--epochs", min=1, help="Training epochs."),
        steps_per_epoch: int = typer.Option(250, "--steps-per-epoch", min=1, help="Optimiser steps per epoch."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default: a tenth of the lr the source was trained with)."),
        freeze_encoder_epochs: int = typer.Option(0, "--freeze-encoder-epochs", min=0, help="Keep the encoder fixed for the first N epochs."),
        split: str = typer.Option("kfold", "--split", help="kfold, kfold:K, manifest (the manifest's split column), loso, or a split .json."),
        fold: str = typer.Option("0", "--fold", help="Fold index (or held-out site for loso)."),
        patch_size: Optional[str] = typer.Option(None, "--patch-size", help="Training patch N or X,Y,Z (default: the model's)."),
        batch_size: int = typer.Option(2, "--batch-size", min=1),
        augmentation: Augmentation = typer.Option("nnunet", "--augmentation", help="Training augmentation: nnU-Net's, MRI artefacts, or none."),
        num_workers: int = typer.Option(2, "--num-workers", min=0),
        seed: int = typer.Option(0, "--seed"),
        accelerator: Accelerator = typer.Option("auto", "--accelerator", help="Lightning accelerator."),
        devices: str = typer.Option("auto", "--devices", help="auto, a number of devices, or a list such as 0,1."),
        precision: Optional[Precision] = typer.Option(None, "--precision", help="Lightning precision (default: bf16-mixed on GPU)."),
        logger: Logger = typer.Option("csv", "--logger", help="Training log: CSV, wandb (offline without WANDB_API_KEY; pip install 'mednet-pvs[wandb]'), tensorboard or none."),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Checkpoints and logs (default: <out>-run)."),
        name: Optional[str] = typer.Option(None, "--name", help="Name of the new model (default: the folder name)."),
    ) -> None:
        """Fine-tune a model folder on a cohort (its preprocessing reused, lower lr) and write a new model folder."""
        from mednet_pvs.cli.cmd_synth import parse_shape
        from mednet_pvs.io import check_output_dir
        from mednet_pvs.training.finetuning import finetune

        check_output_dir(out)
        trainer_kwargs: dict = {"accelerator": plain(accelerator), "devices": int(devices) if devices.isdigit() else devices}
        if precision:
            trainer_kwargs["precision"] = plain(precision)
        result = finetune(
            source, data, out, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr, freeze_encoder_epochs=freeze_encoder_epochs,
            split=split, fold=int(fold) if fold.lstrip("-").isdigit() else fold,
            patch_size=parse_shape(patch_size) if patch_size else None, batch_size=batch_size, augmentation=plain(augmentation),
            num_workers=num_workers, seed=seed, logger=plain(logger), name=name, run_dir=run_dir, trainer_kwargs=trainer_kwargs,
        )
        typer.echo(f"{'metric':<14}{'before':>10}{'after':>10}")
        for key in result.after:
            typer.echo(f"{key:<14}{result.before.get(key, float('nan')):>10.4f}{result.after[key]:>10.4f}")
        typer.echo(f"wrote {result.folder} (checkpoints and logs in {result.run_dir})")
