"""Contrasts: PVS bright on T2w, dark on T1w, CSF-like in the random mode."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mednet_pvs.synth import make_phantom
from mednet_pvs.synth.anatomy import CODES


def _pvs_vs_wm(ph) -> tuple[float, float]:
    """Mean image in fully PVS voxels, and in white matter at least 2 voxels away from any PVS."""
    core = ph.pvs_fraction > 0.9
    near = ndimage.binary_dilation(ph.label > 0, iterations=2)
    wm = np.isin(ph.regions, CODES["wm"]) & ~near & (ph.confounders == 0)
    return float(ph.image[core].mean()), float(ph.image[wm].mean())


def test_t2w_pvs_brighter_than_white_matter(proc_phantom):
    pvs, wm = _pvs_vs_wm(proc_phantom)
    assert pvs > wm * 1.5, (pvs, wm)


def test_t1w_pvs_darker_than_white_matter():
    ph = make_phantom(anatomy="procedural", contrast="T1w", burden=3, seed=1)
    pvs, wm = _pvs_vs_wm(ph)
    assert pvs < wm * 0.6, (pvs, wm)
    assert ph.meta["tissue_means"]["pvs"] == pytest.approx(ph.meta["tissue_means"]["csf"], abs=0.05)


def test_random_contrast_follows_csf_and_varies_with_seed():
    a = make_phantom(anatomy="procedural", contrast="random", seed=1)
    b = make_phantom(anatomy="procedural", contrast="random", seed=2)
    for ph in (a, b):
        m = ph.meta["tissue_means"]
        assert abs(m["pvs"] - m["csf"]) < 0.25 and abs(m["csf"] - m["wm"]) >= 0.15
        assert ph.image.dtype == np.float32 and np.isfinite(ph.image).all()
    assert a.meta["tissue_means"] != b.meta["tissue_means"]
    assert a.image.shape == b.image.shape
    # file names follow the contrast
    assert a.contrast == "random"


@pytest.mark.slow
def test_mni_t2w_contrast(mni_phantom):
    pvs, wm = _pvs_vs_wm(mni_phantom)
    assert pvs > wm * 1.5


def test_random_contrast_keeps_pvs_visible_in_every_tissue_they_run_through():
    """Under a random contrast PVS (CSF-like) differ from white matter and from the deep grey
    matter, brainstem and hippocampus they also run through, by at least min_pvs_contrast."""
    import numpy as np

    from mednet_pvs.synth.contrast import PVS_HOSTS, tissue_means

    for seed in range(200):
        m = tissue_means("random", np.random.default_rng(seed), min_pvs_contrast=0.2)
        assert min(abs(m["csf"] - m[t]) for t in PVS_HOSTS) >= 0.2, seed
    assert {"wm", "putamen", "brainstem", "hippocampus"} <= set(PVS_HOSTS)
