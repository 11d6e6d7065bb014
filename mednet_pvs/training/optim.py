"""Optimiser presets and the learning-rate schedule (polynomial decay with linear warm-up).

Presets, as the reference trainers set them:

* ``"nnunet"``: nnU-Net's ``nnUNetTrainer``: SGD, lr 1e-2, momentum 0.99, Nesterov, weight decay
  3e-5, poly decay ``(1 - t/T)**0.9``, gradient norm clipped at 12.
* ``"mednext"``: MedNeXt's ``nnUNetTrainerV2_Optim_and_LR`` (MIC-DKFZ/MedNeXt,
  ``nnunet_mednext/training/network_training/MedNeXt/nnUNetTrainerV2_MedNeXt.py``): AdamW, lr 1e-3,
  ``eps=1e-4`` ("1e-8 might cause nans in fp16"), weight decay 3e-5 (inherited from
  ``nnUNetTrainer``), and the same poly decay and clipping at 12 (inherited from ``nnUNetTrainerV2``).

The reference trainers decay once per epoch of 250 iterations; here the decay is per optimiser
step over the whole run (``T`` = the Trainer's total steps), which is the same curve sampled
finer and does not depend on the epoch length. ``warmup_steps`` ramps the lr linearly from 0.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from mednet_pvs.errors import ConfigError

PresetName = Literal["nnunet", "mednext"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule settings (a preset with optional overrides).

    Attributes:
        name: ``"sgd"`` or ``"adamw"``.
        lr: peak learning rate.
        weight_decay: L2 (SGD) / decoupled (AdamW) weight decay.
        momentum, nesterov: SGD only.
        eps: AdamW only.
        poly_power: exponent of the polynomial decay (0 = constant lr).
        warmup_steps: optimiser steps of linear warm-up from 0 to ``lr``.
        grad_clip: maximum gradient norm (``None`` or 0 = no clipping).
    """

    name: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 3e-5
    momentum: float = 0.99
    nesterov: bool = True
    eps: float = 1e-4
    poly_power: float = 0.9
    warmup_steps: int = 0
    grad_clip: float | None = 12.0

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adamw"):
            raise ConfigError(f"optimiser must be 'sgd' or 'adamw', not {self.name!r}")
        if not self.lr > 0 or self.weight_decay < 0 or self.poly_power < 0 or self.warmup_steps < 0:
            raise ConfigError(
                f"need lr > 0, weight_decay >= 0, poly_power >= 0 and warmup_steps >= 0; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, poly_power={self.poly_power}, warmup_steps={self.warmup_steps}"
            )
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0 or None, not {self.grad_clip}")


PRESETS: dict[str, OptimConfig] = {
    "nnunet": OptimConfig(name="sgd", lr=1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True),
    "mednext": OptimConfig(name="adamw", lr=1e-3, weight_decay=3e-5, eps=1e-4),
}


def optim_preset(preset: str, **overrides: Any) -> OptimConfig:
    """The named preset with the fields in ``overrides`` replaced (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown optimiser preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` describes, over ``params``."""
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.eps)


class PolyWarmup:
    """LR factor at optimiser step ``t``: ``t / warmup`` during warm-up, then ``(1 - t / total) ** power``.

    A plain object (not a closure) so that ``LambdaLR.state_dict`` saves ``total``/``warmup``/``power``
    and a resumed run continues the same curve.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, power: float = 0.9) -> None:
        if total_steps < 1:
            raise ConfigError(f"the schedule needs at least one step, got total_steps={total_steps}")
        self.total_steps, self.warmup_steps, self.power = int(total_steps), int(warmup_steps), float(power)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return max(0.0, 1.0 - step / self.total_steps) ** self.power


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step poly decay with warm-up over ``total_steps`` optimiser steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, PolyWarmup(total_steps, cfg.warmup_steps, cfg.poly_power))
