"""Benchmark: the held-out evaluation of the any-contrast model (issue 15), next to the per-contrast
bundled models and the fitted Frangi baseline.

    python benchmarks/bench_synth_any.py [--cases 1] [--models M ...] [--give-brainmask] [--save DIR]
    python benchmarks/bench_synth_any.py --quick          # 4 + 2 small procedural cases, a few minutes

Test set (:mod:`mednet_pvs.synth.heldout`): preset contrasts without jitter (T1w, T2w, FLAIR, PD)
x resolution (0.8 mm iso on a 0.8 mm phantom, 1 mm iso, 1 x 1 x 5 mm axial slices) x (whole
head, skull-stripped), deformed more than the training ever was (up to 6 mm, scale 0.8-1.2),
stored on the acquisition grid in RAS or LPS (alternating), seeds from 7,000,000 (the training
stream uses 0..~10^5 and 2**31 on); plus ``legacy-1mm``: the old generator's skull-stripped,
undeformed 1 mm T1w/T2w phantoms, the per-contrast models' own ground. ``--cases`` per group.

Models (``--models``; default ``mednet-pvs-synth-t2w``, ``mednet-pvs-synth-t1w``,
``/work/runs/synth_any/model`` when it exists, and ``frangi``): every model sees every case.
What each is given, as a user would give it:

* a model that finds the brain itself (the any-contrast model): the image alone;
* other networks: the image alone, or with ``--give-brainmask`` the true brain mask on
  skull-stripped inputs (never on whole heads);
* ``frangi``: the true brain mask always (it cannot find the brain; a classical pipeline runs a
  skull-stripper first), with its settings fitted (``fit_frangi``, the ``fit-frangi`` command:
  threshold, scales, normalisation, mask erosion) on one separate skull-stripped case per contrast
  and resolution class from the same held-out generator, never a scored case.

Scores (:func:`mednet_pvs.analysis.case_metrics` on the stored grid, against the labels the
generator stored): voxel Dice, cluster Dice, detection F1; brain-mask Dice for models that return
``pred.brainmask``. Printed per model x group, then per model: the average over the domain groups
(mean of the group means), the worst group, the legacy groups, and the issue's targets (voxel
Dice >= 0.75 on average and >= 0.6 in the worst group, cluster Dice >= 0.8, brain-mask Dice
>= 0.95, the any-contrast model within 0.03 voxel Dice of each per-contrast model on its own
contrast at 1 mm) marked met / not met. Written to ``--out`` (``.json`` and ``.txt``) with the
command, seeds, versions and timings.

``--quick``: T1w and T2w x 1 mm x both heads, plus legacy-1mm, on the small procedural anatomy
(96^3 grid) instead of the MNI152 brain, networks with tile step 1.0 (no overlap; ``--step`` to
change): a check that the script runs, not the evaluation (its output says so). On 2 shared CPU
cores a whole-head 1 mm case costs minutes per network at the models' own step 0.5.
"""
from __future__ import annotations

import argparse
import csv
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mednet_pvs.synth.heldout import (
    HELDOUT_CONTRASTS,
    HELDOUT_OVERRIDES,
    LEGACY,
    RESOLUTIONS,
    HeldoutCase,
    HeldoutGroup,
    fit_case,
    heldout_cases,
    heldout_groups,
    make_heldout_case,
)

ANY_MODEL = Path("/work/runs/synth_any/model")
FRANGI = "frangi"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "synth_any_eval_cpu2"
QUICK = {"contrasts": ("T1w", "T2w"), "resolutions": ("1mm",), "anatomy": "procedural", "step": 1.0}
METRICS = ("dice", "cluster_dice", "det_f1", "brain_dice")
#: issue 15's targets: (metric, statistic over groups, bound)
TARGETS = (("dice", "average", 0.75), ("dice", "worst", 0.6), ("cluster_dice", "average", 0.8),
           ("brain_dice", "average", 0.95))
#: the any-contrast model may fall at most this far (voxel Dice) below a per-contrast model on its contrast at 1 mm
WITHIN = 0.03
ONE_MM = ("1mm", LEGACY)


