"""mednet_pvs.viz: the overview picture (``predict --preview``, ``synth demo``) and RAS reorientation."""
from __future__ import annotations

import numpy as np
import pytest

from mednet_pvs.errors import InputError
from mednet_pvs.viz import richest_point, save_overview, show_slices, to_ras

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _toy():
    img = np.zeros((20, 24, 16), np.float32)
    img[2:18, 2:22, 2:14] = 1.0
    lab = np.zeros(img.shape, np.uint8)
    lab[14, 5:9, 3] = 1  # a right-hemisphere "PVS" (x index high = Right in RAS)
    lab[14, 10, 3:12] = 1
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    return img, lab, aff


def test_save_overview_writes_a_png(tmp_path):
    img, lab, aff = _toy()
    out = save_overview(img, lab, aff, tmp_path / "o.png", title="toy")
    assert out == tmp_path / "o.png"
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]  # written atomically, nothing left over
    save_overview(img, None, aff, tmp_path / "empty.png", radiological=True)
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC


def test_richest_point():
    _, lab, _ = _toy()
    assert richest_point(lab) == (14, 10, 3)
    assert richest_point(np.zeros((4, 6, 8))) == (2, 3, 4)


def test_to_ras_undoes_flips_and_permutations():
    img, _, aff = _toy()
    # the same scan stored L->R flipped (LAS) ...
    flipped = img[::-1].copy()
    aff_las = aff.copy()
    aff_las[0, 0] = -1.0
    aff_las[0, 3] = img.shape[0] - 1
    out, ras_aff = to_ras(flipped, aff_las)
    assert np.array_equal(out, img) and np.allclose(ras_aff, aff)
    # ... or with axes permuted (z, x, y) and anisotropic voxels
    perm = np.transpose(img, (2, 0, 1))
    aff_p = np.zeros((4, 4))
    aff_p[0, 1], aff_p[1, 2], aff_p[2, 0], aff_p[3, 3] = 0.8, 0.9, 3.0, 1.0
    out, ras_aff = to_ras(perm, aff_p)
    assert np.array_equal(out, img) and np.allclose(ras_aff[:3, :3], np.diag([0.8, 0.9, 3.0]))
    # the same voxel keeps its world position
    v = np.array([3, 5, 7])  # (x, y, z) in RAS order = index (7, 3, 5) of ``perm``
    assert np.allclose(ras_aff @ [*v, 1], aff_p @ [7, 3, 5, 1])


def test_bad_inputs_are_input_errors(tmp_path):
    img, lab, aff = _toy()
    with pytest.raises(InputError, match=r"<image array>: a 3-D volume is needed"):
        save_overview(img[0], None, aff, tmp_path / "x.png")
    with pytest.raises(InputError, match=r"<mask array>: .*shape \(19, 24, 16\)"):
        save_overview(img, lab[:-1], aff, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []  # nothing written on failure


def test_overview_layout_is_two_rows_of_three_views():
    """save_overview draws show_slices(mode="overlay", plain=True): image row, then image + red label."""
    img, lab, aff = _toy()
    fig = show_slices(img, lab, aff, mode="overlay", plain=True)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    top, bottom = fig.axes[:3], fig.axes[3:6]
    assert [ax.get_title().split()[0] for ax in top] == ["sagittal", "coronal", "axial"]
    assert [len(ax.images) for ax in top] == [1, 1, 1]  # the image alone
    assert [len(ax.images) for ax in bottom] == [2, 2, 2]  # + the label, each view crossing it
    red = bottom[2].images[1].get_array()
    assert red[..., 0].max() == 1.0 and red[..., 1:3].max() < 0.2  # a red fill
