"""The orchestrator: plan -> store -> Ray actors -> dispatch with backpressure -> summary.

    plan     the selections, source images and dream layers are checked and expanded into batches before
             anything starts (bad input: no Ray)
    store    manifest written or compared (source images by content hash); source images written once under
             sources/, where every actor reads them; temp files of a killed run removed; keys already stored are
             skipped. Source images are checked, hashed and written on the driver's cores (`source_threads`), a
             few decoded at a time, with a progress line when there are many
    ray      a local instance is started, or the cluster at `address` is joined (`sweep.fleet`)
    actors   one per GPU (`num_gpus=1`), or CPU actors when the cluster has no GPU; the first actor tells the
             batch size (`auto`: a memory probe on a GPU, a small batch on a CPU), recorded in the manifest's `runs`
    dispatch the fleet's loop hands each actor at most `in_flight` batches and remembers which actor holds which;
             when an actor dies its batches go back to the queue and a new actor replaces it; failed items are
             retried up to `max_attempts` times in this run (each failure is a row in failures/)
    summary  counts read back from the store; a non-zero exit status when items remain undone

No work queue is shared with the workers (a queue's `get()` loses an item when its consumer dies); everything the
actors hold is known here, and the store is the only record of what is done, so a killed driver resumes exactly
where the files say.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import math
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TextIO

import pyarrow.fs as pafs

from jobs.catalog import ALL_JOBS, IMAGE_JOBS, VARIANTS, JobSpec, layer_spec_text
from jobs.text import counted, first_line
from sweep.fleet import ClusterConfig, FleetRun, SweepError, check_cluster
from sweep.interrupts import INTERRUPTED
from sweep.plan import Batch, Plan, PlanError, canonical_options, cut_batches, make_plan, refuse_unused_options
from sweep.progress import Progress, format_duration
from sweep.status import failure_lines
from sweep.lease import LEASE_TIMEOUT, Lease
from sweep.store import FAILURES, FRAME_SUFFIX, FRAMES, IMAGES, MAX_NAME_BYTES, ORPHANED, SOURCES, TRAJECTORIES, \
    UNSHARED_STORE, ManifestMismatch, Store, StoreError, all_keys, failures_table, is_frame_key, manifest_differences, \
    new_manifest, source_file, source_hash

if TYPE_CHECKING:
    from jobs.images import SourceImage, Track

NOISE_SIDE = 299   # `--images noise:N` without a model at hand: Deep dream's `torch.rand(1, 3, 299, 299)`
# Source images that are checked, hashed or written with a progress line (more than this many: a folder of photographs
# takes minutes; the demo's two photographs print nothing).
PROGRESS_SOURCES = 50

# Manifest options that say how a run went, not what the store holds: never compared (older stores kept them).
RUN_OPTIONS = ("batch_size", "bf16")


@dataclass(frozen=True)
class SweepConfig:
    """One `sweep run`. The fields up to `schedule` define the store's contents (they go into the manifest; the
    source images by name and content hash); the rest say how this run goes (recorded in the manifest's `runs`)."""
    store: str                          # directory or s3:// / gs:// URI
    model: str = "digits"               # model zoo name (`sweep models` lists them)
    weights: str = "DEFAULT"            # torchvision weights name, "random", or a local state dict
    jobs: str | None = None             # comma list of jobs; None: every job the engine has
    classes: str = "all"                # all | 0-999 | 1,5,7-9
    pairs: str | None = None            # 1+2,3+4 | FILE | random:N | all; None: all pairs if at most 1000
    variants: str | None = None         # addition variants; None: all (merge, juxtapose)
    seeds: int = 1                      # seeds 0..seeds-1 per item
    images: tuple[str, ...] = ()        # what the image jobs start from (`--images`): image files and folders,
                                        #   noise:N[:SIZE], store:URI[:JOB] (`sweep.sources`)
    sample_images: bool = False         # also start from scikit-learn's two sample photographs (the demo)
    layers: tuple[str, ...] = ()        # dream layer specs NAME[:maps]; empty: the model's default dream layer
    interpolate_pairs: str | None = None   # interpolation pairs, as `pairs`; None: the `pairs` selection
    schedule: str | None = None         # preset name or JSON file for every job; None: the model's defaults
    job_schedules: tuple[str, ...] = ()  # "JOB=PRESET_OR_FILE" overrides, one job each (after `schedule`)
    trajectory: object = None           # `jobs.render.TrajectoryOptions`: record each image's steps; None: off
    batch_size: int | None = None       # items rendered together; None: auto (GPU: memory probe; CPU: CPU_BATCH)
    cluster: ClusterConfig = ClusterConfig()   # where the workers run (address, workers, device, in_flight, ...)
    max_attempts: int = 3               # tries per item in one run; items still failing stay in failures/
    engine: str = "jobs.kinds:run_batch"   # the batch renderer, "module:function" (benchmarks and tests plug fakes)
    worker: str = "sweep.worker:SweepWorker"   # the actor class, "module:Class" (fault tests plug a subclass)
    bf16: bool = True                   # bf16 autocast on GPUs (changes the pixels: recorded per run)
    fp16: bool = False                  # float16 autocast on GPUs instead, the loss scaled by 2^10; takes bf16's
                                        #   place (changes the pixels: recorded per run)
    channels_last: bool = True          # channels_last memory format on GPUs (speed only)
    compile: bool = False               # torch.compile the network on GPUs (speed only; compiles per input shape)
    cudnn_benchmark: bool = True        # cuDNN picks its fastest kernels per shape on GPUs (speed only)
    fold_batchnorm: bool | None = None  # fold eval-mode batch norms into the convolutions before them (the same
                                        #   network up to float rounding: recorded per run); None: on GPUs only
    lease_timeout: float = LEASE_TIMEOUT   # seconds without a heartbeat after which another driver's lease on
                                        #   the store is stale (a crashed driver's) and this run takes it over
    check_files: bool = False           # the resume's quarantine pass reads every column of every stored file,
                                        #   not only the keys (a file damaged in its pictures is set aside too)
    source_threads: int | None = None   # threads that check, hash and write the source images; None: the driver's
                                        #   cores, at most 16 (`jobs.images.reading_threads`)


@dataclass(frozen=True)
class SweepSummary:
    store: str
    total: int                          # items in the plan
    done: int                           # items in the store now
    done_before: int                    # items already there when this run started
    failed: tuple[tuple[str, str], ...]  # (key, last error) of items that failed in this run and are not done
    seconds: float
    workers: int
    device: str                         # "gpu", "cpu", or "" when nothing had to run
    actors_replaced: int
    interrupted: bool
    batch_size: int = 0                 # the batch size this run used (0: nothing ran)
    out_of_reach: int = 0               # times Ray could not reach a worker for a while (asked again, not replaced)

    @property
    def complete(self) -> bool:
        return self.done == self.total

    @property
    def exit_status(self) -> int:
        return 130 if self.interrupted else (0 if self.complete else 1)

    def lines(self) -> list[str]:
        new = self.done - self.done_before
        if self.interrupted and not self.workers:   # stopped before any worker started
            return [f"store {self.store}: {self.done}/{self.total} items done", INTERRUPTED]
        if not self.workers:
            return [f"store {self.store}: {self.done}/{self.total} items done (nothing left to run)"]
        out = [f"store {self.store}: {self.done}/{self.total} items done ({new} new in "
               f"{format_duration(self.seconds)}, {self.workers} {self.device} worker{'s' if self.workers > 1 else ''}"
               f"{f', batch {self.batch_size}' if self.batch_size else ''}"
               f"{f', {self.actors_replaced} replaced' if self.actors_replaced else ''}"
               f"{f', {self.out_of_reach} out of reach for a while' if self.out_of_reach else ''})"]
        if self.interrupted:
            out.append(INTERRUPTED)
        if self.failed:
            out.append(f"{counted(len(self.failed), 'item')} failed (recorded in {self.store}/{FAILURES}/):")
            out += failure_lines(self.failed, 10, f" (`sweep status --store {self.store}`)")
        elif not self.complete and not self.interrupted:
            out.append(f"{counted(self.total - self.done, 'item')} missing: run the same command again")
        return out


@dataclass
class Prepared:
    """Everything checked before Ray starts."""
    config: SweepConfig
    plan: Plan
    store: Store
    manifest: dict
    schedule: object
    class_names: tuple[str, ...]
    sources: dict = field(default_factory=dict)   # name -> SourceImage of the plan's source images (each read when
                                                  # wanted: the driver never holds a folder of them decoded)
    notes: tuple[str, ...] = ()                   # what the user should know of the inputs (a folder's unread
                                                  # entries), printed with the plan's notes

    def lines(self) -> list[str]:
        """The notes printed before a run and by the dry run: the plan's, then the inputs'."""
        return [*self.plan.notes(), *self.notes]


def source_threads(config: SweepConfig) -> int:
    from jobs.images import reading_threads
    return config.source_threads or reading_threads()


def source_progress(doing: str, config: SweepConfig, stream: TextIO | None = None) -> Track:
    """A `jobs.images.Track` that shows a pass over the source images (`doing`: "checking and hashing") on a
    `Progress` (a bar on a terminal, a line every `progress_every` seconds in a log; `stream`, else stderr) when
    it has more than PROGRESS_SOURCES of them, and passes the results on unchanged."""
    threads, interval = source_threads(config), config.cluster.progress_every

    def track(results: Iterator, count: int) -> Iterator:
        if count <= PROGRESS_SOURCES:
            yield from results
            return
        progress = Progress(count, stream=stream, interval=interval, unit="source images", failures=False)
        progress.note = doing
        progress.message(f"{doing} {counted(count, 'source image')} ({counted(threads, 'thread')})")
        try:
            for result in results:
                yield result
                progress.update(done=1)
        finally:
            progress.close()
    return track


def load_sources(config: SweepConfig, noise_side: Callable[[], int] = lambda: NOISE_SIDE, *,
                 stream: TextIO | None = None) -> dict:
    """name -> `SourceImage` of every source image (`--images` files and folders, `noise:N[:SIZE]` drawn at
    `noise_side()` unless SIZE is written, `store:URI[:JOB]` read from another store; then the sample photographs),
    or a PlanError listing every input that is not a readable image, or naming inputs that share a name. Files and
    stored images are checked and hashed in one decode (their `digest`), `source_threads` at a time, with a progress
    line on `stream` when there are many."""
    from jobs.images import ImageInputError, sample_images
    from sweep.export import UniqueNames
    from sweep.sources import source_images
    try:
        images = source_images(config.images, config.store, noise_side, threads=source_threads(config),
                               track=source_progress("checking and hashing", config, stream)) if config.images else []
    except ImageInputError as error:
        raise PlanError(str(error)) from None
    images += sample_images() if config.sample_images else []
    # Compared as macOS and Windows compare file names (case and Unicode form aside): sources/NAME.png is one file
    # there for both, so one picture would replace the other.
    by_folded = collections.defaultdict(list)
    for image in images:
        by_folded[UniqueNames.folded(image.name)].append(image.name)
    repeated = sorted(" and ".join(dict.fromkeys(names)) for names in by_folded.values() if len(names) > 1)
    if repeated:
        raise PlanError(f"several source images are named {', '.join(repeated)}: the store tells sources apart "
                        f"by file name (whatever its case), so rename them")
    framelike = sorted(image.name for image in images if is_frame_key(image.name))
    if framelike:   # the end of its images' keys: every reader would take them for interpolation frames
        raise PlanError(f"source image {framelike[0]}: a name ending in {FRAME_SUFFIX}<N> is an interpolation "
                        f"frame's in the store, so rename it")
    undecodable = sorted(image.name for image in images if not is_utf8(image.name))
    if undecodable:   # a Latin-1 name from an old archive: Python holds its bytes as surrogates, Parquet cannot
        shown = undecodable[0].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise PlanError(f"source image {shown}: its file name is not UTF-8, and the store keeps names as UTF-8 "
                        f"text, so rename it")
    too_long = sorted(image.name for image in images if len(source_file(image.name).rpartition("/")[2].encode())
                      > MAX_NAME_BYTES)
    if too_long:   # found here, before the manifest is written, not by the first write into sources/
        raise PlanError(f"source image {too_long[0]}: the store keeps it as {SOURCES}/NAME.png, and a file name may "
                        f"have at most {MAX_NAME_BYTES} bytes, so rename it (to at most "
                        f"{MAX_NAME_BYTES - len('.png')} bytes)")
    # Sorted by name: the same images given in another order are the same sweep (and resume).
    return {image.name: image for image in sorted(images, key=lambda image: image.name)}


def is_utf8(text: str) -> bool:
    """Whether `text` is UTF-8 text: not a file name's undecodable bytes, which Python keeps as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def noise_side(model) -> int:
    """The side `--images noise:N` draws its images at: where the model's default schedules of the image jobs
    start, so that the noise reaches the first step unresampled, as a noise job's own start does (299, the side
    of Deep dream's `torch.rand(1, 3, 299, 299)`, for every ImageNet model; 32 for the digits demo; a fixed-input
    network's own side)."""
    from jobs.catalog import IMAGE_JOBS
    from jobs.render import fixed_input_size
    from jobs.schedules import default_schedules
    schedules = default_schedules(model.name, IMAGE_JOBS, fixed_size=fixed_input_size(model))
    return max(schedules.for_job(job).octaves[0].size for job in IMAGE_JOBS)


def check_layers(model, specs: tuple[str, ...]) -> tuple[str, ...]:
    """The dreams' layer specs (`NAME[:maps]`, layers joined by `+`), each checked against the model: every layer
    must exist, every feature map index be one the layer has. Defaults to the model's default dream layer when
    `--layers` is not given; a blank one given is refused, as `--jobs ""` is, not taken for the default."""
    import torch
    from jobs.catalog import parse_layers
    from jobs.models import default_dream_layer
    if specs and not all(spec.strip() for spec in specs):
        default = default_dream_layer(model)
        if not any(spec.strip() for spec in specs):
            raise PlanError(f"no layer given (--layers {', '.join(map(repr, specs))}): name a layer of {model.name}, "
                            f"e.g. --layers {default}, or leave --layers out for its default dream layer ({default})")
        raise PlanError(f"empty entry in --layers ({', '.join(map(repr, specs))}): each --layers names a layer")
    specs = tuple(dict.fromkeys(spec.strip() for spec in specs)) or (default_dream_layer(model),)
    parsed = {}
    for spec in specs:
        try:
            parsed[spec] = parse_layers(spec)
        except ValueError as error:
            raise PlanError(f"--layers {spec!r}: {error}") from None
        unknown = [name for name, _ in parsed[spec] if name not in model.all_layers]
        if unknown:
            raise PlanError(f"--layers {spec!r}: {model.name} has no layer {', '.join(map(repr, unknown))}; "
                            f"layers: {', '.join(model.layer_names)}")
    chosen = sorted({name for layers in parsed.values() for name, maps in layers if maps})
    if chosen:   # one forward pass on a blank image tells each chosen layer's feature-map count
        acts = blank_activations(model, chosen)
        for spec, layers in parsed.items():
            for name, maps in layers:
                count = acts[name].shape[1] if isinstance(acts.get(name), torch.Tensor) else None
                if maps and count is not None and max(maps) >= count:
                    raise PlanError(f"--layers {spec!r}: layer {name} has {count} feature maps (0-{count - 1}); "
                                    f"asked for map {max(maps)}")
    return specs


def prepare_schedules(config: SweepConfig, model, jobs: tuple[str, ...]):
    """The sweep's `ScheduleSet`: the model's default per job family, `--schedule` for every job, then each
    `--job-schedule JOB=...`; every schedule checked against the model (heads, input sizes)."""
    from jobs.render import check_fits, fixed_input_size
    from jobs.schedules import default_schedules, schedule_set
    per_job = {}
    for entry in config.job_schedules:
        job, sep, source = entry.partition("=")
        if not sep or not job.strip() or not source.strip():
            raise PlanError(f"--job-schedule {entry!r}: write JOB=PRESET_OR_FILE, e.g. dream=dream")
        if job.strip() in per_job and per_job[job.strip()] != source.strip():   # the last one silently won
            raise PlanError(f"--job-schedule gives {job.strip()} two schedules ({per_job[job.strip()]} and "
                            f"{source.strip()}): give each job one")
        per_job[job.strip()] = source.strip()
    not_run = [job for job in per_job if job in ALL_JOBS and job not in jobs]   # unknown names: schedule_set's line
    if not_run:
        add = "add it to --jobs" + (" with the images it starts from (--images)" if not_run[0] in IMAGE_JOBS else "")
        raise PlanError(f"--job-schedule {not_run[0]}=...: {not_run[0]} is not among the jobs run "
                        f"({', '.join(jobs)}): {add}, or leave the option out")
    try:
        base = default_schedules(model.name, jobs, fixed_size=fixed_input_size(model))
        schedules = schedule_set(base, config.schedule, per_job)
        check_fits(model, schedules, jobs)
    except ValueError as error:
        raise PlanError(first_line(error)) from None
    check_heads(model, [schedules.for_job(job) for job in jobs])
    return schedules


def check_heads(model, schedules) -> None:
    """PlanError naming the first schedule whose `output` is not a head of the model: a layer it lacks, or a hidden
    layer, whose output is not one value per class (every item would fail in its worker, indexing it by class). One
    forward pass on a blank image tells the shapes (`blank_activations`), as `check_layers` does."""
    use = "(use 'logits', or 'AuxLogits' with inception_v3)"
    tapped = {s.output: s for s in schedules if s.output != "logits"}
    for output, schedule in tapped.items():
        if output not in model.all_layers:
            raise PlanError(f"schedule {schedule.name}: output {output!r} is not a head of {model.name} {use}")
    if not tapped:
        return
    acts = blank_activations(model, sorted(tapped))
    for output, schedule in tapped.items():
        shape = tuple(getattr(acts.get(output), "shape", ()))
        if shape != (1, model.n_classes):
            raise PlanError(f"schedule {schedule.name}: output {output!r} is a hidden layer of {model.name} "
                            f"({' x '.join(map(str, shape)) or 'no tensor'}), not a head giving one output per class "
                            f"{use}")


def blank_activations(model, layers: Sequence[str]) -> dict:
    """{layer: activation} of `layers` for one blank image at the model's input size, in one forward pass: the
    shapes `check_layers` and `check_heads` check the user's choices against."""
    import torch
    blank = torch.zeros(1, 3, model.input_size, model.input_size)   # 1 x 3 x S x S
    with torch.no_grad():
        return model.taps(blank, layers)[1]


def source_hashes(images: Iterable[SourceImage], threads: int = 1, track: Track | None = None) -> list[str]:
    """`source_hash` of each `SourceImage`, in order: its `digest` when its check made one, else read (noise, the
    sample photographs) `threads` at a time, each picture dropped once hashed; `track` sees those read."""
    from jobs.images import in_order, untracked
    images = list(images)
    unread = [image for image in images if not image.digest]
    hashed = iter(list((track or untracked)(in_order(read_and_hash, unread, threads), len(unread))))
    return [image.digest or next(hashed) for image in images]


def read_and_hash(image: SourceImage) -> str:
    return source_hash(image.read())


def prepare(config: SweepConfig, *, stream: TextIO | None = None) -> Prepared:
    """Check the model, schedule, selections, source images and store; raises before anything is written or
    started. Progress lines for many source images go to `stream` (stderr when None)."""
    from jobs.images import left_out
    from jobs.models import load_model
    from sweep.sources import file_values
    from sweep.worker import CPU_BATCH
    check_cluster(config.cluster)
    model = load_model(config.model, config.weights)          # refuses unknown models and missing weights here
    sources = load_sources(config, lambda: noise_side(model), stream=stream)
    plan = make_plan(n_classes=model.n_classes, jobs=config.jobs, classes=config.classes, pairs=config.pairs,
                     variants=config.variants, seeds=config.seeds, batch_size=config.batch_size or CPU_BATCH,
                     sources=tuple(sources), layers=check_layers(model, config.layers),
                     interpolate_pairs=config.interpolate_pairs)
    refuse_unused_options(plan.jobs, pairs=config.pairs, variants=config.variants, layers=config.layers,
                          interpolate_pairs=config.interpolate_pairs)
    schedule = prepare_schedules(config, model, plan.jobs)
    sources = {name: sources[name] for name in plan.sources}   # none when no image job runs
    hashes = source_hashes(sources.values(), source_threads(config), source_progress("hashing", config, stream))
    options = {k: v for k, v in plan.options().items() if k not in RUN_OPTIONS}   # the batch size is the run's
    if config.trajectory is not None:   # what the store holds (trajectories/); absent when off, as in older stores
        options["trajectory"] = config.trajectory.as_json()
    manifest = new_manifest(model=model.name, weights=model.weights_id, weights_source=config.weights,
                            schedule=schedule.name, schedule_id=schedule.id, class_names=model.class_names,
                            options=options, sources=dict(zip(sources, hashes)),
                            job_schedules=schedule.job_ids(plan.jobs),
                            schedule_contents={s.id: s.to_dict() for s in map(schedule.for_job, plan.jobs)})
    store = Store.open(config.store)
    if store.file_type() == pafs.FileType.File:
        raise StoreError(f"{store.uri} is a file, not a store (a store is a directory)")
    stored = check_manifest(store, manifest)
    return Prepared(config, plan if stored is None else in_store_spelling(plan, stored), store,
                    manifest if stored is None else stored, schedule, model.class_names, sources,
                    notes=tuple(left_out(file_values(config.images)) if sources else ()))


def in_store_spelling(plan: Plan, stored: dict) -> Plan:
    """`plan` with the layer specs spelled as the store's manifest spells them (`identity` found them the same
    set): a store written before specs had one spelling (`block2:4,0`, not `block2:0,4`; `block3+block2`, not
    `block2+block3`) keeps its items' keys, whichever spelling resumes it."""
    layers = stored.get("options", {}).get("layers")
    return replace(plan, layers=tuple(layers)) if plan.layers and isinstance(layers, list) else plan


def check_manifest(store: Store, manifest: dict) -> dict | None:
    """The store's manifest (None for a new store), refused when it describes another sweep or is damaged."""
    stored = store.read_manifest()
    if stored is not None and not store.files(IMAGES) and sweep_differences(stored, manifest):
        stored = None   # a store whose runs wrote no image yet takes the corrected command (`execute` rewrites it)
    if stored is not None:
        store.checked_manifest(fresh=True)   # a hand-edited manifest without its fields is refused here
        differences = sweep_differences(stored, manifest)
        if differences:
            raise ManifestMismatch(store.uri, differences)
    elif store.files(IMAGES):
        raise StoreError(f"{store.uri} has Parquet files under {IMAGES}/ but no manifest.json: not a sweep store")
    return stored


def sweep_differences(stored: dict, wanted: dict) -> list[str]:
    """How the sweep `wanted` describes differs from the one the store's manifest (`stored`) describes, worded by
    `manifest_differences`: both as `identity` has them, and their schedules compared job by job where both
    manifests record what each of their jobs runs. The set's own id also hashes how the command spelled it (a
    `--job-schedule octave=tiny` that repeats `--schedule tiny`, a `--schedule` no job runs once every job has its
    own), so two spellings of the same schedules would refuse each other with the same schedule named twice; the
    images do not depend on it (each row keeps the id of the schedule its job ran)."""
    stored, wanted = identity(stored), identity(wanted)
    if job_schedule_ids(stored) is not None and job_schedule_ids(stored) == job_schedule_ids(wanted):
        wanted = {**wanted, "schedule_id": stored.get("schedule_id")}
    return manifest_differences(stored, wanted)


def job_schedule_ids(manifest: dict) -> dict | None:
    """job -> (the id of the schedule it runs, the input convention it feeds the network) for every job of the
    manifest's options; None where the manifest does not record one of them (stores written before manifests kept
    `job_schedules`: compared by the set's id, as then)."""
    jobs, recorded = manifest.get("options", {}).get("jobs"), manifest.get("job_schedules")
    if not isinstance(jobs, list) or not jobs or not isinstance(recorded, dict) or \
            not all(isinstance(recorded.get(job), dict) for job in jobs):
        return None
    return {job: (recorded[job].get("schedule_id"), recorded[job].get("input")) for job in jobs}


def identity(manifest: dict) -> dict:
    """The manifest without what only says how a run went (older stores kept the batch size in `options`), and
    without the variants when none of its jobs reads them (`--variants` given with `--jobs octave`, which earlier
    versions took and recorded, and `sweep run` now refuses: such a store resumes without the option); its pair
    selections as this version writes them (an older store's list of every pair is "all"), and its layer specs
    in their one spelling (an older store's `block2:4,0` is `block2:0,4`, its `block3+block2` is `block2+block3`:
    `in_store_spelling` keeps its keys)."""
    options = {k: v for k, v in canonical_options(manifest.get("options", {})).items() if k not in RUN_OPTIONS}
    if not any(any(VARIANTS.get(job, ("",))) for job in options.get("jobs", ())):
        options.pop("variants", None)
    with contextlib.suppress(ValueError, TypeError, AttributeError):   # specs that do not parse: compared as they are
        if isinstance(options.get("layers"), list):
            options["layers"] = sorted(set(map(layer_spec_text, options["layers"])))
    return {**manifest, "options": options}


def run_sweep(config: SweepConfig, *, stream: TextIO | None = None) -> SweepSummary:
    """Run (or resume) a sweep to completion or interruption; returns what the store holds afterwards."""
    return execute(prepare(config, stream=stream), stream=stream)


# ---- execution -------------------------------------------------------------------------------------------------

@dataclass
class Task:
    batch: Batch
    attempts: tuple[int, ...]   # try number of each item, counted over all runs (1 = first try ever)
    token: str = ""             # names this task's calls in the workers' step reports
    calls: int = 0              # calls made of it in this run: each one a try of its items (a death's re-run too)

    def call_attempts(self) -> tuple[int, ...]:
        """Try numbers of the items in the latest call: a re-run after its actor died is the next try."""
        return tuple(attempt + max(self.calls - 1, 0) for attempt in self.attempts)


def prior_attempts(store: Store) -> dict[str, int]:
    """The highest try number recorded per key in failures/ (so numbering continues across runs)."""
    table = store.read(FAILURES, ["key", "attempt"])
    attempts: dict[str, int] = {}
    for key, attempt in zip(table.column("key").to_pylist(), table.column("attempt").to_pylist()):
        attempts[key] = max(attempts.get(key, 0), int(attempt))
    return attempts


@dataclass(frozen=True)
class Pending:
    """What a run still has to do, from one read of the store (under the lease nothing else writes it): the plan's
    items the store lacks, and the try number each item reaches next."""
    plan: Plan
    done: frozenset[str]          # keys the store holds
    attempts: dict[str, int]      # the highest try recorded per key in failures/ (numbering continues across runs)
    files: dict[str, list[str]] = field(default_factory=dict)   # {path: keys} of images/ that `done` was read from

    @functools.cached_property
    def planned(self) -> list[JobSpec]:
        """Every item of the plan (built once: a 1000-class sweep with pairs has ~10^5)."""
        return self.plan.items()

    @functools.cached_property
    def items(self) -> list[JobSpec]:
        return [item for item in self.planned if item.key not in self.done]

    @property
    def total(self) -> int:
        """Items in the plan."""
        return len(self.planned)

    def tasks(self, batch_size: int | None = None) -> list[Task]:
        """The plan's batches (of `batch_size`, or the plan's own) minus what the store holds: fixed boundaries for
        one batch size, so re-runs with the same size form the same batches; another size cuts other batches of the
        missing items only."""
        tasks = []
        for batch in cut_batches(self.planned, batch_size or self.plan.batch_size):   # the plan built once
            todo = batch.without(self.done)
            if todo.items:
                tasks.append(Task(todo, tuple(self.attempts.get(key, 0) + 1 for key in todo.keys)))
        return tasks


def pending_work(plan: Plan, store: Store, stored: dict[str, list[str]] | None = None) -> Pending:
    """What the store lacks of `plan`, from `stored` ({path: keys} of images/, as the quarantine pass read them;
    read here when not given) and one read of failures/."""
    stored = store.keys_by_file() if stored is None else stored
    return Pending(plan, frozenset(all_keys(stored)), prior_attempts(store), stored)


def item_work(schedule, items) -> int:
    """Image-steps of `items` (what progress and ETA count): each job's schedule asked once, not once per item."""
    from sweep.worker import item_steps
    per_job = collections.Counter(item.job for item in items)
    return sum(count * item_steps(schedule, job) for job, count in per_job.items())


def record_run(store: Store, entry: dict) -> None:
    """Append this run's settings (batch size, device, speed options) to the manifest's `runs`. The options are
    written as this version writes them: an older store's list of every pair (6 MB at 1000 classes) becomes "all",
    which `identity` already takes as the same sweep."""
    manifest = store.read_manifest() or {}
    if "options" in manifest:
        manifest["options"] = canonical_options(manifest["options"])
    manifest["runs"] = [*manifest.get("runs", []), entry]
    store.write_manifest(manifest)


class SweepDispatch:
    """The sweep's side of the fleet's dispatch loop: submit a batch, settle its report (retries, failures given
    up), and count progress in image-steps, including the steps workers report within the batches they run."""

    def __init__(self, config: SweepConfig, store: Store, schedule, progress: Progress, counter) -> None:
        self.config, self.store, self.schedule, self.progress, self.counter = config, store, schedule, progress, counter
        self.tries: collections.Counter = collections.Counter()   # tries per key in this run
        self.given_up: dict[str, str] = {}
        self.live: dict[str, object] = {}   # token -> the ObjectRef of its call, for the calls running now
        self.seen: dict[str, int] = {}      # token -> the steps it last reported
        self.moved: set = set()             # refs of the calls whose steps moved since `progressed` was last asked
        self.counter_read = True            # whether the step counter could be read at the last poll
        self.finished_work = progress.work  # image-steps of the items finished (or given up) so far
        self.calls = 0
        self.last_poll = 0.0
        self.writers_seen: set[str] = set()   # workers whose written batch this driver found in the store

    def handlers(self) -> dict:
        """The sweep's side of `dispatch`: submit, the two outcomes, each task's budget of actor deaths (its items'
        tries left: a death's re-run is a try), and the hang watch's progress."""
        return dict(submit=self.submit, on_done=self.on_done, on_failed=self.on_failed, max_crashes=self.tries_left,
                    progressed=self.progressed)

    def tries_left(self, task: Task) -> int:
        """Tries `task`'s items have left in this run before its first call (`max_attempts` in all)."""
        return self.config.max_attempts - max(self.tries[key] for key in task.batch.keys)

    def submit(self, actor, task: Task):
        self.calls += 1
        task.calls += 1
        self.settled(task)                # a task run again (its actor died): the dead call's steps no longer count
        task.token = f"{task.batch.index}.{self.calls}"
        self.live[task.token] = actor.run.remote(task.batch, task.call_attempts(), task.token)
        return self.live[task.token]

    def settled(self, task: Task) -> None:
        """`task`'s call is over (or replaced by a new one): its token no longer counts or is watched."""
        for table in (self.live, self.seen):
            table.pop(task.token, None)

    def on_done(self, task: Task, report) -> list[Task]:
        self.settled(task)
        self.check_written_where_seen(task, report)
        done = set(report.done)
        self.finished_work += item_work(self.schedule, [i for i in task.batch.items if i.key in done])
        self.progress.update(done=len(report.done))
        return self.settle(task, dict(report.failed))

    def check_written_where_seen(self, task: Task, report) -> None:
        """The first batch each worker reports written must be in the store as this driver sees it: a local path on
        a cluster without a shared file system is each node's own disk, where the workers' images stay unseen (the
        run ended incomplete without a word why, and a resume ran everything again). SweepError if it is not."""
        if not report.done or report.worker in self.writers_seen:
            return
        path = f"{IMAGES}/{task.batch.name}.parquet"
        if not self.store.exists(path):
            raise SweepError(f"worker {report.worker} reported {path} written, but {self.store.location(path)} is not "
                             f"there as this driver sees the store: {UNSHARED_STORE}")
        self.writers_seen.add(report.worker)

    def on_failed(self, task: Task, error: str) -> list[Task]:
        """The call raised or its actors kept dying: the driver records the batch's failures itself."""
        self.settled(task)
        attempts = task.call_attempts()
        rows = failures_table([(item, a, error) for item, a in zip(task.batch.items, attempts)], "driver")
        self.store.write_table(f"{FAILURES}/{task.batch.name}-a{max(attempts)}-driver.parquet", rows)
        return self.settle(task, {key: error for key in task.batch.keys})

    def settle(self, task: Task, failed: dict[str, str]) -> list[Task]:
        """Count the failed items' tries (each call of `task`: those its dead actors made too); queue the ones with
        tries left, give up the rest."""
        retry = []
        for item, attempt in zip(task.batch.items, task.attempts):
            if item.key not in failed:
                continue
            self.tries[item.key] += task.calls
            if self.tries[item.key] < self.config.max_attempts:
                retry.append((item, attempt + task.calls))   # after the tries its calls were (deaths' re-runs too)
            else:
                self.given_up[item.key] = failed[item.key]
                self.finished_work += item_work(self.schedule, [item])
                self.progress.update(failed=1)
        if not retry:
            return []
        return [Task(Batch(task.batch.index, tuple(i for i, _ in retry)), tuple(a for _, a in retry))]

    def progressed(self) -> set | None:
        """The dispatch loop's hang watch asks: refs of the calls whose reported steps moved since it last asked,
        or None while the step counter cannot be read (then nothing says that a worker stopped)."""
        if not self.counter_read:
            return None
        moved, self.moved = self.moved, set()
        return moved

    def tick(self) -> None:
        """Progress: finished work plus the steps the workers reported within the batches they hold now (and which
        calls moved, for `progressed`)."""
        import ray
        now = time.monotonic()
        partial = 0
        if self.counter is not None and now - self.last_poll >= min(self.progress.interval, 1.0):
            self.last_poll = now
            try:
                steps = ray.get(self.counter.snapshot.remote(), timeout=5)
            except Exception:   # progress is best effort: never stop the sweep for it
                steps = None
            self.counter_read = steps is not None
            partial = sum(n for token, n in (steps or {}).items() if token in self.live)
            stale = [token for token in steps or {} if token not in self.live]
            if stale:
                self.counter.forget.remote(stale)
            for token, count in (steps or {}).items():
                if token in self.live and count != self.seen.get(token):
                    self.seen[token] = count
                    self.moved.add(self.live[token])
        self.progress.update(work=max(0, self.finished_work + partial - self.progress.work))


def execute(prepared: Prepared, *, stream: TextIO | None = None) -> SweepSummary:
    """Run the prepared sweep: resume from the store, start the fleet, let its first actor tell the batch size,
    dispatch, summarise from the store."""
    # The lease first: nothing in the store changes (temp-file cleanup included) unless this driver holds it.
    lease = Lease.acquire(prepared.store, uuid.uuid4().hex[:12], prepared.config.lease_timeout)
    with lease.kept():
        return run_leased(prepared, lease, stream=stream)


def reconcile_store(prepared: Prepared, out: TextIO, *, stream: TextIO | None = None) -> dict[str, list[str]]:
    """Make the store ready for this run, under its lease: the manifest checked again (another driver may have
    begun) and written, temporaries removed, unreadable files moved aside, the plan's and the inputs' notes said (on
    `out`), and the real images the workers start from written once (`write_sources`; a progress line on `stream`,
    else stderr, when there are many). Returns {path: keys} of images/ (the quarantine pass read every file's keys:
    the run's one read of them before its first batch)."""
    store = prepared.store
    check_manifest(store, prepared.manifest)
    removed = store.cleanup_temp()
    quarantine = store.quarantine_unreadable(whole_files=prepared.config.check_files)
    for path, why in quarantine.moved:   # an orphaned file's items may be stored by another batch: no "run again"
        print(f"moved {store.location_of(path)} into {store.location('quarantine')}/ ({why})"
              f"{'' if why == ORPHANED else ': its items run again'}", file=out)
    stored = store.read_manifest()
    if stored is not None and sweep_differences(stored, prepared.manifest):
        # A corrected command into a store with no image: the old attempts go, and the frames and steps of batches
        # stopped before their images/ file (written first), which the readers would take for this sweep's.
        for path in (path for directory in (FAILURES, FRAMES, TRAJECTORIES) for path in store.files(directory)):
            store.delete_file(path)
        stored = None
    if stored is None:
        store.write_manifest(prepared.manifest)
    for line in prepared.lines():
        print(line, file=out)
    write_sources(store, prepared.sources, prepared.manifest.get("sources", {}), every=stored is None,
                  threads=source_threads(prepared.config), track=source_progress("storing", prepared.config, stream))
    if removed:
        print(f"removed {removed} temporary files left by an interrupted run", file=out)
    return quarantine.images


def write_sources(store: Store, sources: dict[str, SourceImage], hashes: dict[str, str], *, every: bool,
                  threads: int = 1, track: Track | None = None) -> None:
    """sources/NAME.png of each source (name -> `SourceImage`) that the store lacks, or of every one when `every`
    (a new manifest's hashes: its pictures too), once: workers on any node read them from the store. Each picture
    is read again, checked against its hash in `hashes` (`pixels_as_checked`), encoded and written on one of
    `threads` threads, a few decoded at a time; separate files, each written whole (`Store.write_bytes`).
    `track` sees every source's turn. What the store has is listed once (one request a page on S3/GCS, not one a
    source)."""
    from jobs.images import in_order, untracked
    present = set() if every else {info.base_name for info in store.listing(SOURCES)
                                   if info.type == pafs.FileType.File}

    def write(named) -> None:
        name, image = named
        if source_file(name).rsplit("/", 1)[1] not in present:
            store.write_source(name, pixels_as_checked(image, hashes[name]))

    for _ in (track or untracked)(in_order(write, sources.items(), threads), len(sources)):
        pass


def pixels_as_checked(image, checked_hash: str):
    """The source's pixels (H x W x 3 uint8), read again, or PlanError when they are no longer those `prepare`
    hashed into the manifest (the file was changed, or removed, since): sources/ must hold the pictures its
    manifest names, or a resume would start from other ones."""
    from jobs.images import ImageInputError
    try:
        pixels = image.read()
    except ImageInputError as error:
        raise PlanError(f"source image {image.name} was readable when the sweep was checked and is not now "
                        f"({error}): run the command again") from None
    if source_hash(pixels) != checked_hash:
        raise PlanError(f"source image {image.name} changed after the sweep was checked: run the command again")
    return pixels


def run_leased(prepared: Prepared, lease: Lease, *, stream: TextIO | None = None) -> SweepSummary:
    """`execute` under the store's lease."""
    from sweep.worker import WorkerConfig, layers_read, start_step_counter
    config, plan, store, cluster = prepared.config, prepared.plan, prepared.store, prepared.config.cluster
    out = stream if stream is not None else sys.stdout
    started = time.monotonic()
    pending = pending_work(plan, store, reconcile_store(prepared, out, stream=stream))
    total, done_before = pending.total, pending.total - len(pending.items)
    if not pending.items:
        return SweepSummary(store=store.uri, total=total, done=done_before, done_before=done_before, failed=(),
                            seconds=time.monotonic() - started, workers=0, device="", actors_replaced=0,
                            interrupted=False)
    if done_before:
        print(f"resuming: {done_before}/{total} items already in {store.uri}", file=out)
    schedule = prepared.schedule
    work_total = item_work(schedule, pending.planned)
    progress = Progress(total, done_before, work_total=work_total,
                        work=work_total - item_work(schedule, pending.items),
                        stream=stream, interval=cluster.progress_every)   # None: stderr (a bar on a terminal)
    given_up: dict[str, str] = {}
    interrupted, batch_size = False, 0
    # Never more actors than batches (with `auto`, the batch size is known from the first actor only).
    n_tasks = len(pending.items) if config.batch_size is None else len(pending.tasks())
    # The actor runs up to `in_flight` calls at once: one renders while the previous one is written.
    run = FleetRun(cluster, progress, worker=config.worker, concurrency=cluster.in_flight, stream=out)
    try:
        with run.session(n_tasks):
            count = run.count
            progress.message(f"{count} GPU workers (one GPU each)" if run.use_gpu else
                             f"no GPUs in the cluster: {count} CPU worker{'s' if count > 1 else ''}", out)
            counter = start_step_counter()
            worker_config = WorkerConfig(store.uri, config.model, config.weights, schedule, config.engine,
                                         threads=cluster.threads, bf16=config.bf16,
                                         fp16=config.fp16, channels_last=config.channels_last, compile=config.compile,
                                         cudnn_benchmark=config.cudnn_benchmark,
                                         fold_batchnorm=config.fold_batchnorm,
                                         read_layers=layers_read(plan.layers, schedule), steps=counter,
                                         trajectory=config.trajectory)
            setup = run.start(worker_config, lambda actor: actor.setup.remote(config.batch_size))
            if lease.lost:   # taken over while the first actor started (a minute without heartbeats)
                raise SweepError(lease.lost)
            batch_size = setup["batch_size"]
            if config.batch_size is None:   # auto: every actor gets work, whatever the probe allows
                batch_size = max(1, min(batch_size, math.ceil(len(pending.items) / count)))
            record_run(store, {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "batch_size": batch_size, "batch_size_option": config.batch_size or "auto",
                               "workers": count, **{k: setup[k] for k in
                                                    ("device", "gpu", "bf16", "fp16", "channels_last", "compile",
                                                     "fold_batchnorm")}})
            sweep = SweepDispatch(config, store, schedule, progress, counter)
            given_up = sweep.given_up   # filled as items fail for good: an interrupted run's summary lists them too

            def tick() -> None:
                if lease.lost:   # another driver took the store over: stop rather than run twice
                    raise SweepError(lease.lost)
                sweep.tick()

            run.dispatch(pending.tasks(batch_size), **sweep.handlers(), tick=tick, poll=min(progress.interval, 1.0))
            if run.started < count:
                progress.message(f"{count - run.started} of {count} workers had not started when the sweep "
                                 f"ended (no room in the cluster, or still loading): the others ran it", out)
    except KeyboardInterrupt:   # the progress is closed by then (the session's end)
        interrupted = True
    # Only the files added since the resume's pass are read. A file that pass saw holding keys is not written again:
    # a file's name is a hash of the keys its batch ran, which include the keys it holds, and each batch of this run
    # (retries too) lacks every key the pass read; with the lease nobody else writes images/. A file gone since
    # (moved aside by hand) no longer counts.
    done_keys = all_keys(store.keys_by_file(known=pending.files))
    done = sum(1 for item in pending.planned if item.key in done_keys)
    failed = tuple((key, error) for key, error in given_up.items() if key not in done_keys)
    ran = bool(run.started)   # else it was interrupted before any worker started (waiting for GPU nodes, say)
    return SweepSummary(store=store.uri, total=total, done=done, done_before=done_before, failed=failed,
                        seconds=time.monotonic() - started, workers=run.count if ran else 0,
                        device=("gpu" if run.use_gpu else "cpu") if ran else "",
                        actors_replaced=run.replaced, interrupted=interrupted, batch_size=batch_size,
                        out_of_reach=run.out_of_reach)