def default_models() -> list[str]:
    names = ["mednet-pvs-synth-t2w", "mednet-pvs-synth-t1w"]
    if (ANY_MODEL / "config.json").is_file():
        names.append(str(ANY_MODEL))
    return names + [FRANGI]


# ------------------------------------------------------------------------------------ the models

def load_models(names: list[str], device: str | None) -> dict[str, Any]:
    """``{display name: model}``; ``frangi`` maps to ``None`` (fitted per contrast and resolution)."""
    from mednet_pvs import load_pretrained

    models: dict[str, Any] = {}
    for n in names:
        if n == FRANGI:
            models[FRANGI] = None
            continue
        m = load_pretrained(n, device=device)
        key = m.name if m.name not in models else n
        models[key] = m
    return models


def finds_brain(model: Any) -> bool:
    return bool(getattr(model, "predicts_brain", False))


def own_contrast(model: Any) -> str | None:
    """The contrast a per-contrast model was trained on (its bundle's ``meta.contrast``), else None."""
    c = str((getattr(model, "meta", None) or {}).get("contrast", ""))
    return c if c in HELDOUT_CONTRASTS and not finds_brain(model) else None


def fit_frangi_for(case: HeldoutCase, anatomy: str) -> tuple[Any, dict[str, Any]]:
    """The Frangi baseline fitted (``fit_frangi``, all settings) on the one fit case of ``case``'s
    contrast and resolution, written to a temporary cohort as ``fit-frangi`` would read it."""
    from mednet_pvs.inference.frangi_model import fit_frangi

    t0 = time.perf_counter()
    ph = make_heldout_case(case, anatomy=anatomy)
    with tempfile.TemporaryDirectory() as tmp:
        paths = ph.save(tmp, case.name)
        manifest = Path(tmp) / "manifest.csv"
        with manifest.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["subject", "image", "label", "brainmask"])
            w.writerow([case.name, paths["image"], paths["label"], paths["brainmask"]])
        model, fit = fit_frangi(manifest, case.group.contrast)
    c = model.config
    info = {"fit_case": case.name, "fit_seed": case.seed, "train_dice": round(float(fit.best_dice), 4),
            "threshold": c.threshold, "sigmas_mm": list(c.sigmas_mm), "scale_normalise": c.scale_normalise,
            "polarity": c.polarity, "mask_erosion_mm": c.mask_erosion_mm, "seconds": round(time.perf_counter() - t0, 1)}
    return model, info


# ------------------------------------------------------------------------------------- one case

def brainmask_for(name: str, model: Any, group: HeldoutGroup, give: bool) -> str:
    """What the model is given: ``"true"`` or ``"none"`` (see the module docstring)."""
    if name == FRANGI:
        return "true"
    if finds_brain(model) or group.head or not give:
        return "none"
    return "true"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    n = int(a.sum()) + int(b.sum())
    return float("nan") if n == 0 else 2.0 * int((a & b).sum()) / n


def score_case(case: HeldoutCase, ph: Any, models: dict[str, Any], frangi: Any, give: bool, save: Path | None,
               step: float | None = None) -> list[dict]:
    from mednet_pvs.analysis import case_metrics

    rows = []
    g = case.group
    for name, model in models.items():
        m = frangi if name == FRANGI else model
        given = brainmask_for(name, model, g, give)
        t0 = time.perf_counter()
        pred = m.predict((ph.image, ph.affine), brainmask=(ph.brainmask, ph.affine) if given == "true" else None, step=step)
        seconds = time.perf_counter() - t0
        met = case_metrics(pred.mask, ph.label, ph.affine)
        bm = getattr(pred, "brainmask", None)
        rows.append({"model": name, "group": g.name, "contrast": g.contrast, "resolution": g.resolution, "fov": g.fov,
                     "case": case.name, "seed": case.seed, "orientation": case.orientation, "brainmask_given": given,
                     **{k: _finite(met[k]) for k in ("dice", "cluster_dice", "det_f1")},
                     "brain_dice": _finite(dice(bm, ph.brainmask)) if bm is not None else None,
                     "n_ref": met["n_ref"], "n_pred": met["n_pred"], "seconds": round(seconds, 2)})
        if save is not None:
            pred.save(save, f"{case.name}_{name.replace('/', '_')}")
    return rows


