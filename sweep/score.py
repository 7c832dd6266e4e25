"""Cross-model scoring (issue 13): every stored image of a sweep through another classifier, on the sweep's workers.

    {store}/scores/{scorer}/_scorer.json    which model and weights this scorer is (a second scorer never mixes in)
    {store}/scores/{scorer}/part-*.parquet  one file per unit of work (`SCORES_SCHEMA`): one row per scored image

A unit of work is one `images/` file and the keys of it still to score; its part file is named from the input
file and those keys, so running the same unit again (an actor that died after writing) overwrites the same file,
and a resume scores only what no part holds yet. A score row records which stored image it scored (`image_digest`:
a digest of the image row's stored logits, `image_digests`): an image written again with other pixels after it
was scored (its batch run again, its file quarantined or re-run on another device) counts as unscored, and readers
leave its old row out (`rows_of_stored_images`). The actors are `sweep.fleet`'s, fed by its one dispatch loop;
each reads its `images/` file straight from the store (PNG column included) and writes its part itself, atomically
through `sweep.store`.

Input size: the `Classifier` takes any size and does not resize. The image was made at the generating model's
scale, so a scorer sees it rescaled by `scorer.input_size / generator.input_size` (bilinear with antialias, as
torchvision resizes, then rounded to uint8 like a stored PNG); between models of the same input size (the two demo
models) and for the generating model itself it is the stored image, untouched, so that scoring with the generating
model reproduces the stored `logits`. Input convention: the generating model is fed each job's images as that
job's schedule fed it (the manifest's `job_schedules[job].input` where recorded); any other model with its own
normalisation (the `Classifier`'s default).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence, TextIO

import numpy as np
import pyarrow as pa

from jobs.outputs import softmax
from jobs.text import counted, first_line
from sweep.fleet import ClusterConfig, SweepError, check_cluster, run_on_fleet
from sweep.plan import PlanError, parse_names
from sweep.progress import Progress
from sweep.store import IMAGES, SCORES, Store, StoreError, decode_png, is_frame_key, open_store, require_images, \
    why_unreadable
from sweep.worker import SweepWorker, WorkerConfig

SCORER_FILE = "_scorer.json"   # "_": Parquet dataset readers of the directory skip it
SCORE_BATCH = 64            # images per forward pass (inference only: a CPU handles this many of the small demo images)
# Scorer manifest fields that must match for a run to add parts to an existing scorer directory.
SCORER_FIELDS = ("scorer", "model", "weights", "n_classes", "input_size", "generator_input_size")
IMAGE_DIGEST = "image_digest"   # the scores/ column naming the stored image a row scored


def scores_schema(n_classes: int) -> pa.Schema:
    """Columns of `scores/{scorer}/`: one row per scored image, with the scorer's full output vector."""
    return pa.schema([
        ("key", pa.string()), ("scorer", pa.string()), ("weights", pa.string()),
        ("logits", pa.list_(pa.float32(), n_classes)),
        ("label", pa.int32()),            # argmax of the scorer's logits
        ("target_prob", pa.float32()),    # the scorer's softmax probability of the target (null: no target)
        ("partner_prob", pa.float32()),   # ... of the partner class (null: no partner)
        (IMAGE_DIGEST, pa.string()),      # which stored image was scored (`image_digests`); null: a part written
                                          # before scores recorded it
    ])


def logits_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list logits column -> N x n_classes float32."""
    flat = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(flat.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(flat), -1)


def image_digests(logits: np.ndarray) -> list[str]:
    """Which stored image each row is: N x n_classes stored logits (an images/ row's `logits`) -> N digests (16 hex
    digits of SHA-256 of the row's float32 bytes). The stored logits are the generating model's outputs on the
    stored PNG, so an image written again with other pixels has others; a reader gets them for 4 bytes a class,
    where the PNG is kilobytes (`sweep score`'s resume and the transfer table read every image's)."""
    rows = np.ascontiguousarray(logits, dtype=np.float32)                          # N x C
    return [hashlib.sha256(row.tobytes()).hexdigest()[:16] for row in rows]


def scorer_id(model: str, weights_id: str) -> str:
    """A directory name for (model, weights): readable, e.g. `digits-resnet.shipped`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}.{weights_id}").strip("-")


