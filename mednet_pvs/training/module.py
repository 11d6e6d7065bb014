"""``PVSSegmenter``: the LightningModule that trains any registered network on PVS patches.

The network itself is a plain ``nn.Module`` from :mod:`mednet_pvs.nets` (built from its registry
name and keyword overrides, so a checkpoint always knows how to rebuild it); this module adds the
loss (Dice + CE with deep supervision, :mod:`~mednet_pvs.training.losses`), the optimiser preset and
schedule (:mod:`~mednet_pvs.training.optim`), whole-volume validation with a Gaussian sliding
window (:func:`mednet_pvs.inference.sliding_window_predict`), the metrics of
:func:`mednet_pvs.analysis.case_metrics` reduced over all ranks, a picture of a validation case
every few epochs, UpKern / warm-start initialisation, encoder freezing for fine-tuning and an
exponential moving average of the weights (``ema_decay``).

Batches (from :class:`mednet_pvs.data.PVSDataModule`)
    training: ``image`` float32 (B, C, X, Y, Z), ``label`` float32 (B, 1, X, Y, Z) in {0, 1};
    validation / test: one whole preprocessed volume, ``image`` (1, C, X, Y, Z), ``label``
    (1, 1, X, Y, Z), ``affine`` (1, 4, 4), optional ``brainmask`` (1, 1, X, Y, Z).

Logged: ``train/loss``, ``train/lr``, ``val/dice``, ``val/precision``, ``val/recall``,
``val/det_f1`` (cluster-level detection F1), ``val/cluster_dice`` (``test/...`` in testing).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from mednet_pvs.data.skeleton import SKELETON_KEY
from mednet_pvs.errors import ConfigError
from mednet_pvs.inference.settings import InferenceConfig
from mednet_pvs.inference.sliding_window import SlidingWindowConfig, sliding_window_predict
from mednet_pvs.nets import create_network, network_config
from mednet_pvs.training.weights import encoder_parameters, load_initial_weights
from mednet_pvs.training.losses import DeepSupervisionLoss, DiceCELoss, TargetDownsampling
from mednet_pvs.training.optim import OptimConfig, PresetName, build_optimizer, build_scheduler, optim_preset

#: Per-case metrics (keys of :func:`mednet_pvs.analysis.case_metrics`) averaged and logged.
METRICS = ("dice", "precision", "recall", "det_f1", "cluster_dice", "brain_dice")
#: Key under which checkpoints carry what an export needs besides the weights.
CKPT_KEY = "mednet_pvs"


def _triple(size: int | Sequence[int]) -> tuple[int, int, int]:
    t = (int(size),) * 3 if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(t) != 3:
        raise ConfigError(f"a patch size is one int or three, not {size!r}")
    return t  # type: ignore[return-value]


class PVSSegmenter(L.LightningModule):
    """Train and validate a PVS segmentation network.

    Args:
        network: registry name (:func:`mednet_pvs.nets.list_networks`), e.g. ``"mednext_l_k5"``.
        network_kwargs: overrides of that network's config (``in_channels``, ``n_channels``...).
        optimizer: preset, ``"mednext"`` (AdamW 1e-3) or ``"nnunet"`` (SGD 1e-2, momentum 0.99).
        lr, weight_decay, poly_power: override the preset (``None`` keeps it).
        warmup_steps: optimiser steps of linear lr warm-up.
        grad_clip: gradient-norm clipping (``None`` keeps the presets' 12; 0 turns it off).
        dice_weight, ce_weight: weights of the two loss terms.
        skeleton_recall_weight: weight of a third, Skeleton Recall (Kirchhoff et al., ECCV 2024:
            soft recall of the PVS's tubed skeleton, :class:`~mednet_pvs.training.losses.SkeletonRecallLoss`;
            the authors use 1); 0 (default) leaves nnU-Net's Dice + CE. The loss skeletonises each
            batch itself unless the data workers add the skeletons (``data.skeleton_classes``, the
            same classes; for GPU training, where doing it here costs more than the step).
        target_downsampling: ``"nearest"`` (nnU-Net) or ``"max"`` for deep-supervision targets.
        inference: how the model predicts, in validation and in the exported bundle: the fields of
            :class:`~mednet_pvs.inference.InferenceConfig` (``window: {patch_size, step,
            mirror_axes, batch_size, ...}``, ``threshold``, ``min_cluster_mm3``; window fields may
            also be given at the top level). The tile defaults to the datamodule's training patch,
            mirroring to all three axes (for the exported model).
        val_tta: mirror during validation too (``inference``'s axes; off by default: 8x faster).
        image_every_n_epochs: log a picture of the first validation case every N epochs (0: never).
        init_from: initial weights: a bundle folder, a Lightning checkpoint of this module, or a
            state-dict file (``.safetensors``/``.pt``); MedNeXt weights of another kernel size
            are resized with UpKern (:func:`mednet_pvs.nets.upkern`).
        freeze_encoder_epochs: keep the encoder's weights fixed for the first N epochs.
        ema_decay: keep an exponential moving average of the network's weights, updated after
            every optimiser step (``ema = decay * ema + (1 - decay) * weights``, as timm's
            ``ModelEmaV3`` and ``torch.optim.swa_utils.get_ema_multi_avg_fn``; 0.999 averages over
            about the last 1,000 steps). Validation, the checkpoint's best-by-``val/dice`` choice
            and the exported bundle then use the averaged weights; checkpoints carry both, so a
            resumed run continues the average. 0 (default): no average.
        labels: output channel -> name, saved into the exported bundle (default ``{0: background,
            1: PVS}``). ``{0: background, 1: brain, 2: PVS}`` trains the any-contrast model: targets
            0 outside the brain, 1 brain, 2 PVS; validation scores PVS on channel 2 and adds
            ``val/brain_dice`` (brain = not background).
    """

    def __init__(
        self,
        network: str = "mednext_l_k5",
        network_kwargs: dict[str, Any] | None = None,
        optimizer: PresetName = "mednext",
        lr: float | None = None,
        weight_decay: float | None = None,
        poly_power: float | None = None,
        warmup_steps: int = 0,
        grad_clip: float | None = None,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        skeleton_recall_weight: float = 0.0,
        target_downsampling: TargetDownsampling = "nearest",
        inference: dict[str, Any] | None = None,
        val_tta: bool = False,
        image_every_n_epochs: int = 5,
        init_from: str | None = None,
        freeze_encoder_epochs: int = 0,
        labels: dict[str, str] | None = None,
        ema_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        from mednet_pvs.inference.bundle import DEFAULT_LABELS

        self.labels = {str(k): str(v) for k, v in (labels or DEFAULT_LABELS).items()}
        names = [v.lower() for _, v in sorted(self.labels.items(), key=lambda kv: int(kv[0]))]
        self._pvs_channel = names.index("pvs") if len(names) > 2 and "pvs" in names else None
        self._with_brain = "brain" in names
        self.net: nn.Module = create_network(network, **(network_kwargs or {}))
        self.network_spec: dict[str, Any] = network_config(self.net).to_dict()
        self.optim: OptimConfig = optim_preset(
            optimizer, lr=lr, weight_decay=weight_decay, poly_power=poly_power, warmup_steps=warmup_steps, grad_clip=grad_clip
        )
        pvs = [self._pvs_channel] if self._pvs_channel is not None else list(range(1, len(names)))
        self.loss = DeepSupervisionLoss(DiceCELoss(dice_weight, ce_weight, skeleton_weight=skeleton_recall_weight,
                                                   skeleton_classes=pvs), target_downsampling)
        self.inference = InferenceConfig.from_dict(inference or {})  # checked now, not at the first validation
        given = dict(inference or {})
        self._patch_given = "patch_size" in given or "patch_size" in (given.get("window") or {})
        if freeze_encoder_epochs < 0 or image_every_n_epochs < 0:
            raise ConfigError("freeze_encoder_epochs and image_every_n_epochs must be >= 0")
        if freeze_encoder_epochs:
            encoder_parameters(self.net)  # fail now, not after the first epoch, if the encoder is unknown
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), not {ema_decay!r}")
        self.net_ema: nn.Module | None = None
        if ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.net_ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.net_ema.requires_grad_(False)  # not trained (and not unused parameters under DDP)
        self._ema_step = 0  # the optimiser step the average last saw (set again when training starts)
        self.val_metrics: dict[str, float] = {}
        self._cases: list[dict[str, Any]] = []
        self._picture: dict[str, Any] | None = None
        self._initialised = init_from is None

    # --------------------------------------------------------------------------------- set-up

    def setup(self, stage: str) -> None:
        """Check the patch size against the network; load ``init_from`` once (before Lightning
        restores a checkpoint, whose weights then win)."""
        from mednet_pvs.nets import required_divisor

        dm_patch = getattr(getattr(self._trainer, "datamodule", None), "patch_size", None)
        div = required_divisor(self.net)
        own = self.inference.window.patch_size if self._patch_given else None
        for patch in (p for p in (own, dm_patch) if p is not None):
            if any(s % d for s, d in zip(_triple(patch), div)):
                raise ConfigError(f"patch size {_triple(patch)} must be a multiple of {tuple(div)} per axis for network "
                                  f"{self.hparams.network!r}")
        dm_skeleton = getattr(getattr(self._trainer, "datamodule", None), "skeleton_classes", None)
        if dm_skeleton is not None:
            srec = self.loss.loss.skeleton  # the Skeleton Recall term, None at weight 0
            if srec is None:
                raise ConfigError(f"the data adds skeletons of classes {list(dm_skeleton)} (data.skeleton_classes) but no loss "
                                  "uses them: set model.skeleton_recall_weight, or drop data.skeleton_classes")
            if sorted(dm_skeleton) != sorted(srec.classes):
                raise ConfigError(f"data.skeleton_classes {list(dm_skeleton)} differ from the classes the Skeleton Recall loss "
                                  f"scores, {srec.classes} (the PVS channel of the labels {self.labels})")
        if self.hparams.freeze_encoder_epochs and self._trainer is not None:
            ddp = getattr(self.trainer.strategy, "_ddp_kwargs", None)
            if ddp is not None and self.trainer.world_size > 1 and not ddp.get("find_unused_parameters"):
                raise ConfigError("freezing the encoder under DDP needs unused-parameter detection: use "
                                  "--trainer.strategy ddp_find_unused_parameters_true")
        if not self._initialised:
            load_initial_weights(self.net, self.hparams.init_from, labels=self.labels)
            self._initialised = True
            if self.net_ema is not None:  # the average starts from the initial weights (a checkpoint's own average wins)
                self.net_ema.module.load_state_dict(self.net.state_dict())

    def eval_net(self) -> nn.Module:
        """The network validation and export use: the weights' moving average with ``ema_decay``,
        else the trained network itself."""
        return self.net_ema.module if self.net_ema is not None else self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """(B, C, X, Y, Z) -> logits (B, K, X, Y, Z), or the deep-supervision list in training mode."""
        return self.net(x)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = build_optimizer(self.net.parameters(), self.optim)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError("the poly lr schedule needs a finite run: set trainer max_epochs or max_steps")
        total = max(int(total), 1)
        sched = build_scheduler(opt, self.optim, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip the gradient norm at the preset's ``grad_clip`` (the Trainer's own setting wins)."""
        value = gradient_clip_val if gradient_clip_val is not None else self.optim.grad_clip
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    # ------------------------------------------------------------------------------- training

    def on_train_epoch_start(self) -> None:
        n = self.hparams.freeze_encoder_epochs
        if n:
            frozen = self.current_epoch < n
            for _, p in encoder_parameters(self.net):
                p.requires_grad_(not frozen)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image, label = batch["image"], batch["label"]
        loss = self.loss(self.net(image), label, batch.get(SKELETON_KEY))  # the data workers' skeletons, when they make them
        bs = image.shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=bs)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def on_train_start(self) -> None:
        self._ema_step = self.global_step  # no update before this run's first optimiser step (resumed runs included)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the weights' moving average once per optimiser step (not per accumulated batch)."""
        if self.net_ema is not None and self.global_step != self._ema_step:
            self._ema_step = self.global_step
            self.net_ema.update_parameters(self.net)

    # ----------------------------------------------------------------------------- validation

    def inference_config(self) -> InferenceConfig:
        """The ``inference`` settings with the tile resolved (given, else the datamodule's patch):
        what validation uses (without mirroring unless ``val_tta``) and the export writes."""
        if self._patch_given:
            return self.inference
        dm = getattr(self._trainer, "datamodule", None)
        if dm is None or getattr(dm, "patch_size", None) is None:
            raise ConfigError("set inference.window.patch_size: there is no datamodule to take the patch size from")
        return self.inference.replace(window=self.inference.window.replace(patch_size=_triple(dm.patch_size)))

    def window(self) -> SlidingWindowConfig:
        """The validation sliding window: :meth:`inference_config`'s, mirrored only with ``val_tta``."""
        window = self.inference_config().window
        return window if self.hparams.val_tta else window.replace(mirror_axes=())

    @torch.no_grad()
    def predict_volume(self, image: torch.Tensor, brainmask: torch.Tensor | None = None) -> torch.Tensor:
        """PVS probability (X, Y, Z) of one preprocessed volume ``image`` (C, X, Y, Z): the PVS
        channel when the labels name one among several, else every foreground class. With a brain
        class, the brain probability (1 - background) is kept in ``self._brain_prob``."""
        mask = None if brainmask is None or self._with_brain else brainmask > 0
        probs = sliding_window_predict(self.eval_net(), image, self.window(), mask=mask, device=self.device)
        if self._with_brain:
            self._brain_prob = 1.0 - probs[0]
        return probs[self._pvs_channel] if self._pvs_channel is not None else probs[1:].sum(0)

    def _evaluate_batch(self, batch: dict[str, Any]) -> None:
        from mednet_pvs.analysis import case_metrics

        image = batch["image"][0]
        bm = batch["brainmask"][0, 0] if "brainmask" in batch else None
        prob = self.predict_volume(image, bm).float().cpu().numpy()
        pred = prob > self.inference.threshold
        if self.inference.min_cluster_mm3 > 0:  # as the exported model will
            from mednet_pvs.analysis import remove_small_clusters

            pred = remove_small_clusters(pred, batch["affine"][0].cpu().numpy(), self.inference.min_cluster_mm3)
        target = batch["label"][0, 0].cpu().numpy()
        ref = target > (self._pvs_channel - 0.5 if self._pvs_channel is not None else 0.5)
        affine = batch["affine"][0].cpu().numpy()
        m = dict(case_metrics(pred, ref, affine))
        m["brain_dice"] = math.nan
        if self._with_brain:
            brain, truth = self._brain_prob.float().cpu().numpy() > 0.5, target > 0.5
            m["brain_dice"] = float(2.0 * (brain & truth).sum() / max(int(brain.sum() + truth.sum()), 1))
        subject = batch.get("subject", ["?"])[0]
        self._cases.append({"subject": subject, **{k: float(m[k]) for k in METRICS}})
        h = self.hparams
        if (self._picture is None and self.global_rank == 0 and h.image_every_n_epochs and self.trainer.validating
                and not self.trainer.sanity_checking
                and (self.current_epoch + 1) % h.image_every_n_epochs == 0):
            self._picture = {"image": image[0].cpu().numpy(), "pred": pred, "affine": affine, "subject": subject, "dice": m["dice"]}

    def _reduce(self) -> dict[str, float]:
        """Mean of each metric over every rank's cases (NaN cases left out, as nnU-Net)."""
        vals = torch.tensor([[c[k] for k in METRICS] for c in self._cases], dtype=torch.float64).reshape(-1, len(METRICS))
        finite = torch.isfinite(vals)
        sums = torch.stack([torch.where(finite, vals, 0.0).sum(0), finite.sum(0).double()]).to(self.device)
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).reshape(-1, 2, len(METRICS)).sum(0)
        sums = sums.cpu()
        return {k: float(sums[0, i] / sums[1, i]) if sums[1, i] > 0 else math.nan for i, k in enumerate(METRICS)}

    def on_validation_epoch_start(self) -> None:
        self._cases, self._picture = [], None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def on_validation_epoch_end(self) -> None:
        means = self._reduce()
        if not self._with_brain:
            means.pop("brain_dice")
        for k, v in means.items():
            self.log(f"val/{k}", v, sync_dist=True)  # already the all-rank mean: identical on every rank
        if not self.trainer.sanity_checking:
            self.val_metrics = {**means, "epoch": self.current_epoch, "cases": len(self._cases)}
        if self._picture is not None:
            self._log_picture(self._picture)
            self._picture = None

    def _log_picture(self, pic: dict[str, Any]) -> Path:
        """Save the picture under ``<log dir>/images/`` and send it to a wandb logger if there is one."""
        from mednet_pvs.viz import save_overview

        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "images"
        path = folder / f"val_epoch{self.current_epoch:04d}_{pic['subject']}.png"
        title = f"epoch {self.current_epoch}, {pic['subject']}: prediction in red, Dice {pic['dice']:.3f}"
        save_overview(pic["image"], pic["pred"], pic["affine"], path, title=title)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(key="val/overview", images=[str(path)], caption=[title], step=self.global_step)
        return path

    # ----------------------------------------------------------------------------------- test

    def on_test_epoch_start(self) -> None:
        self._cases, self._picture = [], None

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def on_test_epoch_end(self) -> None:
        for k, v in self._reduce().items():
            if k != "brain_dice" or self._with_brain:
                self.log(f"test/{k}", v, sync_dist=True)

    # ---------------------------------------------------------------------------- checkpoints

    def export_info(self) -> dict[str, Any]:
        """What an export needs besides the weights: the network spec and latest validation figures,
        and with a datamodule its preprocessing, the inference settings (their tile resolved) and
        the data description."""
        dm = getattr(self._trainer, "datamodule", None)
        info: dict[str, Any] = {"network": self.network_spec, "metrics": dict(self.val_metrics), "labels": dict(self.labels)}
        if self._patch_given:
            info["inference"] = self.inference.to_dict()
        if dm is not None:
            info["preprocessing"] = dm.preprocessing.to_dict()
            info["inference"] = self.inference_config().to_dict()
            info["patch_size"] = list(info["inference"]["window"]["patch_size"])
            if hasattr(dm, "config"):
                info["data"] = dm.config()
        return info

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = self.export_info()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_metrics = dict(checkpoint.get(CKPT_KEY, {}).get("metrics", {}))
        self._initialised = True  # the checkpoint's weights replace any init_from
