"""Analysis speed and memory: the analysis commands on a synthetic 1000-class store.

    python benchmarks/bench_analysis.py [--classes 1000] [--pairs 1000] [--image-size 64] [--keep DIR]
    python benchmarks/bench_analysis.py --workload [--seeds 1] [--sources 3] [--real-png] [--classes all]
                                        [--trajectory-every N] [--stages status,analyze,figures,export,directions]
                                        [--processes N] [--keep DIR]

Builds the store (not timed), then runs each stage in a fresh Python process so that its peak memory (maxrss) is
its own. `figures` draws the interpolations on `--processes` worker processes (default: as `sweep figures`, one per
CPU up to 8); the peak of the stage's process and its workers' together (their resident memory summed, sampled each
second from /proc on Linux: shared pages counted in each) is printed beside the stage's own.

- Default: `analysis.synthetic.random_store` (octave, opposite and the pairs' additions, `--image-size` px PNGs),
  then `analyze_store` and `write_figures`. Goals on the 2-core reference machine: analyze < 30 s, figures < 30 s,
  peak memory < 1 GB each.
- `--workload`: `analysis.synthetic.workload_store`, shaped as a real sweep (ImageNet's 1000 class names; octave,
  opposite, addition over the default 1000 pairs x merge and juxtapose, transfigure and interpolate with 8 frames
  from `--sources` photographs; `--seeds` seeds: 10^4 images a seed for all 1000 classes, one file per batch of 8).
  PNGs are 8 x 8 unless `--real-png` (490 px for the noise jobs, 299 px for the others: about 500 and 190 KB, as
  a real sweep's; 10^4 images and their frames take 9 GB). `--trajectory-every N` also stores each image's steps
  recorded every N steps of the googlenet preset's 720, as `sweep run --trajectory every:N` would (every:10: 72
  rows an image), for `analyze`'s stability tables. Then each of `--stages`: `sweep status`, `analyze`,
  `figures`, `export` (into a temporary folder, removed after), and `directions` (two groups: the first and the
  second half of the classes). No goals: compare the figures of two sizes, each step should grow with the images,
  not faster, and no peak should grow with the PNG bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"analyze": 30.0, "figures": 30.0}   # seconds
MEMORY_GOAL_MB = 1024
WORKLOAD_STAGES = ("status", "analyze", "figures", "export", "directions")


def imagenet_names() -> list[str]:
    """ImageNet's class names, from torchvision's weights metadata (no download)."""
    from torchvision.models import get_model_weights
    return list(get_model_weights("googlenet").DEFAULT.meta["categories"])


def build(store: str, args: argparse.Namespace) -> list[str]:
    from analysis.synthetic import random_store, workload_store
    if not args.workload:
        random_store(store, args.classes, n_pairs=args.pairs, image_size=args.image_size)
        return []
    counts = workload_store(store, imagenet_names(), classes=args.classes, seeds=args.seeds, sources=args.sources,
                            png_sides=(490, 299) if args.real_png else None, trajectory_every=args.trajectory_every)
    return [json.dumps(counts)]


def groups_file(store: str, folder: str) -> str:
    """Two groups for `sweep directions`: the lower and the upper half of the store's classes."""
    from sweep.store import open_store
    classes = open_store(store).manifest["options"]["classes"]
    path = os.path.join(folder, "groups.csv")
    with open(path, "w") as f:
        f.write("class,group\n" + "".join(f"{c},{'low' if i < len(classes) // 2 else 'high'}\n"
                                          for i, c in enumerate(classes)))
    return path


def tree_mb(root: int) -> float:
    """The resident memory of process `root` and of its descendants, summed (Linux /proc; 0 elsewhere), in MB."""
    parents, resident = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()   # after the command: state, ppid, ...
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)], resident[int(stat.parent.name)] = int(fields[1]), int(fields[21])
    tree, grown = {root}, True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(resident.get(pid, 0) for pid in tree) * os.sysconf("SC_PAGE_SIZE") / 2**20


