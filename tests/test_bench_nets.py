"""``benchmarks/bench_nets.py`` times the training configs' own networks on the CPU in float32 and
under bfloat16 autocast (``--configs``, ``--device cpu,cpu-bf16``): the measurement behind the choice
of ``synth_any_plain`` for CPU training. Tiny patch, one repeat: this checks the script, not speed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_nets.py"


def test_bench_nets_times_config_networks_in_float32_and_bf16(tmp_path):
    out = tmp_path / "nets.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--nets", "", "--configs", "synth_any,synth_any_plain",
                           "--reference", "synth_any", "--patch", "32", "--batch", "1", "--repeats", "1", "--warmup", "0",
                           "--device", "cpu,cpu-bf16", "--modes", "fwd+bwd", "--no-cpu-memory", "--threads", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {(r["device"], r["network"]): r for r in json.loads(out.read_text())}
    assert set(rows) == {(d, n) for d in ("cpu", "cpu-bf16") for n in ("synth_any", "synth_any_plain")}
    # the configs' own networks: the ~1 M-parameter MedNeXt and the 5.6 M-parameter plain U-Net
    assert 0.9e6 < rows["cpu", "synth_any"]["params"] < 1.0e6
    assert 5.5e6 < rows["cpu", "synth_any_plain"]["params"] < 5.7e6
    assert all(r["seconds"] > 0 for r in rows.values())
    assert "ratios to synth_any" in done.stdout and "cpu-bf16" in done.stdout


def test_bench_nets_refuses_an_unknown_device():
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "tpu"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown tpu" in done.stderr
