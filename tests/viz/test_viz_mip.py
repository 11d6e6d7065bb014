"""show_mip: maximum-intensity projections land at the right world position, in any storage order."""
from __future__ import annotations

import numpy as np
import pytest
from _viz_helpers import SHAPE, brightest_world, colour_bars, image_axes, letters, lps_copy, pixels, toy_affine, toy_image

from mednet_pvs.errors import InputError
from mednet_pvs.viz import show_mip

VOXEL = (24, 9, 17)  # RAS index -> world (+9, -9, +5) mm: right, posterior, superior


def _dot() -> np.ndarray:
    probs = np.zeros(SHAPE, np.float32)
    probs[VOXEL] = 1.0
    probs[3, 30, 2] = 0.4  # a dimmer voxel elsewhere must not win
    return probs


@pytest.mark.parametrize("radiological", [False, True])
def test_bright_voxel_lands_at_its_ras_position(radiological):
    """Stored LPS, the voxel still shows at its scanner (x, y), (x, z) and (y, z) in the three panels."""
    probs, aff = lps_copy(_dot(), toy_affine())
    world = aff @ [*np.argwhere(probs == 1.0)[0], 1.0]
    assert np.allclose(world[:3], (9.0, -9.0, 5.0))
    fig = show_mip(probs, aff, radiological=radiological)
    panels = image_axes(fig)
    assert [ax.get_title().split()[0] for ax in panels] == ["axial", "coronal", "sagittal"]
    for ax, (a, b) in zip(panels, [(0, 1), (0, 2), (1, 2)]):
        assert np.allclose(brightest_world(fig, ax), world[[a, b]], atol=0.5)
    axial = panels[0]
    on_right = axial.transData.transform((9.0, -9.0))[0] > axial.get_window_extent().x0 + axial.get_window_extent().width / 2
    assert on_right != radiological  # patient's right: screen right (neurological) or left (radiological)
    assert letters(axial) == (("R", "L") if radiological else ("L", "R")) + ("P", "A")


def test_projection_values_titles_and_colour_bar():
    probs = _dot()
    fig = show_mip(probs, toy_affine(), axes=("coronal",))
    (ax,) = image_axes(fig)
    assert ax.get_title() == "coronal MIP   along y, -18 to +17 mm"
    rgba = ax.images[0].get_array()  # the max along y: the bright voxel's column is white (hot(1.0))
    assert rgba.shape[:2] == (SHAPE[2], SHAPE[0]) and np.allclose(rgba[VOXEL[2], VOXEL[0], :3], 1.0)
    (bar,) = colour_bars(fig)
    assert bar.get_ylabel() == "max PVS probability along the line"


def test_mask_and_image_background(tmp_path):
    mask = (_dot() == 1.0).astype(np.uint8) * 255  # any integer mask: voxels > 0 are PVS
    fig = show_mip(mask, toy_affine(), image=toy_image(), save=tmp_path / "mip.png")
    assert (tmp_path / "mip.png").stat().st_size > 5000
    heading = next(t.get_text() for t in fig.texts if t.get_gid() == "heading")
    assert "projection of the PVS mask" in heading and "mean intensity projection" in heading
    assert all(len(ax.images) == 2 for ax in image_axes(fig))  # dimmed anatomy + heat
    assert colour_bars(fig)[0].get_ylabel() == "PVS mask (projected)"
    assert pixels(fig).shape[2] == 4


def test_bad_inputs():
    with pytest.raises(InputError, match=r"<probs array>: probabilities must lie within 0..1"):
        show_mip(np.full(SHAPE, 2.5, np.float32), toy_affine())
    with pytest.raises(InputError, match=r"<image array>: image of shape \(30, 36, 23\) is not on the grid"):
        show_mip(_dot(), toy_affine(), image=toy_image()[..., 1:])
    nan = _dot()
    nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"<probs array>: 1 NaN or infinite probabilities"):
        show_mip(nan, toy_affine())
    with pytest.raises(InputError, match=r"<probs array>: a 3-D volume is needed"):
        show_mip(np.zeros((4, 4), np.float32), np.eye(4))
