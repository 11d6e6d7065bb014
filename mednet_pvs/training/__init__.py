"""Training: the LightningModule, losses, optimiser presets, LightningCLI configs, export, fine-tuning.

    from mednet_pvs.training import PVSSegmenter, export_bundle, finetune
    from mednet_pvs.data import PVSDataModule
    import lightning as L

    module = PVSSegmenter("mednext_l_k5", optimizer="mednext")
    dm = PVSDataModule("cohort/manifest.csv", patch_size=128, batch_size=2)
    L.Trainer(max_epochs=1000, precision="bf16-mixed").fit(module, dm)
    export_bundle("checkpoints/best-....ckpt", "my_model/")       # -> PVSModel.from_pretrained

    finetune("my_model/", "t1w_cohort/manifest.csv", "my_t1w_model/", epochs=50)

The command line (``mednet-pvs fit --config mednext_l_k5_t2w --data.source cohort.csv``) is
:mod:`mednet_pvs.training.cli`.
"""
from __future__ import annotations

from mednet_pvs.training.cli import config_path, list_configs, run_cli
from mednet_pvs.training.export import BundleExport, export_bundle, read_checkpoint
from mednet_pvs.training.finetuning import FinetuneResult, finetune
from mednet_pvs.training.weights import encoder_parameters, load_initial_weights
from mednet_pvs.training.losses import DeepSupervisionLoss, DiceCELoss, SoftDiceLoss, deep_supervision_weights, downsample_target
from mednet_pvs.training.module import PVSSegmenter
from mednet_pvs.training.optim import OptimConfig, build_optimizer, build_scheduler, optim_preset

__all__ = [
    "BundleExport",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "FinetuneResult",
    "OptimConfig",
    "PVSSegmenter",
    "SoftDiceLoss",
    "build_optimizer",
    "build_scheduler",
    "config_path",
    "deep_supervision_weights",
    "downsample_target",
    "encoder_parameters",
    "export_bundle",
    "finetune",
    "list_configs",
    "load_initial_weights",
    "optim_preset",
    "read_checkpoint",
    "run_cli",
]