# --------------------------------------------------------------------------------------- summary

def _finite(v: Any) -> float | None:
    """``None`` for NaN (a ratio of two empty masks: left out of every mean), else the float."""
    return None if v is None or not np.isfinite(v) else float(v)


def _mean(values: list[Any]) -> float | None:
    v = [float(x) for x in values if _finite(x) is not None]
    return float(np.mean(v)) if v else None


def group_table(rows: list[dict]) -> list[dict]:
    """Per model x group: the mean of each metric over its cases, and seconds per case."""
    out = []
    keys = list(dict.fromkeys((r["model"], r["group"]) for r in rows))
    for model, group in keys:
        sel = [r for r in rows if r["model"] == model and r["group"] == group]
        out.append({"model": model, "group": group, "contrast": sel[0]["contrast"], "resolution": sel[0]["resolution"],
                    "fov": sel[0]["fov"], "n": len(sel), "brainmask_given": sel[0]["brainmask_given"],
                    **{k: _mean([r[k] for r in sel]) for k in METRICS},
                    "seconds": _mean([r["seconds"] for r in sel])})
    return out


def _fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def model_summary(table: list[dict], model: str) -> dict[str, Any]:
    """Average (mean of group means) and worst group over the domain groups; the legacy mean."""
    dom = [t for t in table if t["model"] == model and t["resolution"] != LEGACY]
    leg = [t for t in table if t["model"] == model and t["resolution"] == LEGACY]
    out: dict[str, Any] = {"groups": len(dom)}
    for k in METRICS:
        vals = [t for t in dom if t[k] is not None]
        out[f"{k}_average"] = _mean([t[k] for t in vals])
        worst = min(vals, key=lambda t: t[k]) if vals else None
        out[f"{k}_worst"] = None if worst is None else worst[k]
        out[f"{k}_worst_group"] = None if worst is None else worst["group"]
        out[f"{k}_legacy"] = _mean([t[k] for t in leg])
    return out


def targets_for(summary: dict[str, Any]) -> list[dict]:
    res = []
    for metric, stat, bound in TARGETS:
        v = summary.get(f"{metric}_{stat}")
        res.append({"target": f"{metric} {stat} >= {bound}", "value": v,
                    "status": "not measured" if v is None else ("met" if v >= bound else "not met")})
    return res


def compare_any(table: list[dict], any_name: str, models: dict[str, Any]) -> list[dict]:
    """The any-contrast model against each per-contrast model on its own contrast at 1 mm (1 mm
    domain groups, both fields of view, and legacy-1mm): voxel Dice difference, met when >= -0.03."""
    res = []
    for name, m in models.items():
        c = own_contrast(m) if name != FRANGI else None
        if c is None:
            continue
        for t in table:
            if t["model"] != name or t["contrast"] != c or t["resolution"] not in ONE_MM or t["dice"] is None:
                continue
            a = next((u for u in table if u["model"] == any_name and u["group"] == t["group"]), None)
            if a is None or a["dice"] is None:
                continue
            d = a["dice"] - t["dice"]
            res.append({"target": f"{any_name} vs {name} on {t['group']}", "any": a["dice"], "per_contrast": t["dice"],
                        "difference": d, "status": "met" if d >= -WITHIN else "not met"})
    return res


