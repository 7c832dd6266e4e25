"""The feature pass: mean activations of chosen feature maps of a hidden layer on every stored octave image.

The latent-space article's "feature latent space" places each class image at the means of a few feature maps of
one layer (e.g. GoogLeNet `inception5a` maps 0 and 4). This needs the model, so it runs through the same kind of
Ray workers as the sweep: each actor reads whole `images/` files (PNG column included) straight from the store and
returns a few floats per image; the driver writes `{store}/analysis/features.parquet` (key, target, target_name,
layer, feature_size, side, map_<i>) in one atomic write. The article evaluates its GoogLeNet class images at the
299 px they were generated from (`input_side`: a job's first octave; torchvision gives GoogLeNet 224); the
googlenet preset's octaves leave them larger (490 px), so each image is resized to that side first unless
`FeatureConfig.size` says "stored". The resize antialiases as the octaves of the job's own
schedule did (`antialias`, from the manifest's `schedule_contents`; true where a store does not record it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pyarrow as pa

from jobs.text import counted, size_note
from sweep.fleet import ClusterConfig, SweepError, check_cluster, run_on_fleet
from sweep.plan import PlanError
from sweep.progress import Progress
from sweep.store import ANALYSIS, IMAGES, Store, StoreError, job_schedule, require_images
from sweep.worker import WorkerConfig

FEATURES_FILE = f"{ANALYSIS}/features.parquet"
FEATURE_SIZES = ("input", "stored")   # the images resized to where their job started (article), or as stored (ours)


def input_side(manifest: dict, job: str, model_input_size: int) -> int:
    """The side `--feature-size input` resizes `job`'s images to: the side its schedule started them at (its first
    octave, from the manifest's schedule contents), as the article evaluates its GoogLeNet class images, generated
    from 299 px, at 299 x 299 (Latent space, "Feature latent space": `image[0].reshape(1, 3, 299, 299)`), not at
    torchvision's 224; the model's input size where the manifest does not record the schedule."""
    octaves = job_schedule(manifest, job).get("octaves") or []
    return int(octaves[0]["size"]) if octaves else int(model_input_size)


@dataclass(frozen=True)
class FeatureConfig:
    """One feature pass over a store."""
    store: str                       # the sweep's store
    layer: str                       # hidden layer name (`Classifier.layer_names`)
    maps: tuple[int, ...]            # feature map indices of that layer
    job: str = "octave"              # whose images: the class images
    weights: str | None = None       # None: the weights the sweep used (manifest's weights_source)
    size: str = "input"              # "input": each image resized to where its job started (`input_side`)
                                     #   (bilinear, antialiased as the job's schedule resized between its
                                     #   octaves: its `antialias`), where the article
                                     #   evaluates them (Latent space, "Feature latent space": `image =
                                     #   image[0].reshape(1, 3, 299, 299)`; `output = network(image)`);
                                     #   "stored": at the size the image was stored at (ours before this
                                     #   field: 490 px for the googlenet preset, whose octaves upsample)
    cluster: ClusterConfig = ClusterConfig()   # where the workers run, as for `sweep run`


@dataclass(frozen=True)
class FeatureSummary:
    """What a feature pass wrote."""
    path: str                        # features.parquet
    images: int                      # its rows
    layer: str
    maps: tuple[int, ...]
    size: str                        # FeatureConfig.size
    sides: tuple[int, ...]           # the sides (px) of the squares the model saw, sorted

    def lines(self) -> list[str]:
        maps = ",".join(map(str, self.maps))
        return [f"wrote {self.path}: {counted(self.images, 'image')}, {self.layer} maps {maps}, "
                f"{size_note(self.size, self.sides)}"]


def check(config: FeatureConfig) -> tuple[Store, dict]:
    """Refuse a store without images, other weights than the sweep's, an unknown layer or map; before Ray."""
    from jobs.kinds import feature_means
    from jobs.models import load_model
    check_cluster(config.cluster)
    if config.size not in FEATURE_SIZES:
        raise PlanError(f"feature size {config.size!r}: one of {', '.join(FEATURE_SIZES)}")
    store = Store.open(config.store)
    manifest = store.read_manifest()
    if manifest is None:
        raise StoreError(f"{store.uri} has no manifest.json: not a sweep store")
    require_images(store)
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


def first_of_each_key(tables: list[pa.Table]) -> pa.Table:
    """The tables together, each key's row from the first table holding it: given in images/ name order, the row
    of the file the readers take a key twice stored from (a hung batch's late write landing after its rerun)."""
    seen: set[str] = set()
    kept = []
    for table in tables:
        keys = table.column("key").to_pylist()
        fresh = [key not in seen for key in keys]
        seen.update(keys)
        kept.append(table.filter(pa.array(fresh, pa.bool_())))
    return pa.concat_tables(kept)


def run_features(config: FeatureConfig, *, stream: TextIO | None = None) -> FeatureSummary:
    """Compute and write features.parquet."""
    store, manifest = check(config)
    cluster = config.cluster
    # Only the files holding images of `job` (reading just the job column), each read whole by one actor.
    files = [path for path in store.files(IMAGES) if config.job in set(
        store.read_checked(path, ["job"]).column("job").to_pylist())]
    if not files:
        raise StoreError(f"{store.uri} holds no {config.job} images to compute features on")
    tables: dict[str, pa.Table] = {}   # by images/ file, as the workers finish them
    progress = Progress(len(files), stream=stream, interval=cluster.progress_every)   # None: stderr
    worker_config = WorkerConfig(store.uri, manifest["model"], config.weights or manifest.get("weights_source",
                                 "DEFAULT"), threads=cluster.threads)

    def on_done(path: str, table: pa.Table) -> tuple:
        tables[path] = table
        progress.update(done=1)
        return ()

    def on_failed(path: str, error: str) -> tuple:
        raise SweepError(f"feature pass failed on {store.location_of(path)}: {error}")

    run_on_fleet(cluster, worker_config, files,
                 submit=lambda actor, path: actor.features.remote(path, config.layer, config.maps, config.job,
                                                                      config.size),
                 on_done=on_done, on_failed=on_failed, progress=progress, stream=stream)
    table = first_of_each_key([tables[path] for path in files])   # files: in name order
    table = table.sort_by([("target", "ascending"), ("key", "ascending")])
    return FeatureSummary(store.write_table(FEATURES_FILE, table), table.num_rows, config.layer, tuple(config.maps),
                          config.size, tuple(sorted(set(table.column("side").to_pylist()))))
