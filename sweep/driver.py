"""The orchestrator: plan -> store -> Ray actors -> dispatch with backpressure -> summary.

    plan     the selections, source images and dream layers are checked and expanded into batches before
             anything starts (bad input: no Ray)
    store    manifest written or compared (source images by content hash); source images written once under
             sources/, where every actor reads them; temp files of a killed run removed; keys already stored are
             skipped
    ray      a local instance is started, or the cluster at `address` is joined
    actors   one per GPU (`num_gpus=1`), or CPU actors when the cluster has no GPU
    dispatch the driver hands each actor at most `in_flight` batches and remembers which actor holds which; when
             an actor dies its batches go back to the queue and a new actor replaces it; failed items are retried
             up to `max_attempts` times in this run (each failure is a row in failures/)
    summary  counts read back from the store; a non-zero exit status when items remain undone

No work queue is shared with the workers (a queue's `get()` loses an item when its consumer dies); everything the
actors hold is known here, and the store is the only record of what is done, so a killed driver resumes exactly
where the files say.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator, TextIO

from sweep.plan import Batch, Plan, PlanError, make_plan
from sweep.progress import Progress, format_duration
from sweep.store import FAILURES, IMAGES, ManifestMismatch, Store, StoreError, failures_table, \
    manifest_differences, new_manifest, source_file, source_hash

DEVICES = ("auto", "gpu", "cpu")


class SweepError(RuntimeError):
    """The sweep cannot go on (e.g. every new worker dies at start); the message is one line."""


@dataclass(frozen=True)
class SweepConfig:
    """One `sweep run`. The fields up to `batch_size` define the store's contents (they go into the manifest; the
    source images by name and content hash)."""
    store: str                          # directory or s3:// / gs:// URI
    model: str = "digits"               # model zoo name (`sweep models` lists them)
    weights: str = "DEFAULT"            # torchvision weights name, "random", or a local state dict
    jobs: str | None = None             # comma list of jobs; None: every job the engine has
    classes: str = "all"                # all | 0-999 | 1,5,7-9
    pairs: str | None = None            # 1+2,3+4 | FILE | random:N | all; None: all pairs if at most 1000
    variants: str | None = None         # addition variants; None: all (merge, juxtapose)
    seeds: int = 1                      # seeds 0..seeds-1 per item
    images: tuple[str, ...] = ()        # image files and folders the image jobs start from (`--images`)
    sample_images: bool = False         # also start from scikit-learn's two sample photographs (the demo)
    layers: tuple[str, ...] = ()        # dream layer specs NAME[:maps]; empty: the model's default dream layer
    interpolate_pairs: str | None = None   # interpolation pairs, as `pairs`; None: the `pairs` selection
    schedule: str | None = None         # preset name or JSON file for every job; None: the model's defaults
    job_schedules: tuple[str, ...] = ()  # "JOB=PRESET_OR_FILE" overrides, one job each (after `schedule`)
    batch_size: int = 8                 # items the engine renders together (fixes the batch boundaries)
    address: str | None = None          # None: start a local Ray; "auto" or HOST:PORT: join that cluster
    workers: int | None = None          # actors; None: one per GPU, or one per `cpus_per_worker` CPUs without GPUs
    device: str = "auto"                # auto: GPU actors if the cluster has GPUs now; gpu: always (autoscaling)
    cpus_per_worker: float = 1.0        # CPU reservation of each actor (and its torch threads)
    in_flight: int = 2                  # batches handed to one actor at a time: one running, one ready to start
    max_attempts: int = 3               # tries per item in one run; items still failing stay in failures/
    engine: str = "jobs.kinds:run_batch"   # the batch renderer, "module:function" (benchmarks and tests plug fakes)
    worker: str = "sweep.worker:SweepWorker"   # the actor class, "module:Class" (fault tests plug a subclass)
    bf16: bool = False                  # bf16 autocast on GPUs (changes the images: recorded in the manifest)
    num_cpus: int | None = None         # local Ray only: CPUs to offer (None: all)
    num_gpus: int | None = None         # local Ray only: GPUs to offer (None: detect; tests fake some)
    worker_logs: bool = False           # forward the actors' stdout/stderr to the driver
    progress_every: float | None = None  # seconds between progress lines (None: 0.25 on a terminal, 10 in a log)


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

    @property
    def complete(self) -> bool:
        return self.done == self.total

    @property
    def exit_status(self) -> int:
        return 130 if self.interrupted else (0 if self.complete else 1)

    def lines(self) -> list[str]:
        new = self.done - self.done_before
        if not self.workers:
            return [f"store {self.store}: {self.done}/{self.total} items done (nothing left to run)"]
        out = [f"store {self.store}: {self.done}/{self.total} items done ({new} new in "
               f"{format_duration(self.seconds)}, {self.workers} {self.device} workers"
               f"{f', {self.actors_replaced} replaced' if self.actors_replaced else ''})"]
        if self.interrupted:
            out.append("interrupted: run the same command again to resume")
        if self.failed:
            out.append(f"{len(self.failed)} items failed (recorded in {self.store}/{FAILURES}/):")
            out += [f"  {key}: {error}" for key, error in self.failed[:10]]
            if len(self.failed) > 10:
                out.append(f"  ... and {len(self.failed) - 10} more (`sweep status --store {self.store}`)")
        elif not self.complete and not self.interrupted:
            out.append(f"{self.total - self.done} items missing: run the same command again")
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
    sources: dict = field(default_factory=dict)   # name -> H x W x 3 uint8 pixels of the plan's source images


def load_sources(config: SweepConfig) -> dict:
    """name -> pixels of every source image (`--images` files and folders, then the sample photographs), or a
    PlanError listing every input that is not a readable image, or naming inputs that share a name."""
    from jobs.images import ImageInputError, load_images, sample_images
    try:
        images = load_images(config.images) if config.images else []
    except ImageInputError as error:
        raise PlanError(str(error)) from None
    images += sample_images() if config.sample_images else []
    repeated = sorted(name for name, n in collections.Counter(image.name for image in images).items() if n > 1)
    if repeated:
        raise PlanError(f"several source images are named {', '.join(repeated)}: the store tells sources apart "
                        f"by file name, so rename them")
    # Sorted by name: the same images given in another order are the same sweep (and resume).
    return {image.name: image.pixels for image in sorted(images, key=lambda image: image.name)}


def check_layers(model, specs: tuple[str, ...]) -> tuple[str, ...]:
    """The dreams' layer specs (`NAME[:maps]`, layers joined by `+`), each checked against the model: every layer
    must exist, every feature map index be one the layer has. Defaults to the model's default dream layer."""
    import torch
    from jobs.kinds import parse_layers
    from jobs.models import default_dream_layer
    specs = tuple(dict.fromkeys(s.strip() for s in specs if s.strip())) or (default_dream_layer(model),)
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
        blank = torch.zeros(1, 3, model.input_size, model.input_size)   # 1 x 3 x S x S
        with torch.no_grad():
            _, acts = model.taps(blank, chosen)
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
        per_job[job.strip()] = source.strip()
    try:
        base = default_schedules(model.name, jobs, fixed_size=fixed_input_size(model))
        schedules = schedule_set(base, config.schedule, per_job)
        check_fits(model, schedules, jobs)
    except ValueError as error:
        raise PlanError(str(error).splitlines()[0]) from None
    for job in jobs:
        schedule = schedules.for_job(job)
        if schedule.output != "logits" and schedule.output not in model.all_layers:
            raise PlanError(f"schedule {schedule.name}: output {schedule.output!r} is not a head of {model.name} "
                            f"(use 'logits', or 'AuxLogits' with inception_v3)")
    return schedules


