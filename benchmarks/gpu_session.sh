#!/usr/bin/env bash
# Every GPU figure of issue 12 in ONE device call of at most 10 minutes (a session has 15 minutes of device time,
# a machine's start included, so there is no room for a second call). Prepare here first:
#     bash benchmarks/gpu_wheels.sh        (a slimmed Ray and jsonschema into .whl/: the GPU image has no Ray)
#     .venv/bin/python -m pytest --run-slow tests/benchmarks   (the scripts run to the end on tiny CPU settings)
# then call the device with   command "bash benchmarks/gpu_session.sh", carry [".whl"], timeout_s 600.
# Logs come back in $OUT: gpu.log (sections 1 and 3) and gpu-ray.log (section 2). Each section has its own time
# limit, so one that hangs cannot eat the others:
# 1. bench_engine on GoogLeNet (random weights): (a) engine vs bare loop at 299 px (the preset's first octave),
#    (b) one-image loop and batches 32-512 (to set AUTO_CAP in sweep/worker.py: the smallest batch within 5% of the
#    best rate), (c) the googlenet preset at the automatic batch under that cap: s/class, 1000-class projection,
#    peak memory, (d) the worker's render-loop wait share (at AUTO_CAP: the share does not depend on the batch),
#    (e) bf16 quality (random-he weights), (f) trajectory cost, (g) where a step's time goes (torch.profiler),
#    (h) the engine with batch norms folded into the convolutions against the network as loaded (the other
#    sections run folded, as the workers do by default); in the order a, h, b, f, c, g, e, d   [<= 290 s]
# 2. a real `sweep run` through Ray with a num_gpus=1 actor (benchmarks/gpu_ray_run.sh), if .whl/ came along
#                                                                                            [<= 130 s]
# 3. (a) and (c) with --compile, to see whether torch.compile pays. Not (b): its one-image loop and three more batch
#    sizes would each compile the network again (autocast, grad mode and shapes are guards) before (c) could start.
#    (c) at section 1's batch, so that the two are compared at one batch.                  [<= 130 s]
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLASSWEEP_OFFLINE=1
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  timeout 290 python3 benchmarks/bench_engine.py --model googlenet --size 299 --device cuda --batches 32,64,128,256,512
} 2>&1 | tee "$OUT/gpu.log"
if ls .whl/ray-*.whl >/dev/null 2>&1; then
  CLASSES=${CLASSES:-0-127} SWEEP_SECONDS=${SWEEP_SECONDS:-95} timeout 130 bash benchmarks/gpu_ray_run.sh
else
  echo "no .whl/: the real Ray run was skipped (run benchmarks/gpu_wheels.sh here and carry .whl)" | tee -a "$OUT/gpu.log"
fi
batch=$(grep -o '^(c) preset .* batch [0-9]*' "$OUT/gpu.log" | grep -o '[0-9]*$')
timeout 130 python3 benchmarks/bench_engine.py --model googlenet --size 299 --device cuda --compile --skip b,d,e,f,h \
  ${batch:+--full-batch $batch} 2>&1 \
  | tee -a "$OUT/gpu.log"
