"""Synthetic stores in the sweep's exact layout, for tests and the analysis benchmark (no model needed).

`write_store` writes a manifest and images/ part files from `Image` records whose logits the caller chooses;
`random_store` builds a large one (1000 classes, all three jobs, real PNGs) with some structure in its outputs:
classes come in groups whose members activate each other, so the nearest-neighbour graph has many components;
`workload_store` one shaped as a real sweep (the plan's every item and batch, the jobs from photographs with their
interpolation frames, several seeds: 10^4 to 10^5 images; optionally each image's recorded steps, as
`sweep run --trajectory every:N` stores them), for measuring the analysis at scale.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
from PIL import Image as PILImage

from jobs.catalog import key_of
from sweep.store import (FRAME_SUFFIX, FRAMES, IMAGES, TRAJECTORIES, Store, decode_png, encode_png as png_bytes,
                         images_schema, new_manifest, source_file, trajectories_schema)


@dataclass(frozen=True)
class Image:
    """One synthetic store row: what the engine would have produced for one job."""
    job: str
    target: int
    logits: np.ndarray                 # n_classes float
    variant: str = ""
    partner: int = -1
    seed: int = 0
    png: bytes | None = None           # None: a small grey PNG
    margin_label: int | None = None    # None: computed from the logits
    source: str = ""                   # the real image a job started from ("" for the noise jobs)
    frame: int = -1                    # -1: a job's final image; k >= 0: an interpolation's k-th frame
    step: int = 0                      # optimisation steps done


def noise_png(rng: np.random.Generator, size: int = 64, tint: Sequence[float] = (0.5, 0.5, 0.5)) -> bytes:
    """A smooth random colour pattern (8x8 noise upsampled) with a tint: a stand-in for a generated image."""
    small = np.clip(rng.normal(0.0, 0.25, (8, 8, 3)) + np.asarray(tint), 0, 1)
    big = PILImage.fromarray((small * 255).astype(np.uint8)).resize((size, size), PILImage.BICUBIC)
    detail = rng.normal(0, 8, (size, size, 3))
    return png_bytes(np.clip(np.asarray(big, dtype=np.float64) + detail, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=1)
def _grey_png() -> bytes:
    return png_bytes(np.full((8, 8, 3), 128, np.uint8))


def image_table(images: Sequence[Image], class_names: Sequence[str], model: str = "synthetic",
                weights: str = "random-synthetic", schedule_id: str = "synthetic0") -> pa.Table:
    """The images as one table in the store schema (`sweep.store.images_schema`), with labels, margin labels and
    target values derived from the logits by the engine's own `jobs.kinds.scores`."""
    from jobs.kinds import scores   # torch: kept out of the analysis stages that import this module
    n = len(class_names)
    schema = images_schema(n)
    cols: dict[str, list] = {name: [] for name in schema.names}
    sides: dict[int, tuple[int, int]] = {}   # id of a PNG's bytes -> (height, width): a shared PNG decoded once
    for im in images:
        logits = np.asarray(im.logits, dtype=np.float32)
        assert logits.shape == (n,), f"logits must have {n} values"
        png = im.png if im.png is not None else _grey_png()
        if id(png) not in sides:
            sides[id(png)] = decode_png(png).shape[:2] if png[:4] == b"\x89PNG" else (0, 0)
        height, width = sides[id(png)]
        values = scores(im, logits)
        key = key_of(im.job, im.variant, im.target, im.partner, im.seed, im.source)
        row = {**values, "margin_label": values["margin_label"] if im.margin_label is None else im.margin_label,
               "key": key + (f"{FRAME_SUFFIX}{im.frame}" if im.frame >= 0 else ""), "job": im.job,
               "variant": im.variant, "model": model, "weights": weights, "schedule_id": schedule_id,
               "target": im.target, "partner": im.partner if im.partner >= 0 else None, "seed": im.seed,
               "target_name": class_names[im.target] if im.target >= 0 else "",
               "label_name": class_names[values["label"]],
               "partner_name": class_names[im.partner] if im.partner >= 0 else None,
               "partner_logit": values["partner_logit"] if im.partner >= 0 else None,
               "logits": logits, "png": png, "width": width, "height": height, "seconds": 0.0,
               "worker": "synthetic/0", "source": im.source or None, "frame": im.frame, "step": im.step}
        for name in schema.names:
            cols[name].append(row[name])
    flat = np.concatenate(cols.pop("logits")) if images else np.zeros(0, np.float32)
    arrays = {name: pa.array(column, schema.field(name).type) for name, column in cols.items()}
    arrays["logits"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), n)
    return pa.table([arrays[name] for name in schema.names], schema=schema)