def prepare(config: SweepConfig) -> Prepared:
    """Check the model, schedule, selections, source images and store; raises before anything is written or
    started."""
    from jobs.models import load_model
    if config.device not in DEVICES:
        raise PlanError(f"unknown device {config.device!r}: choose from {', '.join(DEVICES)}")
    model = load_model(config.model, config.weights)          # refuses unknown models and missing weights here
    sources = load_sources(config)
    plan = make_plan(n_classes=model.n_classes, jobs=config.jobs, classes=config.classes, pairs=config.pairs,
                     variants=config.variants, seeds=config.seeds, batch_size=config.batch_size,
                     sources=tuple(sources), layers=check_layers(model, config.layers),
                     interpolate_pairs=config.interpolate_pairs)
    schedule = prepare_schedules(config, model, plan.jobs)
    sources = {name: sources[name] for name in plan.sources}   # none when no image job runs
    options = {**plan.options(), **({"bf16": True} if config.bf16 else {})}
    manifest = new_manifest(model=model.name, weights=model.weights_id, weights_source=config.weights,
                            schedule=schedule.name, schedule_id=schedule.id, class_names=model.class_names,
                            options=options, sources={name: source_hash(p) for name, p in sources.items()},
                            job_schedules=schedule.job_ids(plan.jobs))
    store = Store.open(config.store)
    stored = store.read_manifest()
    if stored is not None:
        differences = manifest_differences(stored, manifest)
        if differences:
            raise ManifestMismatch(f"store {store.uri} holds a different sweep: {'; '.join(differences)} "
                                   f"(use another --store, or the store's own settings)")
    elif store.files(IMAGES):
        raise StoreError(f"{store.uri} has Parquet files under {IMAGES}/ but no manifest.json: not a sweep store")
    return Prepared(config, plan, store, manifest if stored is None else stored, schedule, model.class_names,
                    sources)


