"""show_cluster_gallery: which clusters, in which order, numbered and measured as pvs_burden does."""
from __future__ import annotations

import re

import numpy as np
import pytest
from _viz_helpers import image_axes, lps_copy, toy_clusters

from mednet_pvs.analysis import pvs_burden
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.viz import show_cluster_gallery
from mednet_pvs.viz.gallery import rank_clusters

TITLE = re.compile(r"#(\d+)   ([\d.]+) mm³(?:   p ([\d.]+))?\n(sagittal|coronal|axial)  ([xyz]) = ([-+.\d]+) mm$")


def _shown(fig) -> list[tuple]:
    out = []
    for ax in image_axes(fig):
        m = TITLE.match(ax.get_title())
        assert m, ax.get_title()
        cid, vol, p, view, _, pos = m.groups()
        out.append((int(cid), float(vol), None if p is None else float(p), view, float(pos)))
    return out


def _probs(mask, parts, values):
    probs = np.zeros(mask.shape, np.float32)
    for name, v in values.items():
        probs[parts[name]] = v
    return probs


def _ids(mask, aff) -> dict[float, int]:
    table = pvs_burden(mask, aff).clusters
    return {float(v): int(i) for i, v in zip(table["id"], table["volume_mm3"])}


def test_largest_clusters_in_order_with_burden_ids(toy):
    img, mask, aff = toy
    ids = _ids(mask, aff)  # volume -> id, as the burden table numbers them
    shown = _shown(show_cluster_gallery(img, mask, aff, n=3))
    assert [(c, v) for c, v, *_ in shown] == [(ids[8.0], 8.0), (ids[6.0], 6.0), (ids[4.0], 4.0)]
    assert all(p is None for _, _, p, *_ in shown)
    assert len(image_axes(show_cluster_gallery(img, mask, aff, n=50))) == 4  # all there are


def test_most_uncertain_clusters_first(toy):
    img, _, aff = toy
    mask, parts = toy_clusters()
    probs = _probs(mask, parts, {"cube8": 0.9, "si6": 0.55, "lr4": 0.3, "dot1": 0.48})
    ids = _ids(mask, aff)
    shown = _shown(show_cluster_gallery(img, mask, aff, probs=probs, by="uncertainty", n=4))
    assert [(c, p) for c, _, p, *_ in shown] == [(ids[1.0], 0.48), (ids[6.0], 0.55), (ids[4.0], 0.3), (ids[8.0], 0.9)]
    heading = next(t.get_text() for t in image_axes(show_cluster_gallery(img, mask, aff, probs=probs))[0].figure.texts)
    assert "4 largest of 4 PVS clusters (p: mean probability)" in heading


def test_crop_plane_contains_the_cluster_and_fits_it(toy):
    img, mask, aff = toy
    shown = {v: (view, pos) for _, v, _, view, pos in _shown(show_cluster_gallery(img, mask, aff, crop_mm=4))}
    assert shown[6.0][0] in ("sagittal", "coronal")  # runs superior-inferior: not cut across axially
    assert shown[4.0][0] in ("coronal", "axial")  # runs left-right: not cut across sagittally
    assert shown[6.0] == ("sagittal", -5.0)  # x index 10 -> -5 mm
    fig = show_cluster_gallery(img, mask, aff, crop_mm=4, n=2)
    si = next(ax for ax in image_axes(fig) if " 6.0 mm³" in ax.get_title())
    height = abs(np.diff(si.get_ylim())[0])
    assert height >= 6 + 2 * 2  # a 6 mm cluster + margins: crop enlarged beyond crop_mm=4
    (own,) = [c for c in si.collections if c.get_gid() == "pvs_outline" and len(c.get_segments()) == 14]
    ys = np.array(own.get_segments())[..., 1]
    assert np.isclose(ys.min(), -6.5) and np.isclose(ys.max(), -0.5)  # z index 6..11 -> -6..-1 mm


def test_same_gallery_from_lps_storage(toy):
    img, mask, aff = toy
    img2, aff2 = lps_copy(img, aff)
    mask2, _ = lps_copy(mask, aff)
    a = [(v, view, pos) for _, v, _, view, pos in _shown(show_cluster_gallery(img, mask, aff))]
    b = [(v, view, pos) for _, v, _, view, pos in _shown(show_cluster_gallery(img2, mask2, aff2))]
    assert a == b  # ids may differ (raster order of the stored grid), the clusters and views do not


def test_rank_clusters_rules():
    vol = np.array([5.0, 9.0, 9.0, 1.0])
    assert rank_clusters(vol, None, "volume", 3).tolist() == [1, 2, 0]  # ties: smaller id first
    p = np.array([0.6, 0.4, 0.9, 0.5])
    assert rank_clusters(vol, p, "uncertainty", 4).tolist() == [3, 1, 0, 2]  # 0.4/0.6 tie: larger first
    with pytest.raises(ConfigError, match="needs the probability map"):
        rank_clusters(vol, None, "uncertainty")
    with pytest.raises(ConfigError, match="unknown by='size'"):
        rank_clusters(vol, None, "size")


def test_empty_mask_and_bad_inputs(toy):
    img, mask, aff = toy
    fig = show_cluster_gallery(img, np.zeros_like(mask), aff)
    assert not image_axes(fig) and fig.axes[0].texts[0].get_text() == "no PVS clusters in the mask"
    with pytest.raises(ConfigError, match="needs the probability map"):
        show_cluster_gallery(img, mask, aff, by="uncertainty")
    with pytest.raises(ConfigError, match="n must be at least 1"):
        show_cluster_gallery(img, mask, aff, n=0)
    with pytest.raises(ConfigError, match="unknown view"):
        show_cluster_gallery(img, mask, aff, view="3d")
    with pytest.raises(InputError, match=r"<mask>: show_cluster_gallery needs an image and a mask"):
        show_cluster_gallery(img, None, aff)
