"""The torch-op preprocessing (any device) agrees with the TorchIO pipeline it replaces at inference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mednet_pvs.data.device_preprocessing import preprocess_on_device, resample_separable, spacing_grid
from mednet_pvs.data.preprocessing import (
    BRAINMASK,
    IMAGE,
    PreprocessConfig,
    build_preprocessing,
    foreground_mask,
    resample_to_grid,
    subject_from_arrays,
    to_input_grid,
)


def _volume(shape=(40, 44, 36), seed=0):
    """A smooth 'head': a bright ellipsoid on a zero background with texture, and its brain mask."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt((grid ** 2 / np.array([0.7, 0.8, 0.75])[:, None, None, None] ** 2).sum(0))
    head = (r < 1).astype(np.float32)
    brain = r < 0.8
    img = head * (100 + 30 * np.sin(6 * grid[0]) * np.cos(5 * grid[1]) + rng.normal(0, 5, shape)).astype(np.float32)
    return img * (img > 0), brain


def _affine(kind, oblique_affine):
    if kind == "ras":
        return np.diag([1.0, 1.0, 1.0, 1.0])
    if kind == "lps_permuted":  # axes stored (S, P, L): LPS-like, permuted
        return np.array([[0, 0, -1.0, 20], [0, -1.0, 0, 30], [1.0, 0, 0, -10], [0, 0, 0, 1]])
    if kind == "anisotropic":
        return np.diag([0.9, 0.9, 3.0, 1.0])
    return oblique_affine(25.0, (-0.6, -0.7, 0.9))


CASES = [
    ("ras", dict(target_spacing=(1.0, 1.0, 1.0))),
    ("ras", dict(target_spacing=(1.5, 1.25, 0.8), normalisation="percentile")),
    ("lps_permuted", dict(target_spacing=(1.2, 1.2, 1.2))),
    ("anisotropic", dict(target_spacing=(1.0, 1.0, 1.0))),
    ("anisotropic", dict(target_spacing=(1.0, 1.0, 1.0), label_interpolation="linear")),
    ("anisotropic", dict(target_spacing=(1.0, 1.0, 1.0), finest_spacing=0.8, foreground="mean")),  # 0.9 x 0.9 kept, 3 mm -> 1
    ("lps_permuted", dict(target_spacing=(1.2, 1.2, 1.2), finest_spacing=1.1)),  # 1 mm -> 1.1
    ("oblique", dict(target_spacing=(0.8, 0.8, 0.8), foreground="mean")),
    ("oblique", dict(target_spacing=None, orientation=None)),
]


@pytest.mark.parametrize("with_mask", [True, False])
@pytest.mark.parametrize("kind,options", CASES)
def test_same_network_input_and_way_back_as_torchio(kind, options, with_mask, oblique_affine):
    img, brain = _volume()
    aff = _affine(kind, oblique_affine)
    cfg = PreprocessConfig.from_dict(options)
    ref = build_preprocessing(cfg)(subject_from_arrays(img, aff, brainmask=brain if with_mask else None))
    ours = preprocess_on_device(img, aff, cfg, brainmask=brain if with_mask else None)

    assert ours.image.shape == ref[IMAGE].data.shape
    np.testing.assert_allclose(ours.affine, ref[IMAGE].affine, atol=1e-5)
    np.testing.assert_allclose(ours.image.numpy(), ref[IMAGE].data.numpy(), atol=2e-4)
    ref_roi = ref[BRAINMASK].data[0] > 0 if BRAINMASK in ref else foreground_mask(ref, cfg)
    # the region of tiles to run: equal but at ties (nearest halves, values ~1e-7 from 0) that
    # SimpleITK's world-coordinate round trip breaks either way (at most 0.4 % of voxels here)
    assert (ours.roi.numpy() != ref_roi.numpy()).mean() < 5e-3

    probs = torch.rand((2, *ours.image.shape[1:]), generator=torch.Generator().manual_seed(1))
    back_ref = to_input_grid(probs, ref)
    back = ours.to_input_grid(probs)
    assert back.shape == back_ref.shape == (2, *img.shape)
    np.testing.assert_allclose(back.numpy(), back_ref.numpy(), atol=1e-4)
    area_ref = to_input_grid(probs, ref, interpolation="area")  # averaged where the input is coarser
    area = ours.to_input_grid(probs, mode="area")
    np.testing.assert_allclose(area.numpy(), area_ref.numpy(), atol=1e-4)
    if kind == "anisotropic":  # 3 mm slices from 1 mm: the average of random values varies less
        inside = (back_ref != 0) & (area_ref != 0)  # within the crop
        assert float(area[inside].std()) < 0.8 * float(back[inside].std())


def test_resampling_matches_simpleitk_at_the_edges_and_nearest_halves():
    """Clamped linear within half a voxel of the edge, 0 beyond; nearest rounds halves up."""
    data = torch.arange(5 * 4 * 3, dtype=torch.float32).reshape(1, 5, 4, 3) + 1
    src = np.diag([1.0, 1.0, 1.0, 1.0])
    for spacing in [(0.5, 0.5, 0.5), (2.0, 1.5, 1.0), (0.7, 1.3, 2.0)]:
        shape, tgt = spacing_grid(data.shape[1:], src, spacing)
        for mode in ("linear", "nearest"):
            ours = resample_separable(data, src, shape, tgt, mode=mode)
            ref = resample_to_grid(data, src, shape, tgt, interpolation=mode)
            np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-4, err_msg=f"{spacing} {mode}")
    shifted = src.copy()
    shifted[:3, 3] = [-2.5, 0.4, 3.0]  # target grid partly outside the source: 0 there
    ours = resample_separable(data, src, (8, 4, 3), shifted)
    ref = resample_to_grid(data, src, (8, 4, 3), shifted)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-4)
    assert (ours[0, 0] == 0).all()


def test_oblique_resampling_is_refused_not_approximated(oblique_affine):
    with pytest.raises(ValueError, match="axis-aligned"):
        resample_separable(torch.zeros(1, 4, 4, 4), np.eye(4), (4, 4, 4), oblique_affine(10.0, (1, 1, 1)))
