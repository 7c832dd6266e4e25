"""Engines and workers that misbehave on purpose, the checks of a store after they did, and an in-process store
builder.

Ray actors import these by name ("sweep_fakes:slow_run_batch"): the Ray fixtures put this directory on the
workers' PYTHONPATH. Every fake wraps the real engine (`jobs.kinds.run_batch`), so the images are real.
Markers (files under $CLASSWEEP_TEST_MARKERS) let a fault happen once only, across actor processes.
The checks take a store's location (a directory or an `s3://` URI), so that a fault's test on a local disk and its
twin on an object store check the same things (tests/conftest.py has pytest rewrite their asserts).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweep.store import IMAGES, TEMP_DIR, Store
from sweep.worker import SweepWorker, WorkerConfig

SLOW_SECONDS = 0.25    # per batch: keeps a sweep busy long enough to kill something in the middle of it
FAIL_TARGET = 3        # the octave of this class always fails (failing_run_batch, misbehaving_run_batch)
RAISE_TARGET = 7       # a batch holding this class's octave raises (raising_run_batch, misbehaving_run_batch)
FLAKY_TARGET = 4       # this class's octave fails on its first try only (misbehaving_run_batch)
HERE = Path(__file__).parent


def run_batch(model, specs, schedule, **kwargs):
    """The real engine (`jobs.kinds.run_batch`), imported on first use: an actor that imports this module for a
    worker that renders nothing (`ModelFreeWorker`) never imports torch."""
    from jobs.kinds import run_batch as engine
    return engine(model, specs, schedule, **kwargs)


@contextlib.contextmanager
def failing_if_stuck(seconds: int) -> Iterator[None]:
    """A command that never returns fails the test (TimeoutError) instead of hanging the suite: a bound on a hang,
    far above the command's time, not a timing check."""
    def stuck(_signum, _frame):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def start_local_ray(num_gpus: int = 0, **env: str) -> None:
    """A fresh local Ray for a test module: 2 CPUs, `num_gpus` fake GPUs, offline, and this folder plus the
    repository on the workers' PYTHONPATH (so that actors import the fakes and the checkout's packages).

    The variables are set only while Ray starts: its processes keep them and hand them to every worker. (A job-wide
    `runtime_env` would do the same, but then Ray starts a new process for every actor instead of handing it one of
    the idle workers it keeps ready, about 0.3 s more per fleet.)"""
    import pytest
    import ray
    path = os.pathsep.join([str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"PYTHONPATH": path, "CLASSWEEP_OFFLINE": "1", **env}.items():
            patch.setenv(name, value)
        ray.init(address="local", num_cpus=2, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)


def start_ray_with_markers(markers: Path, num_gpus: int = 2) -> None:
    """`start_local_ray` with `markers` as the folder of the fault markers (`happened`, `mark`), in this process
    and in Ray's workers alike: what the actor-fault modules (test_driver, test_fleet_actors) start once each."""
    os.environ["CLASSWEEP_TEST_MARKERS"] = str(markers)
    start_local_ray(num_gpus=num_gpus, CLASSWEEP_TEST_MARKERS=str(markers))


def tiny_sweep(store, in_flight: int = 2, workers: int = 1, **changes):
    """A SweepConfig of the random digits model under the tiny schedule, on `workers` GPU actors (fake GPUs; one by
    default: each actor start costs about 2.5 s of the busy suite's CPU, and most tests need one)."""
    from sweep.driver import SweepConfig
    from sweep.fleet import ClusterConfig
    base = dict(store=str(store), model="digits", weights="random", schedule="tiny", batch_size=4,
                cluster=ClusterConfig(workers=workers, cpus_per_worker=0.5, progress_every=1.0, in_flight=in_flight))
    return SweepConfig(**{**base, **changes})


def one_worker_fleet(tmp_path, worker: str = "sweep_fakes:ModelFreeWorker", cpus: float = 0.5):
    """A Fleet of one CPU actor of `worker` (by default one that loads no model: the dispatch loop's tests send
    calls of their own) for the digits model (random weights), as the fleet tests start it."""
    from sweep.fleet import Fleet
    return Fleet(WorkerConfig(str(tmp_path / "s"), "digits", "random"), 1, use_gpu=False, cpus=cpus, worker=worker)


def kill_an_actor_once(first_file_written: Callable[[], bool], killed: list, timeout: float = 120) -> threading.Thread:
    """A started thread that waits until `first_file_written()` (the sweep is under way), then kills the sweep's
    first actor for good (`no_restart`) and appends its name to `killed`. Join it after the sweep."""
    import ray

    def kill() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not first_file_written():
            time.sleep(0.05)
        names = sorted(n for n in ray.util.list_named_actors() if n.startswith("classweep-") and n.endswith("-0-0"))
        if names:
            ray.kill(ray.get_actor(names[0]), no_restart=True)
            killed.append(names[0])
    thread = threading.Thread(target=kill, name="kill-an-actor")
    thread.start()
    return thread


def _marker(name: str) -> Path:
    return Path(os.environ["CLASSWEEP_TEST_MARKERS"]) / name


def happened(name: str) -> bool:
    """Whether the fault marked `name` has fired (in any process sharing the marker directory)."""
    return _marker(name).exists()


def _first_time(name: str) -> bool:
    """True the first time it is called with `name` (over all processes sharing the marker directory)."""
    try:
        fd = os.open(_marker(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def slow_run_batch(model, specs, schedule, **kwargs):
    time.sleep(SLOW_SECONDS)
    return run_batch(model, specs, schedule, **kwargs)


def mark(name: str) -> None:
    """Set the marker `name` (seen by `happened` in every process sharing the marker directory)."""
    _marker(name).touch()


def after_takeover_slow_run_batch(model, specs, schedule, **kwargs):
    """A batch takes 1 s once the test has marked "lease-taken": the run cannot end before its driver's next
    heartbeat sees that another driver took its lease."""
    time.sleep(1.0 if happened("lease-taken") else 0.0)
    return run_batch(model, specs, schedule, **kwargs)


def spread_run_batch(model, specs, schedule, **kwargs):
    """Waits (at most 60 s) until two worker processes have each begun a batch: a first actor can finish a tiny
    sweep before the second has started, so a test that checks where the work ran needs both to get some. Counted
    per fleet (its run id, in the actors' names)."""
    import ray
    name = ray.get_runtime_context().get_actor_name() or "classweep-in-process"
    folder = _marker(f"spread-{name.split('-')[1]}")
    folder.mkdir(exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return run_batch(model, specs, schedule, **kwargs)


HANG_TARGET = 5        # the first batch with this class hangs, as on a stuck device (hang_once_run_batch)


def hang_once_run_batch(model, specs, schedule, **kwargs):
    """The first batch holding HANG_TARGET never returns (its actor is ended from outside); later ones render."""
    if any(spec.target == HANG_TARGET for spec in specs) and _first_time("hang"):
        time.sleep(600)
    return run_batch(model, specs, schedule, **kwargs)


KILLER_TARGET = 2      # a batch with this class kills its actor, every time (killer_run_batch)


def killer_run_batch(model, specs, schedule, **kwargs):
    """Kills the actor whenever its batch holds KILLER_TARGET (an input that crashes the process, every time)."""
    if any(spec.target == KILLER_TARGET for spec in specs):
        os._exit(1)
    time.sleep(SLOW_SECONDS)   # the actor's other call is still running when the killer starts
    return run_batch(model, specs, schedule, **kwargs)


def _with_errors(results, broken):
    return [dataclasses.replace(r, image=None, logits=None, label=-1, error=f"injected failure for {r.spec.key}")
            if broken(r.spec) else r for r in results]


def failing_run_batch(model, specs, schedule, **kwargs):
    results = run_batch(model, specs, schedule, **kwargs)
    return _with_errors(results, lambda s: s.job == "octave" and s.target == FAIL_TARGET)


def raising_run_batch(model, specs, schedule, **kwargs):
    if any(s.job == "octave" and s.target == RAISE_TARGET for s in specs):
        raise RuntimeError(f"engine exploded on class {RAISE_TARGET}")
    return run_batch(model, specs, schedule, **kwargs)


def misbehaving_run_batch(model, specs, schedule, **kwargs):
    """All three faults at once: FAIL_TARGET always fails, FLAKY_TARGET fails once, RAISE_TARGET's batch raises."""
    results = raising_run_batch(model, specs, schedule, **kwargs)
    return _with_errors(results, lambda s: s.job == "octave" and (s.target == FAIL_TARGET or (
        s.target == FLAKY_TARGET and _first_time(f"flaky-{s.key}"))))


class DieAfterWriteWorker(SweepWorker):
    """Dies right after writing its first batch's file, before the report reaches the driver."""

    def run(self, batch, attempts, token=None):
        report = super().run(batch, attempts, token)
        if _first_time("die-after-write"):
            os._exit(1)
        return report


def build_store(path, *, classes: str = "0-3", jobs: str = "octave,opposite,addition", pairs: str | None = "0+1,2+3",
                variants: str | None = None, model: str = "digits", weights: str = "random", batch_size: int = 4,
                trajectory=None, engine=run_batch, images: tuple[str, ...] = ()) -> None:
    """A small real store written in-process (no Ray), as `sweep run` writes it: digits with random weights unless
    told otherwise, tiny schedule; `images`: `--images` for the jobs from real images (their pictures stored)."""
    from jobs.catalog import PAIRED, VARIANTS
    from sweep.driver import SweepConfig, prepare, write_sources
    from sweep.worker import WorkerConfig
    chosen = jobs.split(",")
    if not PAIRED.intersection(chosen):   # the pairs and variants asked for are for the jobs that read them:
        pairs = None                      # a store without those jobs is given none (`sweep run` refuses them)
    if not any(any(VARIANTS.get(job, ("",))) for job in chosen):
        variants = None
    prepared = prepare(SweepConfig(store=str(path), model=model, weights=weights, schedule="tiny", jobs=jobs,
                                   classes=classes, pairs=pairs, variants=variants, batch_size=batch_size,
                                   trajectory=trajectory, images=tuple(images)))
    prepared.store.write_manifest(prepared.manifest)
    write_sources(prepared.store, prepared.sources, prepared.manifest.get("sources", {}), every=True)
    worker = SweepWorker(WorkerConfig(prepared.store.uri, model, weights, prepared.schedule, trajectory=trajectory))
    worker.run_batch = engine
    for batch in prepared.plan.batches():
        worker.run(batch, (1,) * len(batch.items))


class ModelFreeWorker:
    """A fleet's actor that loads no model and imports no torch (about 2 s of CPU less per actor start): for the
    tests of the dispatch loop itself, whose calls are their own (`actor.__ray_call__`) and which ask only `info`."""

    def __init__(self, config) -> None:
        self.config = config

    def info(self) -> dict:
        return {"device": "cpu", "pid": os.getpid()}


class HangingSetupWorker(ModelFreeWorker):
    """Starts, then hangs in its first call (a weight download that stalls): `setup` never answers in a test."""

    def setup(self, batch_size=None):
        time.sleep(600)


class SlowStartWorker(ModelFreeWorker):
    """Takes 2 s to start (a model loading from a slow disk)."""

    def __init__(self, config):
        time.sleep(2.0)
        super().__init__(config)


class DieAtSetupWorker(SweepWorker):
    """The first actor to be asked for its setup dies then, once (as one whose node is lost while it loads the
    model)."""

    def setup(self, batch_size=None):
        if _first_time("die-at-setup"):
            os._exit(1)
        return super().setup(batch_size)


class DieBeforeWriteWorker(SweepWorker):
    """Dies once after rendering a batch and before writing it (on the writer thread, so the whole actor goes)."""

    def write(self, batch, attempts, results, errors):
        if _first_time("die-before-write"):
            os._exit(1)
        return super().write(batch, attempts, results, errors)


class DieAroundWriteWorker(DieAfterWriteWorker, DieBeforeWriteWorker):
    """Both deaths in one sweep: once between a batch's render and its write, once after another batch's write and
    before its report (each fault fires once over all the actors)."""


class OwnDiskWorker(SweepWorker):
    """Writes into `{store}-node-disk` instead of the store: a worker on a node whose directory of the store's path
    is that node's own disk (a cluster without a shared file system), not the one the driver reads."""

    def __init__(self, config):
        super().__init__(config)
        self.store = Store.open(f"{config.store}-node-disk")


# A sweep for DieAroundWriteWorker: 8 octaves in 4 batches of 2 (`run_sweep` options beside the store and cluster).
ACTOR_DEATHS = dict(jobs="octave", classes="0-7", batch_size=2, worker="sweep_fakes:DieAroundWriteWorker")
ACTOR_DEATHS_ITEMS, ACTOR_DEATHS_BATCHES = 8, 4


# ---- checks of a store after a fault --------------------------------------------------------------------------------

def _listed(store: Store, directory: str) -> list[pafs.FileInfo]:
    """The files under `directory` of the store, listed by pyarrow itself: the store's own listing leaves
    temporaries out, and these checks must see whatever a fault left."""
    selector = pafs.FileSelector(store.path(directory), recursive=True, allow_not_found=True)
    return [info for info in store.fs.get_file_info(selector) if info.type == pafs.FileType.File]


def assert_exactly_once(location, expected: int):
    """images/ holds only finished batch files (`part-*.parquet`), each a whole Parquet file (read completely), and
    together they store `expected` items, each once. Returns their key, job and worker columns (a DataFrame)."""
    store = Store.open(str(location))
    files = _listed(store, IMAGES)
    assert files and all(i.base_name.startswith("part-") and i.base_name.endswith(".parquet") for i in files), \
        [i.path for i in files]
    table = pa.concat_tables(pq.read_table(i.path, filesystem=store.fs).select(["key", "job", "worker"])
                             for i in files)
    keys = table.column("key").to_pylist()
    assert len(keys) == expected and len(set(keys)) == expected, sorted(keys)
    return table.to_pandas()


def temporaries(location) -> list[str]:
    """The temporaries left in the store: a local write's temporary lives in .tmp/ until its rename (an object
    store has none: an object appears whole with its upload's end)."""
    store = Store.open(str(location))
    return [i.path for i in _listed(store, TEMP_DIR)]


def assert_a_death_after_writing_left_no_duplicate(location, summary) -> None:
    """An ACTOR_DEATHS sweep: the actor that died after writing a batch, before reporting it, was replaced; the
    batch ran again and its second write replaced the first file (one file per batch, each item once)."""
    assert happened("die-after-write")
    assert summary.actors_replaced >= 2 and summary.complete and summary.failed == ()
    assert_exactly_once(location, ACTOR_DEATHS_ITEMS)
    assert len(Store.open(str(location)).files(IMAGES)) == ACTOR_DEATHS_BATCHES
    assert not temporaries(location)


def assert_a_death_before_writing_reran_the_batch(location, summary) -> None:
    """An ACTOR_DEATHS sweep: the batch whose actor died between render and write ran again, on another actor."""
    assert happened("die-before-write")
    assert summary.actors_replaced >= 2 and summary.complete and summary.failed == ()
    assert summary.done == ACTOR_DEATHS_ITEMS
    assert_exactly_once(location, ACTOR_DEATHS_ITEMS)
    assert not temporaries(location)
