"""``PVSModel.predict(pipeline="device")`` (preprocessing and the way back in torch ops, where the
networks run) gives the TorchIO pipeline's mask: the GPU path, checked on the CPU."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth import PhantomConfig, make_phantom
from mednet_pvs.zoo import load_pretrained


@pytest.fixture(scope="module")
def model():
    return load_pretrained("mednet-pvs-synth-t2w", device="cpu")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PhantomConfig(anatomy="procedural", shape=(48, 48, 48), contrast="T2w", burden=3), seed=11)


def _stored(phantom, how):
    img = nib.Nifti1Image(phantom.image, phantom.affine)
    bm = nib.Nifti1Image(phantom.brainmask, phantom.affine)
    if how == "lps_permuted":  # the same head stored with axes (P, S, L)
        ornt = nib.orientations.axcodes2ornt(("P", "S", "L"))
        img, bm = img.as_reoriented(ornt), bm.as_reoriented(ornt)
    elif how == "anisotropic":  # every third slice, on a 0.9 x 0.9 x 3 mm grid
        aff = phantom.affine @ np.diag([0.9, 0.9, 3.0, 1.0])
        img, bm = nib.Nifti1Image(phantom.image[:, :, ::3], aff), nib.Nifti1Image(phantom.brainmask[:, :, ::3], aff)
    return img, bm


@pytest.mark.parametrize("how", ["ras", "lps_permuted", "anisotropic"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_device_pipeline_gives_the_torchio_mask(model, phantom, how, with_mask):
    img, bm = _stored(phantom, how)
    kw = dict(brainmask=bm if with_mask else None, tta=False)
    ref = model.predict(img, pipeline="torchio", **kw)
    ours = model.predict(img, pipeline="device", **kw)
    assert ours.info["pipeline"] == "device" and ref.info["pipeline"] == "torchio"
    assert ours.mask.shape == img.shape and ours.probabilities.dtype == np.float32
    a, b = ref.mask.astype(bool), ours.mask.astype(bool)
    assert a.sum() > 20, "the phantom has PVS for the comparison to mean something"
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999
    assert np.abs(ref.probabilities - ours.probabilities).max() < 1e-3


def test_auto_is_torchio_on_the_cpu_and_bad_choices_are_named(model, phantom):
    pred = model.predict((phantom.image, phantom.affine), tta=False)
    assert pred.info["pipeline"] == "torchio"
    with pytest.raises(ConfigError, match="pipeline must be"):
        model.predict((phantom.image, phantom.affine), pipeline="gpu")


def test_info_records_tiles_per_pass_and_precision(model, phantom):
    pred = model.predict((phantom.image, phantom.affine), tta=False)
    assert pred.info["batch_size"] == model.inference.window.batch_size and pred.info["precision"] == "fp32"
    assert model.provenance()["settings"]["precision"] == "fp32"
