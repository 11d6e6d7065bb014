"""Grid, noise, bias, blur, thick slices and motion."""
from __future__ import annotations

import numpy as np
import pytest

from mednet_pvs.synth import make_phantom
from mednet_pvs.synth.acquisition import bias_field, thick_slices

CLEAN = dict(noise=0.0, bias=0.0, blur_fwhm_mm=0.0)


@pytest.mark.parametrize("spacing", [0.8, 1.0, 1.5])
def test_affine_spacing_is_the_requested_spacing(spacing):
    ph = make_phantom(anatomy="procedural", shape=(48, 48, 48), spacing=spacing, seed=0)
    assert np.allclose(np.sqrt((ph.affine[:3, :3] ** 2).sum(0)), spacing)
    assert np.allclose(ph.affine[:3, :3], np.diag([spacing] * 3))  # RAS, axis-aligned
    assert ph.spacing == (spacing,) * 3 and ph.meta["spacing_mm"] == [spacing] * 3
    for a in (ph.image, ph.label, ph.brainmask, ph.regions):
        assert a.shape == (48, 48, 48)
    assert (ph.image.dtype, ph.label.dtype, ph.brainmask.dtype, ph.regions.dtype) == (
        np.float32, np.uint8, np.uint8, np.int16)


def test_clean_image_is_zero_outside_the_brain_and_noise_is_rician():
    from scipy import ndimage

    clean = make_phantom(anatomy="procedural", seed=0, **CLEAN)
    outside = ~ndimage.binary_dilation(clean.brainmask > 0)  # (the edge voxels are partial volume)
    assert clean.image[outside].max() == 0
    noisy = make_phantom(anatomy="procedural", seed=0, noise=0.05, bias=0.0, blur_fwhm_mm=0.0)
    sigma = noisy.meta["acquisition"]["noise_sigma"]
    bg = noisy.image[outside]
    # background of a magnitude image is Rayleigh: mean = sigma * sqrt(pi / 2)
    assert bg.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.1)
    assert np.array_equal(noisy.label, clean.label)


def test_bias_field_is_smooth_and_bounded():
    mask = np.ones((40, 40, 40), bool)
    f = bias_field(mask.shape, mask, np.random.default_rng(0))
    assert abs(f.mean()) < 0.05 and f.std() == pytest.approx(1.0, abs=0.1) and np.abs(f).max() <= 2.0
    assert np.abs(np.diff(f, axis=0)).max() < 0.5  # smooth
    ph = make_phantom(anatomy="procedural", seed=0, noise=0.0, bias=0.3, blur_fwhm_mm=0.0)
    lo, hi = ph.meta["acquisition"]["bias_range"]
    assert 0.5 <= lo < 1 < hi <= 1.9


def test_blur_smooths_the_image():
    sharp = make_phantom(anatomy="procedural", seed=0, **CLEAN)
    blurred = make_phantom(anatomy="procedural", seed=0, noise=0.0, bias=0.0, blur_fwhm_mm=2.0)
    assert np.abs(np.diff(blurred.image, axis=0)).mean() < 0.8 * np.abs(np.diff(sharp.image, axis=0)).mean()
    assert blurred.image.sum() == pytest.approx(sharp.image.sum(), rel=0.01)


def test_thick_slices_degrade_only_the_image():
    iso = make_phantom(anatomy="procedural", seed=0, **CLEAN)
    thick = make_phantom(anatomy="procedural", seed=0, slice_thickness_mm=4.0, **CLEAN)
    assert np.array_equal(iso.label, thick.label) and np.array_equal(iso.regions, thick.regions)
    assert iso.image.shape == thick.image.shape
    # fine detail (2nd differences): lost through-plane, kept in-plane
    dz = lambda im: np.abs(np.diff(im, n=2, axis=2)).mean()  # noqa: E731
    dx = lambda im: np.abs(np.diff(im, n=2, axis=0)).mean()  # noqa: E731
    assert dz(thick.image) < 0.5 * dz(iso.image)
    assert dx(thick.image) > 0.6 * dx(iso.image)
    assert thick.meta["acquisition"]["slice_thickness_mm"] == 4.0


def test_thick_slices_average_slabs():
    a = np.arange(12, dtype=np.float32)[None, None, :].repeat(2, 0).repeat(2, 1)
    out = thick_slices(a, 3.0, axis=2)
    assert out.shape == a.shape
    assert np.allclose(out[0, 0, [1, 4, 7, 10]], [1, 4, 7, 10])  # slab centres keep the slab mean
    b = np.zeros((4, 4, 12), np.float32)
    b[:, :, 4] = 3.0  # one bright slice is spread over its slab
    assert np.allclose(thick_slices(b, 3.0, axis=2)[0, 0, 3:6].max(), 1.0)


def test_motion_makes_ghosts_outside_the_head():
    still = make_phantom(anatomy="procedural", seed=0, **CLEAN)
    moved = make_phantom(anatomy="procedural", seed=0, motion_mm=4.0, **CLEAN)
    from scipy import ndimage

    outside = ~ndimage.binary_dilation(still.brainmask > 0, iterations=2)
    assert still.image[outside].max() == 0
    assert moved.image[outside].mean() > 0.005
    assert len(moved.meta["acquisition"]["motion_shifts_mm"]) >= 1
    assert np.array_equal(still.label, moved.label)
