"""How a model predicts: the sliding window plus what turns probabilities into a mask.

Saved in a bundle's ``config.json`` as::

    "inference": {"window": {"patch_size": [128, 128, 128], "step": 0.5, "mirror_axes": [0, 1, 2], ...},
                  "threshold": 0.5, "min_cluster_mm3": 0.0}

Bundles written before the window had a block of its own kept its fields at the top level
(``{"patch_size": ..., "step": ..., "threshold": ...}``); :meth:`InferenceConfig.from_dict` reads
both, so ``InferenceConfig.from_dict({"patch_size": (64, 64, 64), "threshold": 0.4})`` works too.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mednet_pvs.config import Config, shown
from mednet_pvs.errors import ConfigError
from mednet_pvs.inference.sliding_window import SlidingWindowConfig


#: ways back to the input grid (:attr:`InferenceConfig.output_resampling`)
OUTPUT_RESAMPLING = ("linear", "area")
#: where a predicted brain mask comes from (:attr:`InferenceConfig.brain_mask`)
BRAIN_MASK = ("first_pass", "both_passes", "auto")


def _default_window() -> SlidingWindowConfig:
    return SlidingWindowConfig(patch_size=(128, 128, 128), step=0.5, batch_size=2, mirror_axes=(0, 1, 2))


@dataclass
class InferenceConfig(Config):
    """How a model predicts; JSON-able, saved in the bundle's ``config.json``.

    Attributes:
        window: the sliding window (tile size and step on the preprocessed grid, Gaussian sigma,
            batch, mirroring axes for test-time augmentation: on the preprocessed, reoriented grid,
            0 = R-L, 1 = A-P, 2 = S-I for RAS; ``()`` = none). Default: 128^3 tiles, step 0.5,
            mirroring on all three axes.
        threshold: foreground probability above which a voxel is PVS.
        min_cluster_mm3: clusters (26-connected) smaller than this are removed from the mask.
        output_resampling: how the probabilities go back to the input grid: ``"linear"``
            (sampled at the input voxels' centres, as nnU-Net; the default) or ``"area"``
            (averaged over each input voxel's extent first where the input is coarser than the
            network's grid, e.g. thick slices: a voxel is PVS when most of it is, as a label
            drawn on that grid; :func:`mednet_pvs.data.preprocessing.box_average`).
        brain_mask: for models with a brain class, found from the image alone: ``"first_pass"``
            (the default: the largest component of the first pass, over the whole field of view)
            or ``"both_passes"`` (that mask where the second pass, cropped to it and normalised
            inside it, also says brain: skull, neck or eyes the first pass took are dropped) or
            ``"auto"``: both passes on a whole head; on a skull-stripped input (next to no signal
            more than 5 mm outside that mask: :func:`~mednet_pvs.inference.model.refine_brain_mask`)
            the first mask cut to the image's non-zero voxels, since there the second pass trims
            true brain at the edge (held-out fit cases: brain Dice 0.947 with both passes
            everywhere, 0.952 with ``"auto"`` and ``brain_keep`` 0.8).
        brain_keep: with ``"both_passes"`` (and ``"auto"`` on whole heads), the second pass's
            brain probability above which a first-pass voxel stays brain.
    """

    _what = "inference"

    window: SlidingWindowConfig = field(default_factory=_default_window)
    threshold: float = 0.5
    min_cluster_mm3: float = 0.0
    output_resampling: str = "linear"
    brain_mask: str = "first_pass"
    brain_keep: float = 0.5

    def validate(self) -> None:
        """Threshold in (0, 1), minimum cluster size >= 0 mm^3, a known output resampling and brain mask source."""
        if self.output_resampling not in OUTPUT_RESAMPLING:
            raise ConfigError(f"must be one of {', '.join(OUTPUT_RESAMPLING)}, not {shown(self.output_resampling)}",
                              field="output_resampling")
        if self.brain_mask not in BRAIN_MASK:
            raise ConfigError(f"must be one of {', '.join(BRAIN_MASK)}, not {shown(self.brain_mask)}", field="brain_mask")
        if not 0 < self.brain_keep < 1:
            raise ConfigError(f"must be in (0, 1) (a probability), not {shown(self.brain_keep)}", field="brain_keep")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"must be in (0, 1) (a probability), not {shown(self.threshold)}", field="threshold")
        if not self.min_cluster_mm3 >= 0:
            raise ConfigError(f"must be >= 0 (mm^3), not {shown(self.min_cluster_mm3)}", field="min_cluster_mm3")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | InferenceConfig) -> InferenceConfig:
        """Read ``{"window": {...}, "threshold", "min_cluster_mm3"}``, or the older flat form whose
        window fields sit at the top level; window fields not given keep the default window's."""
        if isinstance(d, InferenceConfig):
            return d
        return cls().updated(d) if isinstance(d, Mapping) else super().from_dict(d)

    def updated(self, changes: Mapping[str, Any]) -> InferenceConfig:
        """A copy with ``changes`` applied: top-level fields, a ``window`` mapping of window fields,
        or window fields at the top level (``{"patch_size": ..., "threshold": ...}``)."""
        window_keys = set(SlidingWindowConfig.field_names())
        flat = {k: v for k, v in changes.items() if k in window_keys}
        nested = changes.get("window", {})
        if isinstance(nested, SlidingWindowConfig):
            nested = nested.to_dict()
        if not isinstance(nested, Mapping):  # null included: it would silently mean the default window
            raise ConfigError(f"must be a mapping (the sliding window config), not {shown(nested)}", field="window")
        both = sorted(set(flat) & set(nested))
        if both:
            raise ConfigError(f"{', '.join(both)} given both inside 'window' and beside it")
        rest = {k: v for k, v in changes.items() if k not in window_keys and k != "window"}
        return super().from_dict({**self.to_dict(), **rest, "window": {**self.window.to_dict(), **flat, **nested}})
