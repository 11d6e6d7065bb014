"""Score models on held-out synthetic phantoms, next to a Frangi baseline fitted on other phantoms.

This is how the bundled synthetic-data models' cards get their figures:

    from mednet_pvs.zoo.phantom_scores import score_on_phantoms
    table = score_on_phantoms({"synth": load_pretrained("mednet-pvs-synth-t2w")}, "T2w", seeds=range(1000, 1004))
    table.groupby("model")["dice"].mean()

Test phantoms are made with seeds the training stream never uses (training draws ``seed + i`` from
0 upwards with ``synthetic_train_size`` per epoch; validation ``2**31`` onwards), so the models have
never seen them. The Frangi threshold is fitted (best mean Dice) on separate phantoms of the same
kind (``frangi_seeds``), then applied unchanged to the test phantoms.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: seeds of the published held-out phantoms (far from every training/validation seed)
TEST_SEEDS = tuple(range(10_000, 10_004))
#: seeds of the phantoms the Frangi threshold is fitted on
FRANGI_FIT_SEEDS = tuple(range(20_000, 20_003))
#: the phantoms' settings unless overridden: the demo's 1 mm MNI152-based brain, moderate burden
PHANTOM_DEFAULTS: dict[str, Any] = {"anatomy": "mni", "spacing": 1.0, "burden": 2}


def _phantom(contrast: str, seed: int, overrides: Mapping[str, Any]) -> Any:
    from mednet_pvs.synth import PhantomConfig, make_phantom

    return make_phantom(PhantomConfig(**{**PHANTOM_DEFAULTS, **overrides, "contrast": contrast}), seed=seed)


def fit_frangi_on_phantoms(contrast: str, seeds: Iterable[int] = FRANGI_FIT_SEEDS, **overrides: Any) -> Any:
    """A :class:`~mednet_pvs.inference.frangi_model.FrangiModel` whose threshold maximises the mean
    Dice on the phantoms ``seeds`` (inside their brain masks)."""
    from mednet_pvs.classical.frangi import FrangiConfig, fit_threshold
    from mednet_pvs.inference.frangi_model import FrangiModel

    phantoms = [_phantom(contrast, s, overrides) for s in seeds]
    fit = fit_threshold([p.image for p in phantoms], [p.label > 0 for p in phantoms], [p.brainmask > 0 for p in phantoms],
                        spacings=[p.spacing for p in phantoms], config=FrangiConfig.for_contrast(contrast))
    meta = {"contrast": contrast, "training_data": f"{len(phantoms)} {contrast} phantoms, seeds {list(seeds)}",
            "train_dice": fit.best_dice}
    return FrangiModel(fit.config, name=f"frangi-{contrast.lower()}-fitted", meta=meta)


def fit_threshold_on_phantoms(
    model: Any, contrast: str, seeds: Iterable[int] = FRANGI_FIT_SEEDS, thresholds: Iterable[float] = np.arange(0.1, 0.95, 0.05),
    **overrides: Any,
) -> tuple[float, dict[float, float]]:
    """The probability threshold with the best mean voxel Dice on the phantoms ``seeds``.

    Returns ``(threshold, {threshold: mean Dice})``. Use other seeds than the test phantoms'.
    """
    phantoms = [_phantom(contrast, s, overrides) for s in seeds]
    probs = [model.predict((p.image, p.affine), brainmask=(p.brainmask, p.affine)).probabilities for p in phantoms]
    curve = {}
    for t in thresholds:
        dices = []
        for p, pr in zip(phantoms, probs):
            pred, ref = pr > t, p.label > 0
            dices.append(2 * np.logical_and(pred, ref).sum() / max(pred.sum() + ref.sum(), 1))
        curve[round(float(t), 2)] = float(np.mean(dices))
    best = max(curve, key=lambda t: curve[t])
    return best, curve


def score_on_phantoms(
    models: Mapping[str, Any],
    contrast: str,
    seeds: Iterable[int] = TEST_SEEDS,
    *,
    tta: bool | None = None,
    **overrides: Any,
) -> Any:
    """Per-case metrics of each model on fresh phantoms of ``contrast``.

    Args:
        models: ``{label: model}`` (anything with ``.predict((image, affine), brainmask=...)``).
        contrast: ``"T2w"`` or ``"T1w"`` phantoms.
        seeds: one phantom per seed.
        tta: passed to each model's ``predict`` (``None``: the model's default).
        overrides: other :class:`~mednet_pvs.synth.PhantomConfig` fields (default
            :data:`PHANTOM_DEFAULTS`).

    Returns:
        A pandas DataFrame, one row per (model, phantom): ``model``, ``contrast``, ``seed``,
        ``dice``, ``cluster_dice``, ``det_f1``, ``precision``, ``recall``, ``seconds`` (predict).
    """
    import pandas as pd

    from mednet_pvs.analysis import case_metrics

    rows = []
    for seed in seeds:
        ph = _phantom(contrast, seed, overrides)
        for label, model in models.items():
            t0 = time.perf_counter()
            pred = model.predict((ph.image, ph.affine), brainmask=(ph.brainmask, ph.affine), tta=tta)
            seconds = time.perf_counter() - t0
            m = case_metrics(pred.mask > 0, ph.label > 0, ph.affine)
            rows.append({"model": label, "contrast": contrast, "seed": seed, "pvs": int(ph.meta["pvs_count"]),
                         **{k: float(m[k]) for k in ("dice", "cluster_dice", "det_f1", "precision", "recall")},
                         "seconds": seconds})
    return pd.DataFrame(rows)


def summary(table: Any) -> Any:
    """Mean (and min) of the main metrics per model and contrast."""
    g = table.groupby(["contrast", "model"], sort=False)
    out = g[["dice", "cluster_dice", "det_f1", "precision", "recall"]].mean()
    out["dice_min"] = g["dice"].min()
    out["cases"] = g.size()
    return out.round(3)


def as_figures(table: Any, data: str) -> list[dict[str, Any]]:
    """Zoo-entry ``validation`` items (mean voxel and cluster Dice per model) from a score table."""
    figures = []
    for (contrast, model), grp in table.groupby(["contrast", "model"], sort=False):
        for metric, col in (("voxel Dice", "dice"), ("cluster Dice", "cluster_dice")):
            figures.append({"metric": metric, "value": round(float(np.mean(grp[col])), 3),
                            "protocol": f"{model}, {len(grp)} held-out {contrast} phantoms", "data": data})
    return figures
