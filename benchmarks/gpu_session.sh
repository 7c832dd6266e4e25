#!/usr/bin/env bash
# The GPU figures of issue 12 still to take, in ONE device call of at most 10 minutes (a session has 15 minutes of
# device time, a machine's start included, so there is no room for a second full call). The first session's figures
# (H200, 2026-11-30: every section eager and unfolded, the batch scan, the worker's wait share, a real Ray run) are
# in the README's Performance section; this call measures what changed since and what that call could not reach.
# Prepare here first:
#     .venv/bin/python -m pytest --run-slow tests/benchmarks   (the scripts run to the end on tiny CPU settings)
#     bash benchmarks/gpu_wheels.sh   (only with RAY=1: a slimmed Ray into .whl/; the GPU image has no Ray)
# then call the device with   command "bash benchmarks/gpu_session.sh", carry [".whl"] (or none), timeout_s 600.
# The log comes back as $OUT/gpu.log. Each section has its own time limit, so one that hangs cannot eat the others:
# 1. eager, batch norms folded (the workers' default on GPUs since): (a) engine vs bare loop, (h) folded vs as
#    loaded, (c) the googlenet preset at the automatic batch (AUTO_CAP 256): s/class and the 1000-class projection,
#    (g) where a step's time goes (torch.profiler's 15 largest kernels), (f) the trajectories' cost   [<= 250 s]
# 2. --compile: (c) at section 1's batch, the warm-up's time being the compile time of its two shapes (the first
#    session measured (a) compiled: 1.31x)                                                           [<= 210 s]
# 3. --fp16: (a) (float16's speed against bf16's in section 1) and (e) (bf16 and fp16 against float32) [<= 110 s]
# With RAY=1, a real `sweep run` through Ray (benchmarks/gpu_ray_run.sh) comes last, in what time is left.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLASSWEEP_OFFLINE=1
# BENCH: a CPU rehearsal here, e.g. BENCH=".venv/bin/python benchmarks/bench_engine.py --model digits --size 32
# --device cpu --iterations 2 --repeats 1 --trajectory-iterations 2 --profile-batch 2 --profile-size 32"
bench=${BENCH:-python3 benchmarks/bench_engine.py --model googlenet --size 299 --device cuda}
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  echo "== 1. eager, folded"; timeout 250 $bench --only a,h,c,g,f
} 2>&1 | tee "$OUT/gpu.log"
batch=$(grep -o '^(c) preset .* batch [0-9]*' "$OUT/gpu.log" | grep -o '[0-9]*$')
{
  echo "== 2. compiled"; timeout 210 $bench --compile --only c ${batch:+--full-batch $batch}
  echo "== 3. fp16";     timeout 110 $bench --fp16 --only a,e
} 2>&1 | tee -a "$OUT/gpu.log"
if [ "${RAY:-0}" = 1 ] && ls .whl/ray-*.whl >/dev/null 2>&1; then
  CLASSES=${CLASSES:-0-127} SWEEP_SECONDS=${SWEEP_SECONDS:-60} timeout 90 bash benchmarks/gpu_ray_run.sh
fi
