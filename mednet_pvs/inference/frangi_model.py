"""The classical baseline behind the same ``predict`` interface as the learned models.

    model = FrangiModel.for_contrast("T2w")         # or a saved one: mednet_pvs.load_pretrained("frangi_folder/")
    pred = model.predict("scan.nii.gz", brainmask="brain.nii.gz")

Multi-scale Hessian vesselness (:mod:`mednet_pvs.classical.frangi`) on the scan's own grid and
spacing, restricted to the brain mask when given (else the whole image: give a mask for unstripped
heads) and kept only ``mask_erosion_mm`` deep inside it, thresholded at the config's ``threshold``.
:func:`fit_frangi` (``mednet-pvs fit-frangi``) fits the threshold, scales, scale normalisation,
mask erosion and (``contrast="auto"``) polarity on labelled data. Saved as a bundle folder whose
``config.json`` has ``"kind": "frangi"`` and no weights file; a bundle written before
``mask_erosion_mm`` existed loads with the settings it was fitted with (no erosion).
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.classical.frangi import (
    DEFAULT_EROSIONS_MM,
    DEFAULT_SCALE_SETS,
    FrangiConfig,
    FrangiFit,
    FrangiSegmenter,
)
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference.bundle import (
    CONFIG,
    BundleConfig,
    register_kind,
    write_bundle,
)
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
        """Default settings with the polarity of ``contrast`` (T2w/PD bright, T1w/FLAIR dark tubes)."""
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


#: Settings of a bundle written before ``mask_erosion_mm`` existed (and ``scale_normalise`` defaulted
#: to False): its threshold was fitted with these, so a missing key takes them.
SETTINGS_BEFORE_EROSION = {"mask_erosion_mm": 0.0, "scale_normalise": True}


@register_kind("frangi")
def _load_frangi_bundle(folder: Path, config: BundleConfig, device: object) -> FrangiModel:
    """The Frangi baseline from its settings (``device`` does not apply: it runs on the CPU)."""
    config.require("frangi")
    saved = json.loads((Path(folder) / CONFIG).read_text()).get("frangi") or {}
    frangi = config.frangi
    if "mask_erosion_mm" not in saved:
        frangi = frangi.replace(**{k: v for k, v in SETTINGS_BEFORE_EROSION.items() if k not in saved})  # type: ignore[union-attr]
    return FrangiModel(frangi, name=config.name, meta=config.meta).to(device)


#: What :func:`fit_frangi` fits: the threshold only, or every setting of :data:`GRID_FIELDS`.
FIT_MODES = ("threshold", "all")


def fit_frangi(
    source: PathType,
    contrast: str = "T2w",
    *,
    fit: str = "all",
    scale_sets: Sequence[Sequence[float]] | None = None,
    erosions_mm: Sequence[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    **config: Any,
) -> tuple[FrangiModel, FrangiFit]:
    """Fit the Frangi baseline on a labelled cohort (manifest or BIDS folder).

    Args:
        source: cohort with ``image``, ``label`` and (recommended) ``brainmask`` per case.
        contrast: sets the polarity (``T2w``/``PD`` bright tubes, ``T1w``/``FLAIR`` dark); ``auto``
            lets the fit choose it (both are tried, the better kept).
        fit: ``"all"`` fits threshold, scales, scale normalisation and mask erosion together
            (:func:`~mednet_pvs.classical.frangi.fit_frangi_grid`); ``"threshold"`` the threshold only
            (and the polarity for ``auto``), the other settings from ``config`` or the defaults.
        scale_sets: scale sets (mm) to try (``fit="all"``: default
            :data:`~mednet_pvs.classical.frangi.DEFAULT_SCALE_SETS`; ``"threshold"``: at most one).
        erosions_mm: mask erosions (mm) to try (same rules; default
            :data:`~mednet_pvs.classical.frangi.DEFAULT_EROSIONS_MM`).
        progress: called with ``(cases done, cases)`` while fitting.
        config: other :class:`FrangiConfig` fields (e.g. ``alpha``, ``min_size_mm3``).

    Returns:
        ``(model, fit)``: a :class:`FrangiModel` with the best settings (its ``meta`` records the
        training Dice, the cases and what was fitted) and the
        :class:`~mednet_pvs.classical.frangi.FrangiFit` with every combination tried.
    """
    from mednet_pvs.classical.frangi import fit_frangi_grid
    from mednet_pvs.data.cases import load_cases

    if fit not in FIT_MODES:
        raise ConfigError(f"fit must be one of {', '.join(FIT_MODES)}, not {fit!r}")
    auto = contrast.lower() == "auto"
    base = FrangiConfig(**config) if auto else FrangiConfig.for_contrast(contrast, **config)
    if fit == "all":
        sets, erosions, normalise = scale_sets or DEFAULT_SCALE_SETS, erosions_mm or DEFAULT_EROSIONS_MM, (False, True)
    else:
        for name, values in (("scale set", scale_sets), ("erosion", erosions_mm)):
            if values is not None and len(values) > 1:
                raise ConfigError(f"fitting the threshold only takes one {name}, not {len(values)} (fitting all settings tries several)")
        sets = scale_sets or (base.sigmas_mm,)
        erosions = erosions_mm or (base.mask_erosion_mm,)
        normalise = (base.scale_normalise,)
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
    result = fit_frangi_grid(images, labels, masks, spacings=spacings, config=base, scale_sets=sets, erosions_mm=erosions,
                             scale_normalise=normalise, polarities=("bright", "dark") if auto else None, progress=progress)
    meta = {"contrast": contrast, "training_data": str(source), "n_cases": len(cases), "train_dice": result.best_dice,
            "fitted": fit, "combinations_tried": len(result.candidates)}
    return FrangiModel(result.config, name=f"frangi-{contrast.lower()}", meta=meta), result
