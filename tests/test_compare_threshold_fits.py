"""``benchmarks/compare_threshold_fits.py`` pairs two threshold fits case by case, each at its own
best threshold, counting each shared fit case once: on the committed fits, session 20's stage 8
against the shipped pair is -0.018 +- 0.012."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_threshold_fits.py"
RESULTS = ROOT / "benchmarks" / "results"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_pairs_the_cases_at_each_fits_best_threshold():
    done = run(str(RESULTS / "synth_any_threshold_fit_ens56_bundle.txt"), str(RESULTS / "synth_any_threshold_fit_stage8w24.txt"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "(threshold 0.35)" in out[0] and "(threshold 0.25)" in out[0] and "14 distinct fit cases" in out[0]
    rows = {ln.split()[0] + " " + ln.split()[1]: ln.split() for ln in out[2:-1]}
    assert len(rows) == 14 and "PD 1mm" in rows
    assert rows["T1w 0.8mm"][-3:] == ["0.265", "0.204", "-0.061"]  # the pair at 0.35, stage 8 at 0.25 (the files' own rows)
    assert out[-1] == "mean: base 0.350, candidate 0.332; difference -0.018 +- 0.012 (standard error); up 4, down 8, level 2"


def test_refuses_a_file_that_is_not_a_fit(tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("held-out evaluation\n")
    done = run(str(RESULTS / "synth_any_threshold_fit_stage5_auto.txt"), str(other))
    assert done.returncode != 0 and f"error: {other}: not a fit_threshold_synth_any.py result" in done.stderr
    done = run(str(tmp_path / "missing.txt"), str(other))
    assert done.returncode != 0 and "missing.txt: not found" in done.stderr