def render(table: list[dict], summaries: dict[str, dict], targets: dict[str, list[dict]], comparison: list[dict],
           any_name: str | None) -> list[str]:
    lines = [(f"{'model':24s} {'group':28s} {'n':>2s}  {'voxDice':>7s} {'clDice':>6s} {'detF1':>6s} {'brain':>6s}  "
             f"{'s/case':>6s}  brain mask given")]
    for t in table:
        lines.append(f"{t['model'][:24]:24s} {t['group']:28s} {t['n']:2d}  {_fmt(t['dice']):>7s} {_fmt(t['cluster_dice'])} "
                     f"{_fmt(t['det_f1'])} {_fmt(t['brain_dice'])}  {t['seconds']:6.1f}  {t['brainmask_given']}")
    for model, s in summaries.items():
        lines.append("")
        lines.append(f"[{model}] over {s['groups']} groups: average voxel Dice {_fmt(s['dice_average']).strip()}, "
                     f"cluster Dice {_fmt(s['cluster_dice_average']).strip()}, det F1 {_fmt(s['det_f1_average']).strip()}, "
                     f"brain Dice {_fmt(s['brain_dice_average']).strip()}; worst group voxel Dice "
                     f"{_fmt(s['dice_worst']).strip()} ({s['dice_worst_group']}); legacy-1mm voxel Dice "
                     f"{_fmt(s['dice_legacy']).strip()}")
        for t in targets[model]:
            lines.append(f"    target {t['target']:32s} {_fmt(t['value']).strip():>6s}  {t['status']}")
    lines.append("")
    if any_name is None:
        lines.append("any-contrast model within 0.03 of the per-contrast models at 1 mm: not measured (no model that finds the brain)")
    else:
        for c in comparison:
            lines.append(f"target {c['target']}: {c['any']:.3f} vs {c['per_contrast']:.3f} "
                         f"({c['difference']:+.3f}, within {WITHIN}): {c['status']}")
    return lines