def run_sweep(config: SweepConfig, *, stream: TextIO | None = None) -> SweepSummary:
    """Run (or resume) a sweep to completion or interruption; returns what the store holds afterwards."""
    return execute(prepare(config), stream=stream)


# ---- execution -------------------------------------------------------------------------------------------------

@dataclass
class Task:
    batch: Batch
    attempts: tuple[int, ...]   # try number of each item, counted over all runs (1 = first try ever)
    crashes: int = 0            # times an actor died holding this task


@dataclass
class Slot:
    """One actor position and the actor currently in it."""
    number: int
    actor: object
    generation: int = 0                        # bumped on each replacement: tells stale calls from current ones


def prior_attempts(store: Store) -> dict[str, int]:
    """The highest try number recorded per key in failures/ (so numbering continues across runs)."""
    table = store.read(FAILURES, ["key", "attempt"])
    attempts: dict[str, int] = {}
    for key, attempt in zip(table.column("key").to_pylist(), table.column("attempt").to_pylist()):
        attempts[key] = max(attempts.get(key, 0), int(attempt))
    return attempts


def pending_tasks(plan: Plan, store: Store) -> tuple[list[Task], int]:
    """The plan's batches minus what the store holds (fixed boundaries, so re-runs form the same batches)."""
    done = store.done_keys()
    before = prior_attempts(store)
    tasks = []
    for batch in plan.batches():
        todo = batch.without(done)
        if todo.items:
            tasks.append(Task(todo, tuple(before.get(key, 0) + 1 for key in todo.keys)))
    total = sum(len(b.items) for b in plan.batches())
    return tasks, total - sum(len(t.batch.items) for t in tasks)


