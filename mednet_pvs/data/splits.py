"""Train/validation splits by subject, deterministic and saved next to the run.

Methods (:func:`make_split`):

* ``"kfold"`` (or ``"kfold:K"``, default K = 5 as in the paper): subjects sorted, permuted with
  ``numpy.random.default_rng(seed)`` and cut into K near-equal folds; fold ``i`` validates, the
  rest train. The result does not depend on the order of the cases.
* ``"loso"``: leave one site out; fold ``i`` validates on the ``i``-th site (sites sorted), the
  others train.
* ``"manifest"``: the manifest's ``split`` column (``train``/``val``/``test``).
* a path to a JSON file: a split saved by :func:`save_split` (or ``{"train": [...], "val":
  [...]}``).

Cases marked ``split = test`` in the manifest are kept out of k-fold and LOSO training and
validation (they land in ``test``). Sessions of one subject always stay together.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.data.cases import Case
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType, write_json

DEFAULT_FOLDS = 5


@dataclass
class Split:
    """Subjects (ids, sorted) for training, validation and test, and how they were chosen."""

    train: list[str]
    val: list[str]
    test: list[str] = field(default_factory=list)
    method: str = "fixed"
    fold: int | None = None
    n_folds: int | None = None
    seed: int | None = None
    held_out_site: str | None = None

    def select(self, cases: Sequence[Case]) -> tuple[list[Case], list[Case], list[Case]]:
        """Cases of ``(train, val, test)``, in input order (all sessions of a subject go together)."""
        parts = (set(self.train), set(self.val), set(self.test))
        return tuple([c for c in cases if c.subject in p] for p in parts)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Split:
        if not isinstance(d, dict) or "train" not in d or "val" not in d:
            raise ConfigError("a split needs 'train' and 'val' lists of subject ids")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _subjects(cases: Sequence[Case]) -> list[str]:
    return sorted({c.subject for c in cases})


def _test_subjects(cases: Sequence[Case]) -> set[str]:
    return {c.subject for c in cases if c.split == "test"}


def kfold_splits(cases: Sequence[Case], n_folds: int = DEFAULT_FOLDS, seed: int = 0) -> list[Split]:
    """All ``n_folds`` folds of a seeded k-fold split by subject (test subjects set aside)."""
    test = _test_subjects(cases)
    subjects = [s for s in _subjects(cases) if s not in test]
    if n_folds < 2:
        raise ConfigError(f"k-fold needs at least 2 folds, not {n_folds}")
    if len(subjects) < n_folds:
        raise ConfigError(f"{n_folds}-fold split needs at least {n_folds} subjects, the cohort has {len(subjects)}")
    order = np.random.default_rng(seed).permutation(len(subjects))
    folds = [sorted(subjects[i] for i in chunk) for chunk in np.array_split(order, n_folds)]
    return [
        Split(
            train=sorted(s for j, f in enumerate(folds) if j != k for s in f),
            val=folds[k],
            test=sorted(test),
            method="kfold",
            fold=k,
            n_folds=n_folds,
            seed=seed,
        )
        for k in range(n_folds)
    ]


def sites(cases: Sequence[Case]) -> list[str]:
    """Sorted site names of the cohort (cases without a site make LOSO impossible)."""
    missing = [c.key for c in cases if not c.site]
    if missing:
        raise InputError(None, f"leave-one-site-out needs a site for every case; missing for {', '.join(missing[:10])}")
    return sorted({c.site for c in cases if c.site})


def loso_split(cases: Sequence[Case], fold: int | str = 0) -> Split:
    """Leave-one-site-out: validate on one site (by index into the sorted sites, or by name)."""
    names = sites(cases)
    if len(names) < 2:
        raise ConfigError(f"leave-one-site-out needs at least 2 sites, the cohort has {len(names)}")
    site = fold if isinstance(fold, str) else names[fold] if 0 <= fold < len(names) else None
    if site not in names:
        raise ConfigError(f"no site {fold!r} for leave-one-site-out (sites: {', '.join(names)})")
    test = _test_subjects(cases)
    val = sorted({c.subject for c in cases if c.site == site} - test)
    train = sorted({c.subject for c in cases if c.site != site} - test - set(val))
    return Split(train=train, val=val, test=sorted(test), method="loso", fold=names.index(site), n_folds=len(names), held_out_site=site)


def manifest_split(cases: Sequence[Case]) -> Split:
    """The fixed split of the manifest's ``split`` column (every case must have one)."""
    missing = [c.key for c in cases if c.split is None]
    if missing:
        raise InputError(None, f"split 'manifest' needs a split value for every case; missing for {', '.join(missing[:10])}")
    by = {name: sorted({c.subject for c in cases if c.split == name}) for name in ("train", "val", "test")}
    clash = set(by["train"]) & set(by["val"]) | set(by["train"]) & set(by["test"]) | set(by["val"]) & set(by["test"])
    if clash:
        raise InputError(None, f"subjects in more than one split: {', '.join(sorted(clash)[:10])}")
    return Split(train=by["train"], val=by["val"], test=by["test"], method="manifest")


def make_split(cases: Sequence[Case], spec: str | PathType | Split = "kfold", fold: int | str = 0, seed: int = 0) -> Split:
    """The split named by ``spec`` (see the module docstring) for ``fold``."""
    if isinstance(spec, Split):
        return spec
    s = str(spec)
    if s == "kfold" or s.startswith("kfold:"):
        k = int(s.split(":", 1)[1]) if ":" in s else DEFAULT_FOLDS
        folds = kfold_splits(cases, k, seed)
        if not isinstance(fold, int) or not 0 <= fold < k:
            raise ConfigError(f"fold must be 0..{k - 1} for {k}-fold, not {fold!r}")
        return folds[fold]
    if s == "loso":
        return loso_split(cases, fold)
    if s == "manifest":
        return manifest_split(cases)
    if Path(s).suffix == ".json" or Path(s).is_file():
        split = load_split(s)
        known = {c.subject for c in cases}
        unknown = sorted((set(split.train) | set(split.val) | set(split.test)) - known)
        if unknown:
            raise InputError(s, f"split names subjects not in the cohort: {', '.join(unknown[:10])}")
        return split
    raise ConfigError(f"unknown split {spec!r}: use 'kfold', 'kfold:K', 'loso', 'manifest' or a split .json file")


def save_split(split: Split, path: PathType) -> Path:
    """Write the split as JSON (atomically); returns the path."""
    return write_json(split.to_dict(), path)


def load_split(path: PathType) -> Split:
    """Read a split written by :func:`save_split` (or a ``{"train": [...], "val": [...]}`` file)."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(p, "split file not found") from None
    except (OSError, ValueError) as e:
        raise InputError(p, f"not a readable split JSON ({e})") from None
    try:
        return Split.from_dict(d)
    except (ConfigError, TypeError) as e:
        raise InputError(p, str(e)) from None
