"""Lacunes, WMH and vessels: present, visible, never labelled."""
from __future__ import annotations

import numpy as np
import pytest

from mednet_pvs.synth import make_phantom
from mednet_pvs.synth.anatomy import CODES
from mednet_pvs.synth.confounders import LACUNE, VESSEL, WMH

CLEAN = dict(noise=0.0, bias=0.0, blur_fwhm_mm=0.0)


@pytest.fixture(scope="module")
def pair():
    """Same seed with and without confounders, noise-free, burden 3, Fazekas 2, 3 lacunes."""
    kw = dict(anatomy="procedural", burden=3, seed=11, wmh=2, lacunes=3, vessels=8, **CLEAN)
    return make_phantom(confounders=True, **kw), make_phantom(confounders=False, **kw)


def test_confounders_are_present_and_counted(pair):
    ph, _ = pair
    c = ph.meta["confounders"]
    assert c["lacunes"] == 3 and c["wmh_fazekas"] == 2 and c["vessels"] == 8 and c["wmh_deep_foci"] >= 1
    assert c["wmh_volume_mm3"] > 0 and len(c["lacune_diameters_mm"]) == 3
    assert all(3.0 <= d <= 15.0 for d in c["lacune_diameters_mm"])
    assert set(np.unique(ph.confounders).tolist()) == {0, LACUNE, WMH, VESSEL}


def test_confounders_are_never_labelled(pair, proc_phantom):
    for ph in (*pair, proc_phantom):
        assert not (ph.label.astype(bool) & (ph.confounders > 0)).any()
        assert not (ph.pvs_fraction[ph.confounders > 0] >= 0.5).any()


def test_confounders_visibly_change_the_image(pair):
    ph, plain = pair
    means = ph.meta["tissue_means"]
    diff = np.abs(ph.image - plain.image)
    for code in (LACUNE, WMH, VESSEL):
        assert diff[ph.confounders == code].mean() > 0.1, code
    # T2w: lacune cores are CSF-bright, WMH brighter than white matter, vessels dark
    wm = np.isin(ph.regions, CODES["wm"]) & (ph.confounders == 0) & (ph.label == 0)
    assert ph.image[ph.confounders == LACUNE].max() > 0.9 * means["csf"]
    assert ph.image[ph.confounders == WMH].mean() > ph.image[wm].mean() + 0.15
    assert ph.image[ph.confounders == VESSEL].mean() < plain.image[ph.confounders == VESSEL].mean() - 0.2


def test_vessels_lie_at_the_surface_and_lacunes_deep(pair):
    ph, _ = pair
    at_vessels = set(np.unique(ph.regions[ph.confounders == VESSEL]).tolist())
    assert at_vessels <= set(CODES["cortex"]) | {24}
    at_lacunes = set(np.unique(ph.regions[ph.confounders == LACUNE]).tolist())
    assert at_lacunes <= set(CODES["wm"]) | {c for s in ("caudate", "putamen", "pallidum", "thalamus") for c in CODES[s]}
    at_wmh = set(np.unique(ph.regions[ph.confounders == WMH]).tolist())
    assert at_wmh <= set(CODES["wm"])


def test_switching_confounders_off(pair):
    _, plain = pair
    assert plain.confounders.max() == 0
    c = plain.meta["confounders"]
    assert c["lacunes"] == c["vessels"] == c["wmh_fazekas"] == 0


def test_wmh_volume_grows_with_fazekas_grade():
    vols = [make_phantom(anatomy="procedural", seed=3, wmh=g, **CLEAN).meta["confounders"]["wmh_volume_mm3"]
            for g in range(4)]
    assert vols[0] == 0 and vols[1] < vols[2] < vols[3], vols
