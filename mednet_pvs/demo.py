"""The quick-start job behind ``mednet-pvs demo``: make a phantom, segment it with the bundled
model of its contrast, write the mask, the PVS stats and pictures, and score the mask against the
phantom's truth. Everything runs offline: the phantom is made here and the model ships in the package.

Skull-stripped T2w and T1w phantoms come from the per-contrast generator
(:func:`mednet_pvs.synth.phantom.make_phantom`) and go to the per-contrast bundled models with
their brain mask; FLAIR, PD, ``any`` (a random contrast) and whole heads (``head=True``) come from
the domain generator (:func:`mednet_pvs.synth.domain.make_domain_phantom`, 1 mm) and go to the
any-contrast model :data:`ANY_MODEL`, which finds the brain itself on a whole head.

It sits above the zoo (it loads a bundled model), analysis and viz, beside the CLI that calls it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mednet_pvs.errors import ConfigError

#: the embedded default phantom of the demo: full-brain MNI152 at 1 mm, T2w, moderate burden
DEMO_DEFAULTS: dict[str, Any] = {"anatomy": "mni", "spacing": 1.0, "contrast": "T2w", "burden": 2}
#: contrasts the demo makes (``any``: a random contrast of the domain generator)
DEMO_CONTRASTS = ("T2w", "T1w", "FLAIR", "PD", "any")
#: contrasts with a per-contrast bundled model (skull-stripped phantoms of the per-contrast generator)
PER_CONTRAST = ("T2w", "T1w")
#: the bundled any-contrast model (PVS and a brain mask): every other contrast, and whole heads
ANY_MODEL = "mednet-pvs-synth-any"


@dataclass
class DemoResult:
    """What :func:`run_demo` made."""

    out: Path
    paths: dict[str, Path]
    pvs_count: int
    pvs_volume_mm3: float
    pvs_by_region: dict[str, int]
    shape: tuple[int, int, int]
    spacing_mm: float
    seconds: float
    meta: dict[str, Any] = field(repr=False, default_factory=dict)
    model: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    predicted_count: int | None = None
    predicted_volume_mm3: float | None = None
    head: bool = False

    def summary_lines(self) -> list[str]:
        lines = [
            f"phantom: {self.meta.get('anatomy')} {self.shape[0]}x{self.shape[1]}x{self.shape[2]} at "
            f"{self.spacing_mm:g} mm, {self.meta['config']['contrast']}, burden {self.meta['config']['burden']}, "
            f"seed {self.meta['seed']}",
            *(["whole head (skull, scalp, eyes, neck): the model finds the brain itself"] if self.head else []),
            f"PVS: {self.pvs_count} tubes, {self.pvs_volume_mm3:.1f} mm^3 labelled ("
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.pvs_by_region.items()) + ")",
        ]
        conf = self.meta.get("confounders", {})
        lines.append(f"confounders (not labelled): {conf.get('lacunes', 0)} lacunes, WMH Fazekas "
                     f"{conf.get('wmh_fazekas', 0)}, {conf.get('vessels', 0)} surface vessels")
        if self.model is not None:
            lines.append(f"segmented with {self.model}: {self.predicted_count} PVS, {self.predicted_volume_mm3:.1f} mm^3")
            lines.append(f"against the phantom's truth: Dice {self.scores['dice']:.3f}, cluster Dice {self.scores['cluster_dice']:.3f}, "
                         f"precision {self.scores['precision']:.3f}, recall {self.scores['recall']:.3f}, "
                         f"PVS found {self.scores['det_recall']:.0%}")
            if "brain_dice" in self.scores:
                lines.append(f"brain mask found by the model: Dice {self.scores['brain_dice']:.3f} against the phantom's brain")
        lines += [f"{k:>10}: {p}" for k, p in self.paths.items()]
        lines.append(f"done in {self.seconds:.1f} s")
        return lines


def demo_model_name(contrast: str, head: bool = False) -> str:
    """The bundled zoo model the demo segments a ``contrast`` phantom with: the per-contrast model of
    a skull-stripped T2w/T1w phantom, else the any-contrast model."""
    if head or contrast not in PER_CONTRAST:
        return ANY_MODEL
    return f"mednet-pvs-synth-{contrast.lower()}"


def _domain_phantom(contrast: str, head: bool, anatomy: str, seed: int) -> Any:
    """A 1 mm domain phantom of one contrast (``any``: random), whole head or skull-stripped."""
    from mednet_pvs.synth.domain import DomainConfig, make_domain_phantom

    return make_domain_phantom(DomainConfig.fixed(contrast, head=head, anatomy=anatomy), seed=seed)


def run_demo(out: str | os.PathLike = "demo_out", seed: int = 0, *, anatomy: str = "mni", name: str = "phantom",
             model: str | None = "auto", device: str | None = "cpu", progress: Any = None, backend: str = "torch",
             head: bool = False, **overrides: Any) -> DemoResult:
    """Make one phantom (defaults :data:`DEMO_DEFAULTS`), save its NIfTIs, sidecar and ``overview.png``;
    then (unless ``model`` is ``None``) segment the saved image with ``model`` (``"auto"``: the
    bundled model of the phantom's contrast, :func:`demo_model_name`) and write
    ``<name>_mask.nii.gz``, ``<name>_stats.json``, ``<name>_clusters.csv`` and ``prediction.png``;
    ``progress(done_tiles, total_tiles)`` is called while the model works; ``backend``: where the
    network runs (:meth:`~mednet_pvs.inference.PVSModel.use_backend`).

    ``head=True``, or ``contrast`` FLAIR, PD or ``any``: a 1 mm domain phantom (the other
    ``overrides`` do not apply), segmented by :data:`ANY_MODEL` from the image alone when it is a
    whole head (its predicted brain mask is scored too), with the brain mask when skull-stripped."""
    from mednet_pvs.synth.phantom import make_phantom
    from mednet_pvs.viz import save_overview

    from mednet_pvs.inference.backends import check_backend

    check_backend(backend)  # before anything is written
    t0 = time.perf_counter()
    settings = dict(DEMO_DEFAULTS, anatomy=anatomy, **overrides)
    contrast = str(settings["contrast"])
    if contrast not in DEMO_CONTRASTS:
        raise ConfigError(f"demo contrast must be one of {', '.join(DEMO_CONTRASTS)}, not {contrast!r}")
    domain = head or contrast not in PER_CONTRAST
    ph = _domain_phantom(contrast, head, anatomy, seed) if domain else make_phantom(seed=seed, **settings)
    out = Path(out)
    paths = ph.save(out, name)
    paths["overview"] = save_overview(ph.image, ph.label, ph.affine, out / "overview.png",
                                      title=f"synthetic PVS phantom, {ph.meta['pvs_count']} PVS, seed {seed}")
    result = DemoResult(
        out=out,
        paths=paths,
        pvs_count=int(ph.meta["pvs_count"]),
        pvs_volume_mm3=float(ph.meta["pvs_volume_mm3"]),
        pvs_by_region=dict(ph.meta["pvs_count_by_region"]),
        shape=tuple(ph.image.shape),  # type: ignore[arg-type]
        spacing_mm=float(ph.spacing[0]),
        seconds=0.0,
        meta=ph.meta,
        head=head,
    )
    if model is not None:
        _segment(result, ph, name, demo_model_name(contrast, head) if model == "auto" else model, device, progress, backend)
    result.seconds = time.perf_counter() - t0
    return result


def _segment(result: DemoResult, ph: Any, name: str, model_name: str, device: str | None, progress: Any = None,
             backend: str = "torch") -> None:
    from mednet_pvs.analysis import case_metrics, pvs_burden
    from mednet_pvs.inference import CaseOutputs
    from mednet_pvs.viz import show
    from mednet_pvs.zoo import load_pretrained

    from mednet_pvs.inference.backends import apply_backend

    model = apply_backend(load_pretrained(model_name, device=device), backend)
    paths = result.paths
    # from the saved file, as a user would; a whole head goes in alone (the model finds the brain)
    pred = model.predict(paths["image"], brainmask=None if result.head else paths["brainmask"], progress=progress)
    burden = pvs_burden(pred.mask, pred.scan.affine, probs=pred.probabilities, regions=paths["regions"])
    written = CaseOutputs(result.out, name).write(pred.scan, pred.mask, burden=burden)
    paths.update({"mask": written["mask"], "stats": written["stats"], "clusters": written["clusters"]})
    m = case_metrics(pred.mask > 0, ph.label > 0, ph.affine)
    result.scores = {k: float(m[k]) for k in ("dice", "cluster_dice", "precision", "recall", "det_recall", "det_precision")}
    if result.head and getattr(pred, "brainmask", None) is not None:
        from mednet_pvs.analysis.metrics import voxel_metrics

        result.scores["brain_dice"] = float(voxel_metrics(pred.brainmask > 0, ph.brainmask > 0)["dice"])
    paths["prediction"] = show(pred, title=f"{model_name}: {burden.count} PVS (Dice {m['dice']:.2f} vs truth)",
                               save=result.out / "prediction.png") and result.out / "prediction.png"
    result.model, result.predicted_count, result.predicted_volume_mm3 = model_name, int(burden.count), float(burden.volume_mm3)
