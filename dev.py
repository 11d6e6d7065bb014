#!/usr/bin/env python3
"""One entry point for a fresh clone: set up ``.venv`` (CPU torch, pinned lock) and run things.

    python3 dev.py demo [ARGS]   # set up if needed, then the project's main job (``mednet-pvs demo``)
    python3 dev.py test [ARGS]   # set up if needed, then the test suite (pytest ARGS; -n auto unless -n is given)
    python3 dev.py setup         # only set up

Needs only CPython with pip and venv, of a version the lock covers (its ``# python:`` header line;
any other is refused in one line). The environment is rebuilt when ``requirements/cpu-lock.txt``
or ``pyproject.toml`` change. Environment variables:

``MEDNET_VENV``        the environment's folder (default ``.venv``)
``MEDNET_TORCH``       what to install as torch (default ``torch==2.13.0``; e.g. ``torch`` on a GPU machine)
``MEDNET_TORCH_INDEX`` the package index torch comes from (``--index-url``, for torch only; the lock
                       still comes from your usual index). On a CPU-only machine without a local
                       CPU wheel, PyPI gives Linux the CUDA build (about 2.5 GB more); take PyTorch's
                       CPU build instead::

                           MEDNET_TORCH_INDEX=https://download.pytorch.org/whl/cpu python3 dev.py setup
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
TORCH_INDEX = os.environ.get("MEDNET_TORCH_INDEX", "").strip()
LOCK = ROOT / "requirements" / "cpu-lock.txt"
STAMP = VENV / ".mednet-setup"


def lock_pythons(lock: Path | None = None) -> list[tuple[int, int]]:
    """The CPython versions the lock is pinned for: its header line ``# python: 3.11 3.12 ...``."""
    lock = lock or LOCK
    for line in lock.read_text().splitlines():
        if line.startswith("# python:"):
            return [tuple(int(n) for n in v.split(".")) for v in line.split(":", 1)[1].split()]  # type: ignore[misc]
    raise SystemExit(f"{lock}: no '# python: <versions>' header line")


def python_problem(version: tuple[int, ...] = tuple(sys.version_info[:2]), implementation: str = sys.implementation.name,
                   lock: Path | None = None) -> str | None:
    """Why this interpreter cannot build the pinned environment, or None when it can."""
    lock = lock or LOCK
    covered = lock_pythons(lock)
    names = ", ".join(f"{a}.{b}" for a, b in covered)
    if implementation != "cpython" or tuple(version[:2]) not in covered:
        return (f"{implementation} {'.'.join(map(str, version[:2]))} is not covered by {lock.name} (pinned for CPython {names}); "
                f"run dev.py with one of those, e.g. python{covered[-1][0]}.{covered[-1][1]} dev.py setup")
    return None


def torch_pip_args(spec: str = TORCH, index: str = TORCH_INDEX) -> list[str]:
    """pip's arguments that install torch: ``spec``, from ``index`` alone when one is given."""
    return ["--index-url", index, spec] if index else [spec]


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _fingerprint() -> str:
    h = hashlib.sha256(TORCH.encode())
    if TORCH_INDEX:  # another torch build: set up again (unset, the fingerprint is what it was)
        h.update(TORCH_INDEX.encode())
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
    problem = python_problem()
    if problem:  # refused before anything is removed or downloaded
        raise SystemExit(f"dev.py: {problem}")
    t0 = time.perf_counter()
    if VENV.exists():
        shutil.rmtree(VENV)
    print(f"Setting up {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    _pip(*torch_pip_args())
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
