#!/usr/bin/env bash
# The GPU check (issue 17): the CUDA tests first (pytest -m cuda), then benchmarks/gpu_check.py with
# this script's arguments; both always run, and the exit status is non-zero if either failed.
#
#   bash benchmarks/gpu_check.sh --device cuda                 # < 8 min of the script on one H100/H200
#   bash benchmarks/gpu_check.sh --device cpu --tiny --out /tmp/x.json   # dry run (the tests skip)
#
# Python: $PYTHON, else the project's .venv, else python3.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

echo "== pytest -m cuda"
"$PY" -m pytest -m cuda -q -p no:cacheprovider
tests=$?
echo "== benchmarks/gpu_check.py $*"
"$PY" benchmarks/gpu_check.py "$@"
check=$?
echo "== pytest -m cuda: exit $tests; gpu_check.py: exit $check"
[ "$tests" -eq 0 ] && [ "$check" -eq 0 ]
