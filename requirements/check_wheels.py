#!/usr/bin/env python3
"""Check that every pin of ``cpu-lock.txt`` has a wheel for each CPython of its ``# python:`` line.

    python3 requirements/check_wheels.py            # the lock's Pythons
    python3 requirements/check_wheels.py 3.10 3.15  # others (to widen the lock's range)

Asks the package index (``pip index versions``, nothing downloaded) for the versions of each
package that have a manylinux x86_64 or pure-Python wheel for that Python; prints the pins that
have none and exits 1 if any. Needs the network; about 4 parallel queries at a time.
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LOCK = Path(__file__).resolve().parent / "cpu-lock.txt"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "linux_x86_64", "any")


def pins(lock: Path = LOCK) -> list[tuple[str, str]]:
    """(name, version) of every ``name==version`` line."""
    out = []
    for line in lock.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out.append((name, version))
    return out


def has_wheel(name: str, version: str, python: str) -> bool:
    cmd = [sys.executable, "-m", "pip", "index", "versions", "--pre", "--only-binary=:all:", "--python-version", python,
           *(a for p in PLATFORMS for a in ("--platform", p)), name]
    text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    listed = next((ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("Available versions:")), "")
    return version in {v.strip() for v in listed.split(",")}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(LOCK.parents[1]))
    from dev import lock_pythons

    pythons = argv or [f"{a}.{b}" for a, b in lock_pythons(LOCK)]
    jobs = [(n, v, py) for py in pythons for n, v in pins()]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda j: has_wheel(*j), jobs))
    missing = [j for j, ok in zip(jobs, found) if not ok]
    for name, version, py in missing:
        print(f"no wheel: {name}=={version} for CPython {py}")
    print(f"{len(jobs) - len(missing)} of {len(jobs)} pins have wheels for CPython {', '.join(pythons)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