def generating_scorer(manifest: dict) -> str:
    """The `scorer_id` of the model and weights that made a store (its manifest's): the name its stored logits go
    by in the transfer table, and its images' name as another store's scorer."""
    return scorer_id(str(manifest["model"]), str(manifest["weights"]))


@dataclass(frozen=True)
class ScoreConfig:
    """One scoring pass over a store."""
    store: str                                 # the sweep's store
    model: str                                 # the scoring model (zoo name)
    weights: str = "DEFAULT"                   # its weights, as `jobs.load_model` takes them
    jobs: str | None = None                    # comma list of jobs to score; None: every job in the store
    batch_size: int = SCORE_BATCH              # images per forward pass on a worker
    cluster: ClusterConfig = ClusterConfig()   # where the workers run, as for `sweep run`


@dataclass(frozen=True)
class ScoreTask:
    """One unit of work: the still unscored `keys` of one `images/` file, written to `name`."""
    path: str                       # the images/ file (path inside the store's file system)
    keys: tuple[str, ...]           # its keys to score, sorted
    name: str                       # part file name under scores/{scorer}/

    @classmethod
    def of(cls, path: str, keys: Sequence[str]) -> "ScoreTask":
        keys = tuple(sorted(keys))
        stem = path.rsplit("/", 1)[-1].removesuffix(".parquet")
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:10]
        return cls(path, keys, f"{'' if stem.startswith('part-') else 'part-'}{stem}-{digest}.parquet")


@dataclass(frozen=True)
class ScorePlan:
    """What every actor needs to score: sent once per call (small)."""
    scorer: str                               # scorer id
    weights: str                              # the scorer's weights id
    n_classes: int
    scale: float                              # scorer input size / generating model's input size
    inputs: tuple[tuple[str, str], ...] = ()  # (job, input convention) for the generating model; empty: model's own
    batch_size: int = SCORE_BATCH


@dataclass(frozen=True)
class ScoreSummary:
    store: str
    scorer: str
    images: int                     # images of the selected jobs (interpolation frames excluded)
    scored: int                     # scored by this run
    skipped: int                    # already scored before this run
    seconds: float                  # the whole run: Ray's start and the models' loading included
    rate: float = 0.0               # images per second once the first worker was ready (the bar's rate)
    generator: bool = False         # the store's generating model and weights: its scores are the stored logits'
    again: int = 0                  # of `scored`, images scored before but not as stored now (written again since)

    def lines(self) -> list[str]:
        where = f"{self.store}/{SCORES}/{self.scorer}/"
        if not self.images:
            return [f"scorer {self.scorer}: nothing to score: {self.store} holds no images to score (interpolation "
                    f"frames are never scored); nothing written"]
        if not self.scored:
            return [f"scorer {self.scorer}: nothing to score: all {self.images} images already scored under {where}"]
        rate = f" ({self.rate:.1f} images/s once a worker was ready)" if self.rate > 0 else ""
        again = (f" ({self.again} again: their stored image is not the one scored, written again since)"
                 if self.again else "")
        return [f"scorer {self.scorer}: {counted(self.scored, 'image')} scored in {self.seconds:.1f}s with "
                f"start-up{rate}{again}, {self.skipped} already scored, {self.images} in all; written under {where}"]


