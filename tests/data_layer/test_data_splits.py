"""Splits: deterministic, disjoint, covering k-fold; LOSO; fixed lists; save and load."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mednet_pvs.data.cases import Case
from mednet_pvs.data.splits import Split, kfold_splits, load_split, loso_split, make_split, save_split
from mednet_pvs.errors import ConfigError, InputError


def _cases(n=23, sites=("A", "B", "C")) -> list[Case]:
    return [Case(f"sub-{i:03d}", [Path(f"{i}.nii.gz")], Path(f"{i}_l.nii.gz"), site=sites[i % len(sites)]) for i in range(n)]


def test_kfold_deterministic_disjoint_covering_order_independent():
    cases = _cases()
    folds = kfold_splits(cases, 5, seed=7)
    subjects = {c.subject for c in cases}
    vals = [set(f.val) for f in folds]
    assert sorted(len(v) for v in vals) == [4, 4, 5, 5, 5]
    assert set().union(*vals) == subjects and sum(map(len, vals)) == len(subjects)  # every subject validated once
    for f in folds:
        assert not set(f.train) & set(f.val) and set(f.train) | set(f.val) == subjects
    shuffled = cases[:]
    random.Random(1).shuffle(shuffled)
    assert kfold_splits(shuffled, 5, seed=7) == folds  # input order does not matter
    assert kfold_splits(cases, 5, seed=7) == folds  # same seed, same folds
    assert [f.val for f in kfold_splits(cases, 5, seed=8)] != [f.val for f in folds]
    assert make_split(cases, "kfold", fold=3, seed=7) == folds[3] and folds[3].n_folds == 5


def test_sessions_stay_together_and_test_is_held_out():
    cases = _cases(10)
    cases += [Case("sub-000", [Path("x.nii")], Path("y.nii"), site="A", session="ses-2")]
    cases[5].split = "test"
    for f in kfold_splits(cases, 3):
        assert f.test == ["sub-005"] and "sub-005" not in f.train + f.val
        train, val, test = f.select(cases)
        keys = [c.key for c in train + val]
        assert ("sub-000" in keys) == ("sub-000_ses-2" in keys)
        assert [c.key for c in test] == ["sub-005"]


def test_loso_holds_out_exactly_one_site():
    cases = _cases()
    for i, site in enumerate(["A", "B", "C"]):
        s = loso_split(cases, i)
        assert s.held_out_site == site and s.n_folds == 3
        assert {c.site for c in cases if c.subject in s.val} == {site}
        assert site not in {c.site for c in cases if c.subject in s.train}
        assert set(s.train) | set(s.val) == {c.subject for c in cases}
    assert make_split(cases, "loso", fold="B") == loso_split(cases, 1)
    with pytest.raises(ConfigError, match="no site 'Z'"):
        loso_split(cases, "Z")
    cases[4].site = None
    with pytest.raises(InputError, match="missing for sub-004"):
        loso_split(cases, 0)


def test_manifest_split_and_saved_json(tmp_path):
    cases = _cases(4)
    for c, s in zip(cases, ["train", "val", "train", "test"]):
        c.split = s
    s = make_split(cases, "manifest")
    assert (s.train, s.val, s.test) == (["sub-000", "sub-002"], ["sub-001"], ["sub-003"])
    p = save_split(s, tmp_path / "run" / "split.json")
    assert load_split(p) == s and make_split(cases, p) == s
    json.loads(p.read_text())
    (tmp_path / "mine.json").write_text(json.dumps({"train": ["sub-000"], "val": ["sub-009"]}))
    with pytest.raises(InputError, match="not in the cohort: sub-009"):
        make_split(cases, tmp_path / "mine.json")
    cases[0].split = None
    with pytest.raises(InputError, match="missing for sub-000"):
        make_split(cases, "manifest")


@pytest.mark.parametrize("spec, fold, text", [("kfold", 5, "fold must be 0..4"), ("kfold:30", 0, "needs at least 30 subjects"), ("random", 0, "unknown split")])
def test_bad_specs(spec, fold, text):
    with pytest.raises(ConfigError, match=text):
        make_split(_cases(), spec, fold)


def test_split_from_plain_dict():
    s = Split.from_dict({"train": ["a"], "val": ["b"], "comment": "ignored"})
    assert s.method == "fixed" and s.test == []
