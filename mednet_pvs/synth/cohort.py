"""``make_cohort``: many phantoms plus a ``manifest.csv`` for the data layer.

Layout::

    OUTDIR/manifest.csv                      subject,image,label,brainmask,site,split
    OUTDIR/sub-001/sub-001_T2w.nii.gz        (+ _pvs, _brainmask, _regions, .json)
    ...

Paths in the manifest are relative to OUTDIR (POSIX separators). Subject ``i`` (0-based) is made
with seed ``seed * 100_003 + i``, recorded in its sidecar, so one subject can be remade alone
with ``make_phantom(config, seed=...)``.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth.phantom_config import PhantomConfig

MANIFEST_COLUMNS = ("subject", "image", "label", "brainmask", "regions", "site", "split")
SPLITS = ("train", "val", "test")


def subject_seed(seed: int, i: int) -> int:
    """The phantom seed of subject ``i`` of a cohort made with ``seed``."""
    return int(seed) * 100_003 + int(i)


def make_cohort(
    outdir: str | os.PathLike,
    n: int,
    config: PhantomConfig | None = None,
    seed: int = 0,
    sites: int | Sequence[str] | Mapping[str, Mapping[str, Any]] = 1,
    *,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    on_subject: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write ``n`` phantoms and ``manifest.csv`` into ``outdir``; returns the manifest's path.

    Args:
        config: phantom settings shared by all subjects (default :class:`PhantomConfig`).
        sites: a number of sites (named ``site1``...), a list of names, or a mapping
            ``{site: {config field: value}}`` giving each site its own settings (e.g. contrast,
            noise, slice thickness) for multi-site / domain-shift experiments. Subjects go to sites
            in turn.
        split_fractions: train / val / test shares; the split is a seeded shuffle, and val and
            test get at least one subject each when ``n >= 3``.
        on_subject: called after each subject with a summary dict (subject, site, split, paths,
            pvs_count, pvs_volume_mm3, seconds) - the CLI's progress bar uses it.
    """
    import time

    from mednet_pvs.synth.phantom import make_phantom
    from mednet_pvs.io import write_text

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    base = config or PhantomConfig()
    site_cfgs = _site_configs(base, sites)
    names = list(site_cfgs)
    splits = assign_splits(n, split_fractions, seed)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n)))
    rows = []
    for i in range(n):
        t0 = time.perf_counter()
        subject = f"sub-{i + 1:0{width}d}"
        site = names[i % len(names)]
        ph = make_phantom(site_cfgs[site], seed=subject_seed(seed, i))
        ph.meta["cohort"] = {"subject": subject, "site": site, "split": splits[i], "cohort_seed": seed}
        paths = ph.save(out / subject, subject)
        rel = {k: p.relative_to(out).as_posix() for k, p in paths.items()}
        rows.append({"subject": subject, "image": rel["image"], "label": rel["label"],
                     "brainmask": rel["brainmask"], "regions": rel["regions"], "site": site, "split": splits[i]})
        if on_subject is not None:
            on_subject({"subject": subject, "site": site, "split": splits[i], "paths": paths,
                        "pvs_count": ph.meta["pvs_count"], "pvs_volume_mm3": ph.meta["pvs_volume_mm3"],
                        "seed": ph.meta["seed"], "seconds": time.perf_counter() - t0})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(buf.getvalue(), out / "manifest.csv")


def _site_configs(base: PhantomConfig, sites) -> dict[str, PhantomConfig]:
    if isinstance(sites, bool):
        raise ConfigError(f"sites must be a count, a list of names or a mapping, got {sites!r}")
    if isinstance(sites, int):
        if sites < 1:
            raise ConfigError(f"sites must be >= 1, got {sites}")
        return {f"site{k + 1}": base for k in range(sites)}
    if isinstance(sites, Mapping):
        if not sites:
            raise ConfigError("sites mapping is empty")
        return {str(k): base.replace(**dict(v or {})) for k, v in sites.items()}
    if isinstance(sites, str):
        sites = [sites]
    names = [str(s) for s in sites]
    if not names or len(set(names)) != len(names) or any(not s or "," in s for s in names):
        raise ConfigError(f"site names must be distinct, non-empty and without commas, got {names!r}")
    return {s: base for s in names}


def assign_splits(n: int, fractions: tuple[float, float, float], seed: int) -> list[str]:
    """Seeded train/val/test assignment of ``n`` subjects (val/test >= 1 each when n >= 3)."""
    f = np.asarray(fractions, float)
    if f.shape != (3,) or np.any(f < 0) or f.sum() <= 0:
        raise ConfigError(f"split_fractions must be three non-negative numbers, got {fractions!r}")
    f = f / f.sum()
    quota = n * f
    counts = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - counts), kind="stable")[: n - counts.sum()]:  # largest remainders
        counts[k] += 1
    if n >= 3:
        for k in (1, 2):
            if f[k] > 0 and counts[k] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[k] = 1
    n_val, n_test = int(counts[1]), int(counts[2])
    labels = np.array(["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test)
    np.random.default_rng(seed).shuffle(labels)
    return [str(s) for s in labels]