# ---- the worker ------------------------------------------------------------------------------------------------
def rescale(images: np.ndarray, scale: float) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x h x w x 3 uint8 with h = round(H * scale): bilinear with antialias, rounded."""
    if scale == 1.0:
        return images
    import torch.nn.functional as F
    from jobs.kinds import from_uint8, to_uint8
    height, width = images.shape[1:3]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return to_uint8(F.interpolate(from_uint8(images), size=size, mode="bilinear", antialias=True,
                                  align_corners=False))


def score_images(model, images: list[np.ndarray], scale: float, inputs: Sequence[str | None], device="cpu",
                 batch_size: int = SCORE_BATCH) -> np.ndarray:
    """The model's logits (N x n_classes float32) on uint8 images (each H x W x 3, sizes may differ), each image
    rescaled by `scale` and fed under its input convention (None: the model's own), images of one size and
    convention evaluated together by `jobs.kinds.logits_of` (the engine's own scoring)."""
    from jobs.kinds import logits_of
    out = np.zeros((len(images), model.n_classes), np.float32)
    groups: dict[tuple, list[int]] = {}
    for i, (image, convention) in enumerate(zip(images, inputs)):
        groups.setdefault((image.shape, convention), []).append(i)
    for (_, convention), members in groups.items():
        stacked = rescale(np.stack([images[i] for i in members]), scale)      # M x h x w x 3
        options = {"input": convention} if convention is not None else {}
        out[members] = logits_of(model, stacked, device, chunk=batch_size, **options)
    return out


def scores_table(keys: Sequence[str], targets: Sequence[int | None], partners: Sequence[int | None],
                 logits: np.ndarray, plan: ScorePlan, digests: Sequence[str | None] | None = None) -> pa.Table:
    """A `scores/` table from the scorer's logits (N x n_classes), each image's target and partner (None or -1:
    none) and the `image_digests` of the stored images scored (None: not recorded)."""
    probs = softmax(logits) if len(logits) else np.zeros_like(logits, dtype=np.float64)

    def prob(i: int, c) -> float | None:
        return float(probs[i, c]) if c is not None and 0 <= c < plan.n_classes else None

    n = len(keys)
    return pa.table({
        "key": pa.array(list(keys), pa.string()),
        "scorer": pa.array([plan.scorer] * n, pa.string()),
        "weights": pa.array([plan.weights] * n, pa.string()),
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.astype(np.float32).reshape(-1)), plan.n_classes),
        "label": pa.array(logits.argmax(axis=1) if n else [], pa.int32()),
        "target_prob": pa.array([prob(i, t) for i, t in enumerate(targets)], pa.float32()),
        "partner_prob": pa.array([prob(i, p) for i, p in enumerate(partners)], pa.float32()),
        IMAGE_DIGEST: pa.array(list(digests) if digests is not None else [None] * n, pa.string()),
    }, schema=scores_schema(plan.n_classes))


