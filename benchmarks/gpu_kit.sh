#!/usr/bin/env bash
# Build .devcarry/ (git-ignored) for training on the lent GPU machine, which has torch, lightning,
# scipy, pandas... (KINDS.md's list) but no network and not this project's other needs. Run here,
# from the repository root, where pip reaches the package index:
#
#     bash benchmarks/gpu_kit.sh          # ~15 MB: .devcarry/whl/*.whl + .devcarry/shim/SimpleITK
#
# then, on the device (the run tool), carry .devcarry and start benchmarks/gpu_train_synth_any.sh.
# Wheels: the versions of requirements/cpu-lock.txt, all pure Python (py3-none-any), for the
# device's Python 3.12. SimpleITK is not carried (its 53 MB wheel and the working tree together
# pass the 64 MiB a call may carry): TorchIO imports it, so a stand-in package is put first on
# the path; training on 1 mm domain phantoms never reads files or resamples through it, and every
# use of the stand-in raises (benchmarks/gpu_simpleitk_stand_in.py; tests/test_gpu_kit.py checks that a
# training batch is made with it in place).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.devcarry
NEEDS="torchio deprecated nibabel nilearn jsonargparse docstring_parser typeshed_client"
rm -rf "$KIT" && mkdir -p "$KIT/whl" "$KIT/shim/SimpleITK"
for name in $NEEDS; do
  pin=$(grep -i "^${name//_/[-_]}==" requirements/cpu-lock.txt) || { echo "kit.sh: $name is not in requirements/cpu-lock.txt" >&2; exit 1; }
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation py --abi none --platform any -d "$KIT/whl" "$pin"
done
cp benchmarks/gpu_simpleitk_stand_in.py "$KIT/shim/SimpleITK/__init__.py"

grep -qx "/.devcarry/" .gitignore || echo "kit.sh: .devcarry/ is not git-ignored" >&2
du -sh "$KIT" && ls "$KIT/whl"
