"""What every model that segments PVS shares: the :class:`Segmenter` interface and its :class:`Prediction`.

    pred = model.predict("sub-01_T2w.nii.gz", brainmask=None, tta=None, step=None, threshold=None)
    pred.mask, pred.probabilities                  # (X, Y, Z) on the input's own grid
    pred.save("out/", "sub-01")                     # out/sub-01_mask.nii.gz (CaseOutputs names)

The network ensemble (:class:`~mednet_pvs.inference.model.PVSModel`), the Frangi baseline
(:class:`~mednet_pvs.inference.frangi_model.FrangiModel`) and any model kind to come implement
:class:`Segmenter`; batch prediction, the demo and the CLI ask for nothing else.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mednet_pvs.errors import InputError
from mednet_pvs.inference.outputs import CaseOutputs
from mednet_pvs.io import ImageSource, PathType, Scan, load_image


@dataclass
class Prediction:
    """A model's output for one scan, on that scan's own grid.

    Attributes:
        probabilities: (X, Y, Z) float32 PVS probability (or the baseline's response).
        mask: (X, Y, Z) uint8 PVS mask (thresholded, small clusters removed).
        scan: the input (its affine and header are used to write outputs).
        info: timings (s), model name, settings used.
        label_map: (X, Y, Z) uint8 label of every voxel, for models with several classes (e.g. PVS
            and white-matter hyperintensities); ``None`` for PVS-only models (``mask`` says it all).
        classes: label value -> name of ``label_map`` (background included).
        class_probabilities: (K, X, Y, Z) float32 probability of each class, when computed.
        brainmask: (X, Y, Z) uint8 brain mask the model found (models with a brain class, e.g.
            ``mednet-pvs-synth-any``); ``None`` for the others.
    """

    probabilities: np.ndarray
    mask: np.ndarray
    scan: Scan
    info: dict[str, Any] = field(default_factory=dict)
    label_map: np.ndarray | None = None
    classes: dict[int, str] | None = None
    class_probabilities: np.ndarray | None = None
    brainmask: np.ndarray | None = None

    def save(self, outdir: PathType, name: str, *, probabilities: bool = False) -> dict[str, Path]:
        """Write ``{name}_mask.nii.gz`` (uint8), optionally ``{name}_prob.nii.gz`` (float32), and
        ``{name}_classes.nii.gz`` for models with several classes and ``{name}_brainmask.nii.gz`` for models that find the brain, into ``outdir``, atomically (the names of :class:`~mednet_pvs.inference.outputs.CaseOutputs`)."""
        return CaseOutputs(Path(outdir), name).write(
            self.scan, self.mask, probabilities=self.probabilities if probabilities else None,
            label_map=self.label_map, classes=self.classes, brainmask=self.brainmask,
        )

    def burden(self, **kwargs: Any) -> Any:
        """PVS burden of the mask (:func:`mednet_pvs.analysis.pvs_burden`), probabilities attached."""
        from mednet_pvs.analysis import pvs_burden

        return pvs_burden(self.mask, self.scan.affine, probs=self.probabilities, **kwargs)


@runtime_checkable
class Segmenter(Protocol):
    """A model that segments PVS in one scan: the interface every model kind implements.

    Attributes:
        name: a short name for logs, outputs and model cards.
        meta: what travels with the model (contrast, training data, figures, provenance).
    """

    name: str
    meta: dict[str, Any]

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
        """Segment one scan (path, nibabel image, Scan or ``(array, affine)``); ``brainmask`` on
        its grid; ``tta``, ``step``, ``threshold`` override the model's settings where they apply;
        ``progress(done, total)`` is called as the work proceeds."""
        ...

    def save_pretrained(self, folder: PathType, *, card: str | None = None, load_as: str | None = None) -> Path:
        """Write the model as a bundle folder (``config.json``, weights if any, model card)."""
        ...

    def provenance(self, *, tta: bool | None = None, step: float | None = None) -> dict[str, Any]:
        """``{"model": {...}, "settings": {...}}``: what decides the predictions made with these
        overrides (the model's identity and every setting that changes the result)."""
        ...


def load_grid_mask(brainmask: ImageSource, scan: Scan) -> np.ndarray:
    """A brain mask on ``scan``'s grid as bool (X, Y, Z); a different grid is an InputError."""
    bm = load_image(brainmask, kind="label", max_anisotropy=None)  # its grid must be the scan's, checked below
    if bm.shape != scan.shape or not np.allclose(bm.affine, scan.affine, atol=1e-3):
        raise InputError(
            bm.name,
            f"brain mask grid (shape {bm.shape}) does not match the image {scan.name} (shape {scan.shape}); "
            "give a mask on the image's own grid",
        )
    return bm.data > 0