def versions() -> dict[str, str]:
    import torch

    import mednet_pvs

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {"mednet_pvs": mednet_pvs.__version__, "git_commit": commit + (" (+ uncommitted changes)" if dirty else ""),
            "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "torch_threads": str(torch.get_num_threads())}


# ------------------------------------------------------------------------------------------ main

def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=None,
                    help="model names / bundle folders, and 'frangi' (default: the per-contrast bundled models, "
                         f"{ANY_MODEL} when it exists, frangi)")
    ap.add_argument("--cases", type=int, default=1, help="cases per group (default 1)")
    ap.add_argument("--contrasts", nargs="+", choices=HELDOUT_CONTRASTS, default=None, help="default: all four")
    ap.add_argument("--resolutions", nargs="+", choices=tuple(RESOLUTIONS), default=None, help="default: all three")
    ap.add_argument("--no-legacy", action="store_true", help="leave out the old generator's legacy-1mm group")
    ap.add_argument("--give-brainmask", action="store_true",
                    help="give networks that do not find the brain the true brain mask on skull-stripped inputs")
    ap.add_argument("--anatomy", choices=("mni", "procedural"), default=None,
                    help="the held-out cases' anatomy (default mni; --quick: procedural, the small 96^3 head: ~10x cheaper)")
    ap.add_argument("--quick", action="store_true", help="T1w+T2w x 1 mm x both heads (+ legacy) on the small procedural anatomy")
    ap.add_argument("--save", type=Path, default=None, help="write each case's image, truth and predictions here")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results stem: writes <out>.json and <out>.txt")
    ap.add_argument("--step", type=float, default=None,
                    help="tile step of the networks, a fraction of the patch (default: each model's own; --quick: 1.0)")
    ap.add_argument("--device", default=None, help="torch device of the networks (default: CUDA when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if not 1 <= args.cases <= 100:
        ap.error(f"--cases must be in [1, 100], not {args.cases}")
    if args.step is not None and not 0.1 <= args.step <= 1.0:
        ap.error(f"--step must be in [0.1, 1], not {args.step}")
    if args.step is None and args.quick:
        args.step = QUICK["step"]
    if args.anatomy is None:
        args.anatomy = QUICK["anatomy"] if args.quick else "mni"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    from mednet_pvs.io import write_json, write_text

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    contrasts = args.contrasts or (QUICK["contrasts"] if args.quick else HELDOUT_CONTRASTS)
    resolutions = args.resolutions or (QUICK["resolutions"] if args.quick else tuple(RESOLUTIONS))
    anatomy = args.anatomy
    groups = heldout_groups(contrasts, resolutions, legacy=not args.no_legacy)
    cases = heldout_cases(groups, args.cases)
    names = args.models or default_models()
    models = load_models(names, args.device)
    any_name = next((n for n, m in models.items() if n != FRANGI and finds_brain(m)), None)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    label = ("QUICK RUN (procedural 96^3 anatomy, T1w/T2w x 1 mm only, tile step 1.0): a check that the evaluation runs, "
             "not the evaluation" if args.quick else f"held-out evaluation ({'MNI152-based' if anatomy == 'mni' else 'procedural 96^3'} anatomy)")
    print(f"{label}; {len(cases)} cases in {len(groups)} groups; models: {', '.join(models)}; "
          f"brain mask given to networks that do not find the brain: {'true mask on skull-stripped inputs' if args.give_brainmask else 'none'}",
          flush=True)

    frangi_fits: dict[tuple[str, str], tuple[Any, dict]] = {}
    rows: list[dict] = []
    case_info = []
    for case in cases:
        if FRANGI in models:
            fc = fit_case(case.group)
            key = (fc.group.contrast, fc.group.resolution)
            if key not in frangi_fits:
                frangi_fits[key] = fit_frangi_for(fc, anatomy)
                print(f"  frangi fitted on {fc.name} (seed {fc.seed}): {frangi_fits[key][1]}", flush=True)
        t0 = time.perf_counter()
        ph = make_heldout_case(case, anatomy=anatomy)
        make_s = time.perf_counter() - t0
        if args.save is not None:
            ph.save(args.save, case.name)
        fr = frangi_fits.get((case.group.contrast, case.group.resolution), (None, None))[0]
        new = score_case(case, ph, models, fr, args.give_brainmask, args.save, args.step)
        rows += new
        case_info.append({"case": case.name, "group": case.group.name, "seed": case.seed, "orientation": case.orientation,
                          "shape": list(ph.image.shape), "voxel_mm": [round(float(v), 3) for v in ph.spacing],
                          "pvs_voxels": int(ph.label.sum()), "make_seconds": round(make_s, 1)})
        print(f"  {case.name:32s} seed {case.seed} {case.orientation} {'x'.join(map(str, ph.image.shape)):>12s} "
              f"make {make_s:5.1f} s | " + "  ".join(f"{r['model']}: {_fmt(r['dice']).strip()}" for r in new), flush=True)

    table = group_table(rows)
    summaries = {m: model_summary(table, m) for m in models}
    targets = {m: targets_for(s) for m, s in summaries.items()}
    comparison = compare_any(table, any_name, models) if any_name else []
    lines = [label, ""] + render(table, summaries, targets, comparison, any_name)
    total = time.perf_counter() - t_start
    command = shlex.join([Path(sys.executable).as_posix(), *sys.argv]) if argv is None else shlex.join(["bench_synth_any.py", *argv])
    lines += ["", f"command: {command}", f"wall time {total:.0f} s; seeds {[c.seed for c in cases]}"]
    print("\n" + "\n".join(lines[2:]), flush=True)
    result = {
        "label": label, "quick": bool(args.quick), "command": command, "anatomy": anatomy, "wall_seconds": round(total, 1), "tile_step": args.step or "each model's own",
        "cpu": platform.processor() or platform.machine(), "versions": versions(),
        "test_set": {"generator": "mednet_pvs.synth.heldout", "overrides": HELDOUT_OVERRIDES, "cases_per_group": args.cases,
                     "groups": [g.name for g in groups], "cases": case_info},
        "models": {n: ("fitted Frangi (true brain mask)" if m is None else getattr(m, "name", n)) for n, m in models.items()},
        "brainmask_policy": {"finds_brain": "none", "other_networks": "true mask on skull-stripped inputs" if args.give_brainmask else "none",
                             "frangi": "true mask"},
        "frangi_fits": {f"{c} {r}": info for (c, r), (_, info) in frangi_fits.items()},
        "groups": table, "summary": summaries, "targets": targets,
        "any_vs_per_contrast": comparison if any_name else "not measured (no model that finds the brain)",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, args.out.with_suffix(".json"))
    write_text("\n".join(lines) + "\n", args.out.with_suffix(".txt"))
    print(f"wrote {args.out.with_suffix('.json')} and .txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
