"""Sliding-window prediction with Gaussian importance weighting, mirroring TTA and ensembles.

The volume is cut into overlapping tiles (nnU-Net's evenly spaced steps, ``step`` = 0.5 of the
patch by default); tiles run through every member network in batches, optionally with mirrored
copies; each tile's averaged *probabilities* are weighted by a Gaussian (sigma = patch / 8, as in
nnU-Net) and added into preallocated full-volume buffers: for softmax probabilities exactly one float32
buffer per class (the background slot holds the tile weights while stitching). No full-volume
buffer is ever held per ensemble member or per flip.

Tiles whose region holds no brain (``mask``) are skipped; voxels no tile covered get background.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from mednet_pvs.config import Config, shown
from mednet_pvs.errors import ConfigError

Network = Callable[[torch.Tensor], torch.Tensor]

#: The largest tile side (voxels) a config may ask for: 1024^3 float32 is 4 GiB per channel and tile.
MAX_PATCH = 1024


@dataclass
class SlidingWindowConfig(Config):
    """How to tile a volume (saved in a bundle's ``config.json`` as ``inference.window``).

    Attributes:
        patch_size: tile size in voxels (X, Y, Z) on the network's (preprocessed) grid (one int: a cube),
            1 to :data:`MAX_PATCH` per axis.
        step: tile step as a fraction of the patch size (0.5 = half overlap, nnU-Net's default).
        sigma_scale: Gaussian sigma as a fraction of the patch size (nnU-Net: 1/8; > 0).
        batch_size: tiles per forward pass (>= 1). On CPU the time per tile hardly depends on it
            (MedNeXt-S k3, 64^3, channels-last, 2 threads: 3.9 / 3.8 / 3.6 s per tile for batches
            of 1 / 2 / 4, 4 interleaved rounds, within the noise of a shared machine).
        mirror_axes: spatial axes (0, 1, 2) to mirror for test-time augmentation; all
            combinations are used (3 axes -> 8 passes).
        stitch_on_cpu: keep the full-volume buffers in host memory (for volumes larger than the
            accelerator's memory); tiles still run on the compute device.
        skip_empty: skip tiles that contain no voxel of the mask (when a mask is given).
        channels_last: run the networks in the ``channels_last_3d`` memory format (weights are
            converted for the call and restored afterwards; results equal to float rounding).
            ``None`` = on CPU for networks with depthwise 3D convolutions (MedNeXt), else off
            (measurements at ``_use_channels_last``).
        pad_mode: how a volume smaller than the tile is padded: ``"constant"`` with 0 (nnU-Net's
            choice, the mean after z-score, the background of nonzero-masked images; keep it for
            nnU-Net parity), or ``"replicate"`` (the border voxels repeated: the background of the
            input itself, e.g. for images normalised inside a brain mask, whose outside is far below
            0). Measured with the any-contrast model on the held-out 0.8 mm skull-stripped T2w /
            FLAIR cases (about 80 x 95 x 75 voxels at 1 mm, 96^3 tiles): brain-mask Dice 0.758 / 0.779
            padded with 0, 0.847 / 0.828 padded with the image's minimum (its outside value).
    """

    patch_size: tuple[int, int, int] = (128, 128, 128)
    step: float = 0.5
    sigma_scale: float = 1.0 / 8
    batch_size: int = 2
    mirror_axes: tuple[int, ...] = ()
    stitch_on_cpu: bool = False
    skip_empty: bool = True
    channels_last: bool | None = None
    pad_mode: Literal["constant", "replicate"] = "constant"

    _what = "sliding window"
    _one_for_all = ("patch_size",)

    def __post_init__(self) -> None:
        size = self.patch_size
        self.patch_size = (int(size),) * 3 if isinstance(size, (int, float)) else tuple(int(p) for p in size)  # type: ignore[assignment]
        self.mirror_axes = tuple(int(a) for a in self.mirror_axes)
        super().__post_init__()

    def validate(self) -> None:
        """Tiles of 1 to :data:`MAX_PATCH` voxels per axis, step in (0, 1], sigma > 0, batches of >= 1
        tile, mirroring axes among 0, 1, 2 (each once)."""
        if len(self.patch_size) != 3 or not all(1 <= p <= MAX_PATCH for p in self.patch_size):
            raise ConfigError(f"must be 3 sizes from 1 to {MAX_PATCH} voxels, not {shown(self.patch_size)}", field="patch_size")
        if not 0 < self.step <= 1:
            raise ConfigError(f"must be in (0, 1] (a fraction of the patch), not {shown(self.step)}", field="step")
        if not self.sigma_scale > 0:
            raise ConfigError(f"must be > 0 (a fraction of the patch; nnU-Net: 0.125), not {shown(self.sigma_scale)}", field="sigma_scale")
        if not self.batch_size >= 1:
            raise ConfigError(f"must be >= 1 (tiles per forward pass), not {shown(self.batch_size)}", field="batch_size")
        if any(a not in (0, 1, 2) for a in self.mirror_axes) or len(set(self.mirror_axes)) != len(self.mirror_axes):
            raise ConfigError(f"must be spatial axes among 0, 1, 2, each once, not {shown(self.mirror_axes)}", field="mirror_axes")
        if self.pad_mode not in ("constant", "replicate"):
            raise ConfigError(f"must be 'constant' (zeros, nnU-Net) or 'replicate' (border voxels), not {shown(self.pad_mode)}", field="pad_mode")


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 1.0 / 8, device=None) -> torch.Tensor:
    """nnU-Net's tile weights: a Gaussian centred on the tile, max 1, no zeros. Shape (X, Y, Z).

    It is separable, so it is built as an outer product of three 1D Gaussians (exactly what
    ``scipy.ndimage.gaussian_filter`` of a centred delta gives, without its truncation).
    """
    axes = []
    for p in patch_size:
        x = torch.arange(p, dtype=torch.float64, device=device) - (p // 2)
        s = max(p * sigma_scale, 1e-6)
        axes.append(torch.exp(-0.5 * (x / s) ** 2))
    g = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    g = g / g.max()
    g = torch.clamp(g, min=float(g[g > 0].min()))
    return g.float()


def tile_starts(size: int, patch: int, step: float) -> list[int]:
    """Evenly spaced tile starts covering ``size`` (nnU-Net's ``compute_steps_for_sliding_window``)."""
    if size <= patch:
        return [0]
    n = math.ceil((size - patch) / (patch * step)) + 1
    actual = (size - patch) / (n - 1)
    return [int(round(actual * i)) for i in range(n)]


def _flip_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _use_channels_last(config: SlidingWindowConfig, device: torch.device, nets: Sequence[Network]) -> bool:
    """Whether to run the networks channels-last: ``config.channels_last``, or by default on CPU for
    networks with grouped (depthwise) 3D convolutions, i.e. MedNeXt.

    Measured (torch 2.13 CPU, 2 threads of an AVX-512 EPYC shared with other jobs, load 4-6; one
    tile forward, channels-first vs channels-last interleaved in one process, medians):
    MedNeXt-S k3 64^3 6.7 s -> 4.6 s (1.47x, 3 rounds), MedNeXt-L k5 96^3 65 s -> 27 s (2.4x,
    2 rounds), MedNeXt-S k3 (n_channels 4) 2x32^3 2.0 s -> 0.45 s; nnU-Net plain 2x64^3 3.9 s ->
    4.7 s (0.83x, 5 rounds: dense convolutions gain nothing, so it stays channels-first).
    oneDNN's depthwise and 1x1x1 3D convolutions reorder channels-first tensors on every call;
    channels-last avoids that. Logits change by float rounding only (max 1.3e-3 on |logits| <= 12
    for L k5). With one thread there is nothing to gain (MedNeXt-S k3 64^3, quiet machine: 2.28-2.56 s
    channels-first vs 2.59-2.60 s channels-last; 2 threads: 1.82-1.91 s vs 1.25-1.31 s), so it stays
    off there. Not measured on CUDA: off there unless asked for.
    """
    if config.channels_last is not None:
        return config.channels_last
    if device.type != "cpu" or torch.get_num_threads() < 2:
        return False
    return any(
        isinstance(m, torch.nn.modules.conv._ConvNd) and m.groups > 1 and len(m.kernel_size) == 3
        for net in nets
        if isinstance(net, torch.nn.Module)
        for m in net.modules()
    )


class _ChannelsLast:
    """Give the 5D weights of ``nets`` channels_last_3d strides for a ``with`` block, then put back
    the strides they had (values never change; only the layout does).

    ``Tensor.to(memory_format=...)`` is used, not ``.contiguous(memory_format=...)``: MedNeXt's
    depthwise (C, 1, k, k, k) and 1x1x1 weights count as contiguous in *both* formats, so
    ``.contiguous`` would leave their strides as they are, and the convolutions, which choose their
    layout from the strides, would stay channels-first.
    """

    def __init__(self, nets: Sequence[Network], enabled: bool) -> None:
        self.nets = nets if enabled else []
        self.changed: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> _ChannelsLast:
        for net in self.nets:
            if not isinstance(net, torch.nn.Module):
                continue
            for t in itertools.chain(net.parameters(), net.buffers()):
                if t.dim() == 5:
                    new = t.data.to(memory_format=torch.channels_last_3d)
                    if new.stride() != t.stride():
                        self.changed.append((t, t.data))
                        t.data = new
        return self

    def __exit__(self, *exc: object) -> None:
        # Put the *original* storage back rather than copying: a copy made under
        # torch.inference_mode (Lightning's validate/test) would be an inference tensor, and a
        # later training step on that parameter would fail.
        for t, original in self.changed:
            t.data = original
        self.changed = []


def batch_size_for_memory(per_tile_bytes: int, free_bytes: int, *, cap: int = 8, reserve: float = 0.25) -> int:
    """Tiles per forward pass that fit in ``free_bytes`` of device memory, ``reserve`` of it kept
    spare (stitching buffers, allocator slack); at least 1, at most ``cap``."""
    usable = free_bytes * (1.0 - reserve)
    return max(1, min(cap, int(usable // max(per_tile_bytes, 1))))


@torch.no_grad()
def tile_memory(net: Network, channels: int, patch: Sequence[int], device: torch.device, *, autocast: bool = True) -> int:
    """Measured peak CUDA memory (bytes) of one tile's forward pass on ``device``, inputs included."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = torch.zeros((1, channels, *patch), device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        _forward(net, x)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def _forward(net: Network, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    if isinstance(out, (list, tuple)):  # deep supervision: full resolution first
        out = out[0]
    return out


@torch.no_grad()
def sliding_window_predict(
    networks: Network | Sequence[Network],
    image: torch.Tensor,
    config: SlidingWindowConfig,
    *,
    mask: torch.Tensor | None = None,
    output: Literal["probabilities", "logits"] = "probabilities",
    activation: Literal["softmax", "sigmoid"] = "softmax",
    device: torch.device | str | None = None,
    autocast: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Predict a whole volume tile by tile.

    Args:
        networks: one network or an ensemble (outputs averaged). Each maps (B, C, x, y, z) to
            (B, K, x, y, z) logits (or a deep-supervision list, full resolution first).
        image: (C, X, Y, Z) float tensor on the network's grid (already preprocessed).
        config: tiling, TTA and stitching options.
        mask: optional (X, Y, Z) bool tensor; tiles without any mask voxel are skipped.
        output: ``"probabilities"`` averages activated outputs over members and flips (the
            ensemble/TTA result); ``"logits"`` averages raw logits (to compare with other
            sliding-window implementations).
        activation: how logits become probabilities (``softmax`` over K classes, or ``sigmoid``).
        device: where the networks run (default: the image's device).
        autocast: use bfloat16 autocast on CUDA GPUs that support it (fp32 elsewhere).
        progress: called as ``progress(done_tiles, total_tiles)``.

    Returns:
        (K, X, Y, Z) float32 probabilities (or logits), on the stitching device. With softmax
        probabilities, voxels no tile covered are background (probability 1 for class 0).
    """
    nets = [networks] if callable(networks) and not isinstance(networks, Sequence) else list(networks)  # type: ignore[arg-type]
    if image.ndim != 4:
        raise ValueError(f"image must be (C, X, Y, Z), got shape {tuple(image.shape)}")
    device = torch.device(device) if device is not None else image.device
    stitch_device = torch.device("cpu") if config.stitch_on_cpu else device
    patch = config.patch_size

    # Pad to at least one patch (config.pad_mode: zeros or the border voxels), crop back at the end.
    spatial = tuple(image.shape[1:])
    pad = [max(p - s, 0) for p, s in zip(patch, spatial)]
    if any(pad):
        pads: list[int] = []
        for p in reversed(pad):
            pads += [p // 2, p - p // 2]
        # replicate: F.pad wants a batch dimension for 3D padding
        image = F.pad(image, pads) if config.pad_mode == "constant" else F.pad(image[None], pads, mode="replicate")[0]
        if mask is not None:
            mask = F.pad(mask, pads)
    shape = tuple(image.shape[1:])

    starts = [tile_starts(s, p, config.step) for s, p in zip(shape, patch)]
    tiles = list(itertools.product(*starts))
    if mask is not None and config.skip_empty:
        m = mask.to(torch.bool)
        tiles = [t for t in tiles if bool(m[t[0] : t[0] + patch[0], t[1] : t[1] + patch[1], t[2] : t[2] + patch[2]].any())]

    gauss = gaussian_importance_map(patch, config.sigma_scale, device=device)
    flips = _flip_sets(config.mirror_axes)
    n_pass = len(nets) * len(flips)
    use_autocast = autocast and device.type == "cuda" and torch.cuda.is_bf16_supported()

    # Softmax probabilities need no background buffer while stitching (background = 1 - sum of
    # the others), so channel 0 of the accumulator holds the tile weights: exactly one
    # full-volume float32 buffer per class. Logits/sigmoid keep a separate weight buffer.
    fold_weight = output == "probabilities" and activation == "softmax"
    channels_last = _use_channels_last(config, device, nets)
    acc: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    g = gauss.to(stitch_device)
    with _ChannelsLast(nets, channels_last):
        for b0 in range(0, len(tiles), config.batch_size):
            batch_tiles = tiles[b0 : b0 + config.batch_size]
            x = torch.stack(
                [image[:, a : a + patch[0], b : b + patch[1], c : c + patch[2]] for a, b, c in batch_tiles]
            ).to(device, non_blocking=True)
            if channels_last:
                x = x.to(memory_format=torch.channels_last_3d)
            summed: torch.Tensor | None = None
            n = len(batch_tiles)
            for net in nets:
                # mirrored copies share one call up to the network's preferred batch (the ONNX
                # Runtime backend's cores: it splits a batch over single-threaded runs); same order
                per_call = max(1, int(getattr(net, "preferred_batch", 1)) // n)
                for f0 in range(0, len(flips), per_call):
                    group = flips[f0 : f0 + per_call]
                    parts = [torch.flip(x, [d + 2 for d in axes]) if axes else x for axes in group]
                    xin = parts[0] if len(parts) == 1 else torch.cat(parts)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
                        y_all = _forward(net, xin)
                    y_all = y_all.float()
                    for j, axes in enumerate(group):
                        dims = [d + 2 for d in axes]
                        y = y_all[j * n : (j + 1) * n]
                        if dims:
                            y = torch.flip(y, dims)
                        if output == "probabilities":
                            y = torch.softmax(y, 1) if activation == "softmax" else torch.sigmoid(y)
                        summed = y if summed is None else summed + y
            assert summed is not None
            summed = (summed * (gauss / n_pass)).to(stitch_device)
            if acc is None:
                acc = torch.zeros((summed.shape[1], *shape), dtype=torch.float32, device=stitch_device)
                weight = acc[0] if fold_weight else torch.zeros(shape, dtype=torch.float32, device=stitch_device)
            for i, (a, b, c) in enumerate(batch_tiles):
                sl = (slice(a, a + patch[0]), slice(b, b + patch[1]), slice(c, c + patch[2]))
                if fold_weight:
                    acc[(slice(1, None), *sl)] += summed[i, 1:]
                else:
                    acc[(slice(None), *sl)] += summed[i]
                weight[sl] += g  # type: ignore[index]
            if progress is not None:
                progress(min(b0 + config.batch_size, len(tiles)), len(tiles))

    # Normalise in place: no full-volume temporaries, so the peak stays at the buffers above.
    # Voxels no tile covered have weight 0 and nothing accumulated: clamping their weight to the
    # smallest normal float keeps them at 0 (the Gaussian's smallest weight, exp(-24) ~ 4e-11 at a
    # tile corner for sigma_scale 1/8, is far above; it reaches 1e-38 only for sigma_scale < 1/15).
    # Measured peak RSS growth per voxel (pointwise net, 128^3 vs 256^3, softmax / logits):
    # 4.06 / 5.07 float32 buffers with the former torch.where normalisation, 1.93 / 3.18 now
    # (tests/inference/test_inference_memory.py).
    tiny = torch.finfo(torch.float32).tiny
    if acc is None:  # nothing to predict (empty mask): all background
        acc = torch.zeros((_n_classes(nets[0], image, device), *shape), dtype=torch.float32, device=stitch_device)
        if output == "probabilities" and activation == "softmax":
            acc[0] = 1.0
    elif fold_weight:
        acc[1:] /= acc[0].clamp_(min=tiny)
        torch.sum(acc[1:], dim=0, out=acc[0])  # background = 1 - the others
        acc[0].neg_().add_(1.0)
    else:
        assert weight is not None
        acc /= weight.clamp_(min=tiny)
    if any(pad):
        acc = acc[
            :,
            pad[0] // 2 : pad[0] // 2 + spatial[0],
            pad[1] // 2 : pad[1] // 2 + spatial[1],
            pad[2] // 2 : pad[2] // 2 + spatial[2],
        ]
    return acc


def _n_classes(net: Network, image: torch.Tensor, device: torch.device) -> int:
    """Number of output channels, from one tiny forward pass (only used for an all-empty mask)."""
    probe = torch.zeros((1, image.shape[0], *[16] * 3), device=device)
    try:
        return int(_forward(net, probe).shape[1])
    except Exception:  # a network needing larger inputs: fall back to binary
        return 2
