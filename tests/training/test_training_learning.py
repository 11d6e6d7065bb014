"""Proof that it learns, on one CPU core with fixed seeds.

1. ``mednet-pvs fit --config tiny_synthetic`` (a 0.25 M-parameter MedNeXt, 600 steps of 32^3 patches
   from a fresh stream of procedural 64^3 T2w phantoms) reaches validation Dice >= 0.7 on 4
   held-out phantoms (whole volumes, sliding window), and its exported bundle segments new
   phantoms through ``PVSModel.predict`` as well.
2. Fine-tuning that T2w model for 120 steps on 6 T1w phantoms (PVS dark instead of bright) raises
   the Dice on 4 held-out T1w phantoms by a wide margin, and well beyond what the same 120 steps
   reach from untrained weights (same data, same code path: ``finetune`` of an untrained bundle).

The figures are printed in the run's "measured figures" section (visible in the CI log).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mednet_pvs.cli.main import main

MIN_DICE = 0.7  # held-out T2w phantoms after the tiny config's 600 steps
MIN_GAIN = 0.3  # Dice gained on held-out T1w phantoms by fine-tuning
MIN_GAIN_OVER_SCRATCH = 0.2  # ... over the same 120 steps from untrained weights


def report(figures, *lines: str) -> None:
    figures(*lines)


@pytest.fixture(scope="module")
def t2w_run(tmp_path_factory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("t2w")
    t0 = time.perf_counter()
    code = main(["fit", "--config", "tiny_synthetic", "--logger", "csv", "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false"])
    assert code == 0
    return root, time.perf_counter() - t0


@pytest.mark.slow
def test_tiny_config_learns_to_segment_held_out_phantoms(t2w_run, figures):
    from mednet_pvs.analysis import case_metrics
    from mednet_pvs.inference import PVSModel
    from mednet_pvs.synth import PhantomConfig, make_phantom

    root, seconds = t2w_run
    log = pd.read_csv(root / "logs" / "version_0" / "metrics.csv")
    val = log.dropna(subset=["val/dice"])[["epoch", "step", "val/dice", "val/precision", "val/recall", "val/det_f1"]]
    best = float(val["val/dice"].max())
    model = PVSModel.from_pretrained(root / "model", device="cpu")
    assert model.meta["metrics"]["val_dice"] == pytest.approx(best)

    dices = []  # the exported bundle on 3 new phantoms, through the inference API (mirroring TTA on)
    for seed in (101, 102, 103):
        ph = make_phantom(PhantomConfig(anatomy="procedural", shape=(64, 64, 64), contrast="T2w"), seed=seed)
        pred = model.predict((ph.image, ph.affine))
        dices.append(case_metrics(pred.mask, ph.label > 0, ph.affine)["dice"])
    report(figures, f"tiny_synthetic: {int(val['step'].max()) + 1} steps, {len(val)} epochs, {seconds:.0f} s (fit + validation)",
           val.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
           f"best validation Dice {best:.3f}; bundle on 3 new phantoms (predict, TTA): Dice {np.round(dices, 3).tolist()}")
    assert best >= MIN_DICE
    assert float(val["val/dice"].iloc[0]) < 0.5 < float(val["val/dice"].iloc[-1])  # it learnt during this run
    assert np.mean(dices) >= MIN_DICE - 0.05


@pytest.mark.slow
def test_finetuning_t2w_model_on_a_few_t1w_phantoms(t2w_run, tmp_path, figures):
    import torch

    from mednet_pvs.inference import PVSModel
    from mednet_pvs.nets import create_network_from_config
    from mednet_pvs.synth import PhantomConfig, make_cohort
    from mednet_pvs.training import finetune

    root, _ = t2w_run
    cohort = make_cohort(tmp_path / "t1w", 10, PhantomConfig(anatomy="procedural", shape=(64, 64, 64), contrast="T1w"),
                         seed=7, split_fractions=(6, 4, 0))  # 6 training, 4 held-out validation phantoms
    t2w = PVSModel.from_pretrained(root / "model", device="cpu")
    torch.manual_seed(0)  # the same bundle with untrained weights: the from-scratch control
    scratch = PVSModel(create_network_from_config(t2w.network), t2w.network, t2w.preprocessing, t2w.inference,
                       meta=t2w.meta, device="cpu").save_pretrained(tmp_path / "untrained")
    runs, seconds = {}, {}
    for name, source in (("T2w model", root / "model"), ("untrained", scratch)):
        t0 = time.perf_counter()  # 5 epochs x 24 steps (6 phantoms x 8 patches / 2), lr 3e-3
        runs[name] = finetune(source, cohort, tmp_path / f"{name.split()[0].lower()}_t1w", epochs=5, steps_per_epoch=None, lr=3e-3,
                              split="manifest", augmentation="none", samples_per_volume=8, num_workers=0, logger="none")
        seconds[name] = time.perf_counter() - t0
    ft, sc = runs["T2w model"], runs["untrained"]
    report(figures, "fine-tuning on 6 T1w phantoms (PVS dark), 120 steps, Dice on 4 held-out T1w phantoms:",
           *(f"  from {n:<10} before {r.before['dice']:.3f}  after {r.after['dice']:.3f}  (precision {r.after['precision']:.3f}, "
             f"recall {r.after['recall']:.3f}, detection F1 {r.after['det_f1']:.3f}; {seconds[n]:.0f} s)" for n, r in runs.items()))
    assert ft.after["dice"] - ft.before["dice"] >= MIN_GAIN
    assert ft.after["dice"] - sc.after["dice"] >= MIN_GAIN_OVER_SCRATCH  # the T2w pretraining is what helps
    model = PVSModel.from_pretrained(ft.folder, device="cpu")
    assert model.meta["metrics"]["val_dice"] == pytest.approx(ft.after["dice"])
    assert model.meta["metrics_before_finetuning"]["val_dice"] == pytest.approx(ft.before["dice"])
    assert "model" in model.meta["training"]["finetuned_from"]  # the source bundle's name
