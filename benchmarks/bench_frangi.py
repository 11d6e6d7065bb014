"""Benchmark: mednet_pvs's Frangi vesselness against ``skimage.filters.frangi``: speed and response
(``speed``), and segmentation quality of the fitted baseline on phantoms (``fit``).

    python benchmarks/bench_frangi.py speed [--repeats 3] [--skimage-python /tmp/skenv/bin/python]
    python benchmarks/bench_frangi.py fit [--out benchmarks/results/frangi_fit_cpu2.txt]

``fit``: on the project's phantoms (MNI152 anatomy at 1 mm and the procedural head, T2w and T1w),
settings are fitted on one phantom and scored on two others (voxel Dice and cluster Dice, from
:func:`mednet_pvs.analysis.case_metrics`), for: the old fit (threshold only, scale-normalised
scales 0.5-1.5 mm, no mask erosion); the threshold only with today's defaults; the grid fit
(:func:`~mednet_pvs.classical.frangi.fit_frangi_grid`: threshold x scales x normalisation x
erosion, polarity from the contrast, then also chosen by the fit); and scikit-image's ``frangi``
with the usual recipe (scales 0.5, 1, 1.5 voxels, its default gamma, brain mask eroded by 3 mm,
threshold tuned on the fitting phantom). Needs scikit-image in this Python.

``speed`` (the default):

A synthetic 1 mm "brain" of 182 x 218 x 182 voxels (an ellipsoid of smooth tissue with bright
tubes of 1-3 mm, zero outside: skull-stripped) is filtered with the same scales and
parameters by both implementations (``scale_normalise=False`` and an explicit ``gamma``, the
conventions skimage uses). skimage is imported when installed, else run in a separate Python that
has it (``--skimage-python``, ``$SKIMAGE_PYTHON``, or ``/tmp/skenv/bin/python``): scikit-image is
not a dependency of mednet_pvs.

Printed: seconds (best of ``--repeats``) for ours inside the brain mask, ours on the whole
volume, skimage (whole volume: it has no mask), the speed ratios, and the agreement of the
responses inside the brain (Pearson r, max |difference|, Dice of the masks at threshold 0.05).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mednet_pvs.classical.frangi import (  # noqa: E402
    FrangiConfig,
    FrangiSegmenter,
    _dice_curve,
    depth_mm,
    fit_frangi_grid,
    fit_threshold,
    frangi_response,
)

SHAPE = (182, 218, 182)
SCALE_SETS = {
    "pvs (0.5, 1, 1.5) mm": (0.5, 1.0, 1.5),
    "middle (1, 1.5, 2) mm": (1.0, 1.5, 2.0),
    "coarse (1.5, 2, 2.5) mm": (1.5, 2.0, 2.5),
}
GAMMA = 5.0

_SKIMAGE_SCRIPT = """
import json, sys, time
import numpy as np
from skimage.filters import frangi
img = np.load(sys.argv[1]); sigmas = json.loads(sys.argv[2]); repeats = int(sys.argv[4])
best = float('inf')
for _ in range(repeats):
    t = time.perf_counter()
    r = frangi(img, sigmas=sigmas, alpha=0.5, beta=0.5, gamma=float(sys.argv[5]), black_ridges=False, mode='reflect')
    best = min(best, time.perf_counter() - t)
np.save(sys.argv[3], r.astype(np.float32))
print(json.dumps({"seconds": best}))
"""


def synthetic_brain(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, brain mask bool) of SHAPE at 1 mm: smooth tissue + ~400 bright tubes."""
    rng = np.random.default_rng(seed)
    c = np.array(SHAPE) / 2
    radii = np.array([70.0, 88.0, 65.0])
    grid = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    brain = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, radii)) <= 1
    tissue = 100 + 8 * ndi.gaussian_filter(rng.normal(size=SHAPE).astype(np.float32), 4) / 0.02
    lines = np.zeros(SHAPE, np.float32)
    for _ in range(400):
        p0 = c + rng.uniform(-0.8, 0.8, 3) * radii
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        pts = np.round(p0 + np.outer(np.linspace(0, rng.uniform(5, 20), 60), d)).astype(int)
        pts = np.clip(pts, 0, np.array(SHAPE) - 1)
        lines[tuple(pts.T)] = rng.uniform(0.5, 1.5)
    tubes = ndi.gaussian_filter(lines, 0.8) * 60
    image = (tissue + tubes + rng.normal(0, 2, SHAPE)) * brain
    return image.astype(np.float32), brain


