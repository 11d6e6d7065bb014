"""Imported nnU-Net models run exactly as nnU-Net's own predictor runs them (model kind ``"nnunet"``).

    model = load_pretrained("nnUNet_results/Dataset019_PVS/nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres")
    pred = model.predict(["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"])   # one file per input channel
    pred.label_map, pred.classes                                         # every class; pred.mask = PVS

The steps are nnU-Net v2's (2.8.1), each reproduced rather than approximated
(:mod:`mednet_pvs.data.nnunet_preprocessing` for the arrays before and after the network):

- the sliding window of ``nnUNetPredictor.predict_sliding_window_return_logits``: the input padded
  (centred, zeros) to at least the patch, tiles at nnU-Net's evenly spaced steps, one tile at a
  time, mirroring TTA averaged over the mirrored *logits*, a Gaussian (sigma = patch / 8, scaled
  to 10, built with scipy and cast to float16) times the logits accumulated **in float16**, as
  nnU-Net does on every device;
- folds: the float16 logits summed and divided by the number of folds;
- the way back: logits resampled to the cropped shape (order 1), softmax, argmax, crop undone,
  ``transpose_backward``; the label map is written on the input's own grid and affine.

nnU-Net v1 models (``pipeline.version == 1``, :func:`nnunet_v1_sliding_window`) follow v1.7.1's
``_internal_predict_3D_3Dconv_tiled``: the same padding and tile starts, but the network's
**softmax** is what is averaged over mirrorings (each weighted 1 / 2^axes, in v1's order) and
stitched, in float32, weighted by a Gaussian of sigma = patch / 8 scaled to a maximum of 1 (no
weighting when one tile covers the volume); folds: the softmax summed and divided by their number.

Both windows run the network on one input per call, as nnU-Net (``predict(strict=True)``, the
default), on the CPU with :class:`~mednet_pvs.inference.exact_conv.ExactSlowConv3d` (PyTorch's direct
3D convolution bit for bit, with a faster column copy); ``strict=False`` groups tiles and mirrored copies into batches (:func:`tile_predictions`,
up to :data:`MAX_BATCH`), which on the CPU makes PyTorch use oneDNN's convolution instead of its
direct kernel: ~3x faster on one thread, labels identical on every fixture, probabilities up to
~2e-3 apart (float16 accumulation turns the kernels' ~1e-5 differences into that).

Checked against nnU-Net's own predictor in ``tests/inference/test_nnunet_exact.py`` and
``test_nnunet_v1_exact.py`` (fixtures in ``tests/data/nnunet_v2_reference`` and
``tests/data/nnunet_v1_reference``, made by nnU-Net's code).
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mednet_pvs.data.nnunet_preprocessing import (
    NnUNetPipeline,
    export_prediction,
    preprocess,
)
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference.bundle import BundleConfig, member_names, register_kind
from mednet_pvs.inference.exact_conv import ExactSlowConv3d
from mednet_pvs.inference.model import PVSModel, load_members
from mednet_pvs.inference.prediction import Prediction
from mednet_pvs.inference.settings import InferenceConfig
from mednet_pvs.io import ImageSource, Scan, load_image
from mednet_pvs.nets import NetworkSpec


# ------------------------------------------------------------------------------ sliding window
@lru_cache(maxsize=4)
def nnunet_gaussian(patch: tuple[int, ...]) -> torch.Tensor:
    """nnU-Net v2's ``compute_gaussian(patch, 1/8, value_scaling_factor=10)`` in float16 (CPU)."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(patch)
    tmp[tuple(i // 2 for i in patch)] = 1
    g = gaussian_filter(tmp, [i / 8 for i in patch], 0, mode="constant", cval=0)
    g /= np.max(g) / 10
    t = torch.from_numpy(g).to(dtype=torch.float16)
    zero = t == 0
    t[zero] = torch.min(t[~zero])
    return t


def nnunet_steps(image_size: Sequence[int], patch: Sequence[int], step: float) -> list[list[int]]:
    """nnU-Net's ``compute_steps_for_sliding_window``: evenly spaced tile starts per axis."""
    steps = []
    for size, tile in zip(image_size, patch):
        n = int(np.ceil((size - tile) / (tile * step))) + 1
        actual = (size - tile) / (n - 1) if n > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(n)])
    return steps


