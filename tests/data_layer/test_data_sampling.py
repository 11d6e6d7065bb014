"""Patch sampling: foreground oversampling measured, padding, DDP sharding and set_epoch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from torch.utils.data import DistributedSampler

from mednet_pvs.data.augmentation import build_training_transform
from mednet_pvs.data.preprocessing import subject_from_arrays
from mednet_pvs.data.sampling import ForegroundSampler, FreshSampler, collate_subjects, label_sampler, make_queue, patch_loader


def _sparse_subject(shape=(64, 64, 64), seed=0) -> tuple[tio.Subject, np.ndarray]:
    """A few short PVS tubes clustered in one region: most random patches hold none."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    for _ in range(4):
        x, y, z = rng.integers(8, 22, 3)
        lab[x, y, z : z + 4] = 1
    img = rng.normal(0, 1, shape).astype(np.float32) + 3 * lab
    return subject_from_arrays(img, np.eye(4), lab), lab


def _fractions(subject, lab, sampler, n, patch):
    centre = anything = 0
    for p in sampler(subject, num_patches=n):
        ini = p["location"][:3].numpy()
        c = ini + patch // 2
        centre += int(lab[tuple(c)] > 0)
        anything += int(p["label"].data.any())
    return centre / n, anything / n


@pytest.mark.parametrize("make", [ForegroundSampler, label_sampler], ids=["ForegroundSampler", "tio.LabelSampler"])
def test_samplers_oversample_foreground_like_nnunet(make):
    torch.manual_seed(0)
    subject, lab = _sparse_subject()
    patch, n = 16, 1500
    uniform = sum(bool(p["label"].data.any()) for p in tio.UniformSampler(patch)(subject, num_patches=n)) / n
    centred, holding = _fractions(subject, lab, make(patch, 0.33), n, patch)
    assert centred == pytest.approx(0.33, abs=0.04)  # a third of the centres are PVS voxels
    # the other patches hold PVS as often as random ones: nnU-Net's expectation
    assert holding == pytest.approx(0.33 + 0.67 * uniform, abs=0.05)
    assert uniform < 0.3 and holding > 0.33
    never, _ = _fractions(subject, lab, make(patch, 0.0), 300, patch)
    assert never < 0.02


def test_foreground_sampler_reaches_pvs_at_the_border():
    lab = np.zeros((32, 32, 32), np.uint8)
    lab[0, 31, 0] = 1  # a corner voxel: never a valid centre for tio.LabelSampler
    s = subject_from_arrays(np.random.default_rng(0).normal(size=lab.shape), np.eye(4), lab)
    patches = list(ForegroundSampler(16, 1.0)(s, num_patches=20))
    assert all(int(p["label"].data.sum()) == 1 for p in patches)
    assert all(p["location"].tolist() == [0, 16, 0, 16, 32, 16] for p in patches)
    empty = subject_from_arrays(np.ones(lab.shape), np.eye(4), np.zeros_like(lab))
    assert len(list(ForegroundSampler(16, 1.0)(empty, num_patches=5))) == 5  # no PVS: uniform patches


