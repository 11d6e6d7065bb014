"""The held-out test set (mednet_pvs.synth.heldout): deterministic, never a training seed, the asked
contrast / resolution / orientation, labels on the image in world coordinates."""
from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth.heldout import (
    HELDOUT_CONTRASTS,
    LEGACY,
    MAX_CASES,
    RESOLUTIONS,
    ROLES,
    HeldoutGroup,
    fit_case,
    heldout_case,
    heldout_cases,
    heldout_groups,
    make_heldout_case,
)

#: the training stream's seeds: ``seed + i`` from 0 (at most ~10^5 phantoms), validation/test from 2**31
TRAINING_MAX = 1_000_000
VALIDATION_FROM = 2**31


def _nifti(ph) -> nib.Nifti1Image:
    return nib.Nifti1Image(ph.image, ph.affine)


def test_seeds_unique_and_never_the_training_streams():
    groups = heldout_groups()
    seeds = [heldout_case(g, i, role).seed for g in groups for role in ROLES for i in range(MAX_CASES)]
    assert len(seeds) == len(set(seeds)) == len(groups) * len(ROLES) * MAX_CASES
    assert TRAINING_MAX < min(seeds) and max(seeds) < VALIDATION_FROM
    fits = {fit_case(g).seed for g in groups}
    assert not fits & {c.seed for c in heldout_cases(groups, n=MAX_CASES)}  # a fit case is never scored


def test_groups_cover_every_contrast_resolution_and_head():
    groups = heldout_groups()
    assert {(g.contrast, g.resolution, g.head) for g in groups if not g.legacy} == {
        (c, r, h) for c in HELDOUT_CONTRASTS for r in RESOLUTIONS for h in (True, False)}
    assert sorted(g.name for g in groups if g.legacy) == [f"T1w {LEGACY} stripped", f"T2w {LEGACY} stripped"]
    assert {c.orientation for c in heldout_cases(groups)} == {"RAS", "LPS"}
    assert heldout_cases(groups, n=2) == heldout_cases(groups, n=2)  # same seeds and orientations every time


@pytest.mark.parametrize("kw", [{"contrast": "T2w", "resolution": "2mm", "head": False},
                                {"contrast": "random", "resolution": "1mm", "head": False},
                                {"contrast": "FLAIR", "resolution": LEGACY, "head": False},
                                {"contrast": "T1w", "resolution": LEGACY, "head": True}])
def test_unknown_groups_are_refused(kw):
    with pytest.raises(ConfigError):
        HeldoutGroup(**kw)
    with pytest.raises(ConfigError):
        heldout_case(HeldoutGroup("T2w", "1mm", True), MAX_CASES)


@pytest.fixture(scope="module")
def thick_lps():
    """A whole-head T2w 1x1x5 mm case stored LPS (procedural anatomy, ~3 s), and the same seed stored RAS."""
    case = heldout_case(HeldoutGroup("T2w", "thick", True), 0)
    if case.orientation != "LPS":
        case = dataclasses.replace(case, orientation="LPS")
    return case, make_heldout_case(case, anatomy="procedural"), make_heldout_case(
        dataclasses.replace(case, orientation="RAS"), anatomy="procedural")


@pytest.mark.slow
def test_case_has_the_asked_contrast_resolution_and_orientation(thick_lps):
    case, ph, _ = thick_lps
    img = _nifti(ph)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert np.allclose(img.header.get_zooms(), (1.0, 1.0, 5.0), atol=0.1)
    assert ph.contrast == "T2w" and ph.meta["whole_head"] and ph.meta["heldout"]["seed"] == case.seed
    assert ph.meta["domain"]["deform_mm"] == 6.0 and ph.meta["domain"]["contrast"] == "T2w"
    assert ph.label.shape == ph.brainmask.shape == ph.image.shape
    assert ph.label.any() and ((ph.label > 0) <= (ph.brainmask > 0)).all()
    # whole head: there is tissue outside the brain mask
    assert (ph.image[ph.brainmask == 0] > 0.1 * ph.image[ph.brainmask > 0].mean()).mean() > 0.1


