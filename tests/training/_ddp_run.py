"""Two-process DDP (gloo, CPU) training of the tiny set-up; each rank saves what it saw and ended with.

Run as ``python _ddp_run.py OUTDIR`` (Lightning re-launches this script for rank 1).
"""
from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _training_helpers import tiny_data, tiny_module  # noqa: E402


class Record(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.train_subjects, self.val_subjects = out, [], []

    def on_train_start(self, trainer, pl_module):
        self.initial = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train_subjects += list(batch["subject"])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val_subjects += list(batch["subject"])

    def on_fit_end(self, trainer, pl_module):
        torch.save({
            "rank": trainer.global_rank, "world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
            "backend": torch.distributed.get_backend(), "global_step": trainer.global_step,
            "initial": self.initial, "final": {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()},
            "train_subjects": self.train_subjects, "val_subjects": self.val_subjects, "val_cases": pl_module._cases,
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        }, self.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    L.seed_everything(0)
    trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=2, limit_train_batches=3, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(out), callbacks=[Record(out)])
    trainer.fit(tiny_module(), tiny_data(synthetic_train_size=6, synthetic_val_size=4, samples_per_volume=2))
