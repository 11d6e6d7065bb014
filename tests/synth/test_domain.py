"""Domain-randomised phantoms (mednet_pvs.synth.domain): heads, contrasts, grids, orientation."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth.domain import DomainConfig, brain_pvs_labels, make_domain_phantom, store_as
from mednet_pvs.synth.head import AIR, BRAIN, CSF_RIM, EYE, SKULL, make_head, pad_for_head


def _world(ph, mask):
    ijk = np.argwhere(mask > 0)
    return np.round(nib.affines.apply_affine(ph.affine, ijk), 3)


@pytest.fixture(scope="module")
def head_phantom():
    return make_domain_phantom(DomainConfig(anatomy="procedural", shape=(64, 64, 64), p_head=1.0, contrast="T1w", p_thick=0.0), seed=3)


@pytest.fixture(scope="module")
def stripped_phantom():
    return make_domain_phantom(DomainConfig(anatomy="procedural", shape=(64, 64, 64), p_head=0.0, contrast="T2w", p_thick=0.0), seed=4)


@pytest.mark.slow
def test_same_seed_same_phantom_other_seed_other_shape(head_phantom):
    again = make_domain_phantom(DomainConfig(anatomy="procedural", shape=(64, 64, 64), p_head=1.0, contrast="T1w", p_thick=0.0), seed=3)
    assert np.array_equal(again.image, head_phantom.image) and np.array_equal(again.label, head_phantom.label)
    other = make_domain_phantom(DomainConfig(anatomy="procedural", shape=(64, 64, 64), p_head=1.0, contrast="T1w", p_thick=0.0), seed=5)
    assert other.meta["deformation"]["scale"] != head_phantom.meta["deformation"]["scale"]
    assert other.brainmask.sum() != head_phantom.brainmask.sum()  # a new brain shape


def test_whole_head_has_tissue_around_the_brain(head_phantom):
    ph = head_phantom
    assert ph.meta["whole_head"] is True
    brain = ph.brainmask > 0
    from scipy import ndimage

    shell = ndimage.binary_dilation(brain, iterations=8) & ~ndimage.binary_dilation(brain, iterations=2)
    # skull is dark on T1w but scalp fat is bright: the shell around the brain is not empty
    assert np.percentile(ph.image[shell], 90) > 0.5 * np.median(ph.image[brain])
    assert (ph.label > 0).sum() > 0 and not np.any((ph.label > 0) & ~brain)  # PVS only inside the brain


def test_skull_stripped_is_zero_outside_a_slightly_dilated_brain(stripped_phantom):
    ph = stripped_phantom
    from scipy import ndimage

    assert ph.meta["whole_head"] is False
    far = ~ndimage.binary_dilation(ph.brainmask > 0, iterations=3)
    assert far.any() and np.all(ph.image[far] == 0)
    assert np.mean(ph.image[ph.brainmask > 0] > 0) > 0.99


def test_brain_pvs_labels(stripped_phantom):
    t = brain_pvs_labels(stripped_phantom)
    assert set(np.unique(t)) == {0, 1, 2}
    assert np.array_equal(t == 2, (stripped_phantom.label > 0) & (stripped_phantom.brainmask > 0))
    assert np.array_equal(t > 0, stripped_phantom.brainmask > 0)


def test_thick_slices_are_stored_on_the_acquisition_grid():
    cfg = DomainConfig.fixed("FLAIR", head=False, resolution=(1.0, 1.0, 4.0), anatomy="procedural", shape=(64, 64, 64))
    ph = make_domain_phantom(cfg, seed=8)
    vox = np.sqrt((ph.affine[:3, :3] ** 2).sum(0))
    assert abs(vox[0] - 1.0) < 0.05 and abs(vox[2] - 4.0) < 0.2
    assert ph.image.shape == ph.label.shape == ph.brainmask.shape
    assert ph.meta["contrast_kind"] == "FLAIR" and ph.meta["acquisition"]["slice_axis"] == 2
    # the image's brain sits where the mask says: inside the mask the image is mostly nonzero
    assert np.mean(ph.image[ph.brainmask > 0] > 0) > 0.95


def test_store_as_keeps_world_coordinates(stripped_phantom):
    lps = store_as(stripped_phantom, "LPS")
    assert nib.aff2axcodes(lps.affine) == ("L", "P", "S")
    a = _world(stripped_phantom, stripped_phantom.label)
    b = _world(lps, lps.label)
    assert np.array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])


def test_head_layers_follow_the_brain():
    brain = np.zeros((40, 40, 40), bool)
    brain[12:28, 12:28, 12:28] = True
    pad = pad_for_head(brain.shape, 1.0)
    b = np.pad(brain, pad)
    head = make_head(b, 1.0, np.random.default_rng(0))
    assert np.array_equal(head.labels == BRAIN, b)
    assert (head.labels == CSF_RIM).any() and (head.labels == SKULL).any() and (head.labels == EYE).any()
    # the skull never touches the brain: the CSF rim is in between
    from scipy import ndimage

    assert not np.any(ndimage.binary_dilation(b) & (head.labels == SKULL))
    assert head.labels[0, 0, -1] == AIR


def test_mixed_anatomy_follows_p_procedural():
    # seed 0 draws 0.47 for the anatomy: MNI under the default p_procedural of 0.2, procedural at 1
    cfg = DomainConfig(anatomy="mixed", p_procedural=1.0, shape=(48, 48, 48), p_head=0.0, contrast="T2w", p_thick=0.0)
    assert make_domain_phantom(cfg, seed=0).meta["anatomy"] == "procedural"
    assert DomainConfig().p_procedural == 0.2


@pytest.mark.parametrize("field,value", [("contrast", "DWI"), ("p_head", 1.5), ("resolution", (1.0, 1.0)),
                                         ("scale_range", (1.2, 0.9)), ("anatomy", "mouse"),
                                         ("p_procedural", -0.1)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        DomainConfig.from_dict({field: value})
    assert field in str(e.value)