def write_store(path: str, class_names: Sequence[str], images: Sequence[Image], *, options: dict | None = None,
                rows_per_file: int = 8, model: str = "synthetic") -> str:
    """Write a local store through `sweep.store` (its manifest and images/ part files, as a sweep writes them; the
    interpolation frames, `frame >= 0`, go to frames/ part files of the same names)."""
    store = _new_store(path, class_names, options or {}, model)
    for i in range(0, len(images), rows_per_file):
        write_batch(store, f"part-{i // rows_per_file:06d}", images[i:i + rows_per_file], class_names, model)
    return path


def _new_store(path: str, class_names: Sequence[str], options: dict, model: str) -> Store:
    store = Store.open(path)
    store.write_manifest(new_manifest(model=model, weights="random-synthetic", weights_source="random",
                                      schedule="synthetic", schedule_id="synthetic0", class_names=class_names,
                                      options=options))
    return store


def write_batch(store: Store, name: str, images: Sequence[Image], class_names: Sequence[str],
                model: str = "synthetic") -> None:
    """One batch's rows as a worker writes them: its interpolation frames to frames/{name}.parquet first, then its
    images to images/{name}.parquet."""
    for directory, rows in ((FRAMES, [im for im in images if im.frame >= 0]),
                            (IMAGES, [im for im in images if im.frame < 0])):
        if rows:
            store.write_table(f"{directory}/{name}.parquet", image_table(rows, class_names, model=model))


def random_store(path: str, n_classes: int = 1000, *, n_pairs: int = 1000, image_size: int = 64,
                 group_size: int = 8, seed: int = 0, rows_per_file: int = 16) -> str:
    """A synthetic sweep of every class: octave and opposite images, `n_pairs` pairs x (merge, juxtapose).

    Outputs: class c's octave image activates c strongly and its group (classes c // group_size) mildly; its
    opposite image suppresses c and activates a group-mate of another group; additions put both classes on top
    for most merges and about half the juxtapositions.
    """
    rng = np.random.default_rng(seed)
    names = [f"class {i:0{len(str(n_classes - 1))}d}" for i in range(n_classes)]
    group = np.arange(n_classes) // group_size
    tints = rng.uniform(0.15, 0.85, (n_classes, 3))
    images: list[Image] = []
    for c in range(n_classes):
        logits = rng.normal(0, 1, n_classes)
        logits[group == group[c]] += rng.uniform(1.5, 4.0)
        logits[c] = 18 + rng.normal(0, 1)
        images.append(Image("octave", c, logits, png=noise_png(rng, image_size, tints[c])))
    opposite_of = rng.permutation(n_classes)
    for c in range(n_classes):
        logits = rng.normal(0, 1, n_classes)
        logits[c] = -20
        logits[opposite_of[c]] += 9
        images.append(Image("opposite", c, logits, png=noise_png(rng, image_size, 1 - tints[c])))
    pairs = set()
    while len(pairs) < n_pairs:
        a, b = (int(x) for x in rng.choice(n_classes, 2, replace=False))
        pairs.add((min(a, b), max(a, b)))
    for a, b in sorted(pairs):
        for variant, success in (("merge", 0.8), ("juxtapose", 0.5)):
            logits = rng.normal(0, 1, n_classes)
            logits[a] += 10
            logits[b] += 10 if rng.random() < success else 2
            images.append(Image("addition", a, logits, variant=variant, partner=b,
                                png=noise_png(rng, image_size, (tints[a] + tints[b]) / 2)))
    options = {"jobs": ["octave", "opposite", "addition"], "classes": list(range(n_classes)),
               "pairs": [list(p) for p in sorted(pairs)], "variants": ["merge", "juxtapose"], "seeds": 1,
               "batch_size": rows_per_file}
    return write_store(path, names, images, options=options, rows_per_file=rows_per_file)