def pad_to_patch(data: torch.Tensor, patch: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """acvl_utils' ``pad_nd_image(data, patch, "constant", {"value": 0}, return_slicer=True)``:
    zeros around the content (the larger half above) up to at least ``patch``; the slicer undoes it."""
    old = np.array(data.shape)
    new = np.maximum(np.array([*data.shape[:-len(patch)], *patch]), old)
    diff = new - old
    below, above = diff // 2, diff // 2 + diff % 2
    if diff.any():
        pads = [int(v) for pair in zip(below[::-1], above[::-1]) for v in pair]
        data = F.pad(data, pads, "constant", value=0)
    return data, tuple(slice(int(b), int(b + s)) for b, s in zip(below, old))


#: Voxels (batch x patch) one network call may take when tiles and their mirrored copies share a
#: call (:func:`tile_predictions`); never fewer than two copies per call. 2^21: two 128^3 copies.
BATCH_VOXELS = 2 ** 21


def mirror_dims(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """nnU-Net v2's mirroring order (``_internal_maybe_mirror_and_predict``): no flip, then every
    combination of the (spatial) ``axes``, as tensor dims (batch and channel first)."""
    return [(), *[c for i in range(len(axes)) for c in itertools.combinations([a + 2 for a in axes], i + 1)]]


#: At most this many network inputs per call (one thread: 2 already gives most of the gain, 8 the rest).
MAX_BATCH = 8


def batch_size(patch: Sequence[int], strict: bool) -> int:
    """Network inputs per call: 1 when ``strict`` (as nnU-Net), else as many patches as
    :data:`BATCH_VOXELS` holds, 2 to :data:`MAX_BATCH` (the network's activations grow with it)."""
    return 1 if strict else max(2, min(MAX_BATCH, BATCH_VOXELS // int(np.prod(patch))))


def tile_predictions(net: Callable[[torch.Tensor], torch.Tensor], padded: torch.Tensor, patch: Sequence[int],
                     steps: Sequence[Sequence[int]], mirrors: Sequence[tuple[int, ...]], batch: int,
                     ) -> Iterator[tuple[tuple[slice, ...], list[torch.Tensor]]]:
    """Every tile (nnU-Net's order) with the network's outputs on its mirrored copies, flipped back.

    ``batch`` copies (of one tile or of consecutive tiles) go through the network in one call;
    ``batch == 1`` is nnU-Net's one copy per call. Batching changes only the convolution backend
    PyTorch picks (on the CPU, one copy on one thread runs its slow direct kernel, two or more
    oneDNN), so the outputs differ from one-at-a-time in rounding only.

    Args:
        padded: (C, *S) input, at least one patch along every axis.
        mirrors: tensor dims to flip per copy (:func:`mirror_dims`; ``[()]`` for no mirroring).

    Yields:
        ``(slicer, outputs)``: the tile's ``(slice(None), *spatial slices)`` into a (K, *S) array and
        one (1, K, *patch) output per mirror, in the order of ``mirrors``.
    """
    tiles = [(slice(None), *[slice(s, s + p) for s, p in zip(start, patch)]) for start in itertools.product(*steps)]
    jobs = [(t, dims) for t in range(len(tiles)) for dims in mirrors]
    done: list[torch.Tensor] = []
    for first in range(0, len(jobs), batch):
        chunk = jobs[first:first + batch]
        x = torch.cat([torch.flip(padded[tiles[t]][None], dims) if dims else padded[tiles[t]][None] for t, dims in chunk])
        x = torch.clone(x, memory_format=torch.contiguous_format)
        # nnU-Net runs the network under autocast on CUDA (float16), in float32 on the CPU
        with torch.autocast("cuda", enabled=x.device.type == "cuda"):
            out = net(x)
        for i, (t, dims) in enumerate(chunk):
            done.append(torch.flip(out[i:i + 1], dims) if dims else out[i:i + 1])
            if len(done) == len(mirrors):
                yield tiles[t], done
                done = []


def _v2_mirror_mean(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``_internal_maybe_mirror_and_predict``'s sum (in its order, float32 on the CPU) and mean."""
    prediction = outputs[0].clone()
    for other in outputs[1:]:
        prediction += other
    if len(outputs) > 1:
        prediction /= len(outputs)
    return prediction


@torch.inference_mode()
def nnunet_sliding_window(net: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, patch: Sequence[int],
                          heads: int, *, step: float = 0.5, mirror_axes: Sequence[int] = (),
                          progress: Callable[[], None] | None = None, strict: bool = True) -> torch.Tensor:
    """nnU-Net v2's ``predict_sliding_window_return_logits``: (C, *S) float32 -> (heads, *S) float16
    logits (accumulated in float16 on the CPU, as nnU-Net does; on CUDA the network runs under
    autocast as in nnU-Net, not checked against it on a GPU yet). ``strict``: one network input
    per call, as nnU-Net (else :func:`batch_size`)."""
    padded, revert = pad_to_patch(data, patch)
    steps = nnunet_steps(padded.shape[1:], patch, step)
    logits = torch.zeros((heads, *padded.shape[1:]), dtype=torch.half)
    weights = torch.zeros(padded.shape[1:], dtype=torch.half)
    gaussian = nnunet_gaussian(tuple(int(p) for p in patch))
    mirrors = mirror_dims(mirror_axes)
    for sl, outputs in tile_predictions(net, padded, patch, steps, mirrors, batch_size(patch, strict)):
        prediction = _v2_mirror_mean(outputs)[0].to("cpu")
        prediction *= gaussian
        logits[sl] += prediction
        weights[sl[1:]] += gaussian
        if progress is not None:
            progress()
    torch.div(logits, weights, out=logits)
    return logits[(slice(None), *revert[1:])]


@lru_cache(maxsize=4)
def nnunet_v1_gaussian(patch: tuple[int, ...]) -> torch.Tensor:
    """nnU-Net v1's ``_get_gaussian(patch, 1/8)``: maximum 1, float32, zeros replaced by the smallest value."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(patch)
    tmp[tuple(i // 2 for i in patch)] = 1
    g = gaussian_filter(tmp, [i / 8 for i in patch], 0, mode="constant", cval=0)
    g = (g / np.max(g) * 1).astype(np.float32)
    g[g == 0] = np.min(g[g != 0])
    return torch.from_numpy(g)


#: v1's ``_internal_maybe_mirror_and_pred_3D`` order of flipped tensor dims (batch, channel, then axes 0-2 at 2-4).
_V1_MIRRORS = ((), (4,), (3,), (4, 3), (2,), (4, 2), (3, 2), (4, 3, 2))


def _v1_mirror_softmax(outputs: Sequence[torch.Tensor], weight: float) -> torch.Tensor:
    """v1's mirroring: each (flipped-back) ``softmax(net(flip(x)))`` times ``weight``, summed in float32."""
    result = None
    for out in outputs:
        term = weight * torch.softmax(out.float(), 1)
        if result is None:
            result = torch.zeros_like(term)
        result += term
    assert result is not None
    return result


@torch.inference_mode()
def nnunet_v1_sliding_window(net: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, patch: Sequence[int],
                             heads: int, *, step: float = 0.5, mirror_axes: Sequence[int] = (),
                             progress: Callable[[], None] | None = None, strict: bool = True) -> torch.Tensor:
    """nnU-Net v1's ``_internal_predict_3D_3Dconv_tiled``: (C, *S) float32 -> (heads, *S) float32 softmax.
    ``strict``: one network input per call, as nnU-Net (else :func:`batch_size`)."""
    padded, revert = pad_to_patch(data, patch)
    steps = nnunet_steps(padded.shape[1:], patch, step)
    tiles = int(np.prod([len(s) for s in steps]))
    gaussian = nnunet_v1_gaussian(tuple(int(p) for p in patch)) if tiles > 1 else None
    weight = gaussian if gaussian is not None else torch.ones(tuple(patch), dtype=torch.float32)
    probs = torch.zeros((heads, *padded.shape[1:]), dtype=torch.float32)
    counts = torch.zeros(padded.shape[1:], dtype=torch.float32)
    mirrors = [dims for dims in _V1_MIRRORS if all(d - 2 in mirror_axes for d in dims)]
    for sl, outputs in tile_predictions(net, padded, patch, steps, mirrors, batch_size(patch, strict)):
        prediction = _v1_mirror_softmax(outputs, 1 / 2 ** len(mirror_axes))[0].to("cpu", torch.float32)
        if gaussian is not None:
            prediction *= gaussian
        probs[sl] += prediction
        counts[sl[1:]] += weight
        if progress is not None:
            progress()
    probs /= counts
    return probs[(slice(None), *revert[1:])]


def tile_count(shape: Sequence[int], patch: Sequence[int], step: float) -> int:
    """Tiles one network pass over a (padded) volume of ``shape`` takes."""
    padded = [max(s, p) for s, p in zip(shape, patch)]
    return int(np.prod([len(s) for s in nnunet_steps(padded, patch, step)]))


# ----------------------------------------------------------------------------------- the model
def _pvs_label(labels: Mapping[str, int]) -> int:
    """The label value that is PVS: the one whose name mentions PVS, else the lowest foreground."""
    for name, value in labels.items():
        if "pvs" in name.lower() or "perivascular" in name.lower():
            return int(value)
    return min(int(v) for v in labels.values() if int(v) != 0)


class NnUNetModel(PVSModel):
    """An imported nnU-Net model (its folds as members) in exact mode: :meth:`predict` reproduces
    nnU-Net's predictor; everything else (devices, provenance, bundles) is :class:`PVSModel`'s.

    Args:
        networks: one network per fold (deep supervision off).
        network: their registry spec (``nnunet_plain`` / ``nnunet_resenc_m`` ... with the plans'
            topology).
        pipeline: nnU-Net's steps before and after the network (:class:`NnUNetPipeline`).
        inference: ``window.patch_size`` (the plans' patch, network axis order), ``window.step``
            (0.5) and ``window.mirror_axes`` (the checkpoint's allowed mirroring axes).
    """

    def __init__(self, networks: nn.Module | Sequence[nn.Module], network: NetworkSpec | Mapping[str, Any] | None,
                 pipeline: NnUNetPipeline, inference: InferenceConfig | dict | None = None, *, name: str = "nnunet",
                 meta: dict[str, Any] | None = None, device: str | torch.device | None = None) -> None:
        super().__init__(networks, network, None, inference, name=name, meta=meta, device=device)
        self.pipeline = pipeline
        for net in self.networks:  # nnU-Net's predictor builds its network with deep supervision off
            decoder = getattr(net, "decoder", None)
            if decoder is not None and hasattr(decoder, "deep_supervision"):
                decoder.deep_supervision = False

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The input channels in order (dataset.json's ``channel_names``)."""
        return tuple(self.pipeline.channel_names[k] for k in sorted(self.pipeline.channel_names, key=int))

    @property
    def classes(self) -> dict[int, str]:
        """Label value -> name (dataset.json's labels)."""
        return {int(v): k for k, v in sorted(self.pipeline.labels.items(), key=lambda kv: int(kv[1]))}

    def _channels(self, image: ImageSource | Sequence[ImageSource]) -> list[Scan]:
        items = list(image) if isinstance(image, (list, tuple)) and not _is_array_pair(image) else [image]
        want = self.pipeline.n_channels
        if len(items) != want:
            names = ", ".join(self.channel_names)
            raise InputError(_name(items[0]), f"{self.name} takes {want} input channel(s) ({names}), "
                                              f"{len(items)} given")
        scans = [load_image(i) for i in items]
        first = scans[0]
        for other in scans[1:]:
            if other.shape != first.shape or not np.allclose(other.affine, first.affine, atol=1e-3):
                raise InputError(other.name, f"channel grid (shape {other.shape}) differs from {first.name} "
                                             f"(shape {first.shape}): every channel must share one grid")
        return scans

    def predict(self, image: ImageSource | Sequence[ImageSource], *, brainmask: ImageSource | None = None,
                tta: bool | None = None, step: float | None = None, threshold: float | None = None,
                progress: Callable[[int, int], None] | None = None, pipeline: str = "auto",
                strict: bool = True) -> Prediction:
        """Segment one case as nnU-Net's predictor does.

        Args:
            image: the scan, or one scan per input channel in dataset.json's channel order.
            brainmask: not used by nnU-Net (it crops to the nonzero voxels); ignored.
            tta: ``False`` turns mirroring off (nnU-Net's ``--disable_tta``).
            step: tile step (nnU-Net's ``-step_size``, default 0.5).
            threshold: ``None`` (nnU-Net: the argmax); a number makes the PVS mask the PVS
                probability above it instead (not nnU-Net's behaviour).
            progress: ``progress(done_tiles, total_tiles)``.
            pipeline: not used (nnU-Net's steps run on the CPU).
            strict: one network input per call, as nnU-Net (the default: its labels and numbers).
                ``False`` sends tiles and their mirrored copies through the network together
                (:func:`batch_size`): on the CPU PyTorch then picks oneDNN's convolution instead
                of its direct kernel, ~3.5x faster on one thread, rounding differently (logits
                ~1e-5 apart, which nnU-Net's float16 accumulation turns into probabilities up to
                ~2e-3 apart in a few voxels; labels identical on every fixture).
        """
        t0 = time.perf_counter()
        scans = self._channels(image)
        scan = scans[0]
        window = self._window(tta, step)
        pre = preprocess([s.data for s in scans], scan.spacing, self.pipeline)
        t_pre = time.perf_counter()
        data = torch.from_numpy(pre.data).to(dtype=torch.float32, memory_format=torch.contiguous_format)
        heads = len(self.pipeline.labels)
        per_net = tile_count(data.shape[1:], window.patch_size, window.step)
        total, done = per_net * len(self.networks), [0]

        def tick() -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

        logits = None
        window_fn = nnunet_v1_sliding_window if self.pipeline.version == 1 else nnunet_sliding_window
        # PyTorch's direct CPU convolution, bit for bit, with a faster column copy (exact_conv)
        fast = ExactSlowConv3d() if self._runners is None and torch.device(self.device).type == "cpu" else nullcontext()
        with torch.inference_mode(), fast:  # folds: v2's float16 logits / v1's float32 softmax summed, then divided
            for net in self._runners or self.networks:
                out = window_fn(net, data.to(self.device), window.patch_size, heads, step=window.step,
                                mirror_axes=window.mirror_axes, progress=tick, strict=strict).to("cpu")
                if logits is None:
                    logits = out
                else:
                    logits += out
            assert logits is not None
            if len(self.networks) > 1:
                logits /= len(self.networks)
        t_net = time.perf_counter()
        labels, probs = export_prediction(logits.numpy(), pre, self.pipeline)
        pvs = _pvs_label(self.pipeline.labels)
        index = sorted(int(v) for v in self.pipeline.labels.values()).index(pvs)
        fg = probs[index]
        mask = labels == pvs if threshold is None else fg > threshold
        info = {
            "model": self.name, "members": len(self.networks), "mode": "nnunet-exact",
            "nnunet_version": self.pipeline.version, "mirror_axes": list(window.mirror_axes), "step": window.step,
            "strict": strict, "precision": "fp32 network, " + ("fp32 softmax accumulation (as nnU-Net v1)" if self.pipeline.version == 1
                                             else "fp16 accumulation (as nnU-Net)"), "backend": self.backend,
            "seconds": {"preprocess": t_pre - t0, "network": t_net - t_pre, "total": time.perf_counter() - t0},
        }
        multi = len(self.pipeline.labels) > 2
        return Prediction(probabilities=fg.astype(np.float32), mask=mask.astype(np.uint8), scan=scan, info=info,
                          label_map=labels if multi else None, classes=self.classes if multi else None,
                          class_probabilities=probs if multi else None)

    def provenance(self, *, tta: bool | None = None, step: float | None = None) -> dict[str, Any]:
        """As :meth:`PVSModel.provenance`, with nnU-Net's pipeline in place of the preprocessing."""
        prov = super().provenance(tta=tta, step=step)
        prov["model"]["kind"] = "nnunet"
        prov["model"]["preprocessing"] = self.pipeline.to_dict()
        prov["settings"]["threshold"] = "argmax"
        return prov

    def bundle_config(self) -> BundleConfig:
        """This model's ``config.json``: kind ``nnunet``, one member per fold."""
        if self.network is None:
            raise InputError(None, "this model's networks are not from the registry: it cannot be saved as a bundle")
        return BundleConfig(name=self.name, kind="nnunet", network=self.network, inference=self.inference,
                            nnunet=self.pipeline, members=member_names(len(self.networks)),
                            labels={str(v): k for v, k in self.classes.items()}, meta=self.meta)

    def __repr__(self) -> str:
        net = self.network.name if self.network is not None else type(self.networks[0]).__name__
        return (f"NnUNetModel(name={self.name!r}, network={net!r}, folds={len(self.networks)}, "
                f"channels={list(self.pipeline.channel_names.values())}, device={str(self.device)!r})")


def _is_array_pair(image: Any) -> bool:
    return isinstance(image, tuple) and len(image) == 2 and isinstance(image[0], np.ndarray)


def _name(item: Any) -> Path | None:
    return Path(item) if isinstance(item, (str, Path)) else None


@register_kind("nnunet")
def _load_nnunet_bundle(folder: Path, config: BundleConfig, device: str | torch.device | None) -> NnUNetModel:
    """An imported nnU-Net model saved as a bundle (exact mode)."""
    config.require("network", "inference", "members", "nnunet")
    if config.nnunet is None:
        raise ConfigError("missing key(s) nnunet")
    return NnUNetModel(load_members(folder, config), config.network, config.nnunet, config.inference,
                       name=config.name, meta=config.meta, device=device)
