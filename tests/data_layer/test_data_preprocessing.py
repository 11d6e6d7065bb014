"""Preprocessing: config round trip, each step, and the way back to the input grid."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from _data_helpers import brain_volume, save, write_cohort

from mednet_pvs.data.cases import load_cases
from mednet_pvs.data.preprocessing import (
    PadToShape,
    PreprocessConfig,
    box_kernel,
    build_preprocessing,
    subject_from_arrays,
    resample_spacing,
    subject_from_case,
    to_input_grid,
)
from mednet_pvs.errors import ConfigError

LPS = np.array([[-1.0, 0, 0, 20], [0, -1.0, 0, 30], [0, 0, 1.0, -10], [0, 0, 0, 1]])


def test_config_json_round_trip():
    cfg = PreprocessConfig(target_spacing=0.5, normalisation="percentile", percentiles=[1, 99], label_interpolation="linear")
    assert cfg.target_spacing == (0.5, 0.5, 0.5)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["target_spacing"] == [0.5, 0.5, 0.5]
    assert PreprocessConfig.from_dict(d) == cfg
    assert PreprocessConfig.from_dict({}) == PreprocessConfig()


@pytest.mark.parametrize(
    "bad, text",
    [
        ({"normalisation": "minmax"}, "normalisation must be one of"),
        ({"target_spacing": (1, 1)}, "target_spacing"),
        ({"orientation": "RAA"}, "orientation"),
        ({"percentiles": (99, 1)}, "percentiles"),
        ({"spacing": 1}, "unknown option(s) spacing for the preprocessing config"),
        ({"finest_spacing": 0.8}, "finest_spacing .*target_spacing is null"),
        ({"target_spacing": 1.0, "finest_spacing": 1.2}, "finest_spacing must be null or a size in mm in"),
        ({"target_spacing": 1.0, "finest_spacing": 0.0}, "finest_spacing"),
    ],
)
def test_config_errors_name_the_option(bad, text):
    with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace(")", r"\)")):
        PreprocessConfig.from_dict(bad)


def test_resample_spacing_keeps_finer_axes_down_to_finest():
    assert resample_spacing((0.8, 0.6, 5.0), (1.0, 1.0, 1.0)) == (1.0, 1.0, 1.0)  # nnU-Net: every axis to the target
    assert resample_spacing((0.8, 0.6, 5.0), (1.0, 1.0, 1.0), 0.8) == (0.8, 0.8, 1.0)
    assert resample_spacing((0.9, 1.00004, 1.3), (1.0, 1.0, 1.0), 0.8) == (0.9, 1.0, 1.0)


@pytest.mark.parametrize("finest, expected", [(None, (1.0, 1.0, 1.0)), (0.8, (0.8, 0.9, 1.0)), (0.85, (0.85, 0.9, 1.0))])
def test_finest_spacing_keeps_a_finer_scan_on_a_finer_grid(finest, expected):
    spacing = (0.8, 0.9, 2.0)
    lab = _sphere(spacing)
    cfg = PreprocessConfig(target_spacing=1.0, finest_spacing=finest, crop_to_brain=False, label_interpolation="linear")
    out = build_preprocessing(cfg)(subject_from_arrays(lab * 100.0 + 50.0, LPS @ np.diag([*spacing, 1.0]), lab))
    assert np.allclose(out["image"].spacing, expected)
    assert float(out["label"].data.sum()) * np.prod(expected) == pytest.approx(4 / 3 * np.pi * 6.0**3, rel=0.12)
    back = to_input_grid(out["label"].data.float(), out)[0].numpy() > 0.5
    assert 2 * (back & (lab > 0)).sum() / (back.sum() + lab.sum()) > 0.9


def test_reorient_crop_normalise():
    img, lab, _ = brain_volume()
    s = subject_from_arrays(img, LPS, lab)
    out = build_preprocessing(PreprocessConfig(crop_margin_mm=2.0))(s)
    assert out["image"].orientation == ("R", "A", "S")
    # bounding box of the nonzero brain plus 2 voxels (1 mm spacing) each side, clipped to the image
    nz = np.argwhere(img != 0)
    expected = tuple(int(min(h + 1 + 2, n) - max(lo - 2, 0)) for lo, h, n in zip(nz.min(0), nz.max(0), img.shape))
    assert out["image"].spatial_shape == expected
    x = out["image"].data[0]
    brain = x != 0
    assert abs(float(x[brain].mean())) < 1e-4 and abs(float(x[brain].std()) - 1) < 1e-3
    assert int(out["label"].data.sum()) == int(lab.sum())  # nothing of the label is cropped away
    assert s["image"].spatial_shape == img.shape  # input untouched
    # the image is still aligned with its label after reorientation: PVS are the bright voxels
    assert float(x[out["label"].data[0] > 0].mean()) > 3


def test_brainmask_drives_statistics_and_crop():
    img, lab, mask = brain_volume()
    img = img + 10.0  # background no longer zero: only the mask finds the brain
    small = np.zeros_like(mask)
    small[10:30, 12:32, 8:28] = 1
    out = build_preprocessing(PreprocessConfig(crop_margin_mm=0))(subject_from_arrays(img, np.eye(4), lab, small))
    assert out["image"].spatial_shape == (20, 20, 20)
    x = out["image"].data[0]
    assert abs(float(x.mean())) < 1e-4  # everything left is inside the mask
    no_mask = build_preprocessing(PreprocessConfig(use_brainmask=False, crop_margin_mm=0))(subject_from_arrays(img, np.eye(4), lab, small))
    assert no_mask["image"].spatial_shape == img.shape  # nonzero foreground is everything


def test_percentile_normalisation_per_channel():
    img, _, _ = brain_volume()
    two = np.stack([img, img * 50.0 + 7])
    out = build_preprocessing(PreprocessConfig(normalisation="percentile", percentiles=(1, 99), crop_to_brain=False))(
        subject_from_arrays(two, np.eye(4))
    )
    x = out["image"].data
    assert x.shape[0] == 2 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    brain = img != 0
    assert torch.allclose(x[0][brain], x[1][brain], atol=1e-5)  # each channel on its own scale
    assert float(x[0][brain].float().quantile(0.5)) > 0.2


def _sphere(spacing, radius=6.0, fov=40.0):
    n = [int(fov / s) for s in spacing]
    g = np.stack(np.meshgrid(*[(np.arange(k) - k / 2 + 0.5) * s for k, s in zip(n, spacing)], indexing="ij"))
    return ((g**2).sum(0) < radius**2).astype(np.uint8)


@pytest.mark.parametrize("interp", ["nearest", "linear"])
@pytest.mark.parametrize("spacing, target", [((0.7, 0.7, 1.9), (1.0, 1.0, 1.0)), ((1.3, 1.3, 1.3), (0.6, 0.6, 0.6))])
def test_resample_to_target_spacing_keeps_volume(interp, spacing, target):
    lab = _sphere(spacing)
    img = lab * 100.0 + 50.0
    cfg = PreprocessConfig(target_spacing=target, crop_to_brain=False, label_interpolation=interp)
    out = build_preprocessing(cfg)(subject_from_arrays(img, np.diag([*spacing, 1.0]), lab))
    assert np.allclose(out["image"].spacing, target)
    assert out["image"].spatial_shape == tuple(int(np.floor(n * s / t)) for n, s, t in zip(lab.shape, spacing, target))
    y = out["label"].data
    assert y.dtype == torch.uint8 and set(torch.unique(y).tolist()) == {0, 1}
    assert float(y.sum()) * np.prod(target) == pytest.approx(4 / 3 * np.pi * 6.0**3, rel=0.12)
    # the image moved with the label
    x = out["image"].data[0]
    assert float(x[y[0] > 0].mean()) > float(x[y[0] == 0].mean()) + 2


def test_linear_label_resampling_drops_lines_thinner_than_half_a_voxel():
    """The documented trade-off: a 1-voxel line at 0.5 mm resampled to 1 mm."""
    lab = np.zeros((40, 40, 40), np.uint8)
    lab[10:30, 20, 20] = 1
    thick = lab.copy()
    thick[10:30, 20:22, 20:22] = 1
    vols = {}
    for name, mask in (("thin", lab), ("thick", thick)):
        for interp in ("nearest", "linear"):
            cfg = PreprocessConfig(target_spacing=(1.0, 1.0, 1.0), crop_to_brain=False, label_interpolation=interp)
            out = build_preprocessing(cfg)(subject_from_arrays(mask * 100.0 + 50, np.diag([0.5, 0.5, 0.5, 1.0]), mask))
            vols[name, interp] = float(out["label"].data.sum())
    assert vols["thin", "linear"] == 0  # partial volume 1/4 < 0.5 (nearest: depends on grid alignment)
    assert vols["thick", "linear"] == pytest.approx(thick.sum() / 8, rel=0.3)


def test_back_to_input_grid_is_exact_without_resampling():
    img, lab, _ = brain_volume()
    pre = build_preprocessing(PreprocessConfig(crop_margin_mm=1.0))(subject_from_arrays(img, LPS, lab))
    assert pre["image"].spatial_shape != img.shape
    back = to_input_grid(pre["label"].data, pre, interpolation="nearest")
    assert back.shape == (1, *img.shape)
    assert np.array_equal(back[0].numpy().astype(np.uint8), lab)
    probs = to_input_grid(torch.rand(2, *pre["image"].spatial_shape), pre)
    assert probs.shape == (2, *img.shape)
    assert float(probs[:, img == 0].max()) <= 1.0 and float(probs[:, 0, 0, 0].abs().max()) == 0.0  # cropped: 0


def test_back_to_input_grid_after_resampling():
    spacing = (0.75, 0.75, 1.6)
    lab = _sphere(spacing, radius=8.0)
    g = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(lab.shape, spacing)], indexing="ij"))
    img = (np.sin(g[0] / 6) + np.cos(g[1] / 5) + g[2] / 20 + 3).astype(np.float32)  # smooth, > 0
    aff = LPS @ np.diag([*spacing, 1.0])
    cfg = PreprocessConfig(target_spacing=(1.0, 1.0, 1.0), label_interpolation="linear")
    pre = build_preprocessing(cfg)(subject_from_arrays(img, aff, lab))
    assert pre["image"].spatial_shape != img.shape and pre["image"].orientation == ("R", "A", "S")
    back = to_input_grid(pre["image"].data, pre)[0].numpy()
    zimg = (img - img.mean()) / img.std()
    inner = (slice(3, -3), slice(3, -3), slice(2, -2))  # away from the field-of-view edge
    assert np.abs(back[inner] - zimg[inner]).max() < 0.05
    mask = to_input_grid(pre["label"].data, pre)[0].numpy() > 0.5
    dice = 2 * (mask & (lab > 0)).sum() / (mask.sum() + lab.sum())
    assert dice > 0.9


def test_box_kernel_is_the_mean_over_its_width():
    assert box_kernel(1.0).tolist() == [1.0]
    np.testing.assert_allclose(box_kernel(3.0), [1 / 3] * 3)
    np.testing.assert_allclose(box_kernel(2.0), [0.25, 0.5, 0.25])  # half voxels at the ends
    k = box_kernel(4.6)
    assert len(k) == 5 and abs(k.sum() - 1) < 1e-12 and np.allclose(k, k[::-1])
    np.testing.assert_allclose(k * 4.6, [0.8, 1, 1, 1, 0.8])


def test_area_way_back_labels_thick_slices_as_their_partial_volume():
    """1 x 1 x 5 mm slices: a PVS lying in a slice's plane, 2 mm thick, fills 40 % of its voxels (a
    label drawn on that grid leaves it out); one crossing the slices fills all of them. Sampling
    the 1 mm map at slice centres keeps both; averaging over each slice keeps only the second."""
    shape, vox = (24, 24, 8), (1.0, 1.0, 5.0)
    aff = np.diag([*vox, 1.0])
    pre = build_preprocessing(PreprocessConfig(target_spacing=(1.0, 1.0, 1.0), crop_to_brain=False))(
        subject_from_arrays(np.ones(shape, np.float32), aff))
    assert pre["image"].spatial_shape[2] >= 5 * shape[2] - 5  # 1 mm along the slices
    z_mm = pre["image"].affine[2, 3] + np.arange(pre["image"].spatial_shape[2])  # world z of the 1 mm planes
    fine = torch.zeros(1, *pre["image"].spatial_shape)
    at = int(np.abs(z_mm - 20.0).argmin())  # slice 4's centre (z = 20 mm)
    assert abs(z_mm[at] - 20.0) < 0.5
    fine[0, 4:10, 4:20, at:at + 2] = 1.0  # 2 mm thick, inside slice 4
    fine[0, 16:18, 16:18, :] = 1.0  # a tube through every slice
    linear = to_input_grid(fine, pre)[0].numpy()
    area = to_input_grid(fine, pre, interpolation="area")[0].numpy()
    assert linear[6, 10, 4] > 0.9 and 0.3 < area[6, 10, 4] < 0.5  # the in-plane one: sampled vs 40 %
    assert linear[16, 16, 2] > 0.9 and area[16, 16, 2] > 0.9  # the tube: both
    assert (area[:, :, 4] > 0.5).sum() == 4  # thresholded: the tube's 2 x 2 voxels only
    assert (linear[:, :, 4] > 0.5).sum() > 90


def test_subject_from_case_multichannel_lazy(tmp_path):
    m = write_cohort(tmp_path / "c", 1, brainmask=True)
    case = load_cases(m)[0]
    case.images = case.images * 2
    s = subject_from_case(case)
    assert s["subject"] == "sub-00" and s["site"] == "A"
    assert not s["image"]._loaded  # read in the data-loader worker, not here
    out = build_preprocessing()(s)
    assert out["image"].num_channels == 2 and out["label"].data.dtype == torch.uint8
    assert sorted(out.keys()) == ["brainmask", "image", "input_affine", "input_shape", "label", "site", "split", "subject"]


def test_nifti_reader_uses_io_checks(tmp_path):
    img, lab, _ = brain_volume()
    img[3, 3, 3] = np.nan
    p = save(img, tmp_path / "nan.nii.gz")
    from mednet_pvs.data.preprocessing import subject_from_files
    from mednet_pvs.errors import InputError

    with pytest.raises(InputError, match="1 NaN"):
        subject_from_files(p).load()
    assert nib.load(str(p)).shape == img.shape


def test_pad_to_shape_small_volume():
    img, lab, _ = brain_volume((20, 30, 10))
    out = PadToShape((24, 24, 24))(subject_from_arrays(img, np.eye(4), lab))
    assert out["image"].spatial_shape == (24, 30, 24)
    assert int(out["label"].data.sum()) == int(lab.sum())
    assert np.allclose(out["image"].affine[:3, 3], [-2, 0, -7])  # padding moves the origin, world stays put
