"""Burden levels: 0 is empty, more is more, counts follow the documented table."""
from __future__ import annotations

import pytest

from mednet_pvs.synth import PVS_REGIONS, make_phantom
from mednet_pvs.synth.pvs import COUNT_RANGES, count_ranges


def test_burden_zero_is_an_empty_label():
    ph = make_phantom(anatomy="procedural", burden=0, seed=4)
    assert ph.label.sum() == 0 and ph.meta["pvs_count"] == 0 and ph.meta["pvs_volume_mm3"] == 0
    assert ph.instances.max() == 0 and ph.pvs_fraction.max() == 0


@pytest.mark.parametrize("seed", [0, 7])
def test_burden_is_monotonic(seed):
    counts, volumes = [], []
    for b in range(5):
        ph = make_phantom(anatomy="procedural", burden=b, seed=seed)
        counts.append(ph.meta["pvs_count"])
        volumes.append(ph.meta["pvs_volume_mm3"])
    assert counts[0] == 0
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    assert all(a < b for a, b in zip(volumes, volumes[1:])), volumes


def test_requested_counts_follow_the_scaled_table(proc_phantom):
    from mednet_pvs.synth.anatomy import procedural_anatomy

    scale = procedural_anatomy((64, 64, 64), 1.0).scale
    for region, per_side in proc_phantom.meta["pvs_requested"].items():
        lo, hi = count_ranges(region, scale)[3]
        assert all(lo <= n <= hi for n in per_side.values()), (region, per_side, (lo, hi))


@pytest.mark.parametrize("scale", [1.0, 0.6, 0.36, 0.2, 0.05])
def test_count_ranges_are_strictly_increasing(scale):
    for region in PVS_REGIONS:
        ranges = count_ranges(region, scale)
        assert ranges[0] == (0, 0)
        for (lo1, hi1), (lo2, hi2) in zip(ranges[1:], ranges[2:]):
            assert lo1 <= hi1 < lo2 <= hi2
    assert count_ranges("basal_ganglia", 1.0) == list(COUNT_RANGES["basal_ganglia"])  # Potter: 1-10, 11-20, 21-40, >40


def test_per_region_burden():
    ph = make_phantom(anatomy="procedural", burden={"basal_ganglia": 2}, seed=1)
    assert set(ph.meta["pvs_count_by_region"]) == {"basal_ganglia"}
    assert ph.meta["pvs_count"] > 0


@pytest.mark.slow
def test_mni_counts_are_potter_counts(mni_phantom):
    req = mni_phantom.meta["pvs_requested"]
    for region in ("centrum_semiovale", "basal_ganglia"):
        assert set(req[region]) == {"L", "R"}
        assert all(21 <= n <= 40 for n in req[region].values()), req  # burden 3
    got = mni_phantom.meta["pvs_count_by_region"]
    assert got["basal_ganglia"] >= 0.9 * sum(req["basal_ganglia"].values())
    assert got["centrum_semiovale"] >= 0.9 * sum(req["centrum_semiovale"].values())