def first_rows(keys: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """The indices of the `wanted` keys' first rows among a file's `keys`, in file order: the row of each key that
    `prepare` planned for (the readers take a key's first row too), so that a file holding a key twice has that
    key decoded, scored and counted once."""
    wanted, first = set(wanted), {}
    for row, key in enumerate(keys):
        if key in wanted:
            first.setdefault(key, row)
    return sorted(first.values())


class ScoreWorker(SweepWorker):
    """A sweep actor holding the scoring model (`WorkerConfig.model`); `score` runs one unit of work."""

    def score(self, task: ScoreTask, plan: ScorePlan) -> int:
        """Score `task.keys` of one images/ file and write their part file; returns the rows written."""
        table = self.read_listed(task.path, ["key", "job", "target", "partner", "png", "logits"])
        table = table.take(first_rows(table.column("key").to_pylist(), task.keys))   # only these are decoded
        digests = image_digests(logits_matrix(table.column("logits")))         # the images this call scores
        rows = table.drop_columns(["logits"]).to_pydict()
        images = [decode_png(png) for png in rows["png"]]                        # N x (H x W x 3)
        conventions = dict(plan.inputs)
        logits = score_images(self.model, images, plan.scale, [conventions.get(j) for j in rows["job"]],
                              self.device, plan.batch_size)                     # N x n_classes
        scored = scores_table(rows["key"], rows["target"], rows["partner"], logits, plan, digests)
        self.store.write_table(f"{SCORES}/{plan.scorer}/{task.name}", scored)
        return scored.num_rows


# ---- the driver ------------------------------------------------------------------------------------------------
def selected_jobs(jobs: str | None, stored: Sequence[str]) -> tuple[str, ...]:
    """The jobs to score: `jobs` (comma list, read as `sweep run` reads its --jobs) or, when None, every job the
    store holds; PlanError for none given, an unknown or an absent one."""
    from jobs.catalog import ALL_JOBS
    if jobs is None:
        return tuple(sorted(stored))
    chosen = parse_names(jobs, ALL_JOBS, "job", "--jobs")
    absent = [j for j in chosen if j not in stored]
    if absent:
        raise PlanError(f"the store holds no {', '.join(absent)} images (it has {', '.join(sorted(stored))})")
    return chosen


def scored_images(store: Store, scorer: str) -> dict[str, set[str | None]]:
    """Key -> the `image_digests` of the images that the finished parts of `scorer` scored under it (None: a row
    that did not record its image)."""
    table = read_scores(store, scorer, ["key", IMAGE_DIGEST])
    scored: dict[str, set[str | None]] = {}
    for key, digest in zip(table.column("key").to_pylist(), table.column(IMAGE_DIGEST).to_pylist()):
        scored.setdefault(key, set()).add(digest)
    return scored


def rows_of_stored_images(keys: Sequence[str], digests: Sequence[str | None], stored: Mapping[str, str]
                          ) -> np.ndarray:
    """The indices of a scorer's rows (`keys`, their `digests`) that score the image stored under their key now
    (`stored`: key -> its `image_digests`), for readers that take a key's first row: first the rows that recorded
    that very image, then those that recorded none (parts written before `image_digest`), in their order; a row of
    another image (one written again since it was scored) is left out."""
    rank = np.array([0 if digest is not None and digest == stored.get(key) else 1 if digest is None else 2
                     for key, digest in zip(keys, digests)], dtype=np.int8)
    order = np.argsort(rank, kind="stable")
    return order[rank[order] < 2]


def read_scorer(store: Store, scorer: str) -> dict | None:
    """The scorer manifest (None when there is none yet); StoreError, naming it, when it is not a JSON object."""
    path = f"{SCORES}/{scorer}/{SCORER_FILE}"
    data = store.read_bytes(path)
    if data is None:
        return None
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise StoreError(f"{store.uri}/{path} is not a scorer manifest (not a JSON object): move "
                         f"{store.uri}/{SCORES}/{scorer} away to score again")
    return record


def scorers(store: Store) -> list[str]:
    """Ids of the scorers whose directories hold a scorer manifest, sorted."""
    import pyarrow.fs as pafs
    return sorted(i.base_name for i in store.listing(SCORES) if i.type == pafs.FileType.Directory
                  and store.exists(SCORES, i.base_name, SCORER_FILE))


def read_scores(store: Store, scorer: str, columns: Sequence[str] = ("key", "logits")) -> pa.Table:
    """A scorer's rows (only `columns`), through the one store layer; a part that cannot be read is refused in one
    line that says what helps (`sweep run --check-files`, which the store's other refusals name, never looks in
    scores/)."""
    def read_part(path: str) -> pa.Table:
        def present(schema: pa.Schema) -> list[str]:   # a part written before `image_digest` lacks it
            return [c for c in columns if c != IMAGE_DIGEST or c in schema.names]
        try:
            return store.read_chosen(path, present)
        except (pa.ArrowInvalid, OSError, KeyError) as error:
            raise StoreError(f"unreadable file {store.location_of(path)}: {why_unreadable(error)} (remove it: "
                             f"`sweep score` with this scorer then scores its images again)") from None

    tables = store.each_file(read_part, store.files(f"{SCORES}/{scorer}"))
    tables = [t if IMAGE_DIGEST not in columns or IMAGE_DIGEST in t.column_names else
              t.append_column(IMAGE_DIGEST, pa.nulls(t.num_rows, pa.string())) for t in tables]
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables(tables, promote_options="permissive")


def key_columns(store: Store, path: str, digests: bool = True) -> dict[str, list]:
    """The key and job columns of one images/ file, and its images' `image_digests` (as "digest"; None each
    without `digests`, whose outputs are then not read: 4 bytes a class and image, ten times the key and job
    columns); StoreError for a file that is not one."""
    try:
        table = store.read_file(path, ["key", "job", *(["logits"] if digests else [])])
    except (pa.ArrowInvalid, OSError, KeyError) as error:
        raise StoreError(f"unreadable file {store.location_of(path)}: {first_line(error)}") from None
    if not digests:
        return {**table.to_pydict(), "digest": [None] * table.num_rows}
    stored_images = image_digests(logits_matrix(table.column("logits")))
    return {**table.drop_columns(["logits"]).to_pydict(), "digest": stored_images}


def compares_images(done: Mapping[str, set[str | None]]) -> bool:
    """Whether the resume must know which image each key holds now (`key_columns`' digests): some key was scored
    only by rows that recorded their image (`scored_images`). A new scorer, or one whose parts are all older than
    `image_digest` (trusted, as then), needs no stored image's outputs."""
    return any(None not in digests for digests in done.values())


def generator_class_names(manifest: dict) -> tuple[str, ...] | None:
    """The class names of the model that made a store: the manifest's `class_names` (every `sweep run` records
    them), else, in a manifest without them, the names the model zoo gives the manifest's model; None where neither
    says (a model this installation does not know), or where the names are the stand-ins "class 0", "class 1", ...
    (`Store.class_names` reads a store without names so; they name no label set)."""
    from jobs.models import model_class_names
    n_classes = int(manifest["n_classes"])
    names = manifest.get("class_names")
    if isinstance(names, list) and len(names) == n_classes:
        names = tuple(str(name) for name in names)
    else:
        try:
            names = model_class_names(str(manifest["model"]))
        except ValueError:   # UnknownModel, or torchvision's "Unknown model"
            return None
    return None if names == tuple(f"class {i}" for i in range(n_classes)) else names


def renamed_classes(first: Sequence[str], second: Sequence[str]) -> list[tuple[int, str, str]]:
    """(class, its name in `first`, in `second`) for every class two label sets of one size name otherwise."""
    return [(i, a, b) for i, (a, b) in enumerate(zip(first, second)) if a != b]


def differing_classes(generator: Sequence[str], scorer: Sequence[str], shown: int = 3) -> str | None:
    """Where two label sets of one size differ, in words (the first `shown` classes whose names differ, and how
    many differ in all); None when every class has one name in both."""
    differ = renamed_classes(generator, scorer)
    if not differ:
        return None
    words = "; ".join(f"class {i} is {a!r} in the store, {b!r} for the scorer" for i, a, b in differ[:shown])
    return f"{words} ({len(differ)} of {len(generator)} classes differ)"


@dataclass(frozen=True)
class Prepared:
    store: Store
    manifest: dict
    scorer: dict                        # the scorer manifest to write
    plan: ScorePlan
    tasks: tuple[ScoreTask, ...]
    images: int
    skipped: int
    again: int = 0                      # of the tasks' keys, those scored before but not as the image stored now


def prepare(config: ScoreConfig) -> Prepared:
    """Check the store, the model, its weights, class count and class names (where the store's are known), the
    jobs; plan the units of work. Raises before anything is written or Ray starts."""
    from jobs.models import load_model, model_info
    check_cluster(config.cluster)
    if config.batch_size < 1:
        raise PlanError(f"batch size must be at least 1 (got {config.batch_size})")
    store = open_store(config.store)
    manifest = store.manifest
    require_images(store)
    model = load_model(config.model, config.weights)          # refuses unknown models and missing weights here
    if model.n_classes != store.n_classes:
        raise PlanError(f"{model.name} has {model.n_classes} classes, the store's model {manifest['model']} has "
                        f"{store.n_classes}: a scorer must share the store's classes")
    stored_names = generator_class_names(manifest)
    differ = None if stored_names is None else differing_classes(stored_names, model.class_names)
    if differ:   # same count, another label set: class i would be read as meaning the same thing in both
        raise PlanError(f"{model.name} names its classes otherwise than the store's model {manifest['model']}: "
                        f"{differ}: a scorer must share the store's classes")
    scorer = scorer_id(model.name, model.weights_id)
    try:
        generator_size = model_info(manifest["model"]).input_size
    except (ValueError, KeyError):        # a model this installation does not know (e.g. a synthetic store's)
        generator_size = model.input_size
    generator = model.name == manifest["model"] and model.weights_id == manifest["weights"]
    inputs = tuple(sorted((job, str(entry["input"])) for job, entry in manifest.get("job_schedules", {}).items()
                          if generator and isinstance(entry, dict) and entry.get("input")))
    record = {"scorer": scorer, "model": model.name, "weights": model.weights_id, "weights_source": config.weights,
              "n_classes": model.n_classes, "input_size": model.input_size, "generator_input_size": generator_size,
              "inputs": dict(inputs), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    stored = read_scorer(store, scorer)
    if stored is not None:
        differ = [f for f in SCORER_FIELDS if stored.get(f) != record[f]]
        if differ:
            raise StoreError(f"{store.uri}/{SCORES}/{scorer} was scored differently ({', '.join(differ)}): "
                             f"move it away to score again")
    done = scored_images(store, scorer) if stored is not None else {}
    paths, digests = store.files(IMAGES), compares_images(done)
    files = dict(zip(paths, store.each_file(lambda path: key_columns(store, path, digests), paths)))   # S3: at once
    wanted = selected_jobs(config.jobs, {j for part in files.values() for k, j in zip(part["key"], part["job"])
                                         if not is_frame_key(k)})
    tasks, images, seen, again = [], 0, set(), 0
    for path, part in files.items():   # in name order: a key two files hold is the first file's, as readers take it
        first = {}   # key -> (job, digest) of its first row in the file
        for key, job, digest in zip(part["key"], part["job"], part["digest"]):
            first.setdefault(key, (job, digest))
        mine = {k: digest for k, (j, digest) in first.items() if j in wanted and not is_frame_key(k) and k not in seen}
        seen.update(mine)
        images += len(mine)
        # unscored, or scored as another image (written again since); a row of a part written before scores
        # recorded their image (digest None) is trusted, as then: an upgrade scores nothing again
        todo = [k for k, digest in mine.items() if not done.get(k, set()) & {digest, None}]
        again += sum(k in done for k in todo)
        if todo:
            tasks.append(ScoreTask.of(path, todo))
    plan = ScorePlan(scorer=scorer, weights=model.weights_id, n_classes=model.n_classes,
                     scale=model.input_size / generator_size, inputs=inputs, batch_size=config.batch_size)
    return Prepared(store, manifest, record if stored is None else stored, plan, tuple(tasks), images,
                    images - sum(len(t.keys) for t in tasks), again)


def run_score(config: ScoreConfig, *, stream: TextIO | None = None) -> ScoreSummary:
    """Score the store's images with `config.model`; resumable (only unscored images run)."""
    import time
    prepared = prepare(config)
    store, plan, cluster = prepared.store, prepared.plan, config.cluster
    generator = plan.scorer == generating_scorer(prepared.manifest)
    started = time.perf_counter()
    if not prepared.tasks:   # all scored already, or no image to score: nothing is written
        return ScoreSummary(store.uri, plan.scorer, prepared.images, 0, prepared.skipped, 0.0, generator=generator)
    if read_scorer(store, plan.scorer) is None:   # written before any part: a part never lacks its scorer
        store.write_bytes(f"{SCORES}/{plan.scorer}/{SCORER_FILE}", json.dumps(prepared.scorer, indent=1).encode())
    progress = Progress(prepared.images, prepared.skipped, stream=stream, interval=cluster.progress_every,
                        unit="images")   # stream None: stderr (a bar on a terminal), as `sweep run`'s
    worker_config = WorkerConfig(store.uri, config.model, config.weights, threads=cluster.threads)
    scored, rate = [0], [0.0]

    def on_done(task: ScoreTask, rows: int) -> tuple:
        scored[0] += rows
        progress.update(done=rows)
        rate[0] = progress.rate()   # taken here, before the fleet stops
        return ()

    def on_failed(task: ScoreTask, error: str) -> tuple:
        raise SweepError(f"scoring failed on {task.path.rsplit('/', 1)[-1]}: {error} (run again to resume)")

    run_on_fleet(cluster, worker_config, prepared.tasks, submit=lambda actor, task: actor.score.remote(task, plan),
                 on_done=on_done, on_failed=on_failed, progress=progress, stream=stream,
                 worker="sweep.score:ScoreWorker")
    return ScoreSummary(store.uri, plan.scorer, prepared.images, scored[0], prepared.skipped,
                        time.perf_counter() - started, rate[0], generator, prepared.again)
