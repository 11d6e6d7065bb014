"""The held-out test set (mednet_pvs.synth.heldout): deterministic, never a training seed, the asked
contrast / resolution / orientation, labels on the image in world coordinates."""
from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth.heldout import (
    HELDOUT_CONTRASTS,
    LEGACY,
    MAX_CASES,
    RESOLUTIONS,
    ROLES,
    HeldoutGroup,
    fit_case,
    heldout_case,
    heldout_cases,
    heldout_groups,
    make_heldout_case,
)

#: the training stream's seeds: ``seed + i`` from 0 (at most ~10^5 phantoms), validation/test from 2**31
TRAINING_MAX = 1_000_000
VALIDATION_FROM = 2**31


def _nifti(ph) -> nib.Nifti1Image:
    return nib.Nifti1Image(ph.image, ph.affine)


def test_seeds_unique_and_never_the_training_streams():
    groups = heldout_groups()
    seeds = [heldout_case(g, i, role).seed for g in groups for role in ROLES for i in range(MAX_CASES)]
    assert len(seeds) == len(set(seeds)) == len(groups) * len(ROLES) * MAX_CASES
    assert TRAINING_MAX < min(seeds) and max(seeds) < VALIDATION_FROM
    fits = {fit_case(g).seed for g in groups}
    assert not fits & {c.seed for c in heldout_cases(groups, n=MAX_CASES)}  # a fit case is never scored


def test_groups_cover_every_contrast_resolution_and_head():
    groups = heldout_groups()
    assert {(g.contrast, g.resolution, g.head) for g in groups if not g.legacy} == {
        (c, r, h) for c in HELDOUT_CONTRASTS for r in RESOLUTIONS for h in (True, False)}
    assert sorted(g.name for g in groups if g.legacy) == [f"T1w {LEGACY} stripped", f"T2w {LEGACY} stripped"]
    assert {c.orientation for c in heldout_cases(groups)} == {"RAS", "LPS"}
    assert heldout_cases(groups, n=2) == heldout_cases(groups, n=2)  # same seeds and orientations every time


@pytest.mark.parametrize("kw", [{"contrast": "T2w", "resolution": "2mm", "head": False},
                                {"contrast": "random", "resolution": "1mm", "head": False},
                                {"contrast": "FLAIR", "resolution": LEGACY, "head": False},
                                {"contrast": "T1w", "resolution": LEGACY, "head": True}])
def test_unknown_groups_are_refused(kw):
    with pytest.raises(ConfigError):
        HeldoutGroup(**kw)
    with pytest.raises(ConfigError):
        heldout_case(HeldoutGroup("T2w", "1mm", True), MAX_CASES)


@pytest.fixture(scope="module")
def thick_lps():
    """A whole-head T2w 1x1x5 mm case stored LPS (procedural anatomy, ~3 s), and the same seed stored RAS."""
    case = heldout_case(HeldoutGroup("T2w", "thick", True), 0)
    if case.orientation != "LPS":
        case = dataclasses.replace(case, orientation="LPS")
    return case, make_heldout_case(case, anatomy="procedural"), make_heldout_case(
        dataclasses.replace(case, orientation="RAS"), anatomy="procedural")


@pytest.mark.slow
def test_case_has_the_asked_contrast_resolution_and_orientation(thick_lps):
    case, ph, _ = thick_lps
    img = _nifti(ph)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert np.allclose(img.header.get_zooms(), (1.0, 1.0, 5.0), atol=0.1)
    assert ph.contrast == "T2w" and ph.meta["whole_head"] and ph.meta["heldout"]["seed"] == case.seed
    assert ph.meta["domain"]["deform_mm"] == 6.0 and ph.meta["domain"]["contrast"] == "T2w"
    assert ph.label.shape == ph.brainmask.shape == ph.image.shape
    assert ph.label.any() and ((ph.label > 0) <= (ph.brainmask > 0)).all()
    # whole head: there is tissue outside the brain mask
    assert (ph.image[ph.brainmask == 0] > 0.1 * ph.image[ph.brainmask > 0].mean()).mean() > 0.1


@pytest.mark.slow
def test_deterministic_and_labels_line_up_in_world_coordinates(thick_lps):
    _, lps, ras = thick_lps
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    back = nib.as_closest_canonical(_nifti(lps))  # LPS voxels brought back to RAS storage
    assert np.allclose(back.affine, ras.affine, atol=1e-5)
    assert np.array_equal(np.asarray(back.dataobj), ras.image)  # same case made twice: same arrays
    lab = nib.as_closest_canonical(nib.Nifti1Image(lps.label, lps.affine))
    assert np.array_equal(np.asarray(lab.dataobj), ras.label)
    # and the label sits on the image: T2w PVS are brighter than the rest of the brain
    assert lps.image[lps.label > 0].mean() > lps.image[(lps.brainmask > 0) & (lps.label == 0)].mean()


def test_legacy_case_is_the_old_generators_skull_stripped_phantom():
    case = heldout_case(HeldoutGroup("T1w", LEGACY, False), 1)
    ph = make_heldout_case(case, anatomy="procedural")
    assert ph.meta["generator"] == "mednet_pvs.synth" and ph.contrast == "T1w"
    assert nib.aff2axcodes(ph.affine) == tuple(case.orientation)
    assert np.allclose(nib.affines.voxel_sizes(ph.affine), 1.0)
    assert ph.label.any() and ((ph.label > 0) <= (ph.brainmask > 0)).all()