@pytest.mark.slow
def test_deterministic_and_labels_line_up_in_world_coordinates(thick_lps):
    _, lps, ras = thick_lps
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    back = nib.as_closest_canonical(_nifti(lps))  # LPS voxels brought back to RAS storage
    assert np.allclose(back.affine, ras.affine, atol=1e-5)
    assert np.array_equal(np.asarray(back.dataobj), ras.image)  # same case made twice: same arrays
    lab = nib.as_closest_canonical(nib.Nifti1Image(lps.label, lps.affine))
    assert np.array_equal(np.asarray(lab.dataobj), ras.label)
    # and the label sits on the image: T2w PVS are brighter than the rest of the brain
    assert lps.image[lps.label > 0].mean() > lps.image[(lps.brainmask > 0) & (lps.label == 0)].mean()


def test_legacy_case_is_the_old_generators_skull_stripped_phantom():
    case = heldout_case(HeldoutGroup("T1w", LEGACY, False), 0)
    ph = make_heldout_case(case, anatomy="procedural")
    assert ph.meta["generator"] == "mednet_pvs.synth" and ph.contrast == "T1w"
    assert case.orientation == "LPS" and nib.aff2axcodes(ph.affine) == ("L", "P", "S")
    assert np.allclose(nib.affines.voxel_sizes(ph.affine), 1.0)
    assert ph.label.any() and ((ph.label > 0) <= (ph.brainmask > 0)).all()


# ------------------------------------------------------------- the evaluation script's bookkeeping