def test_boundary_fraction_centres_patches_on_the_brain_edge():
    """Targets 0 (head) / 1 (brain) / 2 (PVS): boundary_fraction of the centres lie on the brain's
    edge, a brain voxel next to the head; without it almost none do."""
    from mednet_pvs.data.sampling import brain_edge
    from mednet_pvs.errors import ConfigError

    torch.manual_seed(0)
    lab = np.zeros((64, 64, 64), np.uint8)
    lab[16:48, 16:48, 16:48] = 1
    lab[30, 30, 28:34] = 2
    s = subject_from_arrays(np.random.default_rng(0).normal(size=lab.shape), np.eye(4), lab)
    edge = {tuple(v) for v in brain_edge(torch.from_numpy(lab)).tolist()}
    assert len(edge) == 32**3 - 30**3 and (16, 30, 30) in edge and (17, 30, 30) not in edge
    patch, n = 16, 600

    def on_edge(sampler):
        return sum(tuple((p["location"][:3] + patch // 2).tolist()) in edge for p in sampler(s, num_patches=n)) / n

    assert on_edge(ForegroundSampler(patch, 0.3, boundary_fraction=0.4)) == pytest.approx(0.4, abs=0.06)
    assert on_edge(ForegroundSampler(patch, 0.3)) < 0.05
    pvs_only = subject_from_arrays(np.zeros(lab.shape), np.eye(4), (lab == 2).astype(np.uint8))
    assert len(list(ForegroundSampler(patch, 0.3, boundary_fraction=0.4)(pvs_only, num_patches=5))) == 5  # no brain class: uniform
    with pytest.raises(ConfigError, match="boundary_fraction"):
        ForegroundSampler(patch, 0.7, boundary_fraction=0.4)


def test_small_volume_is_padded_not_crashing():
    rng = np.random.default_rng(0)
    lab = np.zeros((20, 30, 10), np.uint8)
    lab[8:10, 10:20, 5] = 1
    img = rng.normal(100, 5, lab.shape).astype(np.float32)
    ds = tio.SubjectsDataset([subject_from_arrays(img, np.eye(4), lab, subject="small")], transform=build_training_transform(None, "none", 32))
    queue = make_queue(ds, patch_size=32, samples_per_volume=3, queue_length=3, foreground_fraction=0.5)
    batch = next(iter(patch_loader(queue, batch_size=3)))
    assert batch["image"].shape == (3, 1, 32, 32, 32) and batch["label"].shape == (3, 1, 32, 32, 32)
    assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.float32
    assert batch["subject"] == ["small"] * 3 and batch["location"].shape == (3, 6)
    assert float(batch["label"].sum(dim=(1, 2, 3, 4)).min()) == lab.sum()  # the whole small label is in every patch


def _rank_epochs(subjects, rank, epochs=(0, 1), spv=2):
    ds = tio.SubjectsDataset(subjects)
    queue = make_queue(ds, patch_size=8, samples_per_volume=spv, queue_length=spv, num_replicas=2, rank=rank, seed=3, shuffle_patches=False)
    loader = patch_loader(queue, batch_size=1)
    assert isinstance(loader.sampler, DistributedSampler)  # Lightning leaves it alone under DDP
    seen = {}
    for e in epochs:
        loader.sampler.set_epoch(e)  # what Lightning's fit loop calls every epoch
        order = [b["subject"][0] for b in loader]
        assert len(order) == len(queue) == spv * len(subjects) // 2
        seen[e] = order[::spv]  # one entry per subject (queue holds one subject's patches at a time)
        assert order == [s for s in seen[e] for _ in range(spv)]
    return seen


def test_ddp_ranks_see_disjoint_shards_and_set_epoch_reshuffles():
    rng = np.random.default_rng(0)
    subjects = []
    for i in range(8):
        lab = (rng.random((12, 12, 12)) > 0.9).astype(np.uint8)
        subjects.append(subject_from_arrays(rng.normal(size=lab.shape), np.eye(4), lab, subject=f"s{i}"))
    r0, r1 = _rank_epochs(subjects, 0), _rank_epochs(subjects, 1)
    every = {f"s{i}" for i in range(8)}
    for e in (0, 1):
        assert len(set(r0[e])) == len(r0[e]) == 4 and len(set(r1[e])) == 4
        assert not set(r0[e]) & set(r1[e])  # disjoint
        assert set(r0[e]) | set(r1[e]) == every  # covering
    assert r0[0] != r0[1] and r1[0] != r1[1]  # a new order (and shard) each epoch
    assert _rank_epochs(subjects, 0, epochs=(1,))[1] == r0[1]  # deterministic given seed and epoch


def test_fresh_sampler_never_repeats_an_index():
    seen = []
    for epoch in range(3):
        for rank in range(2):
            s = FreshSampler(5, num_replicas=2, rank=rank)
            s.set_epoch(epoch)
            seen += list(s)
    assert len(seen) == len(set(seen)) == 3 * 6  # 5 rounded up to 6 so shards are even


def test_collate_validation_volume_keys():
    subject, _ = _sparse_subject((24, 24, 24))
    from mednet_pvs.data.preprocessing import build_preprocessing

    b = collate_subjects([build_preprocessing()(subject)])
    assert b["image"].shape == (1, 1, 24, 24, 24) and b["affine"].shape == (1, 4, 4)
    assert b["input_shape"].tolist() == [[24, 24, 24]] and b["input_affine"].shape == (1, 4, 4)


def test_patches_are_views_with_torchios_values_affine_and_location():
    subject, _ = _sparse_subject((40, 36, 32))
    aff = np.diag([0.8, 1.0, 1.2, 1.0])
    aff[:3, 3] = (10.0, -4.0, 3.0)
    subject = subject_from_arrays(subject["image"].data[0].numpy(), aff, subject["label"].data[0].numpy(), subject="s")
    ours = ForegroundSampler((16, 12, 8), 0.0)
    stock = tio.data.sampler.sampler.PatchSampler.extract_patch  # TorchIO's crop: clones
    for ini in ((0, 0, 0), (5, 7, 24), (24, 24, 24)):
        a, b = ours.extract_patch(subject, ini), stock(ours, subject, ini)
        for key in ("image", "label"):
            assert torch.equal(a[key].data, b[key].data) and a[key].data.dtype == b[key].data.dtype
            np.testing.assert_allclose(a[key].affine, b[key].affine)
            assert type(a[key]) is type(b[key])
        assert a["location"].tolist() == b["location"].tolist() == [*ini, ini[0] + 16, ini[1] + 12, ini[2] + 8]
        assert a["subject"] == "s"
        assert a["image"].data.untyped_storage().data_ptr() == subject["image"].data.untyped_storage().data_ptr()  # a view


def test_centres_are_found_where_the_subject_is_loaded_and_not_copied_into_patches(monkeypatch):
    from mednet_pvs.data.sampling import CENTRES_KEY, IndexedSubjects

    subject, lab = _sparse_subject((40, 40, 40))
    sampler = ForegroundSampler(16, 1.0)
    loaded = IndexedSubjects(tio.SubjectsDataset([subject]), sampler)[0]
    assert sorted(map(tuple, loaded[CENTRES_KEY]["pvs"].tolist())) == sorted(map(tuple, np.argwhere(lab).tolist()))
    monkeypatch.setattr(ForegroundSampler, "centres", lambda *a: pytest.fail("centres computed again when sampling"))
    patches = list(sampler(loaded, num_patches=6))
    assert all(CENTRES_KEY not in p for p in patches) and all(p["label"].data.any() for p in patches)
    assert CENTRES_KEY in loaded  # the loaded subject itself is left as it was
    # the queue loads through the wrapper, so its workers do this
    queue = make_queue(tio.SubjectsDataset([subject]), patch_size=16, samples_per_volume=2, queue_length=2)
    assert isinstance(queue.subjects_dataset, IndexedSubjects)


def test_collate_copies_patches_into_float_batches_and_refuses_mixed_shapes():
    subject, lab = _sparse_subject((32, 32, 32))
    patches = list(ForegroundSampler(16, 1.0)(subject, num_patches=3))
    b = collate_subjects(patches)
    assert b["label"].dtype == torch.float32 and b["image"].shape == (3, 1, 16, 16, 16)
    for i, p in enumerate(patches):
        assert torch.equal(b["label"][i], p["label"].data.float()) and torch.equal(b["image"][i], p["image"].data)
    b["image"].zero_()
    assert float(subject["image"].data.abs().sum()) > 0  # the batch is a copy, not the volume
    other = list(ForegroundSampler(8, 1.0)(subject, num_patches=1))
    with pytest.raises(RuntimeError):
        collate_subjects(patches[:1] + other)
