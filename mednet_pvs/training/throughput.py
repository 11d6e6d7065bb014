"""Does the data keep up with the network? Time spent waiting for batches against time computing.

:class:`StepTimes` is a Lightning callback that splits each training step's wall time in two:

* ``perf/data_wait_s``: from the end of one step to the start of the next, i.e. waiting for the
  loader (on the fly generation: the synthetic phantoms of ``--config synth_any``);
* ``perf/compute_s``: from the start of a step to its end (forward, backward, optimiser; the GPU is
  synchronised first so that queued kernels are counted where they run);

and logs their means over the last ``log_every_n_steps`` steps with ``perf/samples_per_s`` (patches
per second of wall time) and ``perf/data_fraction`` (share of wall time spent waiting: above ~0.1
the data starves the network). Add it to any run with
``--trainer.callbacks+=mednet_pvs.training.throughput.StepTimes``.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch import Callback


class StepTimes(Callback):
    """Log data-wait and compute time per optimiser step (seconds), means over ``every`` steps.

    Args:
        every: steps per logged mean (``None``: the Trainer's ``log_every_n_steps``).
    """

    def __init__(self, every: int | None = None) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be >= 1, not {every}")
        self.every = every
        self._end: float | None = None
        self._start = 0.0
        self._wait: list[float] = []
        self._compute: list[float] = []
        self._samples = 0

    @staticmethod
    def _sync(pl_module: Any) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._end = time.perf_counter()  # the first wait of an epoch includes starting the loader

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()
        if self._end is not None:
            self._wait.append(self._start - self._end)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._sync(pl_module)
        self._end = time.perf_counter()
        self._compute.append(self._end - self._start)
        self._samples += _batch_size(batch)
        every = self.every or max(int(trainer.log_every_n_steps), 1)
        if len(self._compute) >= every and self._wait:
            wait, compute = sum(self._wait), sum(self._compute)
            pl_module.log_dict({
                "perf/data_wait_s": wait / len(self._wait),
                "perf/compute_s": compute / len(self._compute),
                "perf/samples_per_s": self._samples / max(wait + compute, 1e-9),
                "perf/data_fraction": wait / max(wait + compute, 1e-9),
            }, on_step=True, on_epoch=False, batch_size=1)
            self._wait, self._compute, self._samples = [], [], 0


def _batch_size(batch: Any) -> int:
    """Patches in a batch: the leading size of its first tensor (a dict of TorchIO images or a tensor)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        for value in batch.values():
            n = _batch_size(value)
            if n:
                return n
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    return 0
