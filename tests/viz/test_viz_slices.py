"""show_slices: world orientation from the affine, conventions, mask outlines, inputs and errors."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _viz_helpers import colour_bars, image_axes, letters, lps_copy, oblique, permuted_copy, pixels

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import load_image
from mednet_pvs.viz import show_slices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_returns_a_figure_and_saves_png_atomically(toy, tmp_path):
    img, mask, aff = toy
    fig = show_slices(img, mask, aff, save=tmp_path / "s.png")
    assert type(fig).__name__ == "PVSFigure" and len(image_axes(fig)) == 3
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]
    assert fig._repr_png_()[:8] == PNG_MAGIC  # what Jupyter displays for `fig`


@pytest.mark.parametrize("restore", [lps_copy, permuted_copy], ids=["LPS", "permuted-flipped"])
@pytest.mark.parametrize("tilt", [0.0, 12.0], ids=["aligned", "oblique"])
def test_stored_orientation_does_not_change_the_picture(toy, restore, tilt):
    """The affine decides: the same scan stored in another voxel order renders pixel for pixel alike."""
    img, mask, aff = toy
    aff = oblique(aff, tilt) if tilt else aff
    probs = np.where(mask > 0, 0.8, 0.0).astype(np.float32)
    ref = show_slices(img, mask, aff, probs=probs)
    img2, aff2 = restore(img, aff)
    mask2, _ = restore(mask, aff)
    probs2, _ = restore(probs, aff)
    assert not np.array_equal(img2.shape, img.shape) or not np.array_equal(img2, img)  # really stored otherwise
    other = show_slices(img2, mask2, aff2, probs=probs2)
    assert [ax.get_title() for ax in ref.axes] == [ax.get_title() for ax in other.axes]
    assert np.array_equal(pixels(ref), pixels(other))
    heading = next(t.get_text() for t in ref.texts if t.get_gid() == "heading")
    assert ("oblique grid (12 deg off axis)" in heading) == bool(tilt)


def test_radiological_mirrors_neurological(toy):
    img, mask, aff = toy
    neuro = image_axes(show_slices(img, mask, aff))
    radio = image_axes(show_slices(img, mask, aff, radiological=True))
    views = [ax.get_title().split()[0] for ax in neuro]
    assert views == ["sagittal", "coronal", "axial"]
    assert [letters(ax) for ax in neuro] == [("A", "P", "I", "S"), ("L", "R", "I", "S"), ("L", "R", "P", "A")]
    assert [letters(ax) for ax in radio] == [("A", "P", "I", "S"), ("R", "L", "I", "S"), ("R", "L", "P", "A")]
    for n, r, view in zip(neuro, radio, views):
        assert np.array_equal(n.images[0].get_array(), r.images[0].get_array())  # same data ...
        flipped = view != "sagittal"
        assert n.get_xlim() == (r.get_xlim()[::-1] if flipped else r.get_xlim())  # ... shown mirrored
        assert n.xaxis_inverted() != r.xaxis_inverted() if flipped else n.xaxis_inverted() == r.xaxis_inverted()


def test_radiological_pixels_are_the_mirror_image(toy):
    """Rendered axial panels (letters and scale bar hidden) are left-right mirrors of each other."""
    img, _, aff = toy
    out = []
    for radiological in (False, True):
        fig = show_slices(img, None, aff, views=("axial",), radiological=radiological)
        ax = image_axes(fig)[0]
        for art in [*ax.texts, *ax.lines]:
            art.set_visible(False)
        buf = pixels(fig)
        bb = ax.get_window_extent()
        h = buf.shape[0]
        out.append(buf[int(h - bb.y1) + 2 : int(h - bb.y0) - 2, int(bb.x0) + 2 : int(bb.x1) - 2, :3].astype(int))
    neuro, radio = out
    assert np.abs(neuro - radio[:, ::-1]).mean() < 2.0  # identical but for edge pixel snapping
    assert np.abs(neuro - radio).mean() > 10.0  # and not symmetric to begin with


def test_right_hemisphere_is_on_the_right_in_neurological(toy):
    """A bright voxel at x > 0 (patient's right) renders right of centre, left in radiological."""
    img, _, aff = toy
    img = img.copy()
    img[25, 18, 12] = 1000.0  # x = +10 mm
    for radiological, expect_right in ((False, True), (True, False)):
        fig = show_slices(img, None, aff, views=("axial",), point=(10.0, 0.0, 0.0), radiological=radiological)
        ax = image_axes(fig)[0]
        x_disp = ax.transData.transform((10.0, 0.0))[0]
        centre = ax.get_window_extent().x0 + ax.get_window_extent().width / 2
        assert (x_disp > centre) == expect_right


def test_contour_follows_voxel_edges_in_world_mm(toy):
    img, _, aff = toy
    mask = np.zeros(img.shape, np.uint8)
    mask[5, 6, 7] = 1  # world (-10, -12, -5) mm
    fig = show_slices(img, mask, aff, views=("axial",))
    ax = image_axes(fig)[0]
    assert ax.get_title() == "axial   z = -5.0 mm"  # through the PVS by default
    (lines,) = [c for c in ax.collections if c.get_gid() == "pvs_outline"]
    segs = np.array(lines.get_segments())
    assert segs.shape == (4, 2, 2)  # one square around the voxel
    assert np.allclose(np.sort(np.unique(segs[..., 0])), [-10.5, -9.5])
    assert np.allclose(np.sort(np.unique(segs[..., 1])), [-12.5, -11.5])
    assert ax.texts[0].get_text() == "1 PVS voxel"
    overlay = image_axes(show_slices(img, mask, aff, views=("axial",), mode="overlay"))[0]
    assert not overlay.collections and len(overlay.images) == 2


def test_point_and_views(toy):
    img, mask, aff = toy
    fig = show_slices(img, mask, aff, point=(-3.0, 4.0, 2.0), views=("axial", "coronal"))
    assert [ax.get_title() for ax in image_axes(fig)] == ["axial   z = +2.0 mm", "coronal   y = +4.0 mm"]
    with pytest.raises(InputError, match=r"<point>: .*outside the image \(x -15.0..\+14.0"):
        show_slices(img, mask, aff, point=(40.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match="unknown view 'oblique'"):
        show_slices(img, mask, aff, views=("oblique",))
    with pytest.raises(ConfigError, match="unknown mode"):
        show_slices(img, mask, aff, mode="outline")


def test_probability_row_has_a_colour_bar(toy):
    img, mask, aff = toy
    probs = np.where(mask > 0, 0.9, 0.02).astype(np.float32)
    fig = show_slices(img, mask, aff, probs=probs, plain=True)
    panels = image_axes(fig)
    assert len(panels) == 9  # image, mask, probability rows
    bars = colour_bars(fig)
    assert len(bars) == 1 and bars[0].get_ylabel() == "PVS probability" and bars[0].get_ylim() == (0.0, 1.0)
    heat = panels[8].images[1].get_array()  # axial probability panel: RGBA, transparent below 0.05
    assert heat.shape[-1] == 4 and heat[..., 3].min() == 0.0 and heat[..., 3].max() == 1.0


def test_every_kind_of_input_gives_the_same_picture(toy, tmp_path):
    img, mask, aff = toy
    ref = pixels(show_slices(img, mask, aff))
    nib.save(nib.Nifti1Image(img, aff), tmp_path / "t2.nii.gz")
    nib.save(nib.Nifti1Image(mask, aff), tmp_path / "pvs.nii.gz")
    for image, m in [
        (tmp_path / "t2.nii.gz", str(tmp_path / "pvs.nii.gz")),
        (nib.load(tmp_path / "t2.nii.gz"), (mask, aff)),
        ((img, aff), mask),
        (load_image(tmp_path / "t2.nii.gz"), mask),
    ]:
        assert np.array_equal(pixels(show_slices(image, m)), ref)


def test_bad_inputs_name_the_input(toy, tmp_path):
    img, mask, aff = toy
    with pytest.raises(InputError, match=r"<image array>: a 3-D volume is needed, got an array of shape \(30, 36\)"):
        show_slices(img[..., 0], None, aff)
    with pytest.raises(InputError, match=r"<mask array>: mask of shape \(30, 36, 23\) is not on the grid"):
        show_slices(img, mask[..., 1:], aff)
    with pytest.raises(InputError, match=r"<image array>: a bare array needs affine="):
        show_slices(img, mask)
    with pytest.raises(InputError, match=r"<mask array>: mask holds fractional values .* looks like a probability map"):
        show_slices(img, mask * 0.7, aff)
    with pytest.raises(InputError, match=r"<probs array>: probabilities must lie within 0..1"):
        show_slices(img, mask, aff, probs=mask * 3.5)
    shifted = aff.copy()
    shifted[0, 3] += 5
    nib.save(nib.Nifti1Image(mask, shifted), tmp_path / "pvs.nii.gz")
    with pytest.raises(InputError, match=r"pvs\.nii\.gz: mask's affine differs from the affine= given"):
        show_slices(img, tmp_path / "pvs.nii.gz", aff)
    nib.save(nib.Nifti1Image(img, aff), tmp_path / "t2.nii.gz")
    with pytest.raises(InputError, match=r"pvs\.nii\.gz: mask's affine differs from that of .*t2\.nii\.gz"):
        show_slices(tmp_path / "t2.nii.gz", tmp_path / "pvs.nii.gz")
    with pytest.raises(InputError, match=r"missing\.nii\.gz: file not found"):
        show_slices(tmp_path / "missing.nii.gz")
    bad = img.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="1 NaN or infinite voxels"):
        show_slices(bad, None, aff)
