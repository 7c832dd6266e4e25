#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before `benchmarks/gpu_ray_run.sh`: puts into .whl/ the wheels the GPU image
# lacks for a real Ray sweep (Python 3.12, x86-64): Ray, slimmed under the 64 MiB a device call may carry (see
# benchmarks/slim_ray_wheel.py), and jsonschema with its three needs. Versions are the tested pins (constraints.txt).
# About 46 MiB in all; the working tree adds about 4 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
pin() { grep -i -E "^$1==" constraints.txt; }
exclude=$(git rev-parse --git-path info/exclude)   # .git is a file in a worktree: its exclude is the main one's
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >> "$exclude"
rm -rf .whl && mkdir -p .whl /tmp/classweep-ray-wheel
download() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$1" "$2"
}
download /tmp/classweep-ray-wheel "$(pin ray)"
"$PY" benchmarks/slim_ray_wheel.py /tmp/classweep-ray-wheel/ray-*cp312*.whl .whl
for name in jsonschema jsonschema-specifications referencing rpds-py; do download .whl "$(pin "$name")"; done
du -ch .whl/*.whl | tail -1
