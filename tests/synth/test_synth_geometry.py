"""PVS geometry measured from the label: sizes, orientation, placement, partial volume."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from _synth_helpers import radial_cosines, tube_measurements, vertical_cosines

from mednet_pvs.synth.anatomy import BASAL_GANGLIA, CODES

PARENCHYMA_OF = {
    "centrum_semiovale": set(CODES["wm"]),
    "basal_ganglia": {c for s in BASAL_GANGLIA for c in CODES[s]},
    "midbrain": {16},
    "hippocampus": set(CODES["hippocampus"]),
}


def _check_sizes(ph) -> None:
    h = float(ph.affine[0, 0])
    cfg = ph.meta["config"]
    (w_lo, w_hi), (l_lo, l_hi) = cfg["width_mm"], cfg["length_mm"]
    for m in tube_measurements(ph):
        rec = m["rec"]
        assert w_lo <= rec["width_mm"] <= w_hi and l_lo <= rec["length_mm"] <= l_hi
        assert rec["length_mm"] >= 2 * rec["width_mm"] - 1e-6  # tubular
        # the label shows a tube at least ~one voxel wide: max(width, ~1.1 voxel), give or take
        expected_w = max(rec["width_mm"], 1.13 * h)
        assert 0.7 * expected_w <= m["width"] <= 1.45 * expected_w + 0.2 * h, (rec, m["width"])
        # PCA extent ~ chord + one voxel <= arc length + width + a voxel; curvature shortens the chord
        assert 0.7 * rec["length_mm"] <= m["length"] <= rec["length_mm"] + rec["width_mm"] + 2 * h, (rec, m["length"])
        assert m["n"] == rec["n_voxels"]


def _check_placement(ph) -> None:
    lab = ph.label.astype(bool)
    assert lab.any()
    assert not (lab & (ph.brainmask == 0)).any(), "PVS outside the brain mask"
    codes = set(np.unique(ph.regions[lab]).tolist())
    assert codes.isdisjoint({0, 24} | set(CODES["ventricle"])), f"PVS in CSF: {codes}"
    for rec in ph.meta["pvs"]:
        where = set(np.unique(ph.regions[ph.instances == rec["id"]]).tolist())
        assert where <= PARENCHYMA_OF[rec["region"]], (rec["region"], where)
    # one connected component per PVS, label == instances > 0
    assert np.array_equal(lab, ph.instances > 0)
    _, n = ndimage.label(lab, structure=np.ones((3, 3, 3)))
    assert n == ph.meta["pvs_count"] == len(ph.meta["pvs"])


def _check_orientation(ph, min_bg: float = 0.85, min_radial: float = 0.75) -> None:
    measured = tube_measurements(ph)
    long_enough = [m for m in measured if m["rec"]["length_mm"] >= 3]
    bg = vertical_cosines(long_enough)
    cso = radial_cosines(ph, long_enough)
    assert len(bg) >= 5 and len(cso) >= 5
    assert np.median(bg) > min_bg and np.mean(bg > 0.7) > 0.8, bg
    assert np.median(cso) > min_radial and np.mean(cso) > 0.65, cso
    # and a sanity check of the statistic: random directions give |cos| ~ 0.5
    rnd = np.abs(np.random.default_rng(0).normal(size=(500, 3)))
    assert np.median(rnd[:, 2] / np.linalg.norm(rnd, axis=1)) < 0.6


def test_procedural_tube_sizes(proc_phantom):
    _check_sizes(proc_phantom)


def test_procedural_placement(proc_phantom):
    _check_placement(proc_phantom)


def test_procedural_orientation(proc_phantom):
    _check_orientation(proc_phantom)


def test_partial_volume(proc_phantom):
    ph = proc_phantom
    frac = ph.pvs_fraction
    assert frac.dtype == np.float32 and frac.min() >= 0 and frac.max() <= 1
    assert (frac[ph.label > 0] > 0).all()
    edge = (frac > 0) & (frac < 0.999)
    assert edge.sum() > ph.label.sum() * 0.5, "tube walls should be partial-volume voxels"
    # the PVS volume in the image is close to the analytic tube volume
    true = sum(r["true_volume_mm3"] for r in ph.meta["pvs"])
    assert 0.6 * true < ph.meta["pvs_fraction_volume_mm3"] < 1.6 * true + 1.0 * len(ph.meta["pvs"])


def test_every_region_gets_pvs(proc_phantom):
    got = proc_phantom.meta["pvs_count_by_region"]
    assert set(got) == {"centrum_semiovale", "basal_ganglia", "midbrain", "hippocampus"}
    directions = np.array([r["direction"] for r in proc_phantom.meta["pvs"]])
    assert np.allclose(np.linalg.norm(directions, axis=1), 1, atol=1e-3)


@pytest.mark.slow
def test_mni_geometry(mni_phantom):
    _check_sizes(mni_phantom)
    _check_placement(mni_phantom)
    _check_orientation(mni_phantom)
    assert mni_phantom.meta["pvs_count"] > 80  # burden 3