def workload_store(path: str, class_names: Sequence[str], *, classes: str = "all", seeds: int = 1,
                   sources: int = 3, frames: int = 8, png_sides: tuple[int, int] | None = None,
                   batch_size: int = 8, seed: int = 0, trajectory_every: int = 0) -> dict[str, int]:
    """A synthetic sweep shaped as the real workload (no model, no rendering): `sweep.plan.make_plan`'s items for
    octave, opposite, addition (its default pairs, merge and juxtapose), transfigure and interpolate from `sources`
    photographs (each interpolation with `frames` kept frames, in frames/), over `seeds` seeds, written one file per
    batch of `batch_size` under the batch's name, as workers write them; the photographs in sources/.

    Outputs are noise with the aim raised (an opposite's target lowered, an interpolation moving from a to b over
    its frames): numbers to analyse, not meaning. PNGs come from a pool of 8 noise images per side: `png_sides` =
    (the noise jobs' side, the photograph jobs' side), e.g. (490, 299) for a real sweep's sizes (about 580 and 215
    KB), or None for 8 x 8 ones. `trajectory_every` N > 0: each image's steps recorded every N steps of the
    googlenet preset's octaves, as `sweep run --trajectory every:N` stores them (`workload_trajectories`; every:10
    is 72 rows an image), in trajectories/ under the batch's name. Returns the counts written: {"items",
    "frames", "files", "trajectory_rows"}."""
    from jobs.schedules import load_schedule
    from sweep.plan import make_plan
    rng = np.random.default_rng(seed)
    photos = [f"photo-{i}" for i in range(sources)]
    plan = make_plan(n_classes=len(class_names), classes=classes, seeds=seeds, batch_size=batch_size,
                     jobs="octave,opposite,addition" + (",transfigure,interpolate" if sources else ""), sources=photos)
    store = _new_store(path, class_names, plan.options(), "synthetic")
    for name in photos:
        store.write_bytes(source_file(name), noise_png(rng, 64))
    big, small = png_sides or (8, 8)
    pool = {side: [noise_png(rng, side) if png_sides else png_bytes(np.full((8, 8, 3), 100 + i, np.uint8))
                   for i in range(8)] for side in {big, small}}
    counts = {"items": 0, "frames": 0, "files": 0, "trajectory_rows": 0}
    octaves = [o.iterations for o in load_schedule("googlenet").octaves] if trajectory_every else []
    recorder = np.random.default_rng([seed, 1])   # its own: the images' outputs do not depend on trajectory_every
    for batch in plan.batches():
        if trajectory_every:   # written before the batch's images, as a worker does
            steps = workload_trajectories(batch.items, recorder, len(class_names), octaves, trajectory_every)
            store.write_table(f"{TRAJECTORIES}/{batch.name}.parquet", steps)
            counts["trajectory_rows"] += steps.num_rows
        rows = []
        for item in batch.items:
            side = small if item.source else big
            rows += _workload_rows(item, rng, len(class_names), frames, pool[side][len(rows) % 8])
        write_batch(store, batch.name, rows, class_names)
        counts["items"] += len(batch.items)
        counts["frames"] += len(rows) - len(batch.items)
        counts["files"] += 1
    return counts


