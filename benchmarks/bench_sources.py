"""Driver memory for a folder of photographs: `sweep run --images FOLDER` checks, hashes and stores every source.

    PYTHONPATH=. python benchmarks/bench_sources.py [--count 200] [--side 1000] [--folder DIR] [--threads N]

Writes `--count` pictures of `--side` x `--side` pixels (JPEG and PNG in turn: a smooth random pattern with some
grain, as a photograph compresses) into `--folder` (a temporary one unless given; kept and reused when given), then
in this process `prepare` (the digits model, `--jobs transfigure`: each picture checked and hashed in one decode)
and `reconcile_store` (each decoded again, checked against its hash, PNG-encoded and written to a fresh store), both
on `--threads` threads (default: the driver's, one per core up to 16). Prints the threads, the wall time of each
step and the process's peak resident memory (`ru_maxrss`) before and after: its growth is what the driver held at
once. The pictures are made in child processes, so that their making is not counted. Holding every source decoded
costs `count x side^2 x 3` bytes (600 MB for the defaults); reading them a few at a time (one a thread), a few
pictures' worth. The driver's progress lines (more than 50 sources) are not shown.
"""
from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def make_picture(path: str, index: int, side: int) -> None:
    """Picture `index`: an 8 x 8 random colour pattern enlarged to side x side, with grain; JPEG or PNG by name."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(index)
    small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
    grain = rng.integers(-6, 7, (side, side, 3))
    pixels = np.clip(np.asarray(small, dtype=np.int16) + grain, 0, 255).astype(np.uint8)   # side x side x 3
    Image.fromarray(pixels).save(path, **({"quality": 90} if path.endswith(".jpg") else {}))


def make_pictures(folder: Path, count: int, side: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"photo-{i:04d}.{'jpg' if i % 2 == 0 else 'png'}") for i in range(count)]
    wanted = [(p, i) for i, p in enumerate(paths) if not Path(p).exists()]
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(make_picture, [p for p, _ in wanted], [i for _, i in wanted], [side] * len(wanted)))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="pictures in the folder")
    parser.add_argument("--side", type=int, default=1000, help="their side in pixels")
    parser.add_argument("--folder", help="where the pictures are made (kept, and reused on the next run)")
    parser.add_argument("--threads", type=int, help="threads that check, hash and write them (default: the "
                                                    "driver's, one per core up to 16)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder or Path(scratch) / "photos")
        started = time.perf_counter()
        make_pictures(folder, args.count, args.side)
        print(f"{args.count} pictures of {args.side} x {args.side} in {folder} "
              f"({sum(p.stat().st_size for p in folder.iterdir()) / 2**20:.0f} MB encoded, "
              f"{args.count * args.side ** 2 * 3 / 2**20:.0f} MB decoded), made in "
              f"{time.perf_counter() - started:.1f} s")
        from jobs.images import reading_threads
        from jobs.models import load_model
        from sweep.driver import SweepConfig, prepare, reconcile_store
        load_model("digits", "random")   # the imports and the model: what the driver holds whatever its sources
        before = peak_mb()
        threads = args.threads or reading_threads()
        print(f"peak RSS before prepare: {before:.0f} MB; {threads} thread{'s' if threads > 1 else ''}")
        config = SweepConfig(store=str(Path(scratch) / "store"), model="digits", weights="random", schedule="tiny",
                             jobs="transfigure", classes="0", images=(str(folder),), source_threads=threads)
        started = time.perf_counter()
        prepared = prepare(config, stream=io.StringIO())
        print(f"prepare: {time.perf_counter() - started:.1f} s, peak RSS {peak_mb():.0f} MB "
              f"(+{peak_mb() - before:.0f} MB)")
        started = time.perf_counter()
        reconcile_store(prepared, io.StringIO(), stream=io.StringIO())
        print(f"sources written: {time.perf_counter() - started:.1f} s, peak RSS {peak_mb():.0f} MB "
              f"(+{peak_mb() - before:.0f} MB)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
