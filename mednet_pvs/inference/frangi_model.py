"""The classical baseline behind the same ``predict`` interface as the learned models.

    model = FrangiModel.for_contrast("T2w")         # or a saved one: mednet_pvs.load_pretrained("frangi_folder/")
    pred = model.predict("scan.nii.gz", brainmask="brain.nii.gz")

Multi-scale Hessian vesselness (:mod:`mednet_pvs.classical.frangi`) on the scan's own grid and
spacing, restricted to the brain mask when given (else the whole image: give a mask for unstripped
heads), thresholded at the config's ``threshold`` (fit it on training data with
:func:`mednet_pvs.classical.fit_threshold`). Saved as a bundle folder whose ``config.json`` has
``"kind": "frangi"`` and no weights file.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mednet_pvs.classical.frangi import FrangiConfig, FrangiSegmenter
from mednet_pvs.errors import InputError
from mednet_pvs.inference.bundle import BundleConfig, register_kind, write_bundle
from mednet_pvs.inference.prediction import Prediction, load_grid_mask
from mednet_pvs.io import ImageSource, PathType, load_image


class FrangiModel:
    """Frangi vesselness as a model with no weights.

    Args:
        config: the filter and threshold settings.
        name: a short name for logs and outputs.
        meta: anything worth keeping with it (contrast, how the threshold was fit).
    """

    def __init__(self, config: FrangiConfig | dict | None = None, *, name: str = "frangi", meta: dict | None = None) -> None:
        self.config = config if isinstance(config, FrangiConfig) else FrangiConfig.from_dict(config or {})
        self.name = name
        self.meta = dict(meta or {})

    @classmethod
    def for_contrast(cls, contrast: str, **kwargs: Any) -> FrangiModel:
        """Default settings with the polarity of ``contrast`` (T2w bright, T1w/FLAIR dark tubes)."""
        return cls(FrangiConfig.for_contrast(contrast, **kwargs), name=f"frangi-{contrast.lower()}", meta={"contrast": contrast})

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
        """Segment PVS in one scan; ``tta`` and ``step`` do not apply and are ignored."""
        t0 = time.perf_counter()
        scan = load_image(image)
        bm = None if brainmask is None else load_grid_mask(brainmask, scan)
        config = self.config if threshold is None else self.config.replace(threshold=threshold)
        response, mask = FrangiSegmenter(config).predict(scan.data, scan.spacing, bm)
        if progress is not None:
            progress(1, 1)
        info = {"model": self.name, "seconds": {"total": time.perf_counter() - t0}}
        return Prediction(probabilities=response.astype(np.float32), mask=mask.astype(np.uint8), scan=scan, info=info)

    def to(self, device: Any) -> FrangiModel:
        """Frangi runs on the CPU (scikit-image): another device is checked, then a warning says it
        is not used (``None`` and ``"cpu"`` say nothing)."""
        if device is not None:
            from mednet_pvs.inference.devices import resolve_device

            if resolve_device(device).type != "cpu":
                warnings.warn(f"{self.name} runs on the CPU (scikit-image): device {str(device)!r} is not used", stacklevel=2)
        return self

    def provenance(self, *, tta: bool | None = None, step: float | None = None) -> dict[str, Any]:
        """The filter settings (``tta`` and ``step`` do not apply): what decides its predictions."""
        return {"model": {"name": self.name, "kind": "frangi", "config": self.config.to_dict()},
                "settings": {"threshold": self.config.threshold, "device": "cpu"}}

    def bundle_config(self) -> BundleConfig:
        """This model's ``config.json``: kind ``frangi``, no weights."""
        return BundleConfig(name=self.name, kind="frangi", frangi=self.config, meta=self.meta)

    def save_pretrained(self, folder: PathType, *, card: str | None = None, load_as: str | None = None) -> Path:
        """Write ``config.json`` (kind ``frangi``) and the model card (no weights file)."""
        return write_bundle(folder, self.bundle_config(), card=card, load_as=load_as or str(folder))

    def __repr__(self) -> str:
        return f"FrangiModel(name={self.name!r}, polarity={self.config.polarity!r}, threshold={self.config.threshold})"


@register_kind("frangi")
def _load_frangi_bundle(folder: Path, config: BundleConfig, device: object) -> FrangiModel:
    """The Frangi baseline from its settings (``device`` does not apply: it runs on the CPU)."""
    config.require("frangi")
    return FrangiModel(config.frangi, name=config.name, meta=config.meta).to(device)


def fit_frangi(source: PathType, contrast: str = "T2w", **config: Any) -> tuple[FrangiModel, Any]:
    """Fit the Frangi threshold on a labelled cohort (manifest or BIDS folder).

    Args:
        source: cohort with ``image``, ``label`` and (recommended) ``brainmask`` per case.
        contrast: sets the polarity (``T2w`` bright tubes, ``T1w``/``FLAIR`` dark).
        config: other :class:`FrangiConfig` fields (e.g. ``sigmas_mm``).

    Returns:
        ``(model, fit)``: a :class:`FrangiModel` with the best threshold (its ``meta`` records the
        training Dice and cases) and the :class:`~mednet_pvs.classical.frangi.ThresholdFit`.
    """
    from mednet_pvs.classical.frangi import fit_threshold
    from mednet_pvs.data.cases import load_cases

    cases = load_cases(source, require_label=True)
    images, labels, masks, spacings = [], [], [], []
    for c in cases:
        if len(c.images) != 1:
            raise InputError(source, f"case {c.key}: the Frangi baseline takes one image channel, not {len(c.images)}")
        scan = load_image(c.images[0])
        label = load_image(c.label, kind="label")
        if label.shape != scan.shape:
            raise InputError(c.label, f"label shape {label.shape} does not match the image {c.images[0]} ({scan.shape})")
        images.append(scan.data)
        labels.append(label.data > 0)
        masks.append(None if c.brainmask is None else load_grid_mask(c.brainmask, scan))
        spacings.append(scan.spacing)
    fit = fit_threshold(images, labels, masks, spacings=spacings, config=FrangiConfig.for_contrast(contrast, **config))
    meta = {"contrast": contrast, "training_data": str(source), "n_cases": len(cases), "train_dice": fit.best_dice}
    return FrangiModel(fit.config, name=f"frangi-{contrast.lower()}", meta=meta), fit
