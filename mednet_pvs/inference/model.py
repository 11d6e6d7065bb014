"""A ready PVS model: networks + the preprocessing they were trained with + how to infer.

    model = PVSModel.from_pretrained("my_model/")          # a model bundle folder
    pred = model.predict("sub-01_T2w.nii.gz")               # probabilities + mask on the input grid
    pred.save("out/", "sub-01")                             # mask (uint8) [+ probabilities] NIfTI

``predict`` runs: checks (:func:`mednet_pvs.io.load_image`) -> the model's own preprocessing
(reorient, crop to the brain, normalise, resample) -> Gaussian-weighted sliding window over every
ensemble member and mirror flip -> foreground probabilities resampled (linearly) back onto the
input's own grid -> threshold -> optional removal of clusters smaller than ``min_cluster_mm3``.
The returned arrays line up voxel for voxel with the input, whatever its orientation and spacing.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mednet_pvs.data.preprocessing import (
    BRAINMASK,
    IMAGE,
    PreprocessConfig,
    build_preprocessing,
    foreground_mask,
    subject_from_arrays,
    to_input_grid,
)
from mednet_pvs.config import Config
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference.sliding_window import SlidingWindowConfig, sliding_window_predict
from mednet_pvs.io import ImageSource, PathType, Scan, load_image, save_like


@dataclass
class InferenceConfig(Config):
    """How a model predicts; JSON-able, saved in the bundle's ``config.json``.

    Attributes:
        patch_size: sliding-window tile (voxels on the preprocessed grid).
        step: tile step as a fraction of the patch (0.5 = nnU-Net's default).
        sigma_scale: Gaussian weighting sigma as a fraction of the patch (nnU-Net: 1/8).
        mirror_axes: axes mirrored for test-time augmentation (``()`` = none; on the
            preprocessed, reoriented grid: 0 = R-L, 1 = A-P, 2 = S-I for RAS).
        batch_size: tiles per forward pass.
        threshold: foreground probability above which a voxel is PVS.
        min_cluster_mm3: clusters (26-connected) smaller than this are removed from the mask.
        stitch_on_cpu: keep full-volume buffers in host memory (very large volumes on a GPU).
    """

    _what = "inference"

    patch_size: tuple[int, int, int] = (128, 128, 128)
    step: float = 0.5
    sigma_scale: float = 1.0 / 8
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    batch_size: int = 2
    threshold: float = 0.5
    min_cluster_mm3: float = 0.0
    stitch_on_cpu: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold must be in (0, 1), not {self.threshold}")
        if self.min_cluster_mm3 < 0:
            raise ConfigError(f"min_cluster_mm3 must be >= 0, not {self.min_cluster_mm3}")
        try:
            self.window()
        except ValueError as e:
            raise ConfigError(f"inference: {e}") from None

    def window(self, **overrides: Any) -> SlidingWindowConfig:
        kw = dict(
            patch_size=self.patch_size,
            step=self.step,
            sigma_scale=self.sigma_scale,
            batch_size=self.batch_size,
            mirror_axes=self.mirror_axes,
            stitch_on_cpu=self.stitch_on_cpu,
        )
        kw.update(overrides)
        return SlidingWindowConfig(**kw)


@dataclass
class Prediction:
    """A model's output for one scan, on that scan's own grid.

    Attributes:
        probabilities: (X, Y, Z) float32 PVS probability.
        mask: (X, Y, Z) uint8 PVS mask (thresholded, small clusters removed).
        scan: the input (its affine and header are used to write outputs).
        info: timings (s), model name, settings used.
    """

    probabilities: np.ndarray
    mask: np.ndarray
    scan: Scan
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, outdir: PathType, name: str, *, probabilities: bool = False) -> dict[str, Path]:
        """Write ``{name}_pvs.nii.gz`` (uint8) and optionally ``{name}_pvs_prob.nii.gz``, atomically."""
        out = Path(outdir)
        paths = {"mask": save_like(self.mask, self.scan, out / f"{name}_pvs.nii.gz", dtype=np.uint8)}
        if probabilities:
            paths["probabilities"] = save_like(self.probabilities, self.scan, out / f"{name}_pvs_prob.nii.gz", dtype=np.float32)
        return paths

    def burden(self, **kwargs: Any) -> Any:
        """PVS burden of the mask (:func:`mednet_pvs.analysis.pvs_burden`), probabilities attached."""
        from mednet_pvs.analysis import pvs_burden

        return pvs_burden(self.mask, self.scan.affine, probs=self.probabilities, **kwargs)


def load_grid_mask(brainmask: ImageSource, scan: Scan) -> np.ndarray:
    """A brain mask on ``scan``'s grid as bool (X, Y, Z); a different grid is an InputError."""
    bm = load_image(brainmask, kind="label")
    if bm.shape != scan.shape or not np.allclose(bm.affine, scan.affine, atol=1e-3):
        raise InputError(
            bm.name,
            f"brain mask grid (shape {bm.shape}) does not match the image {scan.name} (shape {scan.shape}); "
            "give a mask on the image's own grid",
        )
    return bm.data > 0


def _as_list(networks: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    return [networks] if isinstance(networks, nn.Module) else list(networks)


class PVSModel:
    """Networks (one, or an ensemble of folds) with their preprocessing and inference settings.

    Args:
        networks: one network or the members of an ensemble (same architecture).
        network: the registry spec that builds each member (``{"name", "kwargs"}``), or ``None``
            for networks outside the registry (then the model cannot be saved).
        preprocessing: the preprocessing the networks were trained with.
        inference: sliding-window and post-processing settings.
        name: a short name (used in logs and model cards).
        meta: anything else worth keeping with the weights (contrast, training data, figures).
        device: where to run (default: CUDA when available, else CPU).
    """

    def __init__(
        self,
        networks: nn.Module | Sequence[nn.Module],
        network: dict[str, Any] | None,
        preprocessing: PreprocessConfig | dict | None = None,
        inference: InferenceConfig | dict | None = None,
        *,
        name: str = "model",
        meta: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.networks = _as_list(networks)
        if not self.networks:
            raise ConfigError("a model needs at least one network")
        self.network = network
        self.preprocessing = preprocessing if isinstance(preprocessing, PreprocessConfig) else PreprocessConfig.from_dict(preprocessing or {})
        self.inference = inference if isinstance(inference, InferenceConfig) else InferenceConfig.from_dict(inference or {})
        self.name = name
        self.meta = dict(meta or {})
        self._check_patch()
        self.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _check_patch(self) -> None:
        from mednet_pvs.nets import required_divisor

        for net in self.networks:
            try:
                div = required_divisor(net)
            except ConfigError:  # networks that do not declare their input sizes: nothing to check
                continue
            divs = (div,) * 3 if isinstance(div, int) else tuple(div)
            if any(p % d for p, d in zip(self.inference.patch_size, divs)):
                raise ConfigError(
                    f"inference patch_size {self.inference.patch_size} must be a multiple of {divs} per axis for this network"
                )

    # ------------------------------------------------------------------------------ device
    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: str | torch.device) -> PVSModel:
        self._device = torch.device(device)
        for net in self.networks:
            net.to(self._device).eval()
        return self

    # ----------------------------------------------------------------------------- predict
    def predict(
        self,
        image: ImageSource,
        *,
        brainmask: ImageSource | None = None,
        tta: bool | None = None,
        step: float | None = None,
        threshold: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Prediction:
        """Segment PVS in one scan.

        Args:
            image: path, nibabel image, :class:`~mednet_pvs.io.Scan` or ``(array, affine)``.
            brainmask: optional brain mask on the same grid (used to crop and normalise).
            tta: mirroring test-time augmentation (default: the model's ``mirror_axes``);
                ``False`` turns it off.
            step: tile step override (fraction of the patch).
            threshold: probability threshold override.
            progress: ``progress(done_tiles, total_tiles)`` callback.

        Returns:
            :class:`Prediction` on the input's own grid.
        """
        t0 = time.perf_counter()
        scan = load_image(image)
        bm = None if brainmask is None else load_grid_mask(brainmask, scan)
        subject = subject_from_arrays(scan.data, scan.affine, brainmask=bm)
        pre = build_preprocessing(self.preprocessing)(subject)
        t_pre = time.perf_counter()

        overrides: dict[str, Any] = {}
        if tta is False:
            overrides["mirror_axes"] = ()
        if step is not None:
            overrides["step"] = step
        window = self.inference.window(**overrides)
        roi = pre[BRAINMASK].data[0] > 0 if BRAINMASK in pre else foreground_mask(pre, self.preprocessing)
        probs = sliding_window_predict(
            self.networks, pre[IMAGE].data, window, mask=roi, device=self.device, progress=progress
        )
        t_net = time.perf_counter()

        # PVS = every non-background class; with two classes a view (no extra full-volume buffer
        # on the stitching device: it holds exactly one per class).
        fg = (probs[1] if probs.shape[0] == 2 else probs[1:].sum(0)).cpu()
        del probs
        fg_in = to_input_grid(fg, pre, interpolation="linear").numpy().astype(np.float32)
        np.clip(fg_in, 0.0, 1.0, out=fg_in)
        mask = fg_in > (self.inference.threshold if threshold is None else threshold)
        if self.inference.min_cluster_mm3 > 0:
            from mednet_pvs.analysis import remove_small_clusters

            mask = remove_small_clusters(mask, scan.affine, self.inference.min_cluster_mm3)
        info = {
            "model": self.name,
            "members": len(self.networks),
            "mirror_axes": list(window.mirror_axes),
            "step": window.step,
            "seconds": {"preprocess": t_pre - t0, "network": t_net - t_pre, "total": time.perf_counter() - t0},
        }
        return Prediction(probabilities=fg_in, mask=mask.astype(np.uint8), scan=scan, info=info)

    # ---------------------------------------------------------------------------- bundles
    def save_pretrained(self, folder: PathType, *, card: str | None = None, dtype: torch.dtype | None = None) -> Path:
        """Write this model as a bundle folder (``config.json``, ``model.safetensors``, ``README.md``);
        ``dtype=torch.float16`` stores the weights at half size (loaded back as float32)."""
        from mednet_pvs.inference.bundle import save_bundle

        return save_bundle(self, folder, card=card, dtype=dtype)

    @classmethod
    def from_pretrained(cls, folder: PathType, *, device: str | torch.device | None = None) -> PVSModel:
        """Load a bundle folder written by :meth:`save_pretrained` (or an importer, or training)."""
        from mednet_pvs.inference.bundle import load_bundle

        return load_bundle(folder, device=device)

    def __repr__(self) -> str:
        net = (self.network or {}).get("name", type(self.networks[0]).__name__)
        return f"PVSModel(name={self.name!r}, network={net!r}, members={len(self.networks)}, device={str(self.device)!r})"
