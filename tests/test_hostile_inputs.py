"""Bad input and interrupted work, one row per class, through the CLI (and the API where it has one).

Every row runs a command on hostile input and checks what a user with a hundred scans relies on:
the exit code, one ``error:`` line naming the file and the problem, no traceback, nothing written
outside the output folder, no partial files left. ``CLASSES`` lists every class the adversarial
review of issue 18 tried; each has a test here or names the test elsewhere that keeps it fixed.
"""
from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.cli.main import main
from mednet_pvs.errors import InputError, MednetError
from mednet_pvs.io import load_image, safe_case_id
from mednet_pvs.synth import PhantomConfig, make_cohort

AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_cohort")
    make_cohort(root, 2, PhantomConfig(anatomy="procedural", shape=(32, 32, 32), contrast="T2w", burden=3), seed=3)
    return root


def _scan(cohort: Path, i: int = 1) -> Path:
    return cohort / f"sub-00{i}" / f"sub-00{i}_T2w.nii.gz"


def _tree(root: Path, skip: Path | None = None) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip is None or skip not in (p, *p.parents)}


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def refused(argv: list[str], capsys, *needles: str) -> str:
    """The command fails with exit 1 and one ``error:`` line holding every needle, no traceback."""
    code, err = run(argv, capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 1, err
    assert "Traceback" not in err, err
    assert len(errors) == 1, err
    assert all(n in errors[0] for n in needles), errors[0]
    return errors[0]


# ----------------------------------------------------------------------------- hostile files


def _rgb(path: Path) -> Path:
    data = np.zeros((16, 16, 16), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    data["R"] = np.arange(16 ** 3).reshape(16, 16, 16) % 251
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path


def _complex(path: Path) -> Path:
    nib.save(nib.Nifti1Image((np.random.default_rng(0).random((16, 16, 16)) + 1j).astype(np.complex64), AFFINE), path)
    return path


def _huge_header(path: Path, side: int = 1000) -> Path:
    """A 4 KB file whose header claims ``side``^3 float32 voxels."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((side, side, side))
    hdr.set_data_dtype(np.float32)
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 4000)
    return path


def _pixdim0(path: Path) -> Path:
    """No qform/sform and pixdim 0: nibabel would guess a 1 mm grid."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((16, 16, 16))
    hdr.set_data_dtype(np.float32)
    hdr["pixdim"] = [1, 0, 0, 0, 0, 0, 0, 0]
    hdr["qform_code"] = hdr["sform_code"] = 0
    hdr["vox_offset"] = 352
    data = np.random.default_rng(0).random((16, 16, 16), dtype=np.float32)
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F"))
    return path


HOSTILE_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "rgb": (_rgb, "colour (RGB/RGBA) image"),
    "complex": (_complex, "complex-valued image"),
    "huge_header": (_huge_header, "header claims 1000 x 1000 x 1000 voxels"),
    "huge_header_20000": (lambda p: _huge_header(p, 20000), "header claims 20000 x 20000 x 20000 voxels"),
    "pixdim_0": (_pixdim0, "voxel size (pixdim)"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
def test_hostile_file_api_one_line_bounded_memory(tmp_path, kind):
    make, needle = HOSTILE_FILES[kind]
    path = make(tmp_path / f"{kind}.nii")
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")) as info:
            load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.path == str(path) and "\n" not in str(info.value)
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated before refusing a {path.stat().st_size} byte file"


@pytest.mark.parametrize("command", ["info", "check-data", "predict"])
@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
def test_hostile_file_cli(tmp_path, cohort, capsys, kind, command):
    make, needle = HOSTILE_FILES[kind]
    path = make(tmp_path / f"{kind}.nii")
    out = tmp_path / "out"
    if command == "info":
        refused(["info", path], capsys, str(path), needle)
        return
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"subject,image\nsub-bad,{path}\nsub-good,{_scan(cohort)}\n")
    if command == "check-data":
        code, err = run(["check-data", manifest, "--no-label", "--json", tmp_path / "report.json"], capsys)
        assert code == 1 and "Traceback" not in err and "1 of 2 case(s) have problems" in err
        assert needle in (tmp_path / "report.json").read_text(), "the report names the problem of the bad case"
        return
    code, err = run(["predict", "-i", manifest, "-o", out, "-m", "frangi-t2w"], capsys)
    assert code == 1 and "Traceback" not in err and needle in err
    assert (out / "sub-good" / "sub-good_mask.nii.gz").is_file(), "one bad file never costs the others their results"
    assert not (out / "sub-bad").exists() or not any((out / "sub-bad").iterdir())


# ------------------------------------------------------------------------------- case ids


@pytest.mark.parametrize("subject", ["../../escaped", "ABSOLUTE", "..", ".hidden", "a/../../b"])
def test_case_ids_never_escape_the_output_folder(tmp_path, cohort, capsys, subject):
    if subject == "ABSOLUTE":
        subject = str(tmp_path / "abs" / "ABS")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    manifest = work / "m.csv"
    manifest.write_text(f"subject,image\n{subject},{_scan(cohort)}\n")
    before = _tree(tmp_path)
    out = work / "out"
    refused(["predict", "-i", manifest, "-o", out, "-m", "frangi-t2w"], capsys, str(manifest), "row 2", repr(subject))
    assert _tree(tmp_path, skip=out) == before, "nothing written outside -o"
    assert not (out.exists() and any(out.rglob("*.nii.gz")))
    refused(["check-data", manifest, "--no-label"], capsys, str(manifest), repr(subject))  # the same rule in check-data
    with pytest.raises(InputError):
        safe_case_id(subject)


def test_nested_case_id_is_one_folder_and_resumes(tmp_path, cohort, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"subject,image\nsite1/sub-01,{_scan(cohort)}\n")
    out = tmp_path / "out"
    assert run(["predict", "-i", manifest, "-o", out, "-m", "frangi-t2w"], capsys)[0] == 0
    assert (out / "site1_sub-01" / "site1_sub-01_mask.nii.gz").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "site1_sub-01", "summary.csv"]
    code, err = run(["predict", "-i", manifest, "-o", out, "-m", "frangi-t2w"], capsys)
    assert code == 0 and "0 done, 1 skipped" in err, "an ordinary nested id is not recomputed on every run"


# ---------------------------------------------------------------------------- resume rules


def test_resume_refuses_another_models_results_and_overwrite_replaces(tmp_path, cohort, capsys):
    out = tmp_path / "out"
    args = ["predict", "-i", _scan(cohort), "-o", out]
    assert run([*args, "-m", "frangi-t2w"], capsys)[0] == 0
    case = out / "sub-001_T2w"
    mask = case / "sub-001_T2w_mask.nii.gz"
    stats = json.loads((case / "sub-001_T2w_stats.json").read_text())
    prov = stats["provenance"]
    assert prov["model"]["name"] == prov["model"]["source"] == "frangi-t2w" and prov["settings"]["threshold"] > 0 and prov["version"]
    assert len(prov["inputs"]["image"]["sha256"]) == 64
    assert "<array>" not in json.dumps(stats), "no stray fields in stats.json"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["provenance"]["model"] == prov["model"] and run_json["done"] == ["sub-001_T2w"]
    before = mask.read_bytes()

    refused([*args, "-m", "frangi-t1w"], capsys, "sub-001_T2w_stats.json", "model.name frangi-t2w -> frangi-t1w", "--overwrite")
    assert mask.read_bytes() == before, "the other model's mask is kept, not mixed"
    assert run([*args, "-m", "frangi-t1w", "--overwrite"], capsys)[0] == 0
    assert json.loads((case / "sub-001_T2w_stats.json").read_text())["provenance"]["model"]["name"] == "frangi-t1w"


def test_resume_refuses_changed_input_and_settings(tmp_path, cohort, capsys):
    import torch

    from mednet_pvs.inference import InferenceConfig, PVSModel
    from mednet_pvs.nets import create_network

    torch.manual_seed(0)
    spec = {"name": "mednext_s_k3", "kwargs": {"n_channels": 2}}
    bundle = PVSModel(create_network(spec["name"], **spec["kwargs"]), spec, {"target_spacing": [2.0, 2.0, 2.0]},
                      InferenceConfig.from_dict({"patch_size": (32, 32, 32)}), device="cpu").save_pretrained(tmp_path / "model")
    scan = tmp_path / "in" / "case.nii.gz"
    scan.parent.mkdir()
    scan.write_bytes(_scan(cohort).read_bytes())
    out = tmp_path / "out"
    args = ["predict", "-i", scan, "-o", out, "-m", bundle, "--device", "cpu"]
    assert run([*args, "--no-tta"], capsys)[0] == 0
    refused([*args, "--no-tta", "--step", "0.75"], capsys, "case_stats.json", "settings.step 0.5 -> 0.75")
    refused([*args, "--tta"], capsys, "settings.mirror_axes")
    scan.write_bytes(_scan(cohort, 2).read_bytes())
    refused([*args, "--no-tta"], capsys, "inputs.image.sha256")


def test_resume_writes_outputs_asked_for_later(tmp_path, cohort, capsys):
    out = tmp_path / "out"
    args = ["predict", "-i", _scan(cohort), "-o", out, "-m", "frangi-t2w"]
    assert run(args, capsys)[0] == 0
    prob = out / "sub-001_T2w" / "sub-001_T2w_prob.nii.gz"
    assert not prob.exists()
    code, err = run([*args, "--save-probs"], capsys)
    assert code == 0 and "1 done" in err and prob.is_file(), "--save-probs on a resumed run is not ignored"


def test_partial_files_of_a_killed_write_are_removed(tmp_path, cohort, capsys):
    out = tmp_path / "out"
    case = out / "sub-001_T2w"
    case.mkdir(parents=True)
    stale = [case / ".sub-001_T2w_mask.nii.gz.abc123.tmp.nii.gz", case / ".sub-001_T2w_stats.json.xyz.tmp.json"]
    for p in stale:
        p.write_bytes(b"partial")
    mine = case / "notes.txt"
    mine.write_text("not ours")
    assert run(["predict", "-i", _scan(cohort), "-o", out, "-m", "frangi-t2w"], capsys)[0] == 0
    assert not any(p.exists() for p in stale) and mine.exists()
    assert not list(out.rglob("*.tmp*"))


# ------------------------------------------------------------------------- output location


@pytest.mark.parametrize("command", ["predict", "synth", "evaluate", "import-nnunet-v1", "check-data-json", "fit-frangi", "demo"])
@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_output_location_checked_up_front(tmp_path, cohort, capsys, command, where):
    if where == "file":
        out = tmp_path / "taken"
        out.write_text("a file")
        needle = "is an existing file" if command != "check-data-json" else None
    else:
        if not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and os.geteuid() != 0:
            pytest.skip("needs a folder this user cannot write (/sys)")
        out = Path("/sys/mednet-pvs-out")
        needle = "cannot be created"
    argv = {
        "predict": ["predict", "-i", _scan(cohort), "-o", out, "-m", "frangi-t2w"],
        "synth": ["synth", out, "-n", "1", "--anatomy", "procedural", "--shape", "32"],
        "evaluate": ["evaluate", "--pred", cohort, "--ref", cohort / "manifest.csv", "-o", out],
        "import-nnunet-v1": ["import-nnunet-v1", tmp_path, "-o", out],
        "check-data-json": ["check-data", cohort / "manifest.csv", "--json", out / "report.json" if where == "file" else out / "r.json"],
        "fit-frangi": ["fit-frangi", "--data", cohort / "manifest.csv", "-o", out],
        "demo": ["demo", "--out", out, "--anatomy", "procedural", "-m", "none"],
    }[command]
    line = refused(argv, capsys, str(out))
    if needle:
        assert needle in line
    if where == "file":
        assert out.read_text() == "a file"


# ------------------------------------------------------------------------------ the rest


def test_missing_device_names_the_ones_there_are(tmp_path, cohort, capsys):
    import torch

    from mednet_pvs.inference.frangi_model import FrangiModel

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for device in ("cuda", "cuda:1"):
        refused(["predict", "-i", _scan(cohort), "-o", tmp_path / "o", "-m", "mednet-pvs-synth-t2w", "--device", device],
                capsys, f"device '{device}' is not available on this machine (available: cpu")
    refused(["predict", "-i", _scan(cohort), "-o", tmp_path / "o", "-m", "frangi-t2w", "--device", "cuda"], capsys, "not available")
    with pytest.raises(MednetError, match="not a device name"):
        FrangiModel().to("gpu0")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.nii.gz"))


def test_nrrd_is_not_read_as_a_manifest(tmp_path, capsys):
    f = tmp_path / "scan.nrrd"
    f.write_text("NRRD0004\ntype: float\ndimension: 3\n")
    refused(["predict", "-i", f, "-o", tmp_path / "out", "-m", "frangi-t2w"], capsys, str(f), "convert other formats")


def test_anisotropy_refusal_names_the_option_the_cli_has(tmp_path, cohort, capsys):
    img = nib.load(_scan(cohort))
    thick = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, ::10], img.affine @ np.diag([1, 1, 10, 1])), thick)
    code, err = run(["predict", "-i", thick, "-o", tmp_path / "out", "-m", "frangi-t2w"], capsys)
    assert code == 1 and "Traceback" not in err and f"{thick}: extreme anisotropy" in err and "--max-anisotropy" in err
    code, err = run(["predict", "-i", thick, "-o", tmp_path / "out", "-m", "frangi-t2w", "--max-anisotropy", "12"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "thick" / "thick_mask.nii.gz").is_file()


def test_corrupt_weights_refused(tmp_path, cohort, capsys):
    from mednet_pvs.zoo import load_pretrained

    bundle = load_pretrained("mednet-pvs-synth-t2w", device="cpu").save_pretrained(tmp_path / "model")
    weights = bundle / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 64] = os.urandom(64)
    weights.write_bytes(bytes(blob))
    refused(["predict", "-i", _scan(cohort), "-o", tmp_path / "out", "-m", bundle], capsys, "sha256")


