"""Sliding window: exact stitching, nnU-Net's Gaussian, MONAI agreement, TTA and ensembles."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mednet_pvs.inference import SlidingWindowConfig, gaussian_importance_map, sliding_window_predict, tile_starts


def _convnet(seed: int = 0, k: int = 3) -> nn.Module:
    """Small net with zero padding: its output near tile borders depends on the tile position."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 4, k, padding=k // 2), nn.GELU(), nn.Conv3d(4, 2, k, padding=k // 2)).eval()


def _pointwise(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 3, 1), nn.Tanh(), nn.Conv3d(3, 2, 1)).eval()


def test_gaussian_matches_nnunet_definition():
    from scipy.ndimage import gaussian_filter

    patch = (32, 24, 16)
    tmp = np.zeros(patch)
    tmp[tuple(p // 2 for p in patch)] = 1
    ref = gaussian_filter(tmp, [p / 8 for p in patch], 0, mode="constant", cval=0)
    ref = ref / ref.max()
    ref[ref == 0] = ref[ref != 0].min()
    np.testing.assert_allclose(gaussian_importance_map(patch).numpy(), ref, rtol=1e-4, atol=1e-6)


def test_tile_starts_cover_and_match_nnunet():
    assert tile_starts(64, 32, 0.5) == [0, 16, 32]
    assert tile_starts(70, 32, 0.5) == [0, 13, 25, 38]  # nnU-Net: even spacing, last tile flush
    assert tile_starts(20, 32, 0.5) == [0]


@pytest.mark.parametrize("shape", [(40, 33, 27), (20, 20, 20), (64, 48, 37)])
def test_pointwise_network_stitches_exactly(shape):
    """A 1x1x1 network gives the same answer whatever the tiling: stitching must be exact."""
    net = _pointwise()
    img = torch.randn(1, *shape)
    full = torch.softmax(net(img[None]), 1)[0]
    cfg = SlidingWindowConfig(patch_size=(24, 24, 24), step=0.5, batch_size=3)
    out = sliding_window_predict(net, img, cfg)
    assert out.shape == (2, *shape)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape,patch", [((64, 48, 32), (32, 32, 16)), ((48, 48, 48), (32, 32, 32))])
def test_logits_match_monai(shape, patch):
    monai_inferers = pytest.importorskip("monai.inferers")
    net = _convnet()
    img = torch.randn(1, *shape)
    gauss = gaussian_importance_map(patch)
    ours = sliding_window_predict(net, img, SlidingWindowConfig(patch_size=patch, step=0.5, batch_size=2), output="logits")
    ref = monai_inferers.sliding_window_inference(
        img[None], roi_size=patch, sw_batch_size=2, predictor=net, overlap=0.5, mode="gaussian", roi_weight_map=gauss
    )[0]
    assert (ours - ref).abs().max().item() < 1e-4


def test_tta_equals_mean_of_flipped_full_predictions():
    net = _convnet(1)
    img = torch.randn(1, 16, 16, 16)
    cfg = SlidingWindowConfig(patch_size=(16, 16, 16), mirror_axes=(0, 2))
    out = sliding_window_predict(net, img, cfg)
    refs = []
    for dims in [(), (2,), (4,), (2, 4)]:
        x = torch.flip(img[None], dims) if dims else img[None]
        y = torch.softmax(net(x), 1)
        refs.append(torch.flip(y, dims) if dims else y)
    torch.testing.assert_close(out, torch.stack(refs).mean(0)[0], atol=1e-5, rtol=1e-5)


class _Batched(nn.Module):
    """A network that asks for ``preferred_batch`` tiles per call and records the batches it got."""

    def __init__(self, net, preferred):
        super().__init__()
        self.net, self.preferred_batch, self.calls = net, preferred, []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.net(x)


def test_mirrored_copies_share_a_call_up_to_the_preferred_batch_in_the_same_order():
    img = torch.randn(1, 16, 16, 16)
    cfg = SlidingWindowConfig(patch_size=(16, 16, 16), mirror_axes=(0, 1, 2))  # 1 tile, 8 flips
    one = _Batched(_convnet(1), 1)
    ref = sliding_window_predict(one, img, cfg)
    assert one.calls == [1] * 8
    for preferred, calls in ((2, [2] * 4), (3, [3, 3, 2]), (8, [8])):
        net = _Batched(_convnet(1), preferred)
        out = sliding_window_predict(net, img, cfg)
        assert net.calls == calls
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)  # same flips, same order of the sum
    two_tiles = _Batched(_convnet(1), 2)
    sliding_window_predict(two_tiles, torch.randn(1, 24, 16, 16), cfg)  # a batch of 2 tiles already fills it
    assert two_tiles.calls == [2] * 8


def test_ensemble_is_mean_of_members():
    nets = [_convnet(0), _convnet(1), _convnet(2)]
    img = torch.randn(1, 40, 36, 30)
    cfg = SlidingWindowConfig(patch_size=(24, 24, 24), mirror_axes=(1,))
    ens = sliding_window_predict(nets, img, cfg)
    one_by_one = torch.stack([sliding_window_predict(n, img, cfg) for n in nets]).mean(0)
    torch.testing.assert_close(ens, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ens.sum(0), torch.ones(ens.shape[1:]), atol=1e-5, rtol=0)


def test_deep_supervision_list_uses_full_resolution():
    class DS(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _pointwise()

        def forward(self, x):
            y = self.net(x)
            return [y, y[:, :, ::2, ::2, ::2]]

    img = torch.randn(1, 20, 20, 20)
    out = sliding_window_predict(DS(), img, SlidingWindowConfig(patch_size=(16, 16, 16)))
    torch.testing.assert_close(out, torch.softmax(_pointwise()(img[None]), 1)[0], atol=1e-5, rtol=1e-5)


def test_skip_empty_tiles_gives_background():
    net = _pointwise()
    img = torch.randn(1, 64, 32, 32)
    mask = torch.zeros(64, 32, 32, dtype=torch.bool)
    mask[:10] = True
    calls = []
    cfg = SlidingWindowConfig(patch_size=(16, 32, 32), step=0.5, batch_size=1)
    out = sliding_window_predict(net, img, cfg, mask=mask, progress=lambda d, n: calls.append(n))
    assert calls[-1] == 2  # only the tiles starting at 0 and 8 touch the mask
    assert torch.all(out[0, 40:] == 1.0) and torch.all(out[1, 40:] == 0.0)
    torch.testing.assert_close(out[:, :10], torch.softmax(net(img[None]), 1)[0, :, :10], atol=1e-5, rtol=1e-5)
    empty = sliding_window_predict(net, img, cfg, mask=torch.zeros_like(mask))
    assert torch.all(empty[0] == 1.0)


def test_stitch_on_cpu_same_result():
    net = _convnet()
    img = torch.randn(1, 40, 40, 40)
    a = sliding_window_predict(net, img, SlidingWindowConfig(patch_size=(24, 24, 24)))
    b = sliding_window_predict(net, img, SlidingWindowConfig(patch_size=(24, 24, 24), stitch_on_cpu=True))
    torch.testing.assert_close(a, b)


def test_bad_config():
    with pytest.raises(ValueError, match="step"):
        SlidingWindowConfig(step=0)
    with pytest.raises(ValueError, match="mirror_axes"):
        SlidingWindowConfig(mirror_axes=(3,))
    with pytest.raises(ValueError, match="pad_mode"):
        SlidingWindowConfig(pad_mode="reflect")


def test_batch_size_for_memory_fits_the_free_memory():
    from mednet_pvs.inference.sliding_window import batch_size_for_memory

    gb = 1 << 30
    assert batch_size_for_memory(gb, 10 * gb) == 7  # 7.5 GB usable with a quarter kept spare
    assert batch_size_for_memory(gb, 100 * gb) == 8  # capped
    assert batch_size_for_memory(4 * gb, 2 * gb) == 1  # at least one tile
    assert batch_size_for_memory(gb, 100 * gb, cap=32, reserve=0.5) == 32


@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_volume_smaller_than_the_tile_is_padded_with_zeros_or_its_border(mode):
    """The network sees the padded tile: zeros (nnU-Net) or the volume's border voxels repeated
    (the outside of an image normalised inside a brain mask is far below 0, not 0)."""
    seen: list[torch.Tensor] = []

    def net(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.cat([torch.zeros_like(x), x], 1)

    img = torch.full((1, 10, 12, 16), -3.0)
    img[:, 3:7, 3:9, 4:12] = 1.0  # "brain" inside, background -3 on every border
    out = sliding_window_predict(net, img, SlidingWindowConfig(patch_size=16, pad_mode=mode), output="logits")
    (tile,) = seen
    assert tile.shape == (1, 1, 16, 16, 16)
    torch.testing.assert_close(out[1], img[0])  # cropped back to the input, voxel for voxel
    padded = tile[0, 0, :3]  # x padding: (16 - 10) // 2 = 3 slices before the volume
    assert torch.all(padded == (0.0 if mode == "constant" else -3.0))