@contextlib.contextmanager
def ray_session(config) -> Iterator[bool]:
    """Use the Ray this process is already connected to, or join `config.address`, or start a local instance.

    Yields whether this call started it (and will shut it down).
    """
    import ray
    if ray.is_initialized():
        yield False
        return
    kwargs = {"log_to_driver": config.worker_logs, "logging_level": logging.WARNING}
    if config.address:
        try:
            ray.init(address=config.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise SweepError(f"cannot join the Ray cluster at {config.address}: {first_line(error)}") from None
    else:
        # "local" always starts a fresh instance (never attaches to another process's cluster on this machine).
        ray.init(address="local", num_cpus=config.num_cpus, num_gpus=config.num_gpus, include_dashboard=False,
                 **kwargs)
    try:
        yield True
    finally:
        ray.shutdown()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. `ray job stop`, a scheduler's kill) stops the sweep like Ctrl-C: cleanly, resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Fleet:
    """The actors of one run, each in a numbered slot; a dead actor is replaced in its slot by a new one."""

    def __init__(self, worker_config, count: int, *, use_gpu: bool, cpus: float,
                 worker: str = "sweep.worker:SweepWorker") -> None:
        import ray
        from sweep.worker import import_callable
        self.run_id = uuid.uuid4().hex[:8]
        # No automatic restarts: the driver replaces a dead actor itself and knows which batches it held.
        self.options = {"num_gpus": 1 if use_gpu else 0, "num_cpus": cpus, "max_restarts": 0}
        self.remote = ray.remote(import_callable(worker))
        self.worker_config = worker_config
        self.replaced = 0
        self.slots = [Slot(n, self._start(n, 0)) for n in range(count)]

    def _start(self, number: int, generation: int):
        name = f"classweep-{self.run_id}-{number}-{generation}"   # findable with ray.util.list_named_actors
        return self.remote.options(name=name, **self.options).remote(self.worker_config)

    def replace(self, slot: Slot) -> None:
        import ray
        with contextlib.suppress(Exception):
            ray.kill(slot.actor, no_restart=True)
        slot.generation += 1
        slot.actor = self._start(slot.number, slot.generation)
        self.replaced += 1

    def stop(self) -> None:
        import ray
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)


def first_line(error: BaseException) -> str:
    """A one-line description of a (possibly remote, multi-line) error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    tail = next((l for l in reversed(lines) if not l.startswith(("File ", "^", "~"))), type(error).__name__)
    return tail[:500]


def dispatch(fleet: Fleet, queue: collections.deque, config: SweepConfig, store: Store,
             progress: Progress) -> dict[str, str]:
    """Hand tasks to the fleet until all are done or given up; returns {key: last error} of items given up."""
    import ray
    from ray.exceptions import ActorUnavailableError, RayActorError, RayError, RayTaskError
    owner: dict = {}                          # ObjectRef -> (slot, actor generation, task)
    tries: collections.Counter = collections.Counter()   # tries per key in this run
    given_up: dict[str, str] = {}
    deaths_without_progress = 0

    def held(slot: Slot) -> int:
        return sum(1 for s, g, _ in owner.values() if s is slot and g == slot.generation)

    def settle(task: Task, failed: dict[str, str]) -> None:
        """Count the failed items' tries; queue the ones with tries left, give up the rest."""
        retry = []
        for item, attempt in zip(task.batch.items, task.attempts):
            if item.key not in failed:
                continue
            tries[item.key] += 1
            if tries[item.key] < config.max_attempts:
                retry.append((item, attempt + 1))
            else:
                given_up[item.key] = failed[item.key]
                progress.update(failed=1)
        if retry:
            queue.append(Task(Batch(task.batch.index, tuple(i for i, _ in retry)), tuple(a for _, a in retry)))

    def record(task: Task, error: str) -> dict[str, str]:
        """Failures the worker could not write itself (it died, or its write failed): the driver writes them."""
        rows = failures_table([(item, a, error) for item, a in zip(task.batch.items, task.attempts)], "driver")
        store.write_table(f"{FAILURES}/{task.batch.name}-a{max(task.attempts)}-driver.parquet", rows)
        return {key: error for key in task.batch.keys}

    while queue or owner:
        for slot in fleet.slots:
            while queue and held(slot) < config.in_flight:
                task = queue.popleft()
                owner[slot.actor.run.remote(task.batch, task.attempts)] = (slot, slot.generation, task)
        ready, _ = ray.wait(list(owner), num_returns=1, timeout=min(progress.interval, 1.0))
        for ref in ready:
            slot, generation, task = owner.pop(ref)
            try:
                report = ray.get(ref)
            except RayTaskError as error:        # the actor lives, but the call raised (e.g. the store write)
                settle(task, record(task, first_line(error)))
                continue
            except (RayActorError, ActorUnavailableError, RayError) as error:   # the actor (or its node) died
                if generation == slot.generation:
                    fleet.replace(slot)
                    deaths_without_progress += 1
                    if deaths_without_progress > len(fleet.slots) + 2:
                        raise SweepError(f"workers keep dying before finishing any batch: {first_line(error)}")
                task.crashes += 1
                if task.crashes < config.max_attempts:
                    queue.appendleft(task)       # same task, same file name: a write before the death is overwritten
                else:
                    settle(task, record(task, f"worker died while rendering this batch: {first_line(error)}"))
                continue
            deaths_without_progress = 0
            progress.update(done=len(report.done))
            settle(task, dict(report.failed))
        progress.update()
    return given_up


