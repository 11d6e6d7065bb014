"""``benchmarks/gpu_check.py --tiny`` (the GPU check's dry run on the CPU) runs every section and
writes them all as numbers, so the script cannot rot before a GPU is lent.

Measured: 15-18 s on 2 CPU cores (most of it imports and the networks' first calls)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _number(d: dict, *path: str) -> float:
    for p in path:
        assert isinstance(d, dict) and p in d, f"missing {'.'.join(path)} (at {p!r})"
        d = d[p]
    assert isinstance(d, (int, float)) and not isinstance(d, bool), f"{'.'.join(path)} = {d!r} is not a number"
    assert math.isfinite(d), f"{'.'.join(path)} = {d!r}"
    return float(d)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "x.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return done, out


@pytest.mark.slow
def test_dry_run_exits_0_and_says_it_is_a_dry_run(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "DRY RUN" in done.stdout and "NOT the targets' measurement" in done.stdout
    data = json.loads(out.read_text())
    assert data["dry_run"] is True and data["tiny"] is True and data["failed_sections"] == []
    assert data["environment"]["device"] == "cpu" and data["environment"]["torch"]


@pytest.mark.slow
def test_dry_run_writes_every_section_as_numbers(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(out.read_text())
    for role in ("mednext_l_k5", "nnunet_resenc_m"):
        assert _number(data, "predict", role, "flops_per_tile") > 0
        for tta, passes in (("no_tta", 1), ("tta", 8)):
            assert _number(data, "predict", role, tta, "seconds") > 0
            assert _number(data, "predict", role, tta, "tflops") > 0
            assert _number(data, "predict", role, tta, "peak_gib") > 0
            assert _number(data, "predict", role, tta, "tiles") >= 1
            assert _number(data, "predict", role, tta, "passes") == passes
    assert _number(data, "batch", "scans_per_hour") > 0 and _number(data, "batch", "scans") == 2
    for k in ("bundled", "mednext_l_k5"):
        assert 0 <= _number(data, "precision", k, "dice") <= 1
    assert _number(data, "precision", "bundled", "mask_voxels_fp32") > 0, "the trained model finds PVS in the phantom"
    for m in ("ours", "ours-grid", "monai"):
        assert _number(data, "monai", m, "seconds") > 0
    assert _number(data, "monai", "speedup_vs_monai") > 0 and _number(data, "monai", "ratio_ours_over_monai") > 0
    assert _number(data, "monai", "ours-grid", "logits_max_abs_diff_vs_monai") < 1e-3  # same tiles: same logits
    assert _number(data, "training", "step", "step_s") > 0 and _number(data, "training", "step", "peak_mem_MiB") >= 0
    assert _number(data, "training", "loader", "step_s") > 0 and _number(data, "training", "loader", "measured_steps") >= 1
    assert 0 <= _number(data, "training", "data_wait_share") < 1
    assert _number(data, "pipeline", "device", "seconds") > 0 and _number(data, "pipeline", "torchio", "seconds") > 0
    assert _number(data, "pipeline", "dice") >= 0.999
    targets = {t["target"]: t for t in data["targets"]}
    assert set(targets) == {"predict_l_k5_no_tta_s", "predict_l_k5_tta_s", "speedup_vs_monai", "scans_per_hour",
                            "bf16_dice", "data_wait_share"}
    for t in targets.values():
        assert isinstance(t["value"], float) and isinstance(t["met"], bool) and t["counts"] is False
