"""Augmentation: presets, JSON config, alignment of image and label, custom intensity transforms."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchio as tio
from _data_helpers import brain_volume

from mednet_pvs.data.augmentation import (
    AugmentationConfig,
    RandomBrightness,
    RandomContrast,
    RandomGammaRetainStats,
    RandomRotateScale,
    build_augmentation,
    build_training_transform,
)
from mednet_pvs.data.preprocessing import PreprocessConfig, subject_from_arrays
from mednet_pvs.errors import ConfigError

THRESHOLD = 1.0


def _blobs(shape=(48, 48, 48)) -> np.ndarray:
    """Smooth, asymmetric intensities: three Gaussian blobs of different sizes, off centre."""
    g = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    out = np.zeros(shape, np.float32)
    for centre, sigma, amp in (((14, 20, 30), 5.0, 2.0), ((32, 30, 16), 7.0, 1.6), ((24, 12, 14), 3.5, 1.8)):
        out += amp * np.exp(-((g - np.array(centre)[:, None, None, None]) ** 2).sum(0) / (2 * sigma**2))
    return out


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_presets_and_json_round_trip():
    none, nn, mri = (AugmentationConfig.preset(n) for n in ("none", "nnunet", "mri"))
    assert nn.rotation_p == 0.2 and nn.scaling == (0.7, 1.4) and nn.flip_p == 0.5 and nn.elastic_p == 0
    assert mri.bias_field_p > 0 and mri.motion_p <= 0.05 and mri.rotation_p == nn.rotation_p
    assert all(v == 0 for k, v in none.to_dict().items() if k.endswith("_p"))
    d = json.loads(json.dumps(mri.to_dict()))
    assert AugmentationConfig.from_dict(d) == mri
    assert AugmentationConfig.from_dict({"preset": "mri", "motion_p": 0.0}).motion_p == 0.0
    assert len(build_augmentation("none")) == 0
    names = [type(t).__name__ for t in build_augmentation("mri")]
    assert names == [
        "RandomBiasField", "RandomMotion", "RandomGhosting", "RandomSpike", "RandomRotateScale", "RandomNoise",
        "RandomBlur", "RandomBrightness", "RandomContrast", "RandomAnisotropy", "RandomGammaRetainStats", "RandomFlip",
    ]  # fmt: skip


@pytest.mark.parametrize("bad, text", [({"noise_p": 1.5}, "noise_p"), ({"gamma": (2, 1)}, "gamma"), ({"flip_axes": (3,)}, "flip_axes")])
def test_config_errors(bad, text):
    with pytest.raises(ConfigError, match=text):
        AugmentationConfig(**bad)
    with pytest.raises(ConfigError, match="unknown augmentation preset"):
        build_augmentation("heavy")


def test_spatial_augmentation_keeps_image_and_label_aligned():
    img = _blobs()
    lab = (img > THRESHOLD).astype(np.uint8)
    subject = subject_from_arrays(img, np.eye(4), lab)
    cfg = AugmentationConfig.preset("none", rotation_p=1.0, scaling_p=1.0, flip_p=0.5)
    aug = build_augmentation(cfg)
    torch.manual_seed(0)
    moved = 0
    for _ in range(6):
        out = aug(subject)
        x, y = out["image"].data[0], out["label"].data[0]
        assert _dice(y, x > THRESHOLD) > 0.93  # only interpolation at the boundary differs
        moved += _dice(y, torch.as_tensor(lab)) < 0.8  # ... while the label really moved
        assert any(type(t).__name__ == "Affine" for t in out.history)
    assert moved >= 4
    # control: a label off by a single voxel scores below the bar, so the test can fail
    assert _dice(torch.as_tensor(np.roll(lab, 1, 0)), torch.as_tensor(img > THRESHOLD)) < 0.9


def test_rotation_and_scaling_probabilities_are_independent():
    t = RandomRotateScale(degrees=20, scales=(1.2, 1.3), rotation_p=1.0, scaling_p=0.0)
    s = subject_from_arrays(_blobs((24, 24, 24)), np.eye(4))
    affine = [h for h in t(s).history if type(h).__name__ == "Affine"][0]
    assert affine.scales == (1.0, 1.0, 1.0) and max(abs(d) for d in affine.degrees) > 0
    t = RandomRotateScale(degrees=20, scales=(1.2, 1.3), rotation_p=0.0, scaling_p=1.0)
    affine = [h for h in t(s).history if type(h).__name__ == "Affine"][0]
    assert affine.degrees == (0.0, 0.0, 0.0) and 1.2 <= affine.scales[0] <= 1.3


def test_brightness_contrast_gamma():
    torch.manual_seed(1)
    img = torch.randn(2, 16, 16, 16)
    s = tio.Subject(image=tio.ScalarImage(tensor=img))
    b = RandomBrightness((1.5, 1.5))(s)["image"].data
    assert torch.allclose(b, img * 1.5)
    c = RandomContrast((2.0, 2.0))(s)["image"].data
    for ch in range(2):
        assert float(c[ch].min()) >= float(img[ch].min()) - 1e-6 and float(c[ch].max()) <= float(img[ch].max()) + 1e-6
        assert float(c[ch].std()) > float(img[ch].std())  # more contrast, same range
    for invert in (0.0, 1.0):
        g = RandomGammaRetainStats((1.5, 1.5), invert_p=invert)(s)["image"].data
        assert not torch.allclose(g, img)
        assert torch.allclose(g.mean((1, 2, 3)), img.mean((1, 2, 3)), atol=1e-4)
        assert torch.allclose(g.std((1, 2, 3)), img.std((1, 2, 3)), atol=1e-4)
        # monotonic: the order of voxels is kept
        assert torch.equal(g[0].flatten().argsort()[:50], img[0].flatten().argsort()[:50])


def test_each_preset_runs_and_keeps_labels_binary():
    img, lab, mask = brain_volume()
    s = subject_from_arrays(img, np.eye(4), lab, mask)
    for preset in ("none", "nnunet", "mri"):
        cfg = AugmentationConfig.preset(preset)
        if preset != "none":  # every transform, every time
            cfg = AugmentationConfig.from_dict({**cfg.to_dict(), **{k: 1.0 for k, v in cfg.to_dict().items() if k.endswith("_p") and v > 0}})
        out = build_training_transform(PreprocessConfig(), cfg, patch_size=(48, 48, 40))(s)
        assert out["image"].spatial_shape == (48, 48, 40)  # cropped to the brain, then padded to the patch
        assert out["image"].data.dtype == torch.float32 and torch.isfinite(out["image"].data).all()
        assert set(torch.unique(out["label"].data).tolist()) <= {0, 1}
