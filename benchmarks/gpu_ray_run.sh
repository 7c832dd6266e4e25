#!/usr/bin/env bash
# Issue 12, part 4: `sweep run` on a real GPU through Ray, with one `num_gpus=1` actor (not fake resources).
# Prepare HERE:   bash benchmarks/gpu_wheels.sh          (puts a slimmed Ray and jsonschema into .whl/, ~46 MiB)
# Then on the GPU machine, with carry [".whl"] (benchmarks/gpu_session.sh runs it as its section 2):
#                 bash benchmarks/gpu_ray_run.sh         (1-2 minutes at CLASSES=0-127; log in $OUT/gpu-ray.log)
# It sweeps GoogLeNet (random weights: the image has no ImageNet weights and cannot download them) over CLASSES
# classes with the article's `googlenet` preset, octave + opposite jobs, automatic batch; then checks that every item
# is stored exactly once, prints the manifest's run record (batch size, device, GPU, speed) and the store's status.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
CLASSES=${CLASSES:-0-255}
SWEEP_ARGS=${SWEEP_ARGS:---model googlenet --weights random --device gpu}   # (tried here with: --model digits --schedule tiny --device cpu)
STORE=/tmp/gpu-ray-store
# The sweep is stopped (SIGTERM: as by Ctrl-C, it ends cleanly) after this long, so that the store's status and the
# exactly-once check still print inside gpu_session.sh's 150 s, however slow the GPU turns out to be. --foreground:
# the driver alone gets the signal (a plain timeout signals its whole process group, Ray's GCS and raylet too: the
# driver, which hung on the dead GCS before `Fleet.stop` bounded its wait, then spends 10 s of the budget on it).
SWEEP_SECONDS=${SWEEP_SECONDS:-110}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 \
  | tee "$OUT/gpu-ray.log" \
  || { echo "installing .whl/ failed: run benchmarks/gpu_wheels.sh here and carry .whl" | tee -a "$OUT/gpu-ray.log"
       exit 2; }
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 CLASSWEEP_OFFLINE=1
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import ray, torch; print('ray', ray.__version__, 'from', ray.__file__, '| torch', torch.__version__)"
  rm -rf "$STORE"
  time timeout --foreground -k 15 "$SWEEP_SECONDS" python3 -m sweep run --store "$STORE" $SWEEP_ARGS --jobs octave,opposite \
    --classes "$CLASSES"
  echo "sweep run exit status: $?"
  python3 -m sweep status --store "$STORE"
  python3 - "$STORE" <<'EOF'
import json, os, sys
import pyarrow.parquet as pq
store = sys.argv[1]
manifest = json.load(open(f"{store}/manifest.json"))
print("manifest runs:", json.dumps(manifest["runs"], indent=1))
images = f"{store}/images"   # absent when the run was stopped before its first batch was written
keys = pq.read_table(images, columns=["key"])["key"].to_pylist() if os.path.isdir(images) else []   # every row, no de-dup
print(f"{len(keys)} image rows, {len(set(keys))} distinct keys:",
      "every item exactly once" if len(keys) == len(set(keys)) else "DUPLICATES")
EOF
} 2>&1 | tee -a "$OUT/gpu-ray.log"