def cluster_plan(config: SweepConfig, n_tasks: int) -> tuple[bool, int]:
    """(GPU actors?, how many) from the configuration and the cluster's resources now."""
    import ray
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 1)
    use_gpu = config.device == "gpu" or (config.device == "auto" and gpus > 0)
    if config.workers:
        count = config.workers
    elif use_gpu:
        count = max(gpus, 1)
    else:
        count = max(1, int(cpus // max(config.cpus_per_worker, 1e-3)))
    return use_gpu, max(1, min(count, n_tasks))


def execute(prepared: Prepared, *, stream: TextIO | None = None) -> SweepSummary:
    """Run the prepared sweep: resume from the store, dispatch to actors, summarise from the store."""
    from sweep.worker import WorkerConfig
    config, plan, store = prepared.config, prepared.plan, prepared.store
    out = stream if stream is not None else sys.stdout
    started = time.monotonic()
    removed = store.cleanup_temp()
    if store.read_manifest() is None:
        store.write_manifest(prepared.manifest)
    for name, pixels in prepared.sources.items():   # once: workers on any node read them from the store
        if not store.exists(source_file(name)):
            store.write_source(name, pixels)
    tasks, done_before = pending_tasks(plan, store)
    total = done_before + sum(len(t.batch.items) for t in tasks)
    if removed:
        print(f"removed {removed} temporary files left by an interrupted run", file=out)
    if not tasks:
        return SweepSummary(store.uri, total, done_before, done_before, (), time.monotonic() - started, 0, "", 0,
                            False)
    if done_before:
        print(f"resuming: {done_before}/{total} items already in {store.uri}", file=out)
    worker_config = WorkerConfig(store.uri, config.model, config.weights, prepared.schedule, config.engine,
                                 threads=max(1, int(config.cpus_per_worker)), bf16=config.bf16)
    given_up: dict[str, str] = {}
    interrupted, fleet, use_gpu, count = False, None, False, 0
    progress = Progress(total, done_before, stream=out, interval=config.progress_every)
    try:
        # SIGTERM is taken over after ray.init, which installs a handler of its own.
        with ray_session(config), sigterm_as_interrupt():
            use_gpu, count = cluster_plan(config, len(tasks))
            print(f"{count} GPU workers (one GPU each)" if use_gpu else
                  f"no GPUs in the cluster: {count} CPU workers", file=out, flush=True)
            fleet = Fleet(worker_config, count, use_gpu=use_gpu, cpus=config.cpus_per_worker, worker=config.worker)
            try:
                given_up = dispatch(fleet, collections.deque(tasks), config, store, progress)
            finally:
                fleet.stop()
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    done_keys = store.done_keys()
    done = sum(1 for batch in plan.batches() for key in batch.keys if key in done_keys)
    failed = tuple((key, error) for key, error in given_up.items() if key not in done_keys)
    return SweepSummary(store.uri, total, done, done_before, failed, time.monotonic() - started, count,
                        "gpu" if use_gpu else "cpu", fleet.replaced if fleet else 0, interrupted)
