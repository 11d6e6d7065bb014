#!/usr/bin/env python3
"""One entry point for a fresh clone: set up ``.venv`` (CPU torch, pinned lock) and run things.

    python3 dev.py demo [ARGS]   # set up if needed, then the project's main job (``mednet-pvs demo``)
    python3 dev.py test [ARGS]   # set up if needed, then the test suite (pytest ARGS; -n auto unless -n is given)
    python3 dev.py setup         # only set up

Needs only Python >= 3.10 with pip and venv. The environment is rebuilt when
``requirements/cpu-lock.txt`` or ``pyproject.toml`` change. Environment variables:
``MEDNET_VENV`` (default ``.venv``), ``MEDNET_TORCH`` (default ``torch==2.13.0``: pip takes the
CPU wheel where one is offered, e.g. via ``--find-links``; set it to e.g. ``torch`` on a GPU machine).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MEDNET_VENV", ROOT / ".venv"))
TORCH = os.environ.get("MEDNET_TORCH", "torch==2.13.0")
LOCK = ROOT / "requirements" / "cpu-lock.txt"
STAMP = VENV / ".mednet-setup"


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _fingerprint() -> str:
    h = hashlib.sha256(TORCH.encode())
    for f in (LOCK, ROOT / "pyproject.toml"):
        h.update(f.read_bytes())
    return h.hexdigest()


def _pip(*args: str) -> None:
    cmd = [str(_bin("python")), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    print("+ pip install", " ".join(args), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Drop pip's per-package notes about unusable extra index locations; keep everything else.
    noise = "is ignored: it is neither a file nor a directory"
    out = "\n".join(ln for ln in proc.stdout.splitlines() if noise not in ln)
    if out.strip():
        print(out, flush=True)
    if proc.returncode:
        raise SystemExit(f"pip install {' '.join(args)} failed (exit {proc.returncode})")


def setup() -> None:
    """Create the virtual environment unless it is up to date (idempotent)."""
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    t0 = time.perf_counter()
    if VENV.exists():
        shutil.rmtree(VENV)
    print(f"Setting up {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    _pip(TORCH)
    # --no-deps: the lock is complete, and resolving ranges would pull torchvision (see the lock's header).
    _pip("--no-deps", "-r", str(LOCK))
    _pip("--no-deps", "--no-build-isolation", "-e", str(ROOT))
    STAMP.write_text(_fingerprint())
    print(f"Set-up done in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"setup", "demo", "test"}:
        print(__doc__)
        return 2
    setup()
    env = dict(os.environ, MEDNET_CPU_LOCK=str(LOCK) if TORCH == "torch==2.13.0" else "")
    if argv[0] == "demo":
        return subprocess.call([str(_bin("mednet-pvs")), "demo", *argv[1:]], env=env)
    if argv[0] == "test":
        args = argv[1:]
        if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args):
            # one worker per core; whole files per worker, so module-scoped fixtures (a training
            # run shared by two tests) run once
            args = ["-n", "auto", "--dist", "loadfile", *args]
        return subprocess.call([str(_bin("python")), "-m", "pytest", *args], cwd=ROOT, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
