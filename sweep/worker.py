"""The Ray worker: loads the model once, renders batches with the engine, writes their Parquet files itself.

Like a Ray Data callable class, the expensive state (model, schedule) is built in `__init__` and each call
processes one batch; the real images the image jobs start from are read from the store on first use. A call
returns a small `BatchReport` (keys done, keys failed with their errors, seconds), never images: the pictures go
straight from the worker to the store. On a GPU node each actor is given one GPU
(`num_gpus=1`) and Ray sets CUDA_VISIBLE_DEVICES; the device is still chosen by `torch.cuda.is_available()`, so an
actor holding a fake GPU resource (tests, benchmarks) runs on the CPU.
"""
from __future__ import annotations

import importlib
import socket
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sweep.plan import Batch
from sweep.store import FAILURES, IMAGES, Store, decode_png, failures_table, images_table, item_key


@dataclass(frozen=True)
class WorkerConfig:
    """What every actor of a sweep needs to build its state; sent once, at actor creation."""
    store: str                       # store URI, opened by each actor itself
    model: str                       # model zoo name
    weights: str                     # weights as given to `jobs.load_model`
    schedule: object = None          # the run's `jobs.Schedule` (the driver loaded and checked it)
    engine: str = "jobs.kinds:run_batch"  # "module:function" with run_batch's signature (tests plug fakes here)
    threads: int = 1                 # torch CPU threads (the actor's CPU reservation)
    bf16: bool = False               # bf16 autocast on a GPU (ignored on the CPU)


@dataclass(frozen=True)
class BatchReport:
    """What a worker tells the driver about one batch: keys and timings only."""
    index: int
    done: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]   # (key, error)
    seconds: float
    worker: str


def import_callable(path: str) -> Callable:
    """"package.module:function" -> the function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def worker_name() -> str:
    """host/node/actor, short: identifies where an image was made (the `worker` column)."""
    import ray
    if not ray.is_initialized():   # used in-process (tests, tools): no node or actor to name
        return f"{socket.gethostname()}/local"
    context = ray.get_runtime_context()
    actor = context.get_actor_id() or "driver"
    return f"{socket.gethostname()}/{context.get_node_id()[:8]}/{actor[:8]}"


class SweepWorker:
    """One model replica. Wrapped with `ray.remote(...)` by the driver; also usable in-process in tests."""

    def __init__(self, config: WorkerConfig) -> None:
        import torch
        from jobs.models import load_model
        torch.set_num_threads(max(1, config.threads))
        self.config = config
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(config.model, config.weights, device=self.device)
        self.run_batch = import_callable(config.engine)
        self.store = Store.open(config.store)
        self.name = worker_name()
        self.sources: dict[str, np.ndarray] = {}   # source images read from the store, once per actor

    def info(self) -> dict:
        return {"worker": self.name, "device": str(self.device)}

    def run(self, batch: Batch, attempts: tuple[int, ...]) -> BatchReport:
        """Render `batch`, write its images (and failures) to the store, report keys only.

        `attempts[i]` is the try number of `batch.items[i]`; it is recorded with each failure.
        """
        from jobs.kinds import JobSpec
        started = time.perf_counter()
        specs = [JobSpec(job=i.job, target=i.target, seed=i.seed, variant=i.variant, partner=i.partner,
                         source=i.source) for i in batch.items]
        try:
            on_gpu = self.device.type == "cuda"
            sources = self.source_images({spec.source for spec in specs if spec.source})
            results = self.run_batch(self.model, specs, self.config.schedule, device=self.device,
                                     autocast_bf16=self.config.bf16 and on_gpu, channels_last=on_gpu,
                                     **({"sources": sources} if sources else {}))
            errors = {item_key(r.spec): r.error for r in results if r.error is not None}
        except Exception as error:  # the engine failed the whole batch: every item records why
            results = []
            errors = {key: f"{type(error).__name__}: {error}" for key in batch.keys}
        images = images_table(results, self.model.class_names, self.name,
                              total_steps=self.config.schedule.total_iterations if self.config.schedule else -1)
        if images.num_rows:
            self.store.write_table(f"{IMAGES}/{batch.name}.parquet", images)
        done = set(images.column("key").to_pylist())
        failed = [(item, attempt, errors.get(item.key) or "the engine returned no result for this item")
                  for item, attempt in zip(batch.items, attempts) if item.key not in done]
        if failed:
            # Named by the batch and its highest try: a re-run of this very call overwrites, a later try adds.
            self.store.write_table(f"{FAILURES}/{batch.name}-a{max(attempts)}.parquet",
                                   failures_table(failed, self.name))
        return BatchReport(batch.index, tuple(k for k in batch.keys if k in done),
                           tuple((item.key, error) for item, _, error in failed),
                           time.perf_counter() - started, self.name)

    def source_images(self, names) -> dict[str, np.ndarray]:
        """name -> pixels of the source images a batch needs, read from the store (where the driver put them, so
        that they reach actors on any node, and actors that replace dead ones) and kept for later batches."""
        for name in sorted(set(names) - set(self.sources)):
            self.sources[name] = self.store.read_source(name)
        return {name: self.sources[name] for name in names}

    def features(self, path: str, layer: str, maps: tuple[int, ...], job: str = "octave") -> pa.Table:
        """Feature means of `job`'s images in one `images/` file: key, target, target_name, layer, map_<i>."""
        from jobs.kinds import feature_means
        table = pq.read_table(path, columns=["key", "job", "target", "target_name", "png"],
                              filesystem=self.store.fs)
        table = table.filter(pc.equal(table.column("job"), job))
        images = [decode_png(png) for png in table.column("png").to_pylist()]     # N x (H x W x 3)
        same_size = len({image.shape for image in images}) <= 1
        values = feature_means(self.model, np.stack(images) if images and same_size else images, layer, maps,
                               self.device)                                                     # N x M
        columns = {"key": table.column("key"), "target": table.column("target"),
                   "target_name": table.column("target_name"),
                   "layer": pa.array([layer] * table.num_rows, pa.string())}
        columns.update({f"map_{m}": pa.array(values[:, i], pa.float32()) for i, m in enumerate(maps)})
        return pa.table(columns)
