"""Frangi baseline: closed-form eigenvalues, response equal to a plain reference, mm scales,
masking and mask erosion, polarity, threshold and grid fitting, config round trip, and (when
installed) skimage agreement."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from mednet_pvs.classical import (
    FrangiConfig,
    FrangiSegmenter,
    fit_threshold,
    frangi_response,
)
from mednet_pvs.classical.frangi import (
    _dice_curve,
    _kernels,
    depth_mm,
    fit_frangi_grid,
    symmetric_eigvals,
)
from mednet_pvs.errors import ConfigError


def tubes_image(shape=(48, 48, 48), n=8, seed=0, radius=1.2):
    """Smooth noisy background with bright tubes; returns (image, tube mask, brain mask)."""
    rng = np.random.default_rng(seed)
    img = 100 + 3 * ndi.gaussian_filter(rng.normal(size=shape), 2.0) / 0.05
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    lab = np.zeros(shape, bool)
    for _ in range(n):
        c = rng.uniform(12, np.array(shape) - 12)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        p = grid - c
        t = p @ d
        dist = np.linalg.norm(p - t[..., None] * d, axis=-1)
        inside = np.abs(t) < 8
        img += 40 * np.exp(-(dist**2) / (2 * radius**2)) * inside
        lab |= (dist <= radius) & inside
    img += rng.normal(0, 1.0, shape)
    brain = np.zeros(shape, bool)
    brain[6:-6, 6:-6, 6:-6] = True
    return img.astype(np.float32), lab, brain


def reference_frangi(image, sigmas, alpha=0.5, beta=0.5, gamma=None, bright=True, scale_normalise=False, scipy_kernels=False):
    """Straightforward Frangi in float64: each Hessian element filtered on the full volume on its own
    (scipy's ``gaussian_filter(order=...)``, or the same kernels as the module), ``eigvalsh``,
    eigenvalues sorted by magnitude, skimage's formulas (``l2, l3`` clipped at 1e-10)."""
    img = -image.astype(np.float64) if bright else image.astype(np.float64)
    out = np.zeros(image.shape)
    for s in sigmas:
        h = np.empty(image.shape + (3, 3))
        k = _kernels(s, 4.0)
        for i in range(3):
            for j in range(i, 3):
                order = [0, 0, 0]
                order[i] += 1
                order[j] += 1
                if scipy_kernels:
                    hij = ndi.gaussian_filter(img, s, order=order, mode="reflect")
                else:
                    hij = img
                    for ax, o in enumerate(order):
                        hij = ndi.correlate1d(hij, k[o], axis=ax, mode="reflect")
                h[..., i, j] = h[..., j, i] = hij * (s**2 if scale_normalise else 1)
        ev = np.linalg.eigvalsh(h)
        ev = np.take_along_axis(ev, np.argsort(np.abs(ev), axis=-1), -1)
        l1, l2, l3 = ev[..., 0], np.maximum(ev[..., 1], 1e-10), np.maximum(ev[..., 2], 1e-10)
        ss = np.sqrt((ev**2).sum(-1))
        if gamma is None:
            gamma = ss.max() / 2
        v = (1 - np.exp(-((l2 / l3) ** 2) / (2 * alpha**2))) * np.exp(-(l1**2 / (l2 * l3)) / (2 * beta**2))
        v *= 1 - np.exp(-(ss**2) / (2 * gamma**2))
        out = np.maximum(out, v)
    return out


# ------------------------------------------------------------------------------------ building blocks


def test_closed_form_eigenvalues_match_eigvalsh():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 3, 3))
    a = a + a.transpose(0, 2, 1)
    a[:50] = np.eye(3) * 2.0  # isotropic
    a[50:100] = np.diag([1.0, 1.0, -3.0])  # two equal
    a[100:150] = 0.0
    el = [a[:, 0, 0], a[:, 0, 1], a[:, 0, 2], a[:, 1, 1], a[:, 1, 2], a[:, 2, 2]]
    expected = np.linalg.eigvalsh(a)[:, ::-1]
    np.testing.assert_allclose(np.stack(symmetric_eigvals(*el), 1), expected, atol=1e-9)
    got32 = np.stack(symmetric_eigvals(*[e.astype(np.float32) for e in el]), 1)
    np.testing.assert_allclose(got32, expected, atol=2e-4 * np.abs(expected).max())