class TreePeak:
    """The largest `tree_mb` of this process seen while the block runs, sampled each second on a thread."""

    def __enter__(self) -> "TreePeak":
        self.mb, self.stop = 0.0, threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self) -> None:
        while not self.stop.wait(1.0):
            self.mb = max(self.mb, tree_mb(os.getpid()))

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def run_stage(stage: str, store: str, args: argparse.Namespace) -> dict:
    """In this process: run one stage and report its wall time and this process's peak resident memory."""
    sys.path.insert(0, str(ROOT))
    import io

    import analysis
    detail: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, TreePeak() as tree:
        start = time.perf_counter()
        if stage == "build":
            detail = build(store, args)
        elif stage == "status":
            from sweep.status import store_status
            detail = store_status(store).lines()[-2:]
        elif stage == "analyze":
            detail = analysis.analyze_store(store).lines()[-3:]
        elif stage == "figures":
            detail = [str(analysis.write_figures(store, stream=io.StringIO(), processes=args.processes))]
        elif stage == "export":
            from sweep.export import export_pngs
            detail = [f"{export_pngs(store, os.path.join(tmp, 'out')).count} PNG files"]
        elif stage == "directions":
            from analysis.directions import run_directions
            detail = run_directions(store, groups_file(store, tmp)).lines()[:1]
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB
    return {"stage": stage, "seconds": seconds, "peak_mb": peak_mb, "tree_mb": tree.mb, "detail": detail}


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="1000",
                        help="default mode: the class count; --workload: the classes (all, 0-99, ...) of 1000")
    parser.add_argument("--pairs", type=int, default=1000, help="pairs; each gives a merge and a juxtaposition")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workload", action="store_true", help="a store shaped as a real sweep (see above)")
    parser.add_argument("--seeds", type=int, default=1, help="--workload: seeds (10^4 images each)")
    parser.add_argument("--sources", type=int, default=3, help="--workload: photographs the image jobs start from")
    parser.add_argument("--real-png", action="store_true", help="--workload: PNGs of a real sweep's sizes")
    parser.add_argument("--trajectory-every", type=int, default=0,
                        help="--workload: also each image's steps recorded every N steps (0: none)")
    parser.add_argument("--stages", default=",".join(WORKLOAD_STAGES), help="--workload: the stages to run")
    parser.add_argument("--processes", type=int, default=None,
                        help="figures: worker processes drawing the interpolations (default: as sweep figures)")
    parser.add_argument("--keep", default=None, help="write the store here and keep it (default: a temp dir)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workload:
        args.classes = "all" if args.classes == "1000" else args.classes
    else:
        args.classes = int(args.classes)
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.store, args)))
        return

    # Every stage runs in a child started from this small process: Linux keeps a process's peak RSS across exec,
    # so a child forked from a big parent would report the parent's peak as its own.
    def child(stage: str, store: str) -> dict:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, __file__, *sys.argv[1:], "--stage", stage, "--store", store]
        out = subprocess.run(command, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"stage {stage} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        store = args.keep or os.path.join(tmp, "store")
        built = child("build", store)
        files = list(Path(store, "images").iterdir())
        if args.workload:
            counts = json.loads(built["detail"][0])
            print(f"workload store: {counts['items']} images and {counts['frames']} interpolation frames in "
                  f"{counts['files']} batch files"
                  + (f" with {counts['trajectory_rows']} recorded steps" if counts["trajectory_rows"] else "")
                  + f", PNGs {'of real sizes' if args.real_png else '8 x 8'}, "
                  f"{folder_mb(Path(store)):.0f} MB, built in {built['seconds']:.1f} s")
            stages = [s for s in args.stages.split(",") if s]
        else:
            print(f"synthetic store: {args.classes} classes, {args.classes} octave + {args.classes} opposite + "
                  f"{2 * args.pairs} addition images ({args.image_size} px), {len(files)} files, "
                  f"{folder_mb(Path(store, 'images')):.0f} MB, built in {built['seconds']:.1f} s")
            stages = ["analyze", "figures"]
        ok = True
        for stage in stages:
            result = child(stage, store)
            goal = GOALS.get(stage) if not args.workload else None
            met = goal is None or (result["seconds"] < goal and result["peak_mb"] < MEMORY_GOAL_MB)
            ok &= met
            goals = (f" (goal < {goal:.0f} s)", f" (goal < {MEMORY_GOAL_MB} MB)   {'ok' if met else 'MISSED'}") \
                if goal is not None else ("", "")
            tree = result["tree_mb"]
            workers = f" (with its workers: {tree:.0f} MB)" if tree > result["peak_mb"] else ""
            print(f"{stage:10s} {result['seconds']:7.1f} s{goals[0]}   peak memory {result['peak_mb']:6.0f} MB"
                  f"{workers}{goals[1]}")
            for line in result["detail"]:
                print(f"           {line}")
        if "figures" in stages:
            written = [f for f in Path(store, "figures").rglob("*") if f.is_file()]
            print(f"figures folder: {len(written)} files, {folder_mb(Path(store, 'figures')):.0f} MB")
        if args.keep is None:
            shutil.rmtree(store, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