def _best(fn, repeats: int) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out  # type: ignore[return-value]


def _skimage(image: np.ndarray, sigmas: tuple[float, ...], repeats: int, python: str | None) -> tuple[float, np.ndarray] | None:
    try:
        from skimage.filters import frangi

        return _best(lambda: frangi(image, sigmas=sigmas, gamma=GAMMA, black_ridges=False, mode="reflect"), repeats)
    except ImportError:
        pass
    if not python or not Path(python).exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "img.npy", Path(tmp) / "out.npy"
        np.save(src, image)
        res = subprocess.run(
            [python, "-c", _SKIMAGE_SCRIPT, str(src), json.dumps(list(sigmas)), str(dst), str(repeats), str(GAMMA)],
            capture_output=True, text=True, check=True,
        )
        return json.loads(res.stdout.strip().splitlines()[-1])["seconds"], np.load(dst)


#: (anatomy, contrast) groups of the ``fit`` benchmark; procedural heads on a 96^3 grid at 1 mm.
FIT_GROUPS = (("mni", "T2w"), ("mni", "T1w"), ("procedural", "T2w"), ("procedural", "T1w"))
FIT_SEED, TEST_SEEDS = 201, (202, 203)


def _phantoms(anatomy: str, contrast: str) -> tuple[object, list[object]]:
    from mednet_pvs.synth import PhantomConfig, make_phantom

    kw = {"anatomy": anatomy, "contrast": contrast, "spacing": 1.0, "burden": 2}
    if anatomy == "procedural":
        kw["shape"] = (96, 96, 96)
    cfg = PhantomConfig(**kw)
    return make_phantom(cfg, seed=FIT_SEED), [make_phantom(cfg, seed=s) for s in TEST_SEEDS]


def _scores(masks: list[np.ndarray], tests: list[object]) -> tuple[float, float]:
    from mednet_pvs.analysis import case_metrics

    m = [case_metrics(k, p.label, p.affine) for k, p in zip(masks, tests)]  # type: ignore[attr-defined]
    return float(np.mean([x["dice"] for x in m])), float(np.mean([x["cluster_dice"] for x in m]))


def _skimage_recipe(fit: object, tests: list[object], dark: bool) -> tuple[float, float, float, float]:
    """skimage ``frangi`` (scales 0.5-1.5 voxels, default gamma), response kept > 3 mm deep in the
    brain mask, threshold tuned on ``fit``: ``(voxel Dice, cluster Dice, threshold, seconds)``."""
    from skimage.filters import frangi

    def response(p: object) -> np.ndarray:
        r = frangi(p.image, sigmas=(0.5, 1.0, 1.5), black_ridges=dark, mode="reflect")  # type: ignore[attr-defined]
        return np.where(depth_mm(p.brainmask > 0, p.spacing) > 3.0, r, 0).astype(np.float32)  # type: ignore[attr-defined]

    t0 = time.perf_counter()
    thresholds = np.geomspace(1e-6, 0.99, 400)
    curve = _dice_curve(response(fit), fit.label > 0, thresholds)  # type: ignore[attr-defined]
    t = float(thresholds[int(np.nanargmax(curve))])
    seconds = time.perf_counter() - t0
    dice, cdice = _scores([response(p) > t for p in tests], tests)
    return dice, cdice, t, seconds


def _describe(cfg: FrangiConfig) -> str:
    return (f"scales {','.join(f'{s:g}' for s in cfg.sigmas_mm)} mm, normalised {'yes' if cfg.scale_normalise else 'no'}, "
            f"{cfg.polarity}, erosion {cfg.mask_erosion_mm:g} mm, threshold {cfg.threshold:.3g}")