@pytest.mark.parametrize("sigma", [0.5, 0.8, 1.5, 3.0])
def test_derivative_kernels_are_exact_on_polynomials(sigma):
    g0, g1, g2 = _kernels(sigma, 4.0)
    t = np.arange(-(g0.size // 2), g0.size // 2 + 1, dtype=float)
    assert g0.sum() == pytest.approx(1) and (g0 * t).sum() == pytest.approx(0, abs=1e-12)
    assert g1.sum() == pytest.approx(0, abs=1e-12) and (g1 * t).sum() == pytest.approx(1)
    assert g2.sum() == pytest.approx(0, abs=1e-12) and (g2 * t**2).sum() == pytest.approx(2)
    if sigma >= 1.5:  # same as scipy's sampled Gaussian derivatives where those are well sampled
        x = np.zeros(41)
        x[20] = 1
        np.testing.assert_allclose(np.correlate(x, g2, "same"), ndi.gaussian_filter1d(x, sigma, order=2), rtol=5e-3, atol=1e-5)


# ------------------------------------------------------------------------------------------ response


def test_response_equals_a_plain_reference_implementation():
    img, _, brain = tubes_image()
    cfg = FrangiConfig(sigmas_mm=(1.5, 2.0), gamma=20.0, scale_normalise=False, mask_erosion_mm=0.0)
    ours = frangi_response(img, 1.0, brain, cfg).response
    ref = reference_frangi(img, (1.5, 2.0), gamma=20.0)
    np.testing.assert_allclose(ours[brain], ref[brain], atol=1e-5)
    assert np.all(ours[~brain] == 0)
    # scipy's own sampled Gaussian derivatives give the same picture.
    ref_scipy = reference_frangi(img, (1.5, 2.0), gamma=20.0, scipy_kernels=True)
    assert np.corrcoef(ours[brain], ref_scipy[brain])[0, 1] > 0.999
    # Scale-normalised and automatic gamma (half the max Hessian norm at the first scale).
    auto = frangi_response(img, 1.0, None, FrangiConfig(sigmas_mm=(1.5, 2.0), scale_normalise=True, mask_erosion_mm=0.0))
    ref_auto = reference_frangi(img, (1.5, 2.0), scale_normalise=True)
    # Frangi is discontinuous where l1 = -l2 (sorting by magnitude swaps them): float32 rounding
    # may flip a rare voxel there to 0.
    off = np.abs(auto.response - ref_auto) > 1e-5
    assert off.sum() <= 3 and np.abs(auto.response - ref_auto).max() < 0.05
    assert ours.dtype == np.float32 and 0 <= ours.min() and ours.max() <= 1


def test_brain_restriction_is_exact_inside_the_brain():
    img, _, brain = tubes_image()
    cfg = FrangiConfig(gamma=10.0, mask_erosion_mm=0.0)
    inside = frangi_response(img, 1.0, brain, cfg).response
    whole = frangi_response(img, 1.0, None, cfg).response
    np.testing.assert_allclose(inside[brain], whole[brain], atol=1e-6)


def test_scales_are_in_millimetres():
    img, _, brain = tubes_image()
    one = frangi_response(img, 1.0, brain, FrangiConfig(sigmas_mm=(1.0, 1.5), scale_normalise=True))
    two = frangi_response(img, (2.0, 2.0, 2.0), brain, FrangiConfig(sigmas_mm=(2.0, 3.0), scale_normalise=True, mask_erosion_mm=6.0))
    np.testing.assert_allclose(one.response, two.response, atol=1e-5)  # erosion in mm too: 3 mm at 1 mm = 6 mm at 2 mm
    assert (one.response[brain & (depth_mm(brain, 1.0) <= 3)] == 0).all() and one.response.max() > 0
    # Anisotropic grid: a z-spacing of 2 mm halves the z-scale in voxels.
    aniso = frangi_response(img, (1.0, 1.0, 2.0), brain, FrangiConfig(sigmas_mm=(2.0,), gamma=5.0, scale_normalise=False))
    assert aniso.response.max() > 0


def test_polarity_dark_tubes_on_t1w():
    img, _, brain = tubes_image()
    bright = frangi_response(img, 1.0, brain, FrangiConfig(polarity="bright")).response
    dark = frangi_response(-img, 1.0, brain, FrangiConfig.for_contrast("T1w")).response
    np.testing.assert_allclose(bright, dark, atol=1e-6)  # the eigen-solver's rounding differs under a sign flip
    assert FrangiConfig.for_contrast("PD").polarity == "bright" and FrangiConfig.for_contrast("flair").polarity == "dark"
    wrong = frangi_response(img, 1.0, brain, FrangiConfig(polarity="dark")).response
    assert wrong.max() < 0.5 * bright.max()


def test_tubes_are_found_and_threshold_fit_is_the_best_on_its_grid():
    imgs, labs, masks = zip(*(tubes_image(seed=s) for s in (1, 2)))
    fit = fit_threshold(imgs, labs, masks, config=FrangiConfig(sigmas_mm=(1.0, 1.5, 2.0)))
    # Brute force: threshold, Dice, mean -- for every candidate.
    resp = [frangi_response(i, 1.0, m, fit.config).response for i, m in zip(imgs, masks)]
    brute = [np.mean([2 * np.sum((r > t) & l) / (np.sum(r > t) + l.sum()) for r, l in zip(resp, labs)]) for t in fit.thresholds]
    np.testing.assert_allclose(fit.mean_dice, brute, atol=1e-12)
    assert fit.config.threshold == fit.thresholds[int(np.argmax(brute))]
    assert fit.best_dice > 0.6
    r, mask = FrangiSegmenter(fit.config).predict(imgs[0], 1.0, masks[0])
    assert mask.dtype == bool and np.array_equal(mask, r > fit.config.threshold)
    assert 2 * np.sum(mask & labs[0]) / (mask.sum() + labs[0].sum()) > 0.6


def test_dice_curve_handles_empty_labels():
    r = np.array([0.0, 0.2, 0.9])
    d = _dice_curve(r, np.zeros(3, bool), np.array([0.1, 0.95]))
    assert d[0] == 0.0 and np.isnan(d[1])


def test_segmenter_removes_small_clusters():
    img, _, brain = tubes_image()
    cfg = FrangiConfig(threshold=0.02, scale_normalise=True, mask_erosion_mm=0.0)
    _, small = FrangiSegmenter(cfg).predict(img, 0.5, brain)
    _, big = FrangiSegmenter(cfg.replace(min_size_mm3=1.0)).predict(img, 0.5, brain)
    assert big.sum() < small.sum() and np.all(small[big])
    sizes = np.bincount(ndi.label(big, np.ones((3, 3, 3)))[0].ravel())[1:]
    assert sizes.min() * 0.125 >= 1.0


def test_config_round_trip_and_validation():
    cfg = FrangiConfig.for_contrast("FLAIR", sigmas_mm=[0.6, 1.2], threshold=0.12, min_size_mm3=2.0)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert FrangiConfig.from_dict(d) == cfg and cfg.polarity == "dark" and cfg.sigmas_mm == (0.6, 1.2)
    with pytest.raises(ConfigError, match="unknown option.*Frangi config"):
        FrangiConfig.from_dict({**d, "sigma": 1})
    with pytest.raises(ConfigError, match="polarity"):
        FrangiConfig(polarity="up")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sigmas_mm"):
        FrangiConfig(sigmas_mm=(0.0,))
    with pytest.raises(ConfigError, match="contrast"):
        FrangiConfig.for_contrast("DWI")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"mask_erosion_mm must be >= 0 \(mm\)"):
            FrangiConfig(mask_erosion_mm=bad)


def test_matches_skimage_where_its_kernels_are_well_sampled():
    frangi = pytest.importorskip("skimage.filters").frangi
    img, _, brain = tubes_image()
    cfg = FrangiConfig(sigmas_mm=(1.5, 2.0), gamma=20.0, scale_normalise=False, mask_erosion_mm=0.0)
    ours = frangi_response(img, 1.0, brain, cfg).response
    ref = frangi(img, sigmas=(1.5, 2.0), gamma=20.0, black_ridges=False, mode="reflect")
    assert np.corrcoef(ours[brain], ref[brain])[0, 1] > 0.9999


def test_phantom_t2w():
    synth = pytest.importorskip("mednet_pvs.synth")
    ph = synth.make_phantom(synth.PhantomConfig(anatomy="procedural", shape=(64, 64, 64), burden=3), seed=1)
    sp = np.sqrt((ph.affine[:3, :3] ** 2).sum(0))
    fit = fit_threshold([ph.image], [ph.label > 0], [ph.brainmask > 0], spacings=[sp], config=FrangiConfig.for_contrast("T2w"))
    assert fit.best_dice > 0.15  # a weak classical baseline, but well above chance
    r, mask = FrangiSegmenter(fit.config).predict(ph.image, sp, ph.brainmask)
    assert r.shape == ph.image.shape and not mask[ph.brainmask == 0].any()


# ------------------------------------------------------------------------------- erosion, grid fit


@pytest.fixture(scope="module")
def small_t2w():
    synth = pytest.importorskip("mednet_pvs.synth")
    return synth.make_phantom(synth.PhantomConfig(anatomy="procedural", shape=(48, 48, 48), burden=3, contrast="T2w"), seed=1)


def test_mask_erosion_drops_the_cortical_ribbon_false_positives(small_t2w):
    ph = small_t2w
    bm, lab = ph.brainmask > 0, ph.label > 0
    ribbon = bm & (depth_mm(bm, ph.spacing) <= 3.0)
    assert ribbon.sum() > 0.3 * bm.sum() and not (lab & ribbon).any()  # the phantom's PVS lie deeper
    cfg = FrangiConfig.for_contrast("T2w")
    assert cfg.mask_erosion_mm == 3.0
    kept = frangi_response(ph.image, ph.spacing, bm, cfg).response
    whole = frangi_response(ph.image, ph.spacing, bm, cfg.replace(mask_erosion_mm=0.0)).response
    assert (whole[ribbon] > 0.03).sum() > 5 * lab.sum(), "without erosion the ribbon answers like tubes"
    assert not kept[ribbon].any()
    np.testing.assert_array_equal(kept[~ribbon], whole[~ribbon])  # deeper, the response is unchanged
    # Without a mask, the image's non-zero voxels are eroded (a skull-stripped scan's brain).
    stripped = np.where(bm, ph.image, 0).astype(np.float32)
    assert stripped[bm].all()
    assert not frangi_response(stripped, ph.spacing, None, cfg).response[ribbon].any()
    # What it is for: the fitted Dice.
    data = ([ph.image], [lab], [bm])
    before = fit_threshold(*data, spacings=[ph.spacing], config=cfg.replace(mask_erosion_mm=0.0)).best_dice
    after = fit_threshold(*data, spacings=[ph.spacing], config=cfg).best_dice
    assert before < 0.2 and after > before + 0.3, (before, after)


def test_grid_fit_scores_each_combination_as_the_segmenter_would_and_picks_a_better_one():
    # Thick dark tubes: the defaults (bright polarity, unnormalised scales, 3 mm erosion) are all wrong here.
    imgs, labs, masks = zip(*(tubes_image(shape=(40, 40, 40), seed=s, radius=2.5) for s in (1, 2)))
    imgs = [-i for i in imgs]
    t = np.linspace(0.01, 0.6, 60)
    calls = []
    fit = fit_frangi_grid(imgs, labs, masks, scale_sets=((0.5, 1.0, 1.5), (1.5, 2.0, 2.5)), erosions_mm=(3.0, 0.0),
                          polarities=("bright", "dark"), thresholds=t, progress=lambda *a: calls.append(a))
    assert calls == [(1, 2), (2, 2)]
    assert len(fit.candidates) == 16 and fit.mean_dice.shape == (16, 60) and fit.dice.shape == (2, 16, 60)
    for c, cand in enumerate(fit.candidates):  # brute force: the segmenter's mask at every threshold
        if cand.polarity == "bright" and c > 0:
            continue  # one of the hopeless ones is enough
        resp = [frangi_response(i, 1.0, m, cand).response for i, m in zip(imgs, masks)]
        brute = [np.mean([2 * np.sum((r > x) & y) / (np.sum(r > x) + y.sum()) for r, y in zip(resp, labs)]) for x in t]
        np.testing.assert_allclose(fit.mean_dice[c], brute, atol=1e-12, err_msg=str(cand))
    best = fit.config
    assert best.polarity == "dark" and best.mask_erosion_mm == 0.0, best
    assert (best.sigmas_mm, best.scale_normalise) != ((0.5, 1.0, 1.5), False), "thick tubes: larger or normalised scales"
    default = fit.dice_of(sigmas_mm=FrangiConfig().sigmas_mm, scale_normalise=False, mask_erosion_mm=3.0)
    assert fit.best_dice > default + 0.1, (fit.best_dice, default)
    top = max(fit.rows(), key=lambda r: r["mean_dice"])
    assert top["mean_dice"] == fit.best_dice and top["threshold"] == best.threshold
    assert fit.dice_of(polarity="bright") < 0.1
    with pytest.raises(KeyError):
        fit.dice_of(mask_erosion_mm=2.0)


def test_grid_fit_refuses_bad_grids():
    img, lab, brain = tubes_image(shape=(24, 24, 24), n=1)
    data = ([img], [lab], [brain])
    with pytest.raises(ConfigError, match="mask_erosion_mm needs at least one value"):
        fit_frangi_grid(*data, erosions_mm=())
    with pytest.raises(ConfigError, match=r"mask_erosion_mm must be >= 0"):
        fit_frangi_grid(*data, erosions_mm=(0.0, -1.0))
    with pytest.raises(ConfigError, match="sigmas_mm must be positive"):
        fit_frangi_grid(*data, scale_sets=((0.5, 1.0), (0.0, 1.0)))
    with pytest.raises(ConfigError, match="polarity"):
        fit_frangi_grid(*data, polarities=("bright", "grey"))
    with pytest.raises(ConfigError, match=r"thresholds must be values in \[0, 1\]"):
        fit_frangi_grid(*data, thresholds=(0.1, 1.5))