def _script(name: str):
    """A script in benchmarks/, imported as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench():
    return _script("bench_synth_any")


def test_threshold_fit_warns_when_the_best_is_at_the_grid_edge():
    mod = _script("fit_threshold_synth_any")
    grid = (0.1, 0.3, 0.5)
    assert mod.best_threshold(np.array([0.2, 0.4, 0.3]), grid) == (0.3, "")
    best, warn = mod.best_threshold(np.array([0.2, 0.3, 0.4]), grid)
    assert best == 0.5 and "upper end" in warn
    assert "lower end" in mod.best_threshold(np.array([0.5, 0.4, 0.3]), grid)[1]


def test_threshold_fit_min_cluster_grid_removes_small_predicted_clusters():
    """``--min-cluster``: at each (threshold, size) the voxel and cluster Dice of the prediction with
    its small clusters removed, against the untouched truth; the best pair by their mean."""
    mod = _script("fit_threshold_synth_any")
    truth = np.zeros((12, 12, 12), bool)
    truth[2:4, 2:4, 2:4] = True  # one 8-voxel PVS
    probs = np.zeros(truth.shape, np.float32)
    probs[truth] = 0.9
    probs[9, 9, 9] = 0.9  # a 1-voxel false positive
    probs[6, 6, 6] = 0.4  # a 1-voxel one below 0.5
    affine = np.diag([0.5, 0.5, 0.5, 1.0])  # 0.125 mm^3 voxels: the sizes are mm^3, not voxels
    g = mod.cluster_grid(probs, truth, affine, (0.3, 0.5), (0.0, 0.2))
    assert g.shape == (2, 2, 2)
    assert np.allclose(g[0, 0], [16 / 18, 2 / 4]) and np.allclose(g[1, 0], [16 / 17, 2 / 3])
    assert np.allclose(g[:, 1], 1.0)  # 0.125 mm^3 clusters go, the 1 mm^3 PVS stays
    lines = mod.cluster_lines([g, g], (0.3, 0.5), (0.0, 0.2))
    assert "over 2 groups" in lines[0] and lines[2].split()[1:] == ["0.889/0.500", "0.941/0.667"]
    assert lines[-1].startswith("best threshold and minimum cluster (mean of voxel and cluster Dice): 0.3 and 0.2 mm^3")


def test_threshold_fit_scores_the_brain_on_whole_head_fit_cases_with_brain(monkeypatch, tmp_path):
    """``--brain`` adds each whole-head group's own fit case (its seed, never a scored one) and the
    brain-mask Dice the model returns there; without it no whole-head case is made."""
    import types

    import mednet_pvs
    import mednet_pvs.synth.heldout as heldout

    mod = _script("fit_threshold_synth_any")
    made = []

    def fake_case(case, anatomy="mni"):  # a 4^3 case whose brain is the first two x-slices
        made.append(case)
        brain = np.zeros((4, 4, 4), np.uint8)
        brain[:2] = 1
        label = np.zeros_like(brain)
        label[0, 0, 0] = 1
        return types.SimpleNamespace(image=brain.astype(np.float32), affine=np.eye(4), brainmask=brain, label=label)

    class Model:  # predicts the first three x-slices as brain (Dice 2*32/(32+48) = 0.8), PVS at the truth's voxel
        name = "fake"
        inference = types.SimpleNamespace(window=types.SimpleNamespace(patch_size=(4, 4, 4), mirror_axes=(), pad_mode="replicate"),
                                          output_resampling="linear")

        def predict(self, image, step=None):
            probs = np.zeros((4, 4, 4), np.float32)
            probs[0, 0, 0] = 1.0
            brain = np.zeros((4, 4, 4), np.uint8)
            brain[:3] = 1
            return types.SimpleNamespace(probabilities=probs, brainmask=brain, info={"brain_input": "skull-stripped"})

    monkeypatch.setattr(heldout, "make_heldout_case", fake_case)
    monkeypatch.setattr(mednet_pvs, "load_pretrained", lambda name, device=None: Model())
    out = tmp_path / "fit.txt"
    assert mod.main(["--out", str(out)]) == 0
    assert all(c.role == "fit" and not c.group.head for c in made) and "brain-mask" not in out.read_text()
    made.clear()
    assert mod.main(["--out", str(out), "--brain"]) == 0
    heads = [c for c in made if c.group.head]
    assert len(heads) == len(heldout_groups(legacy=False, heads=(True,))) and all(c.role == "fit" for c in heads)
    assert {c.seed for c in heads}.isdisjoint({heldout_case(c.group, 0).seed for c in heads})  # never the scored case
    text = out.read_text()
    assert "T2w thick head" in text and "brain Dice 0.800" in text
    assert f"mean brain-mask Dice over {len(heads)} whole-head fit cases: 0.800" in text
    n_stripped = len(heldout_groups(legacy=False, heads=(False,)))  # the skull-stripped fit cases' masks count too
    assert f"over {n_stripped} skull-stripped fit cases: 0.800; over all {len(heads) + n_stripped}: 0.800" in text
    assert "T2w thick stripped" in text.split("brain-mask Dice on the fit cases")[1]
    assert text.count("taken for: skull-stripped") == n_stripped + len(heads)  # what brain_mask auto took each input for
    # --thresholds: the grid the table, the mean and the best threshold use; a bad grid is one line
    assert mod.main(["--out", str(out), "--thresholds", "0.5", "0.9"]) == 0
    text = out.read_text()
    assert text.splitlines()[2].split()[4:6] == ["0.5", "0.9"] and "best threshold: 0.5" in text
    assert "lower end; widen --thresholds" in text
    with pytest.raises(SystemExit, match="ascending"):
        mod.main(["--out", str(out), "--thresholds", "0.9", "0.5"])
    # --min-cluster: the (threshold, size) section over every group; a bad size list is one line
    assert mod.main(["--out", str(out), "--min-cluster", "0", "2"]) == 0
    text = out.read_text()
    assert f"minimum cluster size: mean voxel Dice / cluster Dice over {len(heldout_groups())} groups" in text
    assert "best threshold and minimum cluster" in text and "minimum cluster" not in text.split("best threshold:")[0]
    with pytest.raises(SystemExit, match="--min-cluster sizes"):
        mod.main(["--out", str(out), "--min-cluster", "2", "0"])
    # --head-cases: each whole-head group's own fit case in the PVS fit too, predicted once with --brain
    made.clear()
    assert mod.main(["--out", str(out), "--head-cases", "--brain"]) == 0
    heads = [c for c in made if c.group.head]
    assert len(heads) == len(heldout_groups(legacy=False, heads=(True,))) and all(c.role == "fit" for c in heads)
    assert len({c.seed for c in made}) == len(made) == len(heldout_groups())  # 26 distinct cases, each made once
    rows = {line[:26].strip(): line.split()[3] for line in out.read_text().splitlines()[3:3 + len(heldout_groups())]}
    assert rows["T2w thick head"] == str(heldout_case(HeldoutGroup("T2w", "thick", True), 0, "fit").seed)
    assert f"mean brain-mask Dice over {len(heads)} whole-head fit cases: 0.800" in out.read_text()


class _Net:
    def __init__(self, contrast, brain):
        self.meta, self.predicts_brain = {"contrast": contrast}, brain


def test_bench_targets_worst_group_and_the_any_model_comparison():
    b = _bench()

    def row(model, contrast, res, head, d, brain=None):
        g = HeldoutGroup(contrast, res, head)
        return {"model": model, "group": g.name, "contrast": contrast, "resolution": res, "fov": g.fov, "brainmask_given": "none",
                "dice": d, "cluster_dice": d, "det_f1": d, "brain_dice": brain, "seconds": 1.0}

    rows = [row("any", "T2w", "1mm", True, 0.80, 0.96), row("any", "T2w", "thick", True, 0.62, 0.94),
            row("any", "T2w", "thick", True, None, 0.94),  # an empty truth (NaN Dice) is left out
            row("any", "T2w", LEGACY, False, 0.10), row("t2", "T2w", "1mm", True, 0.84), row("t2", "T2w", LEGACY, False, 0.90)]
    table = b.group_table(rows)
    s = b.model_summary(table, "any")
    assert s["groups"] == 2 and s["dice_average"] == pytest.approx(0.71) and s["dice_legacy"] == pytest.approx(0.10)
    assert s["dice_worst"] == pytest.approx(0.62) and s["dice_worst_group"] == "T2w thick head"
    status = {t["target"]: t["status"] for t in b.targets_for(s)}
    assert status == {"dice average >= 0.75": "not met", "dice worst >= 0.6": "met", "cluster_dice average >= 0.8": "not met",
                      "brain_dice average >= 0.95": "met"}
    assert b.targets_for(b.model_summary(table, "t2"))[-1]["status"] == "not measured"  # no brain mask returned
    comp = b.compare_any(table, "any", {"any": _Net("any", True), "t2": _Net("T2w", False)})
    assert [(c["target"].split(" on ")[1], c["status"]) for c in comp] == [("T2w 1mm head", "not met"),
                                                                           (f"T2w {LEGACY} stripped", "not met")]
    table[0]["dice"] = 0.815  # within 0.03 of 0.84
    assert b.compare_any(table, "any", {"any": _Net("any", True), "t2": _Net("T2w", False)})[0]["status"] == "met"


def test_bench_options_brain_mask_policy_and_quick():
    b = _bench()
    stripped, head = HeldoutGroup("T1w", "1mm", False), HeldoutGroup("T1w", "1mm", True)
    t1, anym = _Net("T1w", False), _Net("any", True)
    assert b.brainmask_for("t1", t1, stripped, give=False) == "none"
    assert b.brainmask_for("t1", t1, stripped, give=True) == "true"
    assert b.brainmask_for("t1", t1, head, give=True) == "none"
    assert b.brainmask_for("any", anym, stripped, give=True) == "none"
    assert b.brainmask_for(b.FRANGI, None, head, give=False) == "true"
    args = b.parse(["--quick", "--give-brainmask", "--cases", "2", "--models", "frangi", "--save", "x"])
    assert args.quick and args.give_brainmask and args.cases == 2 and args.step == 1.0 and args.models == ["frangi"]
    assert b.parse(["--step", "0.5", "--quick"]).step == 0.5 and b.parse([]).step is None
    assert b.parse([]).anatomy == "mni" and b.parse(["--quick"]).anatomy == "procedural"
    assert b.parse(["--anatomy", "procedural"]).anatomy == "procedural" and b.parse(["--quick", "--anatomy", "mni"]).anatomy == "mni"
    with pytest.raises(SystemExit):
        b.parse(["--cases", "0"])


def test_detectability_contrast_to_noise_of_each_cluster():
    """A tube 0.5 brighter (or darker) than its surround in noise of s.d. 0.1 has a CNR near 5; a
    labelled tube with no contrast near 0; one with no brain around it has none (NaN)."""
    mod = _script("pvs_detectability")
    rng = np.random.default_rng(0)
    image = np.ones((40, 40, 40), np.float32)
    clusters = np.zeros(image.shape, np.int32)
    clusters[10, 10, 5:25] = 1
    image[10, 10, 5:25] = 1.5
    clusters[20, 10, 5:25] = 2
    image[20, 10, 5:25] = 0.5           # dark PVS (T1w, FLAIR) count the same
    clusters[25, 25, 5:25] = 3          # labelled, but the image shows nothing there
    clusters[37, 5, 5:10] = 4           # outside the brain below
    brain = np.zeros(image.shape, np.uint8)
    brain[:34] = 1
    image = image + rng.normal(0, 0.1, image.shape).astype(np.float32)
    sizes, cnr = mod.cluster_contrast(image, clusters, 4, brain, 0.1)
    assert sizes.tolist() == [20, 20, 20, 5]
    assert 4.0 < cnr[0] < 6.0 and 4.0 < cnr[1] < 6.0 and cnr[2] < 1.0 and np.isnan(cnr[3])
    assert mod.cluster_contrast(image, clusters, 4, brain, 0.2)[1][0] == pytest.approx(cnr[0] / 2)
    with pytest.raises(ValueError, match="noise s.d."):
        mod.cluster_contrast(image, clusters, 4, brain, 0.0)
    lines = mod.binned(np.array([0.5, 6.0, 7.0]), np.array([20, 3, 4]), np.array([False, True, False]), mod.CNR_BINS, "CNR")
    assert [line.split() for line in lines[1:]] == [["[0,", "1)", "1", "20", "0.00"], ["[5,", "8)", "2", "7", "0.50"]]


def test_detectability_main_writes_every_group_and_cluster(monkeypatch, tmp_path):
    """The script's loop: every non-legacy group's own fit case (never a scored one), the model
    named by ``--model`` on ``--threads``, one line per group, the bins, ``<out>.txt`` and ``.json``."""
    import types

    import torch

    import mednet_pvs
    import mednet_pvs.synth.heldout as heldout

    mod = _script("pvs_detectability")
    made, asked = [], []

    def fake_case(case, anatomy="mni"):  # a bright 3-voxel PVS (CNR 5) and a dark 1-voxel one nobody finds
        made.append(case)
        image = np.ones((10, 10, 10), np.float32)
        label = np.zeros(image.shape, np.uint8)
        label[3, 3, 3:6] = 1
        image[3, 3, 3:6] = 1.5
        label[7, 7, 7] = 1
        image[7, 7, 7] = 0.8
        return types.SimpleNamespace(image=image, affine=np.eye(4), brainmask=np.ones(image.shape, np.uint8), label=label,
                                     meta={"acquisition": {"noise_sigma": 0.1}})

    class Model:
        def predict(self, image, step=None):
            mask = np.zeros(image[0].shape, np.uint8)
            mask[3, 3, 4] = 1
            return types.SimpleNamespace(mask=mask)

    monkeypatch.setattr(heldout, "make_heldout_case", fake_case)
    monkeypatch.setattr(mednet_pvs, "load_pretrained", lambda name, device=None: asked.append(name) or Model())
    threads = torch.get_num_threads()
    try:
        assert mod.main(["--model", "some/folder", "--threads", "2", "--out", str(tmp_path / "det")]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    groups = heldout_groups(legacy=False)
    assert asked == ["some/folder"] and len(made) == len(groups)
    assert all(c.role == "fit" for c in made) and {c.seed for c in made}.isdisjoint({heldout_case(g, 0).seed for g in groups})
    text = (tmp_path / "det.txt").read_text()
    row = next(line for line in text.splitlines() if line.startswith("PD thick head"))
    assert row.split()[4:8] == ["2", "4", "0.50", "0.25"]  # clusters, voxels, found, voxels under 3 s.d.
    records = json.loads((tmp_path / "det.json").read_text())
    assert len(records) == 2 * len(groups) and {r["found"] for r in records} == {True, False}
    assert f"all {2 * len(groups)} clusters ({4 * len(groups)} labelled voxels): found 0.50" in text