def test_kill_9_mid_batch_then_resume_equals_a_clean_run(tmp_path, cohort):
    """SIGKILL while a batch writes, then the same command again: outputs identical to a clean run."""
    import signal
    import subprocess
    import sys
    import time

    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(4):
        (scans / f"s{i}.nii.gz").write_bytes(_scan(cohort, 1 + i % 2).read_bytes())
    cmd = [sys.executable, "-m", "mednet_pvs.cli.main", "predict", "-i", str(scans), "-m", "frangi-t2w", "--save-probs"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert subprocess.run([*cmd, "-o", str(clean)], capture_output=True, timeout=600).returncode == 0
    proc = subprocess.Popen([*cmd, "-o", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "s1" / "s1_stats.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the batch was killed before it finished"
    assert not (killed / "s3" / "s3_stats.json").exists()
    res = subprocess.run([*cmd, "-o", str(killed)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    files = sorted(str(f.relative_to(clean)) for f in clean.rglob("*") if f.is_file() and f.name != "run.json")
    assert files == sorted(str(f.relative_to(killed)) for f in killed.rglob("*") if f.is_file() and f.name != "run.json")
    for name in files:
        a, b = clean / name, killed / name
        if name.endswith(".nii.gz"):
            assert np.array_equal(np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj)), name
        else:
            assert a.read_text().replace(str(clean), "") == b.read_text().replace(str(killed), ""), name


# ----------------------------------------------------------------------------- the register


@dataclass(frozen=True)
class Class:
    name: str
    where: str  # the test(s) that keep it fixed


#: Every class the adversarial review of issue 18 found broken, and where it is tested.
CLASSES = [
    Class("path escape through case ids (../, absolute, hidden)", "test_case_ids_never_escape_the_output_folder"),
    Class("nested case id recomputed on every run", "test_nested_case_id_is_one_folder_and_resumes"),
    Class("resume mixes models; provenance in stats and run.json; no stray stats fields", "test_resume_refuses_another_models_results_and_overwrite_replaces"),
    Class("resume ignores changed settings or input", "test_resume_refuses_changed_input_and_settings"),
    Class("resume ignores --save-probs", "test_resume_writes_outputs_asked_for_later"),
    Class("failed cases missing from summary.csv", "tests/cli/test_cmd_predict.py::test_folder_batch_resume_and_failure"),
    Class("corrupt weights go unnoticed", "test_corrupt_weights_refused"),
    Class("RGB NIfTI crashes info/check-data/evaluate", "test_hostile_file_cli[rgb]"),
    Class("complex images silently made real", "test_hostile_file_cli[complex]"),
    Class("hostile header allocates GBs / MemoryError", "test_hostile_file_api_one_line_bounded_memory[huge_header*]"),
    Class("missing CUDA/MPS device: AssertionError; Frangi ignores --device", "test_missing_device_names_the_ones_there_are"),
    Class("output location is a file or unwritable", "test_output_location_checked_up_front"),
    Class("bundle config.json values unchecked", "tests/inference/test_bundle_validation.py"),
    Class("validate --ckpt_path evil.ckpt traceback", "tests/cli/test_cmd_train_ckpt.py"),
    Class("evaluate scores 0/1/2 and -1 labels", "tests/analysis/test_evaluate.py"),
    Class(".nrrd read as a manifest", "test_nrrd_is_not_read_as_a_manifest"),
    Class("pixdim 0 without qform/sform guessed as 1 mm", "test_hostile_file_cli[pixdim_0]"),
    Class("info stops at the first bad file", "tests/cli/test_cmd_info.py"),
    Class("anisotropy error names an option the CLI lacks", "test_anisotropy_refusal_names_the_option_the_cli_has"),
    Class("killed write leaves temp files resume never removes", "test_partial_files_of_a_killed_write_are_removed"),
    Class("unpinned hf:// follows main without a word", "tests/zoo/test_zoo_hub.py"),
]


#: Classes that already held in that review, and the tests that keep them holding.
HELD = [
    Class("pickles that could run code (torch_load, read_pickle)", "tests/test_safe_load.py"),
    Class("malicious nnU-Net v1 plans and checkpoints", "tests/zoo/test_zoo_import_nnunet_v1.py"),
    Class("Hub download with a wrong sha256", "tests/zoo/test_zoo_hub.py"),
    Class("kill -9 mid batch, then resume", "test_kill_9_mid_batch_then_resume_equals_a_clean_run"),
    Class("kill -9 mid training, then resume", "tests/training/test_training_resume.py"),
    Class("shards never overlap", "tests/cli/test_cmd_predict.py::test_shards_partition_the_inputs"),
    Class("truncated gzip, empty file, NaN, 2D/4D, singular affine", "tests/test_io.py"),
    Class("manifest problems named by row", "tests/data_layer/test_data_cases.py"),
]


def test_every_class_names_an_existing_test():
    here = Path(__file__).read_text()
    root = Path(__file__).parent
    for c in CLASSES + HELD:
        target = c.where.split("::")[0].split("[")[0]
        if target.startswith("tests/"):
            assert (root.parent / target).is_file(), c
        else:
            assert f"def {target}(" in here, c


def test_system_refusals_and_warnings_are_one_line(tmp_path, monkeypatch, capsys):
    """An OSError the system raises (permissions, disk full) names its file; a warning is one line."""
    import mednet_pvs.inference.batch as batch

    f = tmp_path / "locked.nii.gz"
    f.write_bytes(b"x")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(f))

    monkeypatch.setattr(batch, "collect_inputs", denied)
    code, err = run(["predict", "-i", f, "-o", tmp_path / "out", "-m", "frangi-t2w"], capsys)
    assert code == 1 and "Traceback" not in err and f"error: {f}: Permission denied" in err

    import subprocess
    import sys

    script = (  # in a fresh interpreter: pytest records warnings instead of printing them
        "import warnings, mednet_pvs.io as io\n"
        "from mednet_pvs.errors import InputError\n"
        "def warn(*a, **k):\n"
        "    warnings.warn('something worth knowing', stacklevel=1)\n"
        "    raise InputError('x.nii.gz', 'stop here')\n"
        "io.load_image = warn\n"
        "from mednet_pvs.cli.main import main\n"
        "raise SystemExit(main(['info', 'x.nii.gz']))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.splitlines()[0] == "warning: something worth knowing", res.stderr

