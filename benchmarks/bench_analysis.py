"""Analysis speed: `analyze` and `figures` on a synthetic 1000-class store (all three jobs, real PNGs, 1000-d logits).

    python benchmarks/bench_analysis.py [--classes 1000] [--pairs 1000] [--image-size 64] [--keep DIR]

Builds the store (not timed), then runs each stage in a fresh Python process so that its peak memory (maxrss) is
its own: `analyze_store`, then `write_figures` on the analysed store. Goals on the 2-core reference machine:
analyze < 30 s, figures < 30 s, peak memory < 1 GB each.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"analyze": 30.0, "figures": 30.0}   # seconds
MEMORY_GOAL_MB = 1024


def run_stage(stage: str, store: str, args: argparse.Namespace) -> dict:
    """In this process: run one stage and report its wall time and this process's peak resident memory."""
    sys.path.insert(0, str(ROOT))
    import analysis
    from analysis.synthetic import random_store
    start = time.perf_counter()
    if stage == "build":
        random_store(store, args.classes, n_pairs=args.pairs, image_size=args.image_size)
        detail = []
    elif stage == "analyze":
        summary = analysis.analyze_store(store)
        detail = summary.lines()[-3:]
    else:
        detail = [str(analysis.write_figures(store))]
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB
    return {"stage": stage, "seconds": seconds, "peak_mb": peak_mb, "detail": detail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=1000, help="pairs; each gives a merge and a juxtaposition")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--keep", default=None, help="write the store here and keep it (default: a temp dir)")
    parser.add_argument("--stage", choices=["build", "analyze", "figures"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.store, args)))
        return

    # Every stage runs in a child started from this small process: Linux keeps a process's peak RSS across exec,
    # so a child forked from a big parent would report the parent's peak as its own.
    def child(stage: str, store: str) -> dict:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, __file__, "--stage", stage, "--store", store, "--classes", str(args.classes),
                   "--pairs", str(args.pairs), "--image-size", str(args.image_size)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        store = args.keep or os.path.join(tmp, "store")
        built = child("build", store)
        files = list(Path(store, "images").iterdir())
        size_mb = sum(f.stat().st_size for f in files) / 2**20
        print(f"synthetic store: {args.classes} classes, {args.classes} octave + {args.classes} opposite + "
              f"{2 * args.pairs} addition images ({args.image_size} px), {len(files)} files, {size_mb:.0f} MB, "
              f"built in {built['seconds']:.1f} s")
        ok = True
        for stage in ("analyze", "figures"):
            result = child(stage, store)
            met = result["seconds"] < GOALS[stage] and result["peak_mb"] < MEMORY_GOAL_MB
            ok &= met
            print(f"{stage:8s} {result['seconds']:6.1f} s (goal < {GOALS[stage]:.0f} s)   peak memory "
                  f"{result['peak_mb']:6.0f} MB (goal < {MEMORY_GOAL_MB} MB)   {'ok' if met else 'MISSED'}")
            for line in result["detail"]:
                print(f"         {line}")
        written = [f for f in Path(store, "figures").rglob("*") if f.is_file()]
        print(f"figures folder: {len(written)} files, {sum(f.stat().st_size for f in written) / 2**20:.0f} MB")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