def _workload_rows(item, rng: np.random.Generator, n_classes: int, frames: int, png: bytes) -> list[Image]:
    """The rows a worker would store for one work item: its final image, and an interpolation's kept frames."""
    def outputs(a_level: float, b_level: float = 0.0) -> np.ndarray:
        logits = rng.normal(0, 1, n_classes)
        logits[item.target] += a_level
        if item.partner >= 0:
            logits[item.partner] += b_level
        return logits
    common = dict(variant=item.variant, partner=item.partner, seed=item.seed, source=item.source, png=png, step=100)
    if item.job == "interpolate":   # a's logit falls and b's rises over the frames; the last frame is the final image
        kept = [outputs(12.0 * (1 - t), 12.0 * t) for t in np.linspace(0, 1, frames)]
        return [Image(item.job, item.target, kept[-1], **common),
                *(Image(item.job, item.target, logits, frame=k, **common) for k, logits in enumerate(kept))]
    if item.job == "opposite":
        return [Image(item.job, item.target, outputs(-20.0), **common)]
    if item.job == "addition":   # both classes on top for about 70% of the pairs
        return [Image(item.job, item.target, outputs(10.0, 10.0 if rng.random() < 0.7 else 2.0), **common)]
    return [Image(item.job, item.target, outputs(15.0), **common)]


def workload_trajectories(items: Sequence, rng: np.random.Generator, n_classes: int, octaves: Sequence[int],
                          every: int, k: int = 5) -> pa.Table:
    """The trajectories/ rows (`sweep.store.trajectories_schema`) of a batch's `items` (work items with a target):
    one row per item and step t = 0, every, 2 every, ... of the `octaves`' iterations, item after item as a worker
    writes them. Labels are noise that settles: the argmax wanders among the target and three rivals until a
    random step, then keeps to the target but for 3% flickers; the top-k lists lead with the label. No snapshots
    (logits and png null)."""
    steps = np.arange(0, sum(octaves), every)                                      # T
    octave = np.searchsorted(np.cumsum(octaves), steps, side="right")              # T
    n, t = len(items), len(steps)
    targets = np.array([item.target for item in items])                            # n
    rivals = rng.integers(0, n_classes, (n, 3))
    settled = steps[None, :] >= rng.uniform(0, 1, (n, 1)) * sum(octaves)          # n x T
    rival = rivals[np.arange(n)[:, None], rng.integers(0, 3, (n, t))]              # n x T
    wander = np.where(rng.random((n, t)) < 0.3, targets[:, None], rival)
    flicker = rng.random((n, t)) < 0.03
    labels = np.where(settled & ~flicker, targets[:, None], np.where(settled, rivals[:, :1], wander))   # n x T
    target_logit = np.linspace(0, 20, t)[None, :] + rng.normal(0, 1, (n, t))       # n x T
    columns = {"key": np.repeat([item.key for item in items], t), "job": np.repeat([item.job for item in items], t),
               "target": np.repeat(targets, t), "step": np.tile(steps, n), "octave": np.tile(octave, n),
               "target_logit": target_logit.ravel(), "loss": -target_logit.ravel(), "label": labels.ravel(),
               "target_rank": np.where(labels == targets[:, None], 1, rng.integers(2, 10, (n, t))).ravel()}
    schema = trajectories_schema(k, n_classes)
    arrays = {name: pa.array(values, schema.field(name).type) for name, values in columns.items()}
    top = np.concatenate([labels.reshape(-1, 1), rng.integers(0, n_classes, (n * t, k - 1))], axis=1)   # nT x k
    arrays["topk_classes"] = pa.FixedSizeListArray.from_arrays(pa.array(top.ravel(), pa.int32()), k)
    top_logits = np.sort(rng.normal(5, 2, (n * t, k)), axis=1)[:, ::-1]                                # nT x k
    arrays["topk_logits"] = pa.FixedSizeListArray.from_arrays(pa.array(top_logits.ravel(), pa.float32()), k)
    return pa.table([arrays.get(f.name, pa.nulls(n * t, f.type)) for f in schema], schema=schema)
