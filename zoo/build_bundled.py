#!/usr/bin/env python3
"""Turn a training run of a bundled synthetic-data model into the folder shipped in the package.

    # 1. train (CPU; the command is recorded in the entry)
    mednet-pvs fit --config synth_t2w --logger csv --trainer.default_root_dir runs/synth_t2w
    # 2. score the run's best epoch on held-out phantoms next to a fitted Frangi baseline
    python zoo/build_bundled.py runs/synth_t2w/model mednet-pvs-synth-t2w --score
    #    -> paste the printed figures into mednet_pvs/zoo/entries/<name>.yaml
    # 3. write mednet_pvs/zoo/bundled/<name>/ (float16 weights, config.json with the entry's meta, model card)
    python zoo/build_bundled.py runs/synth_t2w/model mednet-pvs-synth-t2w --write

Inference settings of the shipped model (``--patch``, ``--mirror``, ``--pad``, ``--back``, ``--brain``,
``--brain-keep``, ``--finest-spacing``, ``--min-cluster``) may differ from the training run's defaults; ``--member RUN``
(repeatable) adds another run of the same network as an ensemble member, and ``--soup`` ships the mean of
the networks' weights as one network instead (runs fine-tuned from one start); the scores are always taken with the
settings that are shipped. Given the shipped folder itself instead of a run (new inference
settings for the same weights), the bundle keeps its record of the runs it was built from::

    python zoo/build_bundled.py mednet_pvs/zoo/bundled/mednet-pvs-synth-any mednet-pvs-synth-any --patch 64 \
        --pad replicate --brain auto --brain-keep 0.8 --finest-spacing 0.8 --threshold 0.5 --min-cluster 2 --write

and a bundle given as a run or ``--member`` brings its own record; the shipped soup (session 23) was built
from the session-22 two-member bundle and stage 11's run, from the folder that holds ``runs/``::

    python zoo/build_bundled.py <session-22 bundle> mednet-pvs-synth-any --member runs/synth_any_cpu11/model \
        --patch 64 --pad replicate --brain auto --brain-keep 0.8 --finest-spacing 0.8 --soup --threshold 0.5 \
        --min-cluster 2 --write

Re-shipped from that soup (one network now: without ``--soup``), the record of the averaging stays too.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from mednet_pvs.inference import PVSModel
from mednet_pvs.inference.settings import BRAIN_MASK, OUTPUT_RESAMPLING
from mednet_pvs.nets.state_dicts import average_state_dicts, soup_spread
from mednet_pvs.zoo import get_entry
from mednet_pvs.zoo.phantom_scores import (
    FRANGI_FIT_SEEDS,
    TEST_SEEDS,
    as_figures,
    fit_frangi_on_phantoms,
    fit_threshold_on_phantoms,
    score_on_phantoms,
    summary,
)
from mednet_pvs.zoo.catalog import BUNDLED_DIR

METRICS_NOTE = ("Measured by `zoo/build_bundled.py` on synthetic phantoms this model never saw (seeds "
                f"{TEST_SEEDS[0]}-{TEST_SEEDS[-1]}); its probability threshold and the Frangi baseline's threshold "
                f"were both fitted on other phantoms (seeds {FRANGI_FIT_SEEDS[0]}-{FRANGI_FIT_SEEDS[-1]}). "
                "Synthetic figures say nothing about real scans.")


ANY_METRICS_NOTE = ("Measured by `benchmarks/bench_synth_any.py --anatomy procedural --step 1.0` on the held-out set "
                    "(mednet_pvs.synth.heldout: seeds from 7,000,000, never in training), one case per group, from the "
                    "image alone; the PVS threshold was fitted on the groups' separate fit cases "
                    "(`benchmarks/fit_threshold_synth_any.py`). Synthetic figures say nothing about real scans.")


def _run_records(path: Path, model: PVSModel) -> list[dict]:
    """What a member was trained as: a training run's epoch and step, or a shipped bundle's own
    record of the runs it was built from (its folder is not a run)."""
    if model.meta.get("member_runs"):
        return list(model.meta["member_runs"])
    return [{"from": str(path), **{k: model.meta.get("training", {}).get(k) for k in ("epoch", "global_step")}}]


def shipped_model(run_model: Path, name: str, patch: int | None, mirror: str, threshold: float | None = None,
                  pad: str | None = None, back: str | None = None, brain: str | None = None,
                  brain_keep: float | None = None, members: Sequence[Path] = (),
                  finest_spacing: float | None = None, min_cluster: float | None = None, soup: bool = False,
                  max_spread: float = 0.3) -> PVSModel:
    model = PVSModel.from_pretrained(run_model, device="cpu")
    runs = [model]
    for path in members:  # more training runs of the same network: an ensemble (probabilities averaged)
        other = PVSModel.from_pretrained(path, device="cpu")
        for what in ("network", "preprocessing", "labels"):
            mine, theirs = getattr(model, what), getattr(other, what)
            if what == "preprocessing" and finest_spacing is not None:  # what --finest-spacing sets for all need not agree
                mine, theirs = (x.replace(finest_spacing=finest_spacing) for x in (mine, theirs))
            mine, theirs = (x.to_dict() if hasattr(x, "to_dict") else x for x in (mine, theirs))
            if mine != theirs:
                raise SystemExit(f"error: --member {path}: its {what} differs from {run_model}'s")
        runs.append(other)
    changes: dict = {"mirror_axes": [] if mirror == "none" else [int(a) for a in mirror.split(",")]}
    if patch:
        changes["patch_size"] = [patch] * 3
    if pad:
        changes["pad_mode"] = pad
    if back:
        changes["output_resampling"] = back
    if brain:
        changes["brain_mask"] = brain
    if brain_keep is not None:
        changes["brain_keep"] = brain_keep
    if threshold is not None:
        changes["threshold"] = threshold
    if min_cluster is not None:
        changes["min_cluster_mm3"] = min_cluster
    inf = model.inference.updated(changes)
    pre = model.preprocessing if finest_spacing is None else model.preprocessing.replace(finest_spacing=finest_spacing)
    entry = get_entry(name)
    run = model.meta.get("training", {})
    # what fine-tuning reads back (lr, optimiser, deep-supervision targets) next to the entry's record
    training = {**entry.meta().get("training", {}), **{k: run[k] for k in ("optimizer", "lr", "target_downsampling") if k in run}}
    note = ANY_METRICS_NOTE if entry.contrast == "any" else METRICS_NOTE
    run_record = {k: run.get(k) for k in ("epoch", "global_step", "checkpoint")}
    meta = {**entry.meta(), "training": training, "metrics_note": note,
            # a shipped bundle as the first network is no run (its runs are in member_runs)
            **({"run": run_record} if not members or any(v is not None for v in run_record.values()) else {}),
            **({"member_runs": [rec for p, r in zip([run_model, *members], runs) for rec in _run_records(p, r)]} if members else {}),
            "run_val_metrics": model.meta.get("metrics", {})}
    if ("run" in model.meta or "member_runs" in model.meta) and model.meta.get("zoo_entry") == name and not members:
        # re-shipped from the shipped bundle itself (new inference settings, refreshed entry): its
        # record of the training runs stays, as the runs' folders may be long gone
        meta.update({k: model.meta[k] for k in ("run", "member_runs", "run_val_metrics", "weights_averaged") if k in model.meta})
    nets = [net for r in runs for net in r.networks]
    if soup:  # one network with the members' mean weights instead of an ensemble: half the time for two
        if len(nets) < 2:
            raise SystemExit(f"error: --soup needs two or more networks (runs, members or a bundle's), {run_model} gives {len(nets)}")
        sds = [n.state_dict() for n in nets]
        spread = soup_spread(sds)
        if spread > max_spread:
            raise SystemExit(f"error: --soup: the networks lie {spread:.2f} apart (largest distance from their mean, relative "
                             f"to its norm; --max-spread {max_spread}): not fine-tuned from one start, so their mean is no "
                             "network; ship them as an ensemble (without --soup)")
        nets[0].load_state_dict(average_state_dicts(sds))
        meta["weights_averaged"] = {"networks": len(nets), "how": "equal-weight mean of the member networks' weights "
                                    "(a model soup; the members fine-tuned from one start)", "spread": round(spread, 4)}
        nets = nets[:1]
    return PVSModel(nets, model.network, pre, inf, name=name, meta=meta, device="cpu",
                    labels=model.labels)  # the run's classes (background/brain/PVS for the any-contrast model)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_model", type=Path, help="the training run's exported bundle (runs/<name>/model)")
    p.add_argument("name", help="zoo entry name (its YAML must exist)")
    p.add_argument("--patch", type=int, default=64, help="inference tile (default 64)")
    p.add_argument("--mirror", default="none", help="test-time mirroring axes, e.g. 0,1,2, or none (default)")
    p.add_argument("--pad", choices=("constant", "replicate"), help="padding of volumes smaller than the tile "
                   "(default: the run's, i.e. zeros): 'replicate' for models that normalise inside a brain mask")
    p.add_argument("--back", choices=OUTPUT_RESAMPLING, help="how probabilities go back to the input grid "
                   "(default: the run's, i.e. linear): 'area' averages over thick slices' voxels first")
    p.add_argument("--brain", choices=BRAIN_MASK, help="models with a brain class: where the predicted brain mask comes "
                   "from (default: the run's, i.e. first_pass): 'both_passes' keeps it where the second pass agrees, "
                   "'auto' does so on whole heads and keeps the image's non-zero voxels on skull-stripped ones")
    p.add_argument("--brain-keep", type=float, help="with --brain both_passes/auto: the second pass's brain probability "
                   "above which a first-pass voxel stays brain (default: the run's, i.e. 0.5)")
    p.add_argument("--finest-spacing", type=float, help="keep scan axes finer than the run's target spacing down to "
                   "this size (mm) instead of resampling them to it (preprocessing.finest_spacing; default: the run's)")
    p.add_argument("--member", type=Path, action="append", default=[], help="another run's exported bundle of the same "
                   "network, preprocessing and labels: shipped as one more ensemble member (repeatable)")
    p.add_argument("--soup", action="store_true", help="ship one network whose weights are the mean of the runs' "
                   "(the run's, --member's, or a shipped bundle's ensemble members: a model soup) instead of an ensemble")
    p.add_argument("--max-spread", type=float, default=0.3, help="with --soup: refuse networks farther apart than this "
                   "(largest distance from their mean weights, relative to its norm; default 0.3: runs fine-tuned from "
                   "one start lie about 0.05 apart, random starts 0.65 or more)")
    p.add_argument("--min-cluster", type=float, help="remove predicted PVS clusters smaller than this (mm^3; "
                   "inference.min_cluster_mm3; default: the run's)")
    p.add_argument("--threshold", default="fit", help="probability threshold: a number, or 'fit' (best mean Dice on the "
                   "Frangi-fit phantoms, never the test ones; default)")
    p.add_argument("--score", action="store_true", help="score on held-out phantoms and print entry figures")
    p.add_argument("--write", action="store_true", help="write mednet_pvs/zoo/bundled/<name>/")
    args = p.parse_args(argv)
    contrast = get_entry(args.name).contrast
    model = shipped_model(args.run_model, args.name, args.patch, args.mirror, pad=args.pad, back=args.back, brain=args.brain,
                           brain_keep=args.brain_keep, members=args.member, finest_spacing=args.finest_spacing,
                           min_cluster=args.min_cluster, soup=args.soup, max_spread=args.max_spread)
    if args.threshold == "fit":
        threshold, curve = fit_threshold_on_phantoms(model, contrast, FRANGI_FIT_SEEDS)
        print(f"threshold {threshold:.2f} (mean Dice on seeds {list(FRANGI_FIT_SEEDS)}: "
              + ", ".join(f"{t:.2f}: {d:.3f}" for t, d in curve.items()) + ")")
    else:
        threshold = float(args.threshold)
    model.inference = model.inference.updated({"threshold": threshold})  # the runs are loaded once, members included
    if args.score:
        frangi = fit_frangi_on_phantoms(contrast)
        table = score_on_phantoms({args.name: model, "frangi (fitted)": frangi}, contrast)
        print(table.to_string())
        print(summary(table).to_string())
        print("validation:")
        for f in as_figures(table, f"synthetic 1 mm MNI152-based {contrast} phantoms (mednet_pvs.synth), burden 2"):
            print(f"  - metric: {f['metric']}\n    value: {f['value']}\n    protocol: {f['protocol']}\n    data: {f['data']}")
    if args.write:
        folder = BUNDLED_DIR / str(get_entry(args.name).weights.folder)
        model.save_pretrained(folder, load_as=args.name, dtype=torch.float16)
        size = (folder / "model.safetensors").stat().st_size
        print(f"wrote {folder} (model.safetensors {size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
