"""``PVSDataModule``: from a manifest, a folder or synthetic phantoms to training batches.

``setup()`` (every rank): read the cases, validate them (headers and voxels, on global rank 0,
the verdict broadcast), make the split (saved as ``<run_dir>/split.json`` with the data config in
``<run_dir>/data_config.json``), and build the patch queue (this rank's shard of the training
subjects) and the validation set.

Batches (see :func:`mednet_pvs.data.sampling.collate_subjects`)
---------------------------------------------------------------
* training: patches, ``batch["image"]`` float32 (B, C, X, Y, Z), ``batch["label"]`` float32
  (B, 1, X, Y, Z) in {0, 1}, ``batch["location"]`` (B, 6) int64 (patch start and end, voxels),
  ``batch["subject"]``/``["site"]`` lists; (X, Y, Z) = ``patch_size``. (The brain mask, used by
  preprocessing, is dropped from patches: one copy less per patch in the main process.)
* validation: one whole preprocessed volume per batch (B = 1, no patches, any shape): ``"image"``,
  ``"label"``, ``"brainmask"`` (when the cases have one), ``"affine"`` (1, 4, 4) of the
  preprocessed grid and ``"input_shape"`` (1, 3) / ``"input_affine"`` (1, 4, 4) of the original
  grid (:func:`~mednet_pvs.data.preprocessing.resample_to_grid` maps a prediction back). Predict
  it with a sliding window.

Epochs and DDP
--------------
Each rank's queue draws its own shard of subjects (``DistributedSampler``); the train loader's
sampler forwards ``set_epoch`` to it and restarts the queue, and Lightning calls ``set_epoch`` on
that sampler at the start of every epoch, so nothing needs to be added to the Trainer (keep its
default ``use_distributed_sampler=True``: the validation loader is then sharded by Lightning).
Outside Lightning: ``loader = dm.train_dataloader(); loader.sampler.set_epoch(e)`` per epoch.

Synthetic source
----------------
``source="synthetic"`` (or a ``PhantomConfig`` / its dict) trains on a fresh stream of phantoms:
phantom ``i`` of epoch ``e`` has ``seed = seed + e * n + i`` (``n = synthetic_train_size`` per
epoch, shared across ranks, see :class:`~mednet_pvs.data.sampling.FreshSampler`), so no two
ranks, workers or epochs produce the same phantom. Validation phantoms use seeds from
``seed + 2**31``, test phantoms from ``seed + 2**31 + 2**20`` (never used for training).

The stream resumes: a checkpoint holds how many phantoms the run has drawn in its current epoch
(:meth:`PVSDataModule.state_dict`), and ``--ckpt_path`` shifts every later seed by that many, so a
resumed run continues with new phantoms instead of replaying the epoch's first ones (the patches
still queued at the save are dropped, never repeated).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Union

import lightning as L
import numpy as np
import torch
import torchio as tio
from torch.utils.data import Dataset

from mednet_pvs.data.augmentation import AugmentationConfig, _triple, as_augmentation_config, build_training_transform
from mednet_pvs.data.cases import Case, load_cases
from mednet_pvs.data.checks import Report, validate_cases
from mednet_pvs.data.preprocessing import PreprocessConfig, _as_config, build_preprocessing, subject_from_arrays, subject_from_case
from mednet_pvs.data.sampling import (
    FOREGROUND_FRACTION,
    FreshSampler,
    PatchQueue,
    RemoveImages,
    check_fractions,
    collate_subjects,
    make_queue,
    patch_loader,
)
from mednet_pvs.data.skeleton import TubedSkeleton
from mednet_pvs.data.skeleton import skeleton_classes as checked_skeleton_classes
from mednet_pvs.data.splits import Split, make_split, save_split
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType, write_json

VAL_SEED_OFFSET = 2**31
#: Seeds of synthetic test phantoms start at ``seed + TEST_SEED_OFFSET`` (after the validation ones).
TEST_SEED_OFFSET = 2**31 + 2**20


def _is_synthetic(source: Any) -> bool:
    if isinstance(source, str) and source == "synthetic":
        return True
    return type(source).__name__ in ("PhantomConfig", "DomainConfig") or (isinstance(source, dict) and source.get("source") == "synthetic")


class PhantomDataset(Dataset):
    """Subject ``i`` is the phantom ``make_phantom(config, seed=base_seed + i)``, transformed.

    Indexable by any non-negative int (``len`` is only the nominal epoch size); items are
    ``tio.Subject`` with ``"image"``, ``"label"``, ``"brainmask"``, ``subject="phantom-<seed>"``.
    """

    def __init__(self, config: Any = None, n: int = 64, base_seed: int = 0, transform: tio.Transform | None = None) -> None:
        self.config, self.n, self.base_seed, self.transform = config, n, base_seed, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tio.Subject:
        from mednet_pvs.synth import make_phantom
        from mednet_pvs.synth.domain import DomainConfig, brain_pvs_labels, make_domain_phantom

        seed = self.base_seed + int(index)
        if isinstance(self.config, DomainConfig):  # any-contrast training: target 0 outside, 1 brain, 2 PVS
            ph = make_domain_phantom(self.config, seed=seed)
            given = np.random.default_rng(seed).random() < self.config.p_brainmask
            subject = subject_from_arrays(ph.image, ph.affine, brain_pvs_labels(ph), ph.brainmask if given else None,
                                          subject=f"phantom-{seed}", site="synthetic")
        else:
            ph = make_phantom(self.config, seed=seed)
            subject = subject_from_arrays(ph.image, ph.affine, ph.label, ph.brainmask, subject=f"phantom-{seed}", site="synthetic")
        return self.transform(subject) if self.transform is not None else subject


class PVSDataModule(L.LightningDataModule):
    """Training patches and whole-volume validation for PVS segmentation.

    Args:
        source: manifest (CSV/TSV), BIDS-like folder, list of :class:`Case`, or ``"synthetic"`` /
            a ``PhantomConfig`` (a dict with ``"source": "synthetic"`` and the config's fields).
        preprocessing: :class:`PreprocessConfig` or its dict (default config when ``None``).
        augmentation: preset name (``"nnunet"``, ``"mri"``, ``"none"``), config or dict.
        patch_size: training patch (X, Y, Z) voxels, or one int (128 for MedNeXt-L).
        batch_size: patches per training batch.
        samples_per_volume: patches drawn from each loaded, augmented volume.
        queue_length: patches held in memory per rank.
        num_workers: processes loading/augmenting volumes (training queue and validation).
        split: ``"kfold"``, ``"kfold:K"``, ``"loso"``, ``"manifest"`` or a split JSON path.
        fold: fold index (k-fold, LOSO) or held-out site name (LOSO).
        seed: seed of the split, the subject order and the phantoms.
        skip_bad_cases: drop cases that fail validation (else one error lists every problem).
        foreground_fraction: fraction of patches placed around a PVS voxel (nnU-Net 0.33).
        boundary_fraction: fraction placed around the brain's edge (targets with a brain class,
            the any-contrast model: the brain-versus-head decision is made there).
        check_voxels: validation reads voxels (NaN, label values, empty), not only headers.
        check_workers: processes for the voxel checks (default: CPU count, at most 8).
        allow_empty_label: a label without PVS is not a problem.
        run_dir: where ``split.json`` and ``data_config.json`` go (default: the Trainer's
            ``default_root_dir`` when attached to one; nothing is written without either).
        synthetic_train_size: phantoms per training epoch (all ranks together).
        synthetic_val_size: validation phantoms.
        skeleton_classes: classes whose tubed skeleton (Skeleton Recall's target) the loader
            workers add to every training patch as ``"skeleton"``, once per augmented volume
            (:class:`~mednet_pvs.data.skeleton.TubedSkeleton`): for GPU training with
            ``--model.skeleton_recall_weight``, whose classes they must be (the PVS class: 2 with
            labels background/brain/PVS, else 1). ``None``: the loss makes them itself.
    """

    def __init__(
        self,
        # Union[dict, str, list, Any], not ``PathType | Sequence[Case] | Any``: with the latter,
        # LightningCLI (jsonargparse) turns a YAML mapping (a synthetic source) into its str().
        source: Union[dict, str, list, Any],
        preprocessing: PreprocessConfig | dict | None = None,
        augmentation: str | AugmentationConfig | dict | None = "nnunet",
        patch_size: int | tuple[int, int, int] = 128,
        batch_size: int = 2,
        samples_per_volume: int = 4,
        queue_length: int = 32,
        num_workers: int = 2,
        split: str | PathType | Split = "kfold",
        fold: int | str = 0,
        seed: int = 0,
        skip_bad_cases: bool = False,
        foreground_fraction: float = FOREGROUND_FRACTION,
        boundary_fraction: float = 0.0,
        check_voxels: bool = True,
        check_workers: int | None = None,
        allow_empty_label: bool = False,
        run_dir: PathType | None = None,
        synthetic_train_size: int = 64,
        synthetic_val_size: int = 4,
        skeleton_classes: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.preprocessing = _as_config(preprocessing)
        self.augmentation = as_augmentation_config(augmentation)
        self.patch_size = _triple(patch_size)
        if batch_size < 1 or samples_per_volume < 1 or num_workers < 0:
            raise ConfigError("batch_size and samples_per_volume must be >= 1 and num_workers >= 0")
        self.batch_size, self.samples_per_volume, self.queue_length = batch_size, samples_per_volume, queue_length
        self.num_workers, self.split_spec, self.fold, self.seed = num_workers, split, fold, seed
        self.skip_bad_cases, self.foreground_fraction = skip_bad_cases, foreground_fraction
        check_fractions(foreground_fraction, boundary_fraction)
        self.boundary_fraction = boundary_fraction
        self.check_voxels, self.check_workers, self.allow_empty_label = check_voxels, check_workers, allow_empty_label
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.synthetic_train_size, self.synthetic_val_size = synthetic_train_size, synthetic_val_size
        self.synthetic = _is_synthetic(source)
        self.skeleton_classes = None if skeleton_classes is None else checked_skeleton_classes(skeleton_classes)
        self.report: Report | None = None
        self.split: Split | None = None
        self.train_cases: list[Case] = []
        self.val_cases: list[Case] = []
        self.queue: PatchQueue | None = None
        self.val_set: Dataset | None = None
        #: phantoms drawn before the last resume (synthetic source): training seeds start at seed + this
        self.seed_shift = 0
        self._phantoms: PhantomDataset | None = None

    # ------------------------------------------------------------------------------- helpers

    def _world(self) -> tuple[int, int]:
        """(world size, global rank): from the Trainer, else torch.distributed, else (1, 0)."""
        trainer = self.trainer
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (Lightning strategy, else torch.distributed, else as is)."""
        if self.trainer is not None:
            return self.trainer.strategy.broadcast(obj, src=0)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            box = [obj]
            torch.distributed.broadcast_object_list(box, src=0)
            return box[0]
        return obj

    def _out_dir(self) -> Path | None:
        if self.run_dir is not None:
            return self.run_dir
        trainer = self.trainer
        return Path(trainer.default_root_dir) if trainer is not None else None

    def config(self) -> dict[str, Any]:
        """JSON-able description of the data pipeline (what ``data_config.json`` holds)."""
        src = self.source
        if self.synthetic:
            src = "synthetic" if isinstance(src, str) else (src if isinstance(src, dict) else getattr(src, "to_dict", lambda: str(src))())
        elif not isinstance(src, (str, Path)):
            src = f"<{len(list(src))} cases>"
        return {
            "source": str(src) if isinstance(src, Path) else src,
            "preprocessing": self.preprocessing.to_dict(),
            "augmentation": self.augmentation.to_dict(),
            "patch_size": list(self.patch_size),
            "batch_size": self.batch_size,
            "samples_per_volume": self.samples_per_volume,
            "queue_length": self.queue_length,
            "foreground_fraction": self.foreground_fraction,
            "boundary_fraction": self.boundary_fraction,
            "split": str(self.split_spec) if not isinstance(self.split_spec, Split) else self.split_spec.method,
            "fold": self.fold,
            "seed": self.seed,
            "skeleton_classes": self.skeleton_classes,
        }

    # --------------------------------------------------------------------------------- setup

    def load_and_check(self) -> list[Case]:
        """Cases of the source that pass validation (problems on rank 0, broadcast)."""
        cases = list(self.source) if isinstance(self.source, (list, tuple)) else load_cases(self.source)
        _, rank = self._world()
        problems: list[str] = []
        if rank == 0:
            self.report = validate_cases(
                cases, skip_bad=True, voxels=self.check_voxels, workers=self.check_workers, allow_empty_label=self.allow_empty_label
            )
            problems = [str(p) for p in self.report.problems]
            bad = self.report.bad
        else:
            bad = []
        bad, problems = self._broadcast((bad, problems))
        if problems and not self.skip_bad_cases:
            raise InputError(None, f"{len(bad)} of {len(cases)} case(s) have problems (skip them with skip_bad_cases=True): " + "; ".join(problems))
        if bad:
            warnings.warn(f"skipping {len(bad)} bad case(s): {', '.join(bad)}", stacklevel=2)
        good = [c for c in cases if c.key not in set(bad)]
        if not good:
            raise InputError(None, "no usable case left after validation")
        return good

    def setup(self, stage: str | None = None) -> None:
        """Validate, split and build the datasets (once; later calls do nothing)."""
        if self.queue is not None:
            return
        world, rank = self._world()
        train_steps = [build_training_transform(self.preprocessing, self.augmentation, self.patch_size), RemoveImages(["brainmask"])]
        if self.skeleton_classes is not None:
            train_steps.append(TubedSkeleton(self.skeleton_classes))
        train_tf = tio.Compose(train_steps)
        val_tf = build_preprocessing(self.preprocessing)
        if self.synthetic:
            cfg = self._phantom_config()
            train_set: Dataset = PhantomDataset(cfg, self.synthetic_train_size, self.seed + self.seed_shift, train_tf)
            self._phantoms = train_set
            subject_sampler = FreshSampler(self.synthetic_train_size, num_replicas=world, rank=rank)
            self.val_set = PhantomDataset(cfg, self.synthetic_val_size, self.seed + VAL_SEED_OFFSET, val_tf)
        else:
            cases = self.load_and_check()
            self.split = make_split(cases, self.split_spec, self.fold, self.seed)
            self.train_cases, self.val_cases, _ = self.split.select(cases)
            if not self.train_cases:
                raise InputError(None, f"split '{self.split.method}' leaves no training case")
            train_set = tio.SubjectsDataset([subject_from_case(c) for c in self.train_cases], transform=train_tf)
            self.val_set = tio.SubjectsDataset([subject_from_case(c) for c in self.val_cases], transform=val_tf)
            subject_sampler = None
        self.queue = make_queue(
            train_set,
            patch_size=self.patch_size,
            samples_per_volume=self.samples_per_volume,
            queue_length=max(self.queue_length, self.samples_per_volume),
            num_workers=self.num_workers,
            foreground_fraction=self.foreground_fraction,
            boundary_fraction=self.boundary_fraction,
            num_replicas=world,
            rank=rank,
            seed=self.seed,
            subject_sampler=subject_sampler,
        )
        out = self._out_dir()
        if out is not None and rank == 0:
            if self.split is not None:
                save_split(self.split, out / "split.json")
            write_json(self.config(), out / "data_config.json")

    def _phantom_config(self) -> Any:
        from mednet_pvs.synth import PhantomConfig
        from mednet_pvs.synth.domain import DomainConfig

        src = self.source
        if isinstance(src, (PhantomConfig, DomainConfig)):
            return src
        if isinstance(src, dict) and src.get("generator", "phantom") == "domain":
            return DomainConfig.from_dict({k: v for k, v in src.items() if k not in ("source", "generator")})
        if isinstance(src, dict):
            if src.get("generator", "phantom") != "phantom":
                raise ConfigError(f"data.source.generator must be 'phantom' or 'domain', not {src.get('generator')!r}")
            d = {k: v for k, v in src.items() if k not in ("source", "generator")}
            return PhantomConfig.from_dict(d) if hasattr(PhantomConfig, "from_dict") else PhantomConfig(**d)
        return PhantomConfig()

    # ------------------------------------------------------------------------------ resuming

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint (synthetic source only): ``phantom_seed_shift``, the phantoms
        drawn so far in the current epoch's stream (all ranks: ``world x`` rank 0's count; ranks draw
        in step) on top of the shift this run started with."""
        if not self.synthetic or self.queue is None:
            return {}
        world, _ = self._world()
        return {"phantom_seed_shift": self.seed_shift + world * self.queue.subjects_drawn}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On resume (``--ckpt_path``, before the first batch): later phantoms skip the drawn ones."""
        shift = int(state_dict.get("phantom_seed_shift", 0))
        if not self.synthetic or shift <= 0:
            return
        self.seed_shift = shift
        if self._phantoms is not None:
            self._phantoms.base_seed = self.seed + shift
        from lightning.pytorch.utilities import rank_zero_info

        rank_zero_info(f"resuming the phantom stream after {shift} phantoms of this epoch (training seeds from {self.seed + shift} + epoch offset)")

    # ---------------------------------------------------------------------------- loaders

    def train_dataloader(self) -> tio.SubjectsLoader:
        """Patch batches of this rank's shard; ``loader.sampler.set_epoch`` reaches the queue."""
        if self.queue is None:
            self.setup("fit")
        assert self.queue is not None
        return patch_loader(self.queue, self.batch_size)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """Whole preprocessed volumes, one per batch."""
        if self.val_set is None:
            self.setup("validate")
        assert self.val_set is not None
        return torch.utils.data.DataLoader(
            self.val_set, batch_size=1, shuffle=False, num_workers=min(self.num_workers, max(len(self.val_set), 1)), collate_fn=collate_subjects
        )

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        """Whole preprocessed test volumes, one per batch (as validation batches).

        Cases: the split's ``test`` subjects (manifest ``split`` column or split file); for a
        synthetic source, ``synthetic_val_size`` phantoms never used for training or validation.
        """
        self.setup("test")
        transform = build_preprocessing(self.preprocessing)
        if self.synthetic:
            dataset: Dataset = PhantomDataset(self._phantom_config(), self.synthetic_val_size, self.seed + TEST_SEED_OFFSET, transform)
        else:
            cases = list(self.source) if isinstance(self.source, (list, tuple)) else load_cases(self.source)
            cases = self.split.select(cases)[2] if self.split is not None else []
            if not cases:
                raise ConfigError("the split has no test cases (give the manifest a 'split' column with 'test' rows, "
                                  "or a split file with a test list); use 'validate' for the validation cases")
            dataset = tio.SubjectsDataset([subject_from_case(c) for c in cases], transform=transform)
        return torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=min(self.num_workers, len(dataset)),
                                           collate_fn=collate_subjects)
