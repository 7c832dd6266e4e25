#!/usr/bin/env bash
# Every GPU figure of issue 12 in one device call (about 6-8 minutes on an H100/H200), written to $OUT/gpu.log:
#   run it as   bash benchmarks/gpu_session.sh      (with timeout_s 600; the image has torch, no Ray)
#   then, on the same warm machine, benchmarks/gpu_ray_run.sh (a real Ray sweep; carry .whl, see that script)
# 1. bench_engine on GoogLeNet (random weights): (a) engine vs bare loop, (b) one-image loop and batches 32-256 (to
#    set AUTO_CAP in sweep/worker.py), (c) the googlenet preset at the automatic batch: s/class, 1000-class
#    projection, peak memory, (d) the worker's render-loop wait share, (e) bf16 quality, (f) trajectory cost;
# 2. the same (a)-(c) with --compile, to see whether torch.compile pays.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLASSWEEP_OFFLINE=1
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  timeout 330 python3 benchmarks/bench_engine.py --model googlenet --device cuda --batches 32,64,128,256
  timeout 200 python3 benchmarks/bench_engine.py --model googlenet --device cuda --compile --skip d,e,f
} 2>&1 | tee "$OUT/gpu.log"
