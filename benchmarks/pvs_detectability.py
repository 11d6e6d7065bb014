#!/usr/bin/env python3
"""How visible each labelled PVS of the held-out fit cases is, and whether the any-contrast model finds it.

    .venv/bin/python benchmarks/pvs_detectability.py [--model mednet-pvs-synth-any] [--threads 2]

For every held-out group but the legacy one (each whole-head group with its own fit case, as
``fit_threshold_synth_any.py --head-cases`` makes them: 24 cases, never scored), each labelled PVS
(a 26-connected cluster of the truth on the stored grid) gets a **contrast-to-noise ratio**: the
mean image inside it minus the median of a shell of brain around it (2 voxels wide, other PVS and
their neighbours left out), in absolute value, divided by the s.d. of the Rician noise the
generator added (``meta["acquisition"]["noise_sigma"]``, before its intensity curve). It is
**found** when the model's mask (its threshold and minimum cluster size) touches it, as cluster
Dice counts it. Prints, then writes to ``<out>.txt`` (and every cluster to ``<out>.json``):

* per group: clusters, labelled voxels, share of clusters found, share of labelled voxels in
  clusters under 3 noise s.d. (what a voxel-wise decision can barely see), share in clusters over
  5 s.d. that the model misses;
* over all cases: clusters found by contrast-to-noise bin and by cluster size.

What it says of the targets: voxels under 3 s.d. bound what any method scores in a group; clearly
visible PVS the model misses are the model's to win.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "synth_any_detectability"
CNR_BINS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, np.inf)
SIZE_BINS = (1, 2, 4, 8, 16, 32, np.inf)
SHELL_VOXELS = 2


def cluster_contrast(image: np.ndarray, clusters: np.ndarray, n: int, brain: np.ndarray, sigma: float,
                     shell: int = SHELL_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster ``1..n`` of ``clusters`` (int labels on ``image``'s grid): its size (voxels) and
    |mean inside - median of its shell| / ``sigma``, the shell being the voxels of ``brain`` within
    ``shell`` voxels (26-neighbourhood steps) of it and not within one voxel of any cluster; NaN
    where the shell has fewer than 5 voxels."""
    from scipy import ndimage

    if not sigma > 0:
        raise ValueError(f"the noise s.d. must be > 0, got {sigma!r}")
    sizes = np.bincount(clusters.ravel(), minlength=n + 1)[1:].astype(int)
    cnr = np.full(n, np.nan)
    cube = ndimage.generate_binary_structure(3, 3)
    near_any = ndimage.binary_dilation(clusters > 0, cube)
    for i, sl in enumerate(ndimage.find_objects(clusters, n), 1):
        if sl is None:
            continue
        box = tuple(slice(max(s.start - shell - 1, 0), s.stop + shell + 1) for s in sl)
        c = clusters[box] == i
        ring = ndimage.binary_dilation(c, cube, iterations=shell) & ~near_any[box] & (brain[box] > 0)
        if ring.sum() < 5:
            continue
        cnr[i - 1] = abs(float(image[box][c].mean()) - float(np.median(image[box][ring]))) / sigma
    return sizes, cnr


def binned(values: np.ndarray, sizes: np.ndarray, found: np.ndarray, edges: tuple[float, ...], label: str) -> list[str]:
    """One line per bin ``[a, b)`` of ``values``: clusters, their labelled voxels, share found."""
    lines = [f"{label:>12s}  clusters  voxels  found"]
    for a, b in zip(edges[:-1], edges[1:]):
        s = (values >= a) & (values < b)
        if s.any():
            name = f"[{a:g}, {b:g})" if np.isfinite(b) else f">= {a:g}"
            lines.append(f"{name:>12s}  {int(s.sum()):8d}  {int(sizes[s].sum()):6d}  {found[s].mean():5.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mednet-pvs-synth-any")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="results stem: writes <out>.txt and <out>.json")
    args = ap.parse_args(argv)

    import torch

    from mednet_pvs import load_pretrained
    from mednet_pvs.analysis.clusters import label_clusters
    from mednet_pvs.analysis.metrics import match_clusters
    from mednet_pvs.synth.heldout import heldout_case, heldout_groups, make_heldout_case

    torch.set_num_threads(args.threads)
    model = load_pretrained(args.model, device="cpu")
    lines = [f"PVS detectability on the held-out fit cases (procedural anatomy, tile step 1.0), model {args.model}",
             f"{'group':22s} {'seed':>8s} {'clusters':>8s} {'voxels':>6s} {'found':>5s}  {'vox<3sd':>7s}  "
             f"{'missed>=5sd':>11s}  {'s':>3s}"]
    print("\n".join(lines), flush=True)
    records: list[dict[str, Any]] = []
    for g in heldout_groups(legacy=False):
        case = heldout_case(g, 0, "fit")
        t0 = time.perf_counter()
        ph = make_heldout_case(case, anatomy="procedural")
        pred = model.predict((ph.image, ph.affine), step=1.0)
        ref, n_ref = label_clusters(ph.label > 0, ph.affine)
        lab, n_pred = label_clusters(pred.mask > 0, ph.affine)
        found = match_clusters(lab, n_pred, ref, n_ref).ref_hit
        sizes, cnr = cluster_contrast(ph.image, ref, n_ref, ph.brainmask, float(ph.meta["acquisition"]["noise_sigma"]))
        ok = np.isfinite(cnr)
        sz, cn, fd = sizes[ok], cnr[ok], found[ok]
        vox = max(int(sz.sum()), 1)
        lines.append(f"{g.name:22s} {case.seed:8d} {int(ok.sum()):8d} {int(sz.sum()):6d} {fd.mean() if ok.any() else np.nan:5.2f}  "
                     f"{sz[cn < 3].sum() / vox:7.2f}  {sz[(cn >= 5) & ~fd].sum() / vox:11.2f}  {time.perf_counter() - t0:3.0f}")
        print(lines[-1], flush=True)
        records += [{"group": g.name, "seed": case.seed, "voxels": int(a), "cnr": round(float(b), 3), "found": bool(c)}
                    for a, b, c in zip(sz, cn, fd)]
    sz = np.array([r["voxels"] for r in records])
    cn = np.array([r["cnr"] for r in records])
    fd = np.array([r["found"] for r in records], bool)
    tail = ["", f"all {len(records)} clusters ({int(sz.sum())} labelled voxels): found {fd.mean():.2f}; "
            f"voxels in clusters under 3 noise s.d. {sz[cn < 3].sum() / sz.sum():.2f}, in clusters over 5 s.d. "
            f"the model misses {sz[(cn >= 5) & ~fd].sum() / sz.sum():.2f}",
            *binned(cn, sz, fd, CNR_BINS, "CNR"), *binned(sz.astype(float), sz, fd, SIZE_BINS, "voxels"),
            f"command: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}"]
    print("\n".join(tail))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".txt").write_text("\n".join(lines + tail) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(records) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
