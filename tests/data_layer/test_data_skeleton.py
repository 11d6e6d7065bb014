"""The tubed skeleton made in the data workers (Skeleton Recall's target) and its way into batches."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchio as tio

from mednet_pvs.data.datamodule import PVSDataModule
from mednet_pvs.data.skeleton import TubedSkeleton, tubed_skeleton_array
from mednet_pvs.errors import ConfigError


def _tube() -> np.ndarray:
    lab = np.zeros((16, 16, 16), np.int64)
    lab[2:14, 2:14, 2:14] = 1
    lab[6:9, 6:9, 3:13] = 2
    return lab


def test_tubed_skeleton_array_is_the_thinned_class_dilated_inside_it():
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    lab = _tube()
    skel = tubed_skeleton_array(lab, [2])
    line = skeletonize(lab == 2)
    expected = ndi.binary_dilation(line, ndi.generate_binary_structure(3, 1), iterations=2) & (lab == 2)
    assert np.array_equal(skel == 2, expected) and set(np.unique(skel)) == {0, 2}
    assert line.sum() < (skel == 2).sum() <= (lab == 2).sum()
    assert not tubed_skeleton_array(lab, [3]).any()  # an absent class: nothing
    with pytest.raises(ConfigError, match="3D label"):
        tubed_skeleton_array(lab[0], [2])
    with pytest.raises(ConfigError, match="foreground classes"):
        tubed_skeleton_array(lab, [0])


def test_tubed_skeleton_transform_adds_a_label_map_on_the_same_grid():
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-5, 7, 3]
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.rand(1, 16, 16, 16), affine=affine),
                          label=tio.LabelMap(tensor=torch.from_numpy(_tube())[None], affine=affine))
    out = TubedSkeleton([2])(subject)
    assert isinstance(out["skeleton"], tio.LabelMap) and np.array_equal(out["skeleton"].affine, affine)
    assert np.array_equal(out["skeleton"].data[0].numpy(), tubed_skeleton_array(_tube(), [2]))
    assert "skeleton" not in subject  # TorchIO copies: the input subject is left alone
    with pytest.raises(ConfigError, match="needs the label map 'mask'"):
        TubedSkeleton([2], label="mask")(subject)


def test_datamodule_skeleton_classes_put_the_skeleton_in_every_patch(tmp_path):
    pytest.importorskip("mednet_pvs.synth")
    from mednet_pvs.synth import PhantomConfig

    cfg = PhantomConfig(anatomy="procedural", shape=(32, 32, 32))
    kw = dict(patch_size=24, batch_size=2, samples_per_volume=2, queue_length=2, num_workers=0, synthetic_train_size=2,
              synthetic_val_size=1, augmentation="none", foreground_fraction=1.0, run_dir=tmp_path)
    dm = PVSDataModule(cfg, skeleton_classes=[1], **kw)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert json.loads((tmp_path / "data_config.json").read_text())["skeleton_classes"] == [1]
    for b in batches:
        skel, label = b["skeleton"], b["label"]
        assert skel.shape == label.shape == (2, 1, 24, 24, 24) and skel.dtype == torch.float32
        assert bool((label[skel > 0] == 1).all()) and set(skel.unique().tolist()) <= {0.0, 1.0}
    assert sum(float(b["skeleton"].sum()) for b in batches) > 0  # patches around PVS carry their skeleton
    plain = PVSDataModule(cfg, **kw)
    plain.setup()
    assert "skeleton" not in next(iter(plain.train_dataloader()))
    with pytest.raises(ConfigError, match="foreground classes"):
        PVSDataModule(cfg, skeleton_classes=[0], **kw)