def fit_benchmark(out: Path | None) -> int:
    """Fit on one phantom, score on two others; print (and write to ``out``) one table per group."""
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "mednet_pvs"], capture_output=True, text=True, check=False).stdout.strip()
    say("python benchmarks/bench_frangi.py fit" + (f" --out {out}" if out else "") +
        f"  (commit {commit or '?'}{', mednet_pvs/ with uncommitted changes' if dirty else ''}; {os.cpu_count()} CPUs)")
    say(f"Frangi baseline on phantoms: settings fitted on seed {FIT_SEED}, scored on seeds {list(TEST_SEEDS)} "
        "(mean voxel Dice / cluster Dice); 1 mm")
    for anatomy, contrast in FIT_GROUPS:
        fit_ph, tests = _phantoms(anatomy, contrast)
        base = FrangiConfig.for_contrast(contrast)
        one = ([fit_ph.image], [fit_ph.label > 0], [fit_ph.brainmask > 0])  # type: ignore[attr-defined]
        sp = [fit_ph.spacing]  # type: ignore[attr-defined]
        say(f"\n[{anatomy} {contrast}, {fit_ph.image.shape}]")  # type: ignore[attr-defined]
        methods = (
            ("old fit: threshold only (normalised, no erosion)", fit_threshold, {"config": base.replace(scale_normalise=True, mask_erosion_mm=0.0)}),
            ("threshold only, today's defaults", fit_threshold, {"config": base}),
            ("threshold only, defaults but normalised scales", fit_threshold, {"config": base.replace(scale_normalise=True)}),
            ("grid fit (fit-frangi)", fit_frangi_grid, {"config": base}),
            ("grid fit, polarity chosen too (--contrast auto)", fit_frangi_grid, {"config": base, "polarities": ("bright", "dark")}),
        )
        for name, fit, kwargs in methods:
            t0 = time.perf_counter()
            cfg = fit(*one, spacings=sp, **kwargs).config  # type: ignore[operator]
            seconds = time.perf_counter() - t0
            seg = FrangiSegmenter(cfg)
            dice, cdice = _scores([seg.predict(p.image, p.spacing, p.brainmask)[1] for p in tests], tests)  # type: ignore[attr-defined]
            say(f"  {name:50s} {dice:.3f} / {cdice:.3f}   fit {seconds:5.1f} s; {_describe(cfg)}")
        try:
            dice, cdice, t, seconds = _skimage_recipe(fit_ph, tests, dark=base.polarity == "dark")
            say(f"  {'skimage frangi, usual recipe':50s} {dice:.3f} / {cdice:.3f}   fit {seconds:5.1f} s; "
                f"scales 0.5,1,1.5 voxels, erosion 3 mm, threshold {t:.3g}")
        except ImportError:
            say("  skimage frangi: not installed in this Python")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", choices=("speed", "fit"), default="speed", help="which benchmark")
    ap.add_argument("--out", type=Path, default=None, help="fit: also write the table to this file")
    ap.add_argument("--repeats", type=int, default=3, help="best of N runs (ours)")
    ap.add_argument("--skimage-repeats", type=int, default=1, help="best of N runs (skimage)")
    ap.add_argument("--skimage-python", default=os.environ.get("SKIMAGE_PYTHON", "/tmp/skenv/bin/python"))
    ap.add_argument("--sets", nargs="*", default=list(SCALE_SETS), help="scale sets to run")
    args = ap.parse_args(argv)
    if args.what == "fit":
        return fit_benchmark(args.out)

    image, brain = synthetic_brain()
    print(f"image {SHAPE} at 1 mm, brain {int(brain.sum())} voxels; gamma={GAMMA}, alpha=beta=0.5, no scale normalisation")
    for name in args.sets:
        sigmas = SCALE_SETS[name]
        cfg = FrangiConfig(sigmas_mm=sigmas, gamma=GAMMA, scale_normalise=False, polarity="bright", mask_erosion_mm=0.0)
        t_mask, ours = _best(lambda: frangi_response(image, 1.0, brain, cfg).response, args.repeats)
        t_full, _ = _best(lambda: frangi_response(image, 1.0, None, cfg).response, args.repeats)
        print(f"\n[{name}]")
        print(f"  ours, brain mask   {t_mask:8.2f} s")
        print(f"  ours, whole volume {t_full:8.2f} s")
        sk = _skimage(image, sigmas, args.skimage_repeats, args.skimage_python)
        if sk is None:
            print("  skimage: not available (install scikit-image in a separate venv and pass --skimage-python)")
            continue
        t_sk, ref = sk
        a, b = ours[brain], ref[brain]
        dice = 2 * np.sum((a > 0.05) & (b > 0.05)) / max(1, np.sum(a > 0.05) + np.sum(b > 0.05))
        print(f"  skimage            {t_sk:8.2f} s")
        print(f"  speed-up: {t_sk / t_mask:.1f}x (brain mask), {t_sk / t_full:.1f}x (whole volume)")
        print(
            f"  response in brain: r = {np.corrcoef(a, b)[0, 1]:.5f}, max |diff| = {np.abs(a - b).max():.4f}, "
            f"mean |diff| = {np.abs(a - b).mean():.2e}, max = {a.max():.3f} vs {b.max():.3f}, Dice@0.05 = {dice:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
