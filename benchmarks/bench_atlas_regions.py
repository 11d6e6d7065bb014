"""Benchmark: regions without FreeSurfer (``mednet_pvs.analysis.atlas``) on deformed phantoms.

    python benchmarks/bench_atlas_regions.py [--cases 3] [--ants] [--bspline] [--out benchmarks/results/atlas_regions_cpu2]

Each case is a 1 mm MNI phantom (T2w, T1w, random contrast in turn) whose anatomy is moved into a
"scanner space" by a random affine (rotation up to 10 deg about each axis, scale 0.9-1.1 per axis,
shift up to 8 mm, plus a scanner origin up to 20 mm away) and a smooth random deformation
(displacement per axis Gaussian-smoothed noise with a 2 mm standard deviation, correlation ~20 mm),
image, true region map and PVS label alike (linear / nearest neighbour). The synth package has no
deformation of its own, so it is done here.

For every case and method the atlas's regions on the scan grid are compared with the true ones:
Dice per region group (wm, bg, midbrain, hippocampus: ``REGION_GROUPS``), and the per-region PVS
counts of the true PVS mask read with the atlas regions against those read with the true regions
(relative difference, and the share of PVS put in the same group). Methods:

* ``sitk``: what ``predict`` does (:func:`~mednet_pvs.analysis.atlas.register_atlas`).
* ``true-affine``: the atlas moved by the true affine part of the deformation (the best any affine
  can do: what is left is the non-linear part).
* ``ants`` (``--ants``, ANTsPy importable): ``ants.registration(type_of_transform="Affine")`` of the
  same template to the same scan (its defaults: Mattes MI, 4 levels).
* ``sitk+bspline`` (``--bspline``): the affine, then a coarse BSpline (mesh of 40 mm, 3 mm level,
  L-BFGS-B 30 iterations, Mattes MI) - to see whether a deformable stage pays for its time.

Times are wall and process CPU seconds of the registration alone (the 1 mm atlas is built once per
process first, reported separately); the 2 CPU cores of the machine are shared, so the load average
is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mednet_pvs.analysis import atlas as atlas_mod
from mednet_pvs.analysis.burden import pvs_burden
from mednet_pvs.analysis.regions import REGION_GROUPS, group_index
from mednet_pvs.synth import make_phantom

GROUPS = list(REGION_GROUPS)
CONTRASTS = ("T2w", "T1w", "random")


def _rot(axis: int, t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    m = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    m[i, i], m[j, j], m[i, j], m[j, i] = c, c, -s, s
    return m


def deform(ph, seed: int, rot_deg: float = 10.0, scale: float = 0.1, shift: float = 8.0, amp: float = 2.0, corr_mm: float = 20.0):
    """The phantom moved into a scanner space: (image, true regions, true PVS label, scan affine,
    true affine part as a 4x4 scan mm -> MNI mm)."""
    rng = np.random.default_rng(seed)
    ang = np.deg2rad(rng.uniform(-rot_deg, rot_deg, 3))
    lin = _rot(0, ang[0]) @ _rot(1, ang[1]) @ _rot(2, ang[2]) @ np.diag(rng.uniform(1 - scale, 1 + scale, 3))
    a, shape = ph.affine, ph.image.shape
    centre = a[:3, :3] @ (np.array(shape) - 1) / 2 + a[:3, 3]
    t = rng.uniform(-shift, shift, 3)
    h = float(a[0, 0])
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")).reshape(3, -1)
    x = a[:3, :3] @ grid + a[:3, 3:4]  # scan voxel -> its MNI-frame mm before the origin change
    y = lin @ (x - centre[:, None]) + (centre + t)[:, None]  # -> MNI mm (affine part)
    cell = max(1, int(corr_mm / h))
    for k in range(3):
        n = rng.standard_normal(tuple(max(2, s // cell + 2) for s in shape))
        n = ndi.zoom(ndi.gaussian_filter(n, 1.0), [s / m for s, m in zip(shape, n.shape)], order=3)[: shape[0], : shape[1], : shape[2]]
        y[k] += (n / (n.std() + 1e-9) * amp).ravel()
    inv = np.linalg.inv(a)
    ijk = inv[:3, :3] @ y + inv[:3, 3:4]
    del grid, x, y
    image = ndi.map_coordinates(ph.image, ijk, order=1).reshape(shape).astype(np.float32)
    regions = ndi.map_coordinates(ph.regions, ijk, order=0).reshape(shape)
    label = ndi.map_coordinates(ph.label, ijk, order=0).reshape(shape)
    scan_aff = a.copy()
    scan_aff[:3, 3] += rng.uniform(-20, 20, 3)  # another scanner origin
    # true affine part, scan mm -> MNI mm: undo the origin change, then the affine above
    undo = np.eye(4)
    undo[:3, 3] = a[:3, 3] - scan_aff[:3, 3]
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = centre + t - lin @ centre
    return image, regions, label, scan_aff, aff @ undo


def dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    gp, gt = group_index(pred), group_index(truth)
    return {k: float(2 * np.sum((gp == i) & (gt == i)) / max(1, np.sum(gp == i) + np.sum(gt == i))) for i, k in enumerate(GROUPS)}


def counts(label: np.ndarray, affine: np.ndarray, regions) -> tuple[dict[str, int], np.ndarray]:
    b = pvs_burden(label, affine, regions=regions)
    return {k: int(b.per_region.get(k, {}).get("count", 0)) for k in GROUPS}, b.clusters["region"].to_numpy()


def _ants_affine(image: np.ndarray, affine: np.ndarray, template: np.ndarray, t_aff: np.ndarray) -> np.ndarray:
    """ANTsPy affine of the template to the scan; returns the 4x4 scan mm -> MNI mm (RAS)."""
    import ants

    def to_ants(a: np.ndarray, aff: np.ndarray):  # an ants image; LPS physical space, as ITK's
        flip = np.diag([-1.0, -1.0, 1.0])
        sp = np.sqrt((aff[:3, :3] ** 2).sum(0))
        img = ants.from_numpy(a.astype(np.float32), origin=list(flip @ aff[:3, 3]), spacing=list(sp),
                              direction=flip @ (aff[:3, :3] / sp))
        return img

    fixed, moving = to_ants(image, affine), to_ants(template, t_aff)
    out = ants.registration(fixed, moving, type_of_transform="Affine")
    tx = ants.read_transform(out["fwdtransforms"][0])
    p = np.array(tx.parameters, float)
    m = np.eye(4)
    m[:3, :3] = p[:9].reshape(3, 3)
    c = np.array(tx.fixed_parameters, float)
    m[:3, 3] = p[9:12] + c - m[:3, :3] @ c
    f = np.diag([-1.0, -1.0, 1.0, 1.0])
    return f @ m @ f  # LPS -> RAS


def _bspline(image: np.ndarray, affine: np.ndarray, fit) -> np.ndarray:
    """Labels on the scan grid after a coarse BSpline stage on top of the affine ``fit``."""
    import SimpleITK as sitk

    regions, a_aff, template, _ = atlas_mod._atlas()
    fixed_full = atlas_mod._to_sitk(image - float(image.min()), affine)
    fixed = atlas_mod._shrink(fixed_full, 3.0)
    moving = atlas_mod._shrink(atlas_mod._to_sitk(template, a_aff), 3.0)
    aff_tx = sitk.AffineTransform(3)
    aff_tx.SetMatrix(fit.transform[:3, :3].ravel().tolist())
    aff_tx.SetTranslation(fit.transform[:3, 3].tolist())
    mesh = [max(1, round(fixed.GetSize()[i] * fixed.GetSpacing()[i] / 40.0)) for i in range(3)]
    bs = sitk.BSplineTransformInitializer(fixed, mesh)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.1, 1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=30)
    reg.SetMovingInitialTransform(aff_tx)
    reg.SetInitialTransform(bs, inPlace=True)
    reg.Execute(fixed, moving)
    both = sitk.CompositeTransform([aff_tx, bs])
    lab = sitk.GetImageFromArray(np.ascontiguousarray(regions.transpose(2, 1, 0)))
    lab.SetOrigin(a_aff[:3, 3].tolist())
    ref = atlas_mod._to_sitk(np.zeros(image.shape, np.float32), affine)
    out = sitk.Resample(lab, ref, both, sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def record(case: dict, name: str, labels_on_grid: np.ndarray | None, region_map, wall: float, cpu: float) -> None:
    """Score one method on one case (``case``: image, scan_aff, truth, label, true_counts, true_region, methods)."""
    image, scan_aff, truth, label = case["image"], case["scan_aff"], case["truth"], case["label"]
    grid = labels_on_grid
    if grid is None:
        grid = atlas_mod.AtlasRegions(region_map[0], region_map[1], np.eye(4), "", 0).on_grid(image.shape, scan_aff)
    c, reg = counts(label, scan_aff, region_map if region_map is not None else (grid, scan_aff))
    true_counts = case["true_counts"]
    m = case["methods"][name] = {
        "dice": dice(grid, truth), "seconds_wall": wall, "seconds_cpu": cpu, "pvs_counts": c,
        "pvs_count_rel_diff": {k: (c[k] - true_counts[k]) / true_counts[k] if true_counts[k] else None for k in GROUPS},
        "pvs_same_group": float(np.mean(reg == case["true_region"])) if len(reg) else None,
    }
    d = m["dice"]
    print(f"  case {case['i']} {case['contrast']:6s} {name:13s} Dice " + " ".join(f"{k} {d[k]:.3f}" for k in GROUPS)
          + f" | PVS same group {m['pvs_same_group']:.3f} | {wall:.1f} s wall {cpu:.1f} s CPU | load {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--ants", action="store_true", help="also ANTsPy's affine (needs 'import ants')")
    ap.add_argument("--bspline", action="store_true", help="also a coarse SimpleITK BSpline stage after the affine")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "atlas_regions_cpu2")
    args = ap.parse_args()

    w0, c0 = time.perf_counter(), time.process_time()
    regions_1mm, a_aff, template, _ = atlas_mod._atlas()
    build = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
    print(f"atlas (1 mm MNI152 region map + template) built in {build['wall_s']:.1f} s wall, {build['cpu_s']:.1f} s CPU", flush=True)
    results: list[dict] = []
    for i in range(args.cases):
        contrast = CONTRASTS[i % len(CONTRASTS)]
        seed = 100 + i
        ph = make_phantom(anatomy="mni", spacing=1.0, contrast=contrast, burden=3, seed=seed)
        image, truth, label, scan_aff, true_aff = deform(ph, seed)
        true_counts, true_region = counts(label, scan_aff, (truth, scan_aff))
        case = {"i": i, "contrast": contrast, "image": image, "scan_aff": scan_aff, "truth": truth, "label": label,
                "true_counts": true_counts, "true_region": true_region, "methods": {}}

        w, c = time.perf_counter(), time.process_time()
        fit = atlas_mod.register_atlas(image, scan_aff)
        record(case, "sitk", None, fit.region_map, time.perf_counter() - w, time.process_time() - c)
        record(case, "true-affine", None, (regions_1mm, np.linalg.inv(true_aff) @ a_aff), 0.0, 0.0)
        if args.ants:
            w, c = time.perf_counter(), time.process_time()
            m = _ants_affine(image, scan_aff, template, a_aff)
            record(case, "ants", None, (regions_1mm, np.linalg.inv(m) @ a_aff), time.perf_counter() - w, time.process_time() - c)
        if args.bspline:
            w, c = time.perf_counter(), time.process_time()
            grid = _bspline(image, scan_aff, fit)
            wall, cpu = time.perf_counter() - w + fit.seconds, time.process_time() - c
            record(case, "sitk+bspline", grid, None, wall, cpu)
        results.append({"case": i, "contrast": contrast, "seed": seed, "shape": list(image.shape), "true_pvs_counts": true_counts,
                        "methods": case["methods"]})

    names = list(results[0]["methods"])
    summary = {}
    for name in names:
        ms = [r["methods"][name] for r in results]
        rel = {k: [abs(m["pvs_count_rel_diff"][k]) for m in ms if m["pvs_count_rel_diff"][k] is not None] for k in GROUPS}
        summary[name] = {
            "dice_mean": {k: float(np.mean([m["dice"][k] for m in ms])) for k in GROUPS},
            "dice_min": {k: float(np.min([m["dice"][k] for m in ms])) for k in GROUPS},
            "pvs_count_abs_rel_diff_mean": {k: float(np.mean(v)) if v else None for k, v in rel.items()},
            "pvs_same_group_mean": float(np.mean([m["pvs_same_group"] for m in ms])),
            "seconds_wall_median": float(np.median([m["seconds_wall"] for m in ms])),
            "seconds_cpu_median": float(np.median([m["seconds_cpu"] for m in ms])),
        }
    lines = [(f"regions without FreeSurfer: {len(results)} deformed 1 mm MNI phantoms ({', '.join(r['contrast'] for r in results)}), "
              f"shape {results[0]['shape']}; {os.cpu_count()} CPUs; atlas built in {build['wall_s']:.1f} s wall / {build['cpu_s']:.1f} s CPU"),
             "method         " + "".join(f"{'Dice ' + k:>17s}" for k in GROUPS) + "   PVS same grp   |count diff| wm/bg/mid/hip      wall s  CPU s"]
    for name, s in summary.items():
        rd = s["pvs_count_abs_rel_diff_mean"]
        lines.append(f"{name:14s} " + "".join(f"{s['dice_mean'][k]:>11.3f} (>{s['dice_min'][k]:.2f})" for k in GROUPS)
                     + f"   {s['pvs_same_group_mean']:>8.3f}      " + "/".join("-" if rd[k] is None else f"{100 * rd[k]:.0f}%" for k in GROUPS)
                     + f"      {s['seconds_wall_median']:>6.1f} {s['seconds_cpu_median']:>6.1f}")
    lines.append("Dice: mean (min) over cases; |count diff|: mean |atlas - true| / true PVS count per region; times: median per case, "
                 f"registration only; load average at the end {tuple(round(v, 1) for v in os.getloadavg())}")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"atlas_build": build, "summary": summary, "cases": results,
                                                         "source": atlas_mod.ATLAS_SOURCE}, indent=1))
    args.out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
