"""``mednet-pvs predict``: batches, resume, failures isolated, shards, outputs on the input grid."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.cli.main import main
from mednet_pvs.inference.batch import collect_inputs, parse_shard, select_shard
from mednet_pvs.synth import PhantomConfig, make_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root, 4, PhantomConfig(anatomy="procedural", shape=(48, 48, 48), contrast="T2w", burden=3), seed=1)
    return root


def _flat_inputs(cohort: Path, dest: Path) -> Path:
    dest.mkdir()
    for p in sorted(cohort.glob("sub-*/**/*_T2w.nii.gz")):
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_folder_batch_resume_and_failure(tmp_path, cohort, capsys):
    scans = _flat_inputs(cohort, tmp_path / "scans")
    names = sorted(p.name for p in scans.iterdir())
    assert len(names) == 4
    bad = scans / "zzz_broken.nii.gz"
    bad.write_bytes((scans / names[0]).read_bytes()[:500])
    out = tmp_path / "out"

    code = main(["predict", "-i", str(scans), "-o", str(out), "-m", "frangi", "--save-probs", "--preview"])
    err = capsys.readouterr().err
    assert code == 1, "a failed case makes the exit code non-zero"
    assert "zzz_broken" in err and "truncated" in err and "Traceback" not in err
    assert "4 done, 0 skipped (already done), 1 failed" in err
    rows = _rows(out / "summary.csv")
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and all(int(r["count"]) >= 0 for r in ok)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["case_id"] for r in failed] == ["zzz_broken"] and "truncated" in failed[0]["error"], "failed cases are listed with their reason"
    case = names[0].replace(".nii.gz", "")
    src = nib.load(scans / names[0])
    mask = nib.load(out / case / f"{case}_mask.nii.gz")
    assert mask.shape == src.shape and np.allclose(mask.affine, src.affine)
    assert mask.get_data_dtype() == np.uint8
    assert (out / case / f"{case}_prob.nii.gz").exists() and (out / case / f"{case}_preview.png").exists()
    stats = json.loads((out / case / f"{case}_stats.json").read_text())
    assert stats["count"] == int(rows[0]["count"])

    bad.unlink()
    before = (out / case / f"{case}_mask.nii.gz").stat().st_mtime_ns
    code = main(["predict", "-i", str(scans), "-o", str(out), "-m", "frangi"])
    err = capsys.readouterr().err
    assert code == 0
    assert "0 done, 4 skipped (already done), 0 failed" in err
    assert (out / case / f"{case}_mask.nii.gz").stat().st_mtime_ns == before
    assert len(_rows(out / "summary.csv")) == 4


def test_manifest_with_regions_and_brainmask(tmp_path, cohort, capsys):
    regions = tmp_path / "regions"
    regions.mkdir()
    for p in cohort.glob("sub-*/**/*_regions.nii.gz"):
        (regions / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    code = main(["predict", "-i", str(cohort / "manifest.csv"), "-o", str(out), "-m", "frangi", "--regions", str(regions)])
    assert code == 0, capsys.readouterr().err
    rows = _rows(out / "summary.csv")
    assert len(rows) == 4
    assert "wm_count" in rows[0] and "bg_count" in rows[0]


def test_manifest_regions_column_gives_per_region_burden(tmp_path, cohort, capsys):
    """make_cohort's manifest lists each phantom's region map; predict reads that column (as evaluate does)."""
    assert all((cohort / r["regions"]).is_file() for r in _rows(cohort / "manifest.csv"))
    cases = collect_inputs(cohort / "manifest.csv")
    assert all(c.regions is not None and c.regions.is_file() and c.case_id in c.regions.name for c in cases)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(cohort / "manifest.csv"), "-o", str(out), "-m", "frangi"]) == 0, capsys.readouterr().err
    rows = _rows(out / "summary.csv")
    assert len(rows) == 4 and "wm_count" in rows[0] and "bg_count" in rows[0]


def test_shards_partition_the_inputs(tmp_path, cohort, capsys):
    cases = collect_inputs(cohort / "manifest.csv")
    parts = [select_shard(cases, (k, 3)) for k in (1, 2, 3)]
    ids = [c.case_id for p in parts for c in p]
    assert sorted(ids) == sorted(c.case_id for c in cases) and len(set(ids)) == len(ids)
    out = tmp_path / "out"
    for k in (1, 2):
        assert main(["predict", "-i", str(cohort / "manifest.csv"), "-o", str(out), "-m", "frangi", "--shard", f"{k}/2"]) == 0
    a, b = _rows(out / "summary_shard-1-of-2.csv"), _rows(out / "summary_shard-2-of-2.csv")
    assert len(a) + len(b) == 4 and not {r["case_id"] for r in a} & {r["case_id"] for r in b}
    with pytest.raises(Exception, match="K/N"):
        parse_shard("0/4")


def test_bundle_model_on_lps_input(tmp_path, cohort, capsys):
    """A learned-model bundle through the CLI; the output lines up with an LPS-stored input."""
    import torch

    from mednet_pvs.inference import InferenceConfig, PVSModel
    from mednet_pvs.nets import create_network

    torch.manual_seed(0)
    spec = {"name": "mednext_s_k3", "kwargs": {"n_channels": 2}}
    folder = PVSModel(create_network(spec["name"], **spec["kwargs"]), spec, {"target_spacing": [1.5, 1.5, 1.5]},
                      InferenceConfig.from_dict(dict(patch_size=(32, 32, 32), mirror_axes=())), device="cpu").save_pretrained(tmp_path / "model")
    src = next(cohort.glob("sub-*/**/*_T2w.nii.gz"))
    img = nib.load(src)
    lps = nib.Nifti1Image(np.asanyarray(img.dataobj)[::-1, ::-1], img.affine @ np.diag([-1, -1, 1, 1]) @ _shift(img.shape))
    path = tmp_path / "lps.nii.gz"
    nib.save(lps, path)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(path), "-o", str(out), "-m", str(folder), "--no-tta"]) == 0, capsys.readouterr().err
    mask = nib.load(out / "lps" / "lps_mask.nii.gz")
    assert mask.shape == lps.shape and np.allclose(mask.affine, lps.affine)


def _shift(shape):
    m = np.eye(4)
    m[0, 3], m[1, 3] = shape[0] - 1, shape[1] - 1
    return m


def test_unknown_or_unavailable_model_is_one_line(tmp_path, capsys):
    src = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32), np.eye(4)), src)
    assert main(["predict", "-i", str(src), "-o", str(tmp_path / "o"), "-m", "mednet-pvs-t3w"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mednet-pvs-t3w" in err[0] and "mednet-pvs-t2w" in err[0]  # close match suggested
    # A registered set-up without public weights says so and how to import the authors' files.
    assert main(["predict", "-i", str(src), "-o", str(tmp_path / "o"), "-m", "mednet-pvs-t2w"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "import-nnunet-v1" in err[0]


def _tiled_frangi(monkeypatch):
    """frangi-t2w, reporting 8 tiles per case as a network model does."""
    from mednet_pvs.inference.frangi_model import FrangiModel

    real = FrangiModel.predict

    def predict(self, image, *, progress=None, **kw):
        for k in range(1, 9):
            if progress is not None:
                progress(k, 8)
        return real(self, image, **kw)

    monkeypatch.setattr(FrangiModel, "predict", predict)


def test_plain_progress_shows_tiles_and_time_left_and_quiet_hides_it(tmp_path, cohort, capsys, monkeypatch):
    _tiled_frangi(monkeypatch)
    scans = _flat_inputs(cohort, tmp_path / "scans")
    (scans / "zz_broken.nii.gz").write_bytes(b"not gzip")
    code = main(["predict", "-i", str(scans), "-o", str(tmp_path / "a"), "-m", "frangi-t2w"])
    err = capsys.readouterr().err
    assert code == 1
    first = sorted(p.name for p in scans.iterdir())[0].replace(".nii.gz", "")
    lines = [ln.strip() for ln in err.splitlines()]
    shown = [ln.split(",")[0] for ln in lines if ln.startswith(f"{first}: ")]
    assert shown == [f"{first}: 2/8 tiles", f"{first}: 4/8 tiles", f"{first}: 6/8 tiles"], "a line every quarter"
    assert all(ln.endswith(" s left") for ln in lines if "tiles," in ln)
    assert f"done {first}:" in " ".join(err.split()) and "\x1b[" not in err, "plain lines, no terminal codes, in a log file"
    code = main(["predict", "-i", str(scans), "-o", str(tmp_path / "b"), "-m", "frangi-t2w", "-q"])
    err = capsys.readouterr().err
    lines = [ln.strip() for ln in err.splitlines()]
    assert code == 1 and not [ln for ln in lines if " tiles, " in ln or ln.startswith(("done", "model:"))]
    assert "failed zz_broken" in " ".join(err.split()) and "4 done, 0 skipped" in err


def test_terminal_progress_has_a_bar_for_the_tiles_of_the_case():
    import io

    from rich.console import Console

    from mednet_pvs.cli.progress import BarProgress

    out = io.StringIO()
    show = BarProgress(Console(file=out, force_terminal=True, width=100), 2)
    with show:
        for k in (2, 4):
            show.tile("sub-01", k, 4)
        show.case("sub-01", "done", "3 PVS")
        show.tile("sub-02", 1, 6)
        task = show.bar.tasks[show.tiles]
        assert (task.description, task.completed, task.total) == ("sub-02", 1, 6), "a new case restarts the tile bar"
    assert show.bar.tasks[show.cases].completed == 1 and "sub-01: 3 PVS" in out.getvalue()


def test_brain_mode_is_applied_recorded_and_checked(tmp_path, cohort, capsys):
    """``--brain-mode`` sets how a brain-class model makes its brain mask; it is recorded with each
    case; a bad value, or a model that does not find the brain, is one line."""
    import torch

    from mednet_pvs.inference import InferenceConfig, PVSModel
    from mednet_pvs.nets import create_network

    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "n_classes": 3, "n_channels": 2, "exp_r": 2, "kernel_size": 3, "block_counts": [1] * 9,
              "deep_supervision": False}
    folder = PVSModel(create_network("mednext", **kwargs), {"name": "mednext", "kwargs": kwargs}, {"target_spacing": None},
                      InferenceConfig.from_dict(dict(patch_size=(32, 32, 32), mirror_axes=())),
                      labels={"0": "background", "1": "brain", "2": "PVS"}, device="cpu").save_pretrained(tmp_path / "brainy")
    src = next(cohort.glob("sub-*/**/*_T2w.nii.gz"))
    out = tmp_path / "out"
    assert main(["predict", "-i", str(src), "-o", str(out), "-m", str(folder), "--brain-mode", "auto", "-q",
                 "--regions", "none"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    stats = json.loads(next(out.glob("*/*_stats.json")).read_text())
    assert stats["provenance"]["settings"]["brain_mask"] == "auto"
    assert main(["predict", "-i", str(src), "-o", str(tmp_path / "o2"), "-m", str(folder), "--brain-mode", "third_pass"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--brain-mode must be one of first_pass, both_passes, auto" in err[0]
    assert not (tmp_path / "o2").exists()  # refused before anything was written
    assert main(["predict", "-i", str(src), "-o", str(tmp_path / "o3"), "-m", "frangi", "--brain-mode", "auto"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no brain class" in err[0]
