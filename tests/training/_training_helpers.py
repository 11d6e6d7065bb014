"""Tiny set-ups shared by the training tests (imported through ``tests/training/conftest.py``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

#: A MedNeXt small enough to train on a CPU in seconds (about 250k parameters).
TINY_NET = {"in_channels": 1, "n_classes": 2, "n_channels": 8, "exp_r": 2, "block_counts": [1] * 9}
#: Procedural 64^3 phantoms.
PHANTOMS = {"source": "synthetic", "anatomy": "procedural", "shape": [64, 64, 64], "contrast": "T2w"}


def tiny_module(**kw: Any):
    from mednet_pvs.training import PVSSegmenter

    args: dict[str, Any] = dict(network="mednext", network_kwargs=dict(TINY_NET), inference={"batch_size": 4}, image_every_n_epochs=0)
    args.update(kw)
    return PVSSegmenter(**args)


def tiny_data(source: Any = None, **kw: Any):
    from mednet_pvs.data import PVSDataModule

    args: dict[str, Any] = dict(preprocessing={"target_spacing": None}, augmentation="none", patch_size=32, batch_size=2,
                                samples_per_volume=4, queue_length=8, num_workers=0, synthetic_train_size=4, synthetic_val_size=2)
    args.update(kw)
    return PVSDataModule(dict(PHANTOMS) if source is None else source, **args)


def tiny_trainer(root: Path, **kw: Any) -> L.Trainer:
    args: dict[str, Any] = dict(max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root), accelerator="cpu")
    args.update(kw)
    return L.Trainer(**args)
