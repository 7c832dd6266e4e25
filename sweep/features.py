"""The feature pass: mean activations of chosen feature maps of a hidden layer on every stored octave image.

The latent-space article's "feature latent space" places each class image at the means of a few feature maps of
one layer (e.g. GoogLeNet `inception5a` maps 0 and 4). This needs the model, so it runs through the same kind of
Ray workers as the sweep: each actor reads whole `images/` files (PNG column included) straight from the store and
returns a few floats per image; the driver writes `{store}/analysis/features.parquet` (key, target, target_name,
layer, map_<i>) in one atomic write.
"""
from __future__ import annotations

import collections
import sys
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sweep.driver import DEVICES, Fleet, SweepError, cluster_plan, first_line, ray_session, sigterm_as_interrupt
from sweep.plan import PlanError
from sweep.progress import Progress
from sweep.store import ANALYSIS, IMAGES, Store, StoreError
from sweep.worker import WorkerConfig

FEATURES_FILE = f"{ANALYSIS}/features.parquet"


@dataclass(frozen=True)
class FeatureConfig:
    """One feature pass over a store."""
    store: str                       # the sweep's store
    layer: str                       # hidden layer name (`Classifier.layer_names`)
    maps: tuple[int, ...]            # feature map indices of that layer
    job: str = "octave"              # whose images: the class images
    weights: str | None = None       # None: the weights the sweep used (manifest's weights_source)
    address: str | None = None       # as for `sweep run`
    workers: int | None = None
    device: str = "auto"
    cpus_per_worker: float = 1.0
    in_flight: int = 2
    num_cpus: int | None = None
    num_gpus: int | None = None
    worker_logs: bool = False
    progress_every: float | None = None


def check(config: FeatureConfig) -> tuple[Store, dict]:
    """Refuse a store without images, other weights than the sweep's, an unknown layer or map; before Ray."""
    from jobs.kinds import feature_means
    from jobs.models import load_model
    if config.device not in DEVICES:
        raise PlanError(f"unknown device {config.device!r}: choose from {', '.join(DEVICES)}")
    store = Store.open(config.store)
    manifest = store.read_manifest()
    if manifest is None:
        raise StoreError(f"{store.uri} has no manifest.json: not a sweep store")
    if not store.files(IMAGES):
        raise StoreError(f"{store.uri} holds no images yet: run `sweep run` first")
    weights = config.weights or manifest.get("weights_source", "DEFAULT")
    model = load_model(manifest["model"], weights)
    if model.weights_id != manifest["weights"]:
        raise StoreError(f"the store was made with weights {manifest['weights']}, these are {model.weights_id}: "
                         f"pass the same --weights")
    probe = np.zeros((1, model.input_size, model.input_size, 3), np.uint8)   # 1 x H x W x 3
    try:
        feature_means(model, probe, config.layer, config.maps)
    except KeyError as error:
        raise PlanError(str(error.args[0]) if error.args else f"unknown layer {config.layer}") from None
    except ValueError as error:
        raise PlanError(str(error)) from None
    return store, manifest


def run_features(config: FeatureConfig, *, stream: TextIO | None = None) -> tuple[str, int]:
    """Compute and write features.parquet; returns (its path, rows)."""
    import ray
    from ray.exceptions import RayError, RayTaskError
    store, manifest = check(config)
    out = stream if stream is not None else sys.stdout
    # Only the files holding images of `job` (reading just the job column), each read whole by one actor.
    files = collections.deque(path for path in store.files(IMAGES) if config.job in set(
        pq.read_table(path, columns=["job"], filesystem=store.fs).column("job").to_pylist()))
    if not files:
        raise StoreError(f"{store.uri} holds no {config.job} images to compute features on")
    tables: list[pa.Table] = []
    progress = Progress(len(files), stream=out, interval=config.progress_every)
    worker_config = WorkerConfig(store.uri, manifest["model"], config.weights or manifest.get("weights_source",
                                 "DEFAULT"), threads=max(1, int(config.cpus_per_worker)))
    with ray_session(config), sigterm_as_interrupt():
        use_gpu, count = cluster_plan(config, len(files))
        fleet = Fleet(worker_config, count, use_gpu=use_gpu, cpus=config.cpus_per_worker)
        owner: dict = {}   # ObjectRef -> (slot, actor generation, file)
        crashes: collections.Counter = collections.Counter()
        try:
            while files or owner:
                for slot in fleet.slots:
                    while files and sum(1 for s, g, _ in owner.values()
                                        if s is slot and g == slot.generation) < config.in_flight:
                        path = files.popleft()
                        ref = slot.actor.features.remote(path, config.layer, config.maps, config.job)
                        owner[ref] = (slot, slot.generation, path)
                ready, _ = ray.wait(list(owner), num_returns=1, timeout=1.0)
                for ref in ready:
                    slot, generation, path = owner.pop(ref)
                    try:
                        tables.append(ray.get(ref))
                    except RayTaskError as error:
                        raise SweepError(f"feature pass failed on {path}: {first_line(error)}") from None
                    except RayError as error:
                        if generation == slot.generation:
                            fleet.replace(slot)
                        crashes[path] += 1
                        if crashes[path] >= 3:
                            raise SweepError(f"workers keep dying on {path}: {first_line(error)}") from None
                        files.appendleft(path)
                        continue
                    progress.update(done=1)
        finally:
            fleet.stop()
            progress.close()
    table = pa.concat_tables(tables).sort_by([("target", "ascending"), ("key", "ascending")])
    return store.write_table(FEATURES_FILE, table), table.num_rows
