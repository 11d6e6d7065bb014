"""StepTimes splits step time into waiting for data and computing, and logs both."""
from __future__ import annotations

import csv
import time

import lightning as L
import pytest
import torch

from mednet_pvs.training.throughput import StepTimes


class _Slow(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(0.03)  # 0.06 s of data per batch of 2
        return torch.ones(3)


class _Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    def training_step(self, batch, batch_idx):
        time.sleep(0.01)
        return (batch * self.w).sum() ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_data_wait_and_compute_are_measured_apart(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    trainer = L.Trainer(max_epochs=1, limit_train_batches=8, log_every_n_steps=4, callbacks=[StepTimes()], accelerator="cpu",
                        logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(_Net(), torch.utils.data.DataLoader(_Slow(), batch_size=2, num_workers=0))
    rows = [r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("perf/data_wait_s")]
    assert len(rows) == 2  # 8 steps, a mean every 4
    for r in rows:
        wait, compute = float(r["perf/data_wait_s"]), float(r["perf/compute_s"])
        assert 0.055 <= wait < 0.5 and 0.009 <= compute < wait  # sleeps: 0.06 s of data, 0.01 s of step
        assert float(r["perf/data_fraction"]) > 0.5
        assert float(r["perf/samples_per_s"]) == pytest.approx(2 / (wait + compute), rel=0.05)


def test_every_must_be_positive():
    with pytest.raises(ValueError, match="every"):
        StepTimes(every=0)
