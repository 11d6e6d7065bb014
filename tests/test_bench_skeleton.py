"""benchmarks/bench_skeleton.py measures the skeleton's cost in the workers and in the trainer."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("mednet_pvs.synth")
ROOT = Path(__file__).resolve().parents[1]


def test_bench_skeleton_writes_measured_ratios(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_skeleton", ROOT / "benchmarks/bench_skeleton.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "skel.json"
    assert bench.main(["--volumes", "1", "--repeats", "1", "--step", "0.5", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    (vol,) = res["volumes"]
    assert vol["volume_s"] > 0 and vol["skeleton_s"] > 0 and vol["ratio"] == pytest.approx(vol["skeleton_s"] / vol["volume_s"], abs=1e-3)
    assert 0 < vol["tube_voxels"] <= vol["pvs_voxels"] and res["gpu_step_s"] == 0.5
    assert set(res["trainer_per_batch_s"]) == {"2x48^3", "8x96^3"}
    assert res["trainer_per_batch_s"]["8x96^3"] > res["trainer_per_batch_s"]["2x48^3"] > 0
    assert "x a 0.5 s GPU step" in capsys.readouterr().out
