"""show_mosaic: n evenly spread slices through the brain, positions in scanner mm."""
from __future__ import annotations

import re

import numpy as np
import pytest
from _viz_helpers import image_axes, letters, lps_copy, pixels

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.viz import show_mosaic
from mednet_pvs.viz.mosaic import mosaic_slices


def _positions(fig) -> list[float]:
    return [float(re.match(r"[xyz] = ([-+.\d]+) mm", ax.get_title()).group(1)) for ax in image_axes(fig)]


@pytest.mark.parametrize("n", [1, 5, 12])
def test_mosaic_has_n_panels_spread_through_the_brain(toy, n):
    img, mask, aff = toy
    fig = show_mosaic(img, mask, aff, n=n)
    assert len(image_axes(fig)) == n
    z = _positions(fig)
    assert z == sorted(z) and len(set(z)) == n
    # inside the head (z index 2..21: -10..+9 mm), and spread over it
    assert -10 <= z[0] and z[-1] <= 9
    if n >= 5:
        assert z[-1] - z[0] >= 12
    assert [t.get_gid() for t in image_axes(fig)[0].texts].count("orientation") == 4  # letters on the first panel
    assert all(not ax.texts for ax in image_axes(fig)[1:])


def test_more_slices_than_the_brain_has(toy):
    img, mask, aff = toy
    head = np.flatnonzero((img > 50).any(axis=(0, 1)))  # z indices 2..21 hold the head
    assert np.array_equal(mosaic_slices(img, 2, 100), head) and head.size == 20
    assert len(image_axes(show_mosaic(img, mask, aff, n=100))) == 20


def test_axis_counts_and_orientation(toy):
    img, mask, aff = toy
    fig = show_mosaic(img, mask, aff, axis="coronal", n=4, ncols=2, radiological=True)
    panels = image_axes(fig)
    assert all(re.match(r"y = [-+.\d]+ mm  \(\d+ PVS vox\)$", ax.get_title()) for ax in panels)
    assert letters(panels[0]) == ("R", "L", "I", "S")
    rows = sorted({round(ax.get_position().y0, 3) for ax in panels})
    assert len(rows) == 2  # 2 x 2
    counts = [int(re.search(r"\((\d+) PVS vox\)", ax.get_title()).group(1)) for ax in panels]
    y_index = [int(round(y + 18)) for y in _positions(fig)]
    assert counts == [int(mask[:, j, :].sum()) for j in y_index]


def test_same_picture_from_lps_storage(toy):
    img, mask, aff = toy
    img2, aff2 = lps_copy(img, aff)
    mask2, _ = lps_copy(mask, aff)
    assert np.array_equal(pixels(show_mosaic(img, mask, aff, n=6)), pixels(show_mosaic(img2, mask2, aff2, n=6)))


def test_bad_arguments(toy):
    img, mask, aff = toy
    with pytest.raises(ConfigError, match="unknown axis 'transverse'"):
        show_mosaic(img, mask, aff, axis="transverse")
    with pytest.raises(ConfigError, match="n must be at least 1"):
        show_mosaic(img, mask, aff, n=0)
    with pytest.raises(InputError, match=r"<mask array>: mask of shape"):
        show_mosaic(img, mask[1:], aff)
