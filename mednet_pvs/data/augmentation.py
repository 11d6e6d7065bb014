"""Data augmentation presets (TorchIO), every probability and range in one JSON-able config.

Presets (:meth:`AugmentationConfig.preset`):

* ``"nnunet"``: nnU-Net's default training augmentation: rotation (p 0.2, +-30 deg), scaling
  (p 0.2, 0.7-1.4), Gaussian noise (p 0.1), Gaussian blur (p 0.2), multiplicative brightness
  (p 0.15), contrast (p 0.15), low-resolution simulation (p 0.25), gamma (p 0.3, inverted p 0.1),
  mirroring on every axis (p 0.5 each). Elastic deformation is off (as in nnU-Net v2).
* ``"mri"``: ``nnunet`` plus MRI artefacts: bias field (p 0.3), ghosting (p 0.1), spikes
  (p 0.05) and motion (p 0.05: the most expensive transform, kept rare).
* ``"none"``: nothing.

Where the transforms run (:func:`build_training_transform`): MRI artefacts act on raw intensities
(after cropping, before normalisation, as in TorchIO's examples); everything else after
normalisation and resampling, on the whole preprocessed volume in the data-loader workers, before
patches are drawn (TorchIO's queue design: the cost of a volume is shared by its
``samples_per_volume`` patches). Spatial transforms move image, label and brain mask together
(labels nearest neighbour).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform

from mednet_pvs.config import Config
from mednet_pvs.data.preprocessing import PadToShape, PreprocessConfig, _as_config, build_preprocessing
from mednet_pvs.errors import ConfigError

PRESETS = ("nnunet", "mri", "none")
Range = tuple[float, float]


@dataclass
class AugmentationConfig(Config):
    """Probabilities (``*_p``, 0-1, per volume) and ranges of every augmentation; JSON-able.

    Spatial: ``rotation_degrees`` (+-, each axis), ``scaling`` (zoom factor range, isotropic),
    ``elastic_max_displacement_mm``, ``flip_axes`` with ``flip_p`` per axis. Intensity (on
    normalised images): ``noise_std``, ``blur_sigma_mm``, ``brightness`` (multiplicative factor),
    ``contrast`` (factor around the mean, range kept), ``lowres_factor`` (downsampling of one
    random axis), ``gamma`` with ``gamma_invert_p``. MRI artefacts (on raw intensities):
    ``bias_field_coefficients``, ``motion_degrees``/``motion_translation_mm``, ``ghosts``,
    ``spike_intensity``.
    """

    _what = "augmentation"

    rotation_p: float = 0.2
    rotation_degrees: float = 30.0
    scaling_p: float = 0.2
    scaling: Range = (0.7, 1.4)
    elastic_p: float = 0.0
    elastic_max_displacement_mm: float = 7.5
    elastic_control_points: int = 7
    flip_p: float = 0.5
    flip_axes: tuple[int, ...] = (0, 1, 2)
    noise_p: float = 0.1
    noise_std: Range = (0.0, 0.3)
    blur_p: float = 0.2
    blur_sigma_mm: Range = (0.5, 1.0)
    brightness_p: float = 0.15
    brightness: Range = (0.75, 1.25)
    contrast_p: float = 0.15
    contrast: Range = (0.75, 1.25)
    lowres_p: float = 0.25
    lowres_factor: Range = (1.0, 2.0)
    gamma_p: float = 0.3
    gamma: Range = (0.7, 1.5)
    gamma_invert_p: float = 0.1
    bias_field_p: float = 0.0
    bias_field_coefficients: float = 0.5
    motion_p: float = 0.0
    motion_degrees: float = 10.0
    motion_translation_mm: float = 10.0
    ghosting_p: float = 0.0
    ghosts: tuple[int, int] = (4, 10)
    spike_p: float = 0.0
    spike_intensity: Range = (1.0, 3.0)

    def __post_init__(self) -> None:
        for f, v in asdict(self).items():
            if f.endswith("_p") and not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"augmentation {f} must be a probability in [0, 1], not {v}")
            if isinstance(v, list):
                setattr(self, f, tuple(v))
        for f in ("scaling", "noise_std", "blur_sigma_mm", "brightness", "contrast", "lowres_factor", "gamma", "spike_intensity", "ghosts"):
            lo, hi = getattr(self, f)
            if lo > hi:
                raise ConfigError(f"augmentation {f} must be a (low, high) range, not {getattr(self, f)!r}")
        if min(self.scaling) <= 0 or min(self.gamma) <= 0 or self.lowres_factor[0] < 1:
            raise ConfigError("augmentation scaling and gamma must be > 0 and lowres_factor >= 1")
        if not set(self.flip_axes) <= {0, 1, 2}:
            raise ConfigError(f"flip_axes must be among 0, 1, 2, not {self.flip_axes!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> AugmentationConfig:
        """A named preset (``"nnunet"``, ``"mri"``, ``"none"``), optionally with fields changed."""
        if name == "nnunet":
            cfg = cls()
        elif name == "mri":
            cfg = cls(bias_field_p=0.3, motion_p=0.05, ghosting_p=0.1, spike_p=0.05)
        elif name == "none":
            cfg = cls(**{f: 0.0 for f in asdict(cls()) if f.endswith("_p")})
        else:
            raise ConfigError(f"unknown augmentation preset {name!r} (choose from {', '.join(PRESETS)})")
        return replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | AugmentationConfig) -> AugmentationConfig:
        """Inverse of :meth:`to_dict`; a ``"preset"`` key starts from that preset."""
        if not isinstance(d, Mapping):
            return super().from_dict(d)  # a ConfigError saying what it got
        d = dict(d)
        base = d.pop("preset", None)
        cfg = super().from_dict(d)  # checks the keys
        return cls.preset(base, **{k: getattr(cfg, k) for k in d}) if base is not None else cfg


def as_augmentation_config(cfg: AugmentationConfig | dict | str | None) -> AugmentationConfig:
    """Accept a config, its dict, a preset name, or ``None`` (``"none"``)."""
    if cfg is None:
        return AugmentationConfig.preset("none")
    if isinstance(cfg, str):
        return AugmentationConfig.preset(cfg)
    if isinstance(cfg, dict):
        return AugmentationConfig.from_dict(cfg)
    if isinstance(cfg, AugmentationConfig):
        return cfg
    raise ConfigError(f"augmentation must be a preset name, a dict or an AugmentationConfig, not {type(cfg).__name__}")


# ----------------------------------------------------------------------------- custom transforms


def _uniform(lo: float, hi: float) -> float:
    return float(torch.empty(1).uniform_(lo, hi)) if hi > lo else float(lo)


class RandomRotateScale(RandomTransform, tio.SpatialTransform):
    """Rotation and isotropic scaling with independent probabilities, in one resampling (nnU-Net).

    Args:
        degrees: maximum rotation (+-degrees) about each axis.
        scales: zoom factor range (isotropic; > 1 enlarges).
        rotation_p: probability of rotating.
        scaling_p: probability of scaling.

    Image linear, labels nearest; image padding with its minimum, labels with 0.
    """

    def __init__(self, degrees: float = 30.0, scales: Range = (0.7, 1.4), rotation_p: float = 0.2, scaling_p: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.degrees, self.scales, self.rotation_p, self.scaling_p = float(degrees), tuple(scales), rotation_p, scaling_p
        self.args_names = ["degrees", "scales", "rotation_p", "scaling_p"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        rotate = float(torch.rand(1)) < self.rotation_p
        scale = float(torch.rand(1)) < self.scaling_p
        if not (rotate or scale):
            return subject
        degrees = tuple(_uniform(-self.degrees, self.degrees) for _ in range(3)) if rotate else (0.0, 0.0, 0.0)
        zoom = _uniform(*self.scales) if scale else 1.0
        return tio.Affine(scales=(zoom,) * 3, degrees=degrees, translation=(0.0, 0.0, 0.0), copy=False)(subject)


class _RandomFactor(RandomTransform, tio.IntensityTransform):
    """Base of intensity transforms with one random factor from ``factor_range`` per channel."""

    def __init__(self, factor_range: Range = (0.75, 1.25), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor_range = tuple(factor_range)
        self.args_names = ["factor_range"]


class RandomBrightness(_RandomFactor):
    """Multiply intensities by a factor drawn from ``factor_range`` (one per channel).

    Args:
        factor_range: (low, high) multiplicative factor, e.g. (0.75, 1.25).
    """

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            factors = torch.tensor([_uniform(*self.factor_range) for _ in range(image.num_channels)])
            image.set_data(image.data.float() * factors.view(-1, 1, 1, 1))
        return subject


class RandomContrast(_RandomFactor):
    """Scale intensities about their mean by a factor from ``factor_range``, keeping the range.

    Args:
        factor_range: (low, high) contrast factor, e.g. (0.75, 1.25).

    ``x -> (x - mean) * f + mean`` per channel, then clipped to the channel's original
    ``[min, max]`` (nnU-Net's ``preserve_range``).
    """

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            data = image.data.float().clone()
            for c in range(data.shape[0]):
                x = data[c]
                lo, hi, mean = x.min(), x.max(), x.mean()
                data[c] = ((x - mean) * _uniform(*self.factor_range) + mean).clamp(lo, hi)
            image.set_data(data)
        return subject


class RandomGammaRetainStats(RandomTransform, tio.IntensityTransform):
    """nnU-Net's gamma: rescale to [0, 1], raise to gamma, restore range, mean and std.

    Args:
        gamma_range: (low, high) exponent; half the draws are below 1 when ``low < 1``.
        invert_p: probability of applying it to the inverted image (``-x``) instead.

    Unlike ``tio.RandomGamma`` (``sign(x)|x|^gamma``), this behaves the same on z-scored images,
    whose values are centred on 0.
    """

    def __init__(self, gamma_range: Range = (0.7, 1.5), invert_p: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma_range, self.invert_p = tuple(gamma_range), invert_p
        self.args_names = ["gamma_range", "invert_p"]

    def sample_gamma(self) -> float:
        lo, hi = self.gamma_range
        if lo < 1 and (hi <= 1 or float(torch.rand(1)) < 0.5):
            return _uniform(lo, min(hi, 1.0))
        return _uniform(max(lo, 1.0), hi)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        invert = float(torch.rand(1)) < self.invert_p
        for image in self.get_images(subject):
            data = image.data.float().clone()
            for c in range(data.shape[0]):
                x = -data[c] if invert else data[c]
                mean, std, lo = x.mean(), x.std(), x.min()
                span = x.max() - lo
                y = ((x - lo) / (span + 1e-7)).pow(self.sample_gamma()) * span + lo
                y = (y - y.mean()) / (y.std() + 1e-8) * std + mean
                data[c] = -y if invert else y
            image.set_data(data)
        return subject


# ------------------------------------------------------------------------------------ builders


def _p(transform_cls: type, p: float, **kwargs: Any) -> list[tio.Transform]:
    return [transform_cls(p=p, copy=False, **kwargs)] if p > 0 else []


def build_artefacts(cfg: AugmentationConfig | dict | str | None) -> tio.Compose:
    """MRI artefacts (bias field, motion, ghosting, spikes): for raw, unnormalised intensities."""
    cfg = as_augmentation_config(cfg)
    return tio.Compose(
        _p(tio.RandomBiasField, cfg.bias_field_p, coefficients=cfg.bias_field_coefficients)
        + _p(tio.RandomMotion, cfg.motion_p, degrees=cfg.motion_degrees, translation=cfg.motion_translation_mm, num_transforms=2)
        + _p(tio.RandomGhosting, cfg.ghosting_p, num_ghosts=cfg.ghosts)
        + _p(tio.RandomSpike, cfg.spike_p, intensity=cfg.spike_intensity)
    )


def build_nnunet_augmentation(cfg: AugmentationConfig | dict | str | None) -> tio.Compose:
    """Spatial and intensity augmentation for normalised images (everything but the artefacts)."""
    cfg = as_augmentation_config(cfg)
    spatial: list[tio.Transform] = []
    if cfg.rotation_p > 0 or cfg.scaling_p > 0:
        spatial.append(RandomRotateScale(cfg.rotation_degrees, cfg.scaling, cfg.rotation_p, cfg.scaling_p, copy=False))
    spatial += _p(
        tio.RandomElasticDeformation,
        cfg.elastic_p,
        max_displacement=cfg.elastic_max_displacement_mm,
        num_control_points=cfg.elastic_control_points,
    )
    return tio.Compose(
        spatial
        + _p(tio.RandomNoise, cfg.noise_p, std=cfg.noise_std)
        + _p(tio.RandomBlur, cfg.blur_p, std=cfg.blur_sigma_mm)
        + _p(RandomBrightness, cfg.brightness_p, factor_range=cfg.brightness)
        + _p(RandomContrast, cfg.contrast_p, factor_range=cfg.contrast)
        + (_p(tio.RandomAnisotropy, cfg.lowres_p, downsampling=cfg.lowres_factor) if cfg.lowres_factor[1] > 1 else [])
        + _p(RandomGammaRetainStats, cfg.gamma_p, gamma_range=cfg.gamma, invert_p=cfg.gamma_invert_p)
        + ([tio.RandomFlip(axes=cfg.flip_axes, flip_probability=cfg.flip_p, copy=False)] if cfg.flip_p > 0 and cfg.flip_axes else [])
    )


def build_augmentation(cfg: AugmentationConfig | dict | str | None = "nnunet") -> tio.Compose:
    """All augmentation of ``cfg`` (a config, its dict or a preset name) as one ``tio.Compose``.

    Applied to an already preprocessed subject the artefacts come first; for training,
    :func:`build_training_transform` places them before normalisation instead.
    """
    cfg = as_augmentation_config(cfg)
    return tio.Compose(list(build_artefacts(cfg).transforms) + list(build_nnunet_augmentation(cfg).transforms))


def build_training_transform(
    preprocessing: PreprocessConfig | dict | None,
    augmentation: AugmentationConfig | dict | str | None,
    patch_size: int | tuple[int, int, int] | None = None,
) -> tio.Compose:
    """Preprocessing with augmentation, then padding to the patch size (for the patch queue).

    ``orient -> crop -> MRI artefacts -> normalise -> resample -> spatial/intensity augmentation
    -> pad to patch_size``; without augmentation this equals :func:`build_preprocessing` (+ pad).
    """
    aug = as_augmentation_config(augmentation)
    artefacts = build_artefacts(aug)
    pre = build_preprocessing(_as_config(preprocessing), artefacts=artefacts if len(artefacts) else None)
    steps = list(pre.transforms) + list(build_nnunet_augmentation(aug).transforms)
    if patch_size is not None:
        steps.append(PadToShape(_triple(patch_size), copy=False))
    return tio.Compose(steps)


def _triple(size: int | tuple[int, ...]) -> tuple[int, int, int]:
    t = (int(size),) * 3 if isinstance(size, (int, float)) else tuple(int(v) for v in size)
    if len(t) != 3 or min(t) < 1:
        raise ConfigError(f"patch size must be one or three positive integers, not {size!r}")
    return t  # type: ignore[return-value]


__all__ = [
    "AugmentationConfig",
    "PRESETS",
    "build_augmentation",
    "build_artefacts",
    "build_nnunet_augmentation",
    "build_training_transform",
    "RandomRotateScale",
    "RandomBrightness",
    "RandomContrast",
    "RandomGammaRetainStats",
]
