"""Training patches: a TorchIO queue that oversamples PVS, sharded by subject under DDP.

Foreground oversampling
-----------------------
nnU-Net forces a third of the patches to contain foreground (``oversample_foreground_percent =
0.33``: the patch is placed around a random foreground voxel) and draws the others uniformly.
:class:`ForegroundSampler` (used by the queue) does exactly that: with probability ``f`` the centre
is a random PVS voxel (the patch shifted inside the volume when that voxel is near the border),
otherwise the patch position is uniform. So the fraction of patches holding PVS is
``f + (1 - f) * P(uniform patch holds PVS)``. A case without PVS yields uniform patches.

TorchIO's ``LabelSampler(label_probabilities={0: 1 - f, 1: f})`` (:func:`label_sampler`) draws the
*centre* among PVS voxels with probability ``f`` and among background voxels otherwise (almost
uniform, as PVS are few), and PVS voxels closer than half a patch to the border are never centres;
the PVS-holding fraction is then the same expectation. But it builds a dense probability map and a
float64 CDF of the whole volume in the main process for every volume (0.23 s for 155 x 191 x 160
voxels, see ``benchmarks/bench_data.py``), which capped the loader near 11 patches/s whatever the
number of workers; :class:`ForegroundSampler` needs only the PVS coordinates. Both are measured in
``tests/data_layer/test_data_sampling.py``.

Where the work runs
-------------------
TorchIO's queue loads subjects in its workers but cuts the patches in the training process, between
optimiser steps. For the any-contrast model's GPU stage (8 x 96^3 per 0.128 s step) that was the
data limit: finding the patch centres (a max-pool and ``nonzero`` over each whole volume), cloning
every patch and copying it twice more into the batch took 85 ms of CPU per batch
(``benchmarks/bench_domain.py --feed``), so the GPU waited 37-55 % of the time. Now the queue
loads through :class:`IndexedSubjects` (centres found in the workers), a patch is a view into its
volume and :func:`collate_subjects` copies each voxel once, converting to float: 14 ms per batch.

DDP
---
Every rank owns a :class:`PatchQueue` whose ``subject_sampler`` is a
``torch.utils.data.DistributedSampler(num_replicas=world_size, rank=rank, shuffle=True,
seed=seed)``: ranks load disjoint shards of the subjects (when the number of subjects does not
divide by the world size, the sampler repeats a few so every rank has as many). The patch loader's
sampler is a :class:`QueueEpochSampler`, a ``DistributedSampler`` subclass, for two reasons:
Lightning calls ``set_epoch`` on a loader's sampler at the start of every epoch, and it forwards
that to the subject sampler (new shuffled shard each epoch) and restarts the queue; and Lightning
leaves loaders whose sampler already is a ``DistributedSampler`` alone (so no second sharding of
patch indices). Outside Lightning, call ``loader.sampler.set_epoch(epoch)`` before each epoch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torchio as tio
from torch.utils.data import Dataset, DistributedSampler
from torchio.data.sampler.sampler import RandomSampler

from mednet_pvs.data.skeleton import SKELETON_KEY
from mednet_pvs.errors import ConfigError

#: nnU-Net's ``oversample_foreground_percent``.
FOREGROUND_FRACTION = 0.33
#: Keys of a batch that hold tensors to stack; the rest are listed.
TENSOR_KEYS = ("image", "label", "brainmask", SKELETON_KEY)


def label_sampler(patch_size: int | Sequence[int], foreground_fraction: float = FOREGROUND_FRACTION, label: str = "label") -> tio.LabelSampler:
    """TorchIO's ``LabelSampler`` centring ``foreground_fraction`` of the patches on PVS voxels.

    Kept for comparison (tests, benchmark); the queue uses :class:`ForegroundSampler`.
    """
    if not 0.0 <= foreground_fraction <= 1.0:
        raise ConfigError(f"foreground_fraction must be in [0, 1], not {foreground_fraction}")
    probs = {0: 1.0 - foreground_fraction, 1: foreground_fraction}
    return tio.LabelSampler(patch_size, label_name=label, label_probabilities=probs)


class ForegroundSampler(RandomSampler):
    """nnU-Net's sampling: a fraction of patches around a random PVS voxel, the rest uniform.

    Args:
        patch_size: patch shape (X, Y, Z) voxels, or one int for a cube.
        foreground_fraction: probability that a patch is placed around a PVS voxel (a voxel of
            the highest class present: 1 in a PVS label, 2 in the any-contrast model's target).
        label_name: key of the label map in the subject.
        boundary_fraction: probability that a patch is placed around a voxel on the brain's
            edge (a class >= 1 voxel next to class 0) when the label has a brain class below
            PVS (targets 0/1/2); the brain-versus-head decision is made there.

    The volume must be at least ``patch_size`` (pad first: :class:`~mednet_pvs.data.preprocessing.PadToShape`).
    """

    def __init__(self, patch_size: int | Sequence[int], foreground_fraction: float = FOREGROUND_FRACTION, label_name: str = "label",
                 boundary_fraction: float = 0.0) -> None:
        super().__init__(patch_size)
        check_fractions(foreground_fraction, boundary_fraction)
        self.foreground_fraction, self.label_name, self.boundary_fraction = foreground_fraction, label_name, boundary_fraction

    def centres(self, subject: tio.Subject) -> dict[str, torch.Tensor]:
        """Candidate patch centres of ``subject``: ``"pvs"`` and ``"edge"``, (N, 3) voxel indices.

        The costly part of sampling (a 3D max-pool and two ``nonzero`` over the whole volume: about
        0.25 s for a 170 x 230 x 170 target, 57 % of the queue's main-process time for 96^3 patches
        in ``benchmarks/bench_domain.py --feed``); :class:`IndexedSubjects` runs it where the subject
        is loaded (a loader worker) and the result travels with the subject.
        """
        lab = subject[self.label_name].data[0] if self.label_name in subject else None
        # centred on the highest class present: PVS (1) of a PVS label, PVS (2) of a brain + PVS target
        top = int(lab.max()) if lab is not None and lab.numel() else 0
        fg = torch.nonzero(lab >= top) if top > 0 else torch.empty(0, 3, dtype=torch.long)
        edge = brain_edge(lab) if self.boundary_fraction > 0 and top >= 2 else torch.empty(0, 3, dtype=torch.long)
        small = bool(max(subject.spatial_shape) < 2**15)
        return {"pvs": fg.to(torch.int16 if small else torch.int64), "edge": edge.to(torch.int16 if small else torch.int64)}

    def _generate_patches(self, subject: tio.Subject, num_patches: int | None = None) -> Iterator[tio.Subject]:
        patch = torch.as_tensor(self.patch_size.astype(np.int64))
        last = torch.as_tensor(subject.spatial_shape) - patch  # largest start index per axis
        found = subject.get(CENTRES_KEY)
        if found is None:
            found = self.centres(subject)
        else:  # computed where the subject was loaded; not copied into every patch
            subject = _without(subject, CENTRES_KEY)
        fg, edge = found["pvs"], found["edge"]
        n = 0
        while num_patches is None or n < num_patches:
            r = float(torch.rand(1))
            pool = fg if r < self.foreground_fraction else edge if r < self.foreground_fraction + self.boundary_fraction else None
            if pool is not None and len(pool):
                centre = pool[int(torch.randint(len(pool), (1,)))].long()
                ini = torch.minimum(torch.clamp(centre - patch // 2, min=0), last)
            else:
                ini = (torch.rand(3) * (last + 1)).long()
            yield self.extract_patch(subject, tuple(int(v) for v in ini))  # type: ignore[arg-type]
            n += 1

    def extract_patch(self, subject: tio.Subject, index_ini: Sequence[int]) -> tio.Subject:  # type: ignore[override]
        """The patch at ``index_ini`` as a subject of views into ``subject``'s tensors.

        TorchIO's crop clones every image of every patch and deep-copies the other attributes; the
        patches only live until :func:`collate_subjects` copies them into a batch, so views do (one
        copy per voxel instead of two; the queue then holds its few volumes rather than
        ``queue_length`` cropped copies). ``"location"``: (6,) start and end voxel, as TorchIO's.
        """
        from nibabel.affines import apply_affine

        i0 = np.asarray(index_ini, dtype=np.int64)
        i1 = i0 + self.patch_size.astype(np.int64)
        box = (slice(None), *(slice(int(a), int(b)) for a, b in zip(i0, i1)))
        out = _without(subject)
        for key, value in subject.items():
            if isinstance(value, tio.Image):
                affine = value.affine.copy()
                affine[:3, 3] = apply_affine(value.affine, i0)
                out[key] = type(value)(tensor=value.data[box], affine=affine, type=value.type, path=value.path)
        out[tio.LOCATION] = torch.as_tensor(np.concatenate([i0, i1]))
        out.update_attributes()
        return out


#: Subject key under which :class:`IndexedSubjects` leaves :meth:`ForegroundSampler.centres`.
CENTRES_KEY = "sampling_centres"


def _without(subject: tio.Subject, key: str | None = None) -> tio.Subject:
    """A shallow copy of ``subject`` without ``key`` (images shared, not copied)."""
    out = subject.__class__.__new__(subject.__class__)
    out.__dict__.update((k, v) for k, v in subject.__dict__.items() if k != key)  # e.g. applied_transforms
    out.update((k, v) for k, v in subject.items() if k != key)
    return out


class IndexedSubjects(Dataset):
    """``subjects[i]`` with its patch centres (:meth:`ForegroundSampler.centres`) attached.

    The queue loads subjects through this wrapper, so the centres are found in the loader's worker
    processes, in parallel, instead of in the training process when the queue refills.
    """

    def __init__(self, subjects: Dataset, sampler: ForegroundSampler) -> None:
        self.subjects, self.sampler = subjects, sampler

    def __len__(self) -> int:
        return len(self.subjects)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tio.Subject:
        subject = self.subjects[index]
        subject[CENTRES_KEY] = self.sampler.centres(subject)
        return subject


def check_fractions(foreground_fraction: float, boundary_fraction: float = 0.0) -> None:
    """Both fractions in [0, 1] and their sum at most 1, else a one-line :class:`ConfigError`."""
    if not 0.0 <= foreground_fraction <= 1.0:
        raise ConfigError(f"foreground_fraction must be in [0, 1], not {foreground_fraction}")
    if not 0.0 <= boundary_fraction <= 1.0 or foreground_fraction + boundary_fraction > 1.0 + 1e-9:
        raise ConfigError(f"boundary_fraction must be in [0, 1 - foreground_fraction], not {boundary_fraction}")


def brain_edge(label: torch.Tensor) -> torch.Tensor:
    """(N, 3) indices of the brain voxels (class >= 1) with a class-0 voxel among their 26 neighbours."""
    outside = (label == 0).float()[None, None]
    near = torch.nn.functional.max_pool3d(outside, 3, stride=1, padding=1)[0, 0] > 0
    return torch.nonzero((label >= 1) & near)


class PatchQueue(tio.Queue):
    """``tio.Queue`` that restarts cleanly at an epoch boundary (:meth:`set_epoch`).

    An epoch is ``len(subject_sampler) * samples_per_volume`` patches (counted without listing the
    subjects, so the subjects dataset may be any map-style dataset, e.g. of phantoms).
    """

    @property
    def subjects_drawn(self) -> int:
        """Subjects this rank's queue has taken from its stream since the epoch (re)started,
        the one it is still cutting patches from included."""
        return int(self._num_sampled_subjects)

    @property
    def iterations_per_epoch(self) -> int:
        n = len(self.subject_sampler) if self.subject_sampler is not None else len(self.subjects_dataset)
        return n * self.samples_per_volume

    def set_epoch(self, epoch: int) -> None:
        """Give the subject sampler the epoch (new shard order) and start the epoch afresh.

        Pending patches and the half-read subject of the previous epoch are dropped, so epoch
        ``e`` draws exactly this rank's subjects in sampler order ``e``.
        """
        if self.subject_sampler is not None and hasattr(self.subject_sampler, "set_epoch"):
            self.subject_sampler.set_epoch(epoch)
        self.patches_list = []
        self._incomplete_subject = None
        self._num_patches_incomplete = 0
        self._num_sampled_subjects = 0
        self._subjects_iterable = None  # re-created (with the new order) on the next fill


def make_queue(
    subjects: torch.utils.data.Dataset,
    *,
    patch_size: int | Sequence[int] = 128,
    samples_per_volume: int = 4,
    queue_length: int = 32,
    num_workers: int = 0,
    foreground_fraction: float = FOREGROUND_FRACTION,
    boundary_fraction: float = 0.0,
    num_replicas: int = 1,
    rank: int = 0,
    seed: int = 0,
    shuffle_patches: bool = True,
    subject_sampler: DistributedSampler | None = None,
) -> PatchQueue:
    """The patch queue of one rank.

    Args:
        subjects: map-style dataset of (transformed) subjects, at least ``patch_size`` large
            (a ``tio.SubjectsDataset`` whose transform ends with padding to ``patch_size``).
        patch_size: patch shape (X, Y, Z) voxels, or one int for a cube.
        samples_per_volume: patches drawn from each loaded (augmented) volume.
        queue_length: patches held in memory (``max_length``); >= ``samples_per_volume``.
        num_workers: processes loading and transforming subjects.
        foreground_fraction: fraction of patches placed around a PVS voxel.
        boundary_fraction: fraction placed around the brain's edge (targets with a brain class).
        num_replicas, rank: DDP world size and this rank (1, 0 without DDP).
        seed: shuffling seed (same on every rank).
        shuffle_patches: shuffle the patches in the queue (mixing subjects in a batch).
        subject_sampler: replaces the default ``DistributedSampler`` (e.g. :class:`FreshSampler`).
    """
    if queue_length < samples_per_volume:
        raise ConfigError(f"queue_length ({queue_length}) must be >= samples_per_volume ({samples_per_volume})")
    sampler = subject_sampler
    if sampler is None:
        sampler = DistributedSampler(subjects, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
    patches = ForegroundSampler(patch_size, foreground_fraction, boundary_fraction=boundary_fraction)
    return PatchQueue(
        IndexedSubjects(subjects, patches),
        max_length=queue_length,
        samples_per_volume=samples_per_volume,
        sampler=patches,
        subject_sampler=sampler,
        num_workers=num_workers,
        shuffle_subjects=False,
        shuffle_patches=shuffle_patches,
        start_background=False,
    )


class FreshSampler(DistributedSampler):
    """Rank shard of ``range(n)`` shifted by ``epoch * n``: every epoch, new indices everywhere.

    For datasets that make a new sample from its index (phantoms with ``seed = base + index``):
    no two ranks, workers or epochs ever see the same index. ``n`` is rounded up to a multiple of
    ``num_replicas`` (so no index is repeated to even out the shards).
    """

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        n = -(-n // num_replicas) * num_replicas
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return (self.epoch * self.n + i for i in super().__iter__())


class RemoveImages(tio.Transform):
    """Drop images from the subject (e.g. the brain mask once preprocessing has used it).

    Args:
        names: keys of the images to remove (missing ones are ignored).
    """

    def __init__(self, names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = tuple(names)
        self.args_names = ["names"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for name in self.names:
            if name in subject:
                subject.remove_image(name)
        return subject


class QueueEpochSampler(DistributedSampler):
    """Indices ``0..len(queue)-1`` for the patch loader; ``set_epoch`` reaches the queue.

    A ``DistributedSampler`` only by type, so that Lightning neither replaces it nor shards the
    patches again (the queue already holds this rank's subjects); see the module docstring.
    """

    def __init__(self, queue: PatchQueue) -> None:  # no super().__init__: no dataset sharding here
        self.queue = queue
        self.epoch = 0
        self.num_replicas, self.rank, self.shuffle, self.drop_last, self.seed = 1, 0, False, False, 0

    def __len__(self) -> int:
        return len(self.queue)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.queue)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.queue.set_epoch(epoch)


def collate_subjects(subjects: list[tio.Subject]) -> dict[str, Any]:
    """Stack subjects (or patches) into a batch.

    Returns:
        ``"image"`` float32 (B, C, X, Y, Z); ``"label"``, ``"brainmask"`` and ``"skeleton"`` (the
        tubed skeleton of :class:`~mednet_pvs.data.skeleton.TubedSkeleton`) float32 (B, 1, X, Y, Z)
        when present; ``"affine"`` float64 (B, 4, 4) of the image; ``"location"`` int64 (B, 6)
        for patches (voxel start and end in the preprocessed volume); ``"input_shape"`` (B, 3)
        and ``"input_affine"`` (B, 4, 4) when recorded; every other key as a list (``"subject"``,
        ``"site"``...).
    """
    first = subjects[0]
    batch: dict[str, Any] = {}
    for key in TENSOR_KEYS:
        if key in first:
            data = [s[key].data for s in subjects]
            if any(d.shape != data[0].shape for d in data):
                batch[key] = torch.stack(data)  # raises the usual size mismatch
                continue
            batch[key] = out = torch.empty((len(data), *data[0].shape), dtype=torch.float32)
            for o, d in zip(out, data):  # one copy per voxel, converting to float on the way
                o.copy_(d)
    batch["affine"] = torch.as_tensor(np.stack([s["image"].affine for s in subjects]))
    for key, value in first.items():
        if key in batch or isinstance(value, tio.Image):
            continue
        values = [s[key] for s in subjects]
        if isinstance(value, (torch.Tensor, np.ndarray)):
            batch[key] = torch.stack([torch.as_tensor(v) for v in values])
        else:
            batch[key] = values
    return batch


def patch_loader(queue: PatchQueue, batch_size: int, **kwargs: Any) -> tio.SubjectsLoader:
    """Batches of patches from ``queue`` (main process: the queue's own workers do the loading)."""
    return tio.SubjectsLoader(
        queue, batch_size=batch_size, sampler=QueueEpochSampler(queue), num_workers=0, collate_fn=collate_subjects, **kwargs
    )
