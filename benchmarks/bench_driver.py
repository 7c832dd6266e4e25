"""Driver scale: planning and the store's reads for a full-class sweep at two sizes (no model, no rendering, no Ray).

    PYTHONPATH=. python benchmarks/bench_driver.py [--classes 1000] [--seeds 1,10] [--batch-size 8] [--memory]

For each seed count, the plan is every job (the image jobs from two named sources, the dreams on one layer) over
`--classes` classes with the default pairs: about 10^4 items per seed for 1000 classes. Sections:
1. Planning: `make_plan`, the items, a run's tasks (`Pending.tasks`), the notes and the image-steps (`item_work`).
2. The store: a synthetic store holding `--done` of the plan's batches (fake rows written through `Store.write_table`,
   one file per batch, as the workers name them; failures for 1% of them), then what a resume reads before its
   first batch (`quarantine_unreadable`, whose one pass over the key columns `pending_work` takes), the run's files
   written (untimed), what its summary reads (the new files only), and `store_status`. `--keep s3://BUCKET/PATH`
   puts the stores in a bucket (its endpoint and credentials from the environment, as for `sweep run`).
Each step prints its wall time (and with `--memory` its peak traced Python memory, tracemalloc slowing it down).
Compare the two sizes: each step should grow with the items, not faster.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import tempfile
import time
import tracemalloc

import numpy as np
import pyarrow as pa

JOBS = "octave,opposite,addition,transfigure,interpolate,dream,directed-dream"


@contextlib.contextmanager
def step(label: str, memory: bool):
    gc.collect()
    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        peak = f"   peak {tracemalloc.get_traced_memory()[1] / 2**20:7.1f} MiB" if memory else ""
        if memory:
            tracemalloc.stop()
        print(f"  {label:44s} {seconds:7.2f} s{peak}", flush=True)


def fake_rows(items, n_classes: int) -> pa.Table:
    """An `images/` table of `items` with grey 8x8 PNGs and zero logits (what the driver reads is the key column)."""
    from sweep.store import encode_png, images_schema
    schema, m = images_schema(n_classes), len(items)
    grey = encode_png(np.full((8, 8, 3), 128, np.uint8))
    columns = {"key": [i.key for i in items], "job": [i.job for i in items], "variant": [i.variant for i in items],
               "target": [i.target for i in items], "partner": [i.partner if i.partner >= 0 else None for i in items],
               "seed": [i.seed for i in items], "source": [i.source or None for i in items], "png": [grey] * m,
               "frame": [-1] * m}
    arrays = [pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(m * n_classes, np.float32)), n_classes)
              if field.name == "logits" else pa.array(columns[field.name], field.type) if field.name in columns
              else pa.nulls(m, field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_store(path: str, plan, n_classes: int, done: float) -> int:
    """A store whose manifest plans `plan` and whose images/ hold about `done` of its batches; items written."""
    from sweep.store import FAILURES, IMAGES, Store, failures_table, new_manifest
    store = Store.open(path)
    store.write_manifest(new_manifest(model="synthetic", weights="synthetic", weights_source="random",
                                      schedule="synthetic", schedule_id="synthetic0",
                                      class_names=[f"class {c}" for c in range(n_classes)], options=plan.options()))
    rng, written = np.random.default_rng(0), 0
    for batch in plan.batches():
        if rng.random() < done:
            store.write_table(f"{IMAGES}/{batch.name}.parquet", fake_rows(batch.items, n_classes))
            written += len(batch.items)
        elif rng.random() < 0.01 / (1 - done):
            store.write_table(f"{FAILURES}/{batch.name}-a1.parquet",
                              failures_table([(item, 1, "synthetic") for item in batch.items], "bench"))
    return written


def one_size(args: argparse.Namespace, seeds: int, root: str) -> None:
    from jobs.schedules import default_schedules
    from sweep.driver import Pending, item_work, pending_work
    from sweep.plan import make_plan
    from sweep.status import store_status
    from sweep.store import IMAGES, Store, all_keys
    memory = args.memory
    print(f"{args.classes} classes, {seeds} seed{'s' * (seeds > 1)}, every job, batches of {args.batch_size}")
    with step("make_plan", memory):
        plan = make_plan(n_classes=args.classes, jobs=JOBS, seeds=seeds, batch_size=args.batch_size,
                         sources=("a.png", "b.png"), layers=("layer",))
    fresh = Pending(plan, frozenset(), {})
    with step("plan items (Pending.planned)", memory):
        total = len(fresh.planned)
    print(f"  plan: {total} items ({len(plan.pairs)} pairs)")
    with step("a new run's tasks (Pending.tasks)", memory):
        fresh.tasks()
    with step("plan notes", memory):
        plan.notes()
    with step("image-steps of every item (item_work)", memory):
        item_work(default_schedules("googlenet", plan.jobs), fresh.planned)

    path = f"{root}/store-{seeds}"
    started = time.perf_counter()
    written = write_store(path, plan, args.classes, args.done)
    store = Store.open(path)
    print(f"  store: {written} of {total} items in {len(store.files(IMAGES))} files "
          f"(written in {time.perf_counter() - started:.1f} s, not part of the figures)")
    with step("resume: quarantine pass (every key column)", memory):
        quarantine = store.quarantine_unreadable()
    with step("resume: pending_work (keys from the pass)", memory):
        pending = pending_work(plan, store, quarantine.images)
    with step("resume: its tasks", memory):
        tasks = pending.tasks()
    started = time.perf_counter()
    for task in tasks:
        store.write_table(f"{IMAGES}/{task.batch.name}.parquet", fake_rows(task.batch.items, args.classes))
    print(f"  the run: {len(tasks)} files more (written in {time.perf_counter() - started:.1f} s, not part of the "
          f"figures)")
    with step("summary: new files read, items counted", memory):
        keys = all_keys(store.keys_by_file(known=pending.files))
        sum(item.key in keys for item in pending.planned)
    with step("sweep status", memory):
        store_status(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--seeds", default="1,10", help="seed counts: one plan (and store) per count")
    parser.add_argument("--batch-size", type=int, default=8, help="items per batch: one images/ file each")
    parser.add_argument("--done", type=float, default=0.9, help="share of the batches the store holds")
    parser.add_argument("--memory", action="store_true", help="also trace each step's peak Python memory")
    parser.add_argument("--keep", default=None, help="write the stores here (an empty directory, or an s3:// / gs:// "
                                                      "URI) and keep them (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or tmp).rstrip("/")
        for seeds in (int(s) for s in args.seeds.split(",")):
            one_size(args, seeds, root)


if __name__ == "__main__":
    main()
