"""Anatomies: region codes, hemispheres, caching, grids."""
from __future__ import annotations

import numpy as np
import pytest

from mednet_pvs.synth.anatomy import CODES, mni_anatomy, procedural_anatomy, region_volumes

LEFT = {2, 3, 4, 10, 11, 12, 13, 17, 18}
RIGHT = {41, 42, 43, 49, 50, 51, 52, 53, 54}


def _world_x(anat) -> np.ndarray:
    return anat.affine[0, 3] + np.arange(anat.shape[0]) * anat.spacing


def _check_hemispheres(anat) -> None:
    x = _world_x(anat)
    for code in LEFT | RIGHT:
        xs = x[np.nonzero(anat.regions == code)[0]]
        assert xs.size, f"aseg code {code} missing"
        assert (np.all(xs < 0) if code in LEFT else np.all(xs >= 0)), f"aseg code {code} on the wrong side"


def test_procedural_regions_cover_the_listed_aseg_codes():
    anat = procedural_anatomy((64, 64, 64), 1.0)
    assert set(region_volumes(anat)) == LEFT | RIGHT | {16, 24}
    _check_hemispheres(anat)
    # regions exactly inside the brain mask; tissue fractions sum to at most 1 and fill the mask
    assert np.array_equal(anat.regions > 0, anat.brainmask)
    tot = anat.gm + anat.wm + anat.csf
    assert tot.max() <= 1.0 + 1e-5 and tot[anat.brainmask].min() >= 0.5
    # the ventricles are CSF, the white matter is white matter
    assert anat.csf[np.isin(anat.regions, CODES["ventricle"])].mean() > 0.8
    assert anat.wm[np.isin(anat.regions, CODES["wm"])].mean() > 0.8


def test_anatomies_are_cached_and_read_only():
    a = procedural_anatomy((64, 64, 64), 1.0)
    assert procedural_anatomy((64, 64, 64), 1.0) is a
    with pytest.raises(ValueError):
        a.regions[0, 0, 0] = 3


@pytest.mark.parametrize("shape, spacing", [((48, 48, 48), 1.0), ((96, 96, 96), 1.0), ((64, 72, 60), 0.8)])
def test_procedural_head_sizes(shape, spacing):
    anat = procedural_anatomy(shape, spacing)
    assert anat.shape == shape
    assert np.allclose(np.diag(anat.affine)[:3], spacing)
    assert set(region_volumes(anat)) == LEFT | RIGHT | {16, 24}
    # centred grid: world origin in the middle
    centre = anat.affine[:3, 3] + (np.array(shape) - 1) / 2 * spacing
    assert np.allclose(centre, 0)


@pytest.mark.slow
def test_mni_regions_are_where_the_atlas_puts_them():
    anat = mni_anatomy(1.0)
    vols = region_volumes(anat)
    assert set(vols) == LEFT | RIGHT | {7, 8, 46, 47, 16, 24}
    _check_hemispheres(anat)
    h = anat.spacing

    def centroid(code):
        return np.argwhere(anat.regions == code).mean(0) * h + anat.affine[:3, 3]

    expected = {12: (-25, 2, 2), 51: (25, 2, 2), 10: (-11, -18, 7), 11: (-13, 11, 10), 13: (-19, -4, -1)}
    for code, xyz in expected.items():
        assert np.linalg.norm(centroid(code) - xyz) < 6, f"aseg {code} centroid {centroid(code)}"
    assert 4_000 < vols[4] < 20_000 and 4_000 < vols[43] < 20_000  # lateral ventricles (mm^3)
    assert 40_000 < vols[8] + vols[7] < 120_000  # one cerebellar hemisphere
    assert centroid(8)[2] < -20 and centroid(8)[1] < -50
    # deep grey nuclei are grey-matter rich; cerebral WM is white matter
    assert anat.gm[anat.regions == 12].mean() > 0.5
    assert anat.wm[anat.regions == 2].mean() > 0.8


@pytest.mark.slow
def test_mni_resampled_to_0p8_mm():
    a1, a08 = mni_anatomy(1.0), mni_anatomy(0.8)
    assert np.allclose(np.diag(a08.affine)[:3], 0.8)
    assert np.allclose(a08.affine[:3, 3], a1.affine[:3, 3])  # same world box
    ext1 = (np.array(a1.shape) - 1) * 1.0
    ext08 = (np.array(a08.shape) - 1) * 0.8
    assert np.all(np.abs(ext1 - ext08) <= 0.8)
    v1, v08 = a1.brainmask.sum() * 1.0, a08.brainmask.sum() * 0.8**3
    assert abs(v08 / v1 - 1) < 0.02
