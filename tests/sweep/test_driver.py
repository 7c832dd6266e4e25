"""Sweeps on a local Ray (2 CPUs, 2 fake GPUs, started once for the module) with the real engine on the digits
architecture and the tiny schedule: completion, resume, a killed actor, retries, failures, the feature pass."""
from __future__ import annotations

import collections
import io
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import sweep_fakes
from jobs.catalog import JobSpec
from sweep.driver import SweepConfig, prepare, run_sweep
from sweep.features import FeatureConfig, run_features
from sweep.fleet import ClusterConfig, Fleet, SweepError
from sweep.store import FAILURES, IMAGES, Store, failures_table
from sweep.worker import WorkerConfig
from sweep_fakes import assert_exactly_once, start_local_ray

ray = pytest.importorskip("ray")
COLUMNS = {"key", "job", "variant", "model", "weights", "schedule_id", "target", "partner", "seed", "label",
           "margin_label", "target_name", "label_name", "partner_name", "target_logit", "target_prob",
           "partner_logit", "logits", "png", "width", "height", "seconds", "worker", "source", "frame", "step"}


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory):
    markers = tmp_path_factory.mktemp("markers")
    os.environ["CLASSWEEP_TEST_MARKERS"] = str(markers)
    start_local_ray(num_gpus=2, CLASSWEEP_TEST_MARKERS=str(markers))
    yield
    ray.shutdown()


def config(store, in_flight: int = 2, workers: int = 1, **changes) -> SweepConfig:
    """A sweep of the random digits model under the tiny schedule, on `workers` GPU actors (fake GPUs; one by
    default: each actor start costs about 2.5 s of the busy suite's CPU, and most tests need one)."""
    base = dict(store=str(store), model="digits", weights="random", schedule="tiny", batch_size=4,
                cluster=ClusterConfig(workers=workers, cpus_per_worker=0.5, progress_every=1.0, in_flight=in_flight))
    return SweepConfig(**{**base, **changes})


def one_worker_fleet(tmp_path, worker: str = "sweep_fakes:ModelFreeWorker", cpus: float = 0.5) -> Fleet:
    """A fleet of one CPU actor of `worker` (by default one that loads no model: the dispatch loop's tests send
    calls of their own) for the digits model (random weights), as the fleet tests start it."""
    return Fleet(WorkerConfig(str(tmp_path / "s"), "digits", "random"), 1, use_gpu=False, cpus=cpus, worker=worker)


FULL = dict(pairs="random:6", batch_size=None, workers=2)   # the full sweep: all jobs, 6 random pairs, automatic
                                                           # batch size, an actor on each fake GPU
FULL_ITEMS = 10 + 10 + 6 * 2


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory):
    """A 10-class sweep of all jobs, run once for the tests that read it (or a copy of its store)."""
    store = tmp_path_factory.mktemp("full") / "s"
    out = io.StringIO()
    return store, run_sweep(config(store, **FULL), stream=out), out.getvalue()


def test_ten_class_sweep_of_all_jobs_reads_back_with_pandas(full_sweep):
    store, summary, output = full_sweep
    expected = FULL_ITEMS
    assert summary.complete and summary.exit_status == 0 and summary.done == summary.total == expected
    assert summary.device == "gpu" and summary.workers == 2       # fake GPUs: GPU actors, computing on the CPU
    frame = pd.read_parquet(store / IMAGES)
    assert set(frame.columns) == COLUMNS and len(frame) == expected and frame.key.is_unique
    assert frame.groupby(["job", "variant"]).size().to_dict() == {
        ("addition", "juxtapose"): 6, ("addition", "merge"): 6, ("octave", ""): 10, ("opposite", ""): 10}
    assert sorted(frame[frame.job == "octave"].target) == list(range(10))
    assert frame.logits.map(len).eq(10).all() and isinstance(frame.logits.iloc[0][0], np.floating)
    assert frame.png.map(lambda b: b[:4] == b"\x89PNG").all()
    assert (frame.label == frame.logits.map(np.argmax)).all()
    assert frame.worker.str.count("/").eq(2).all()                 # host/node/actor (test_cluster: the spread)
    assert "items (100.0%)" in output and "steps/s" in output     # progress counts image-steps
    # Resuming a complete store does nothing (and starts no Ray work).
    again = run_sweep(config(store, **FULL), stream=io.StringIO())
    assert again.done_before == expected and again.workers == 0 and again.complete


@pytest.mark.slow   # a kill at any moment: every run kills actors at the two moments that matter (actor_deaths)
def test_killed_actor_is_replaced_and_every_item_lands_once(tmp_path):
    store = tmp_path / "s"
    killed = []
    killer = sweep_fakes.kill_an_actor_once(lambda: bool(list((store / IMAGES).glob("part-*"))), killed)
    summary = run_sweep(config(store, jobs="octave", batch_size=2, in_flight=2,
                               engine="sweep_fakes:slow_run_batch"), stream=io.StringIO())
    killer.join()
    assert killed and summary.actors_replaced >= 1
    assert summary.complete and summary.failed == ()
    assert_exactly_once(store, 10)


def test_more_workers_than_gpus_finish_on_the_actors_that_start(tmp_path):
    """--workers 3 on 2 GPUs and no autoscaler: the third actor never starts, so it must hold no batch; the two
    that start run the whole sweep instead of it waiting forever on that actor's share."""
    store, out = tmp_path / "s", io.StringIO()
    where = ClusterConfig(workers=3, device="gpu", cpus_per_worker=0.5, progress_every=1.0, in_flight=2)
    with sweep_fakes.failing_if_stuck(240):
        summary = run_sweep(config(store, jobs="octave", batch_size=2, cluster=where,
                                   engine="sweep_fakes:spread_run_batch"), stream=out)   # both GPU actors work
    assert summary.complete and summary.failed == (), out.getvalue()
    assert "1 of 3 workers had not started when the sweep ended (no room in the cluster" in out.getvalue()
    assert_exactly_once(store, 10)


@pytest.mark.slow   # four actor starts for a rare start-up race; run with --run-slow
def test_a_first_actor_dying_at_start_lets_another_start_the_run(tmp_path):
    """--workers 3 on 2 GPUs, and the first actor dies while it starts (its node lost, say): the third actor takes
    the GPU it freed and its own new actor waits for room that never comes, so the run starts on an actor that is
    up instead of waiting for that slot's."""
    store, out = tmp_path / "s", io.StringIO()
    where = ClusterConfig(workers=3, device="gpu", cpus_per_worker=0.5, progress_every=1.0, in_flight=2)
    with sweep_fakes.failing_if_stuck(120):
        summary = run_sweep(config(store, jobs="octave", batch_size=2, cluster=where,
                                   worker="sweep_fakes:DieAtSetupWorker"), stream=out)
    assert sweep_fakes.happened("die-at-setup")
    assert summary.complete and summary.failed == () and summary.actors_replaced >= 1, out.getvalue()
    assert_exactly_once(store, 10)


def test_a_run_whose_workers_can_no_longer_start_anywhere_gives_up_after_the_wait(tmp_path):
    """Every node that could hold a worker is lost and no autoscaler adds one: the new actor waits for room that
    never comes, so with work left and no actor up for --gpu-wait seconds the run gives up in one line."""
    from sweep.fleet import dispatch
    fleet = one_worker_fleet(tmp_path)
    try:
        fleet.first_ready(lambda actor: actor.info.remote(), gpu_wait=600, stream=io.StringIO(), interval=0.5)
        fleet.options = {**fleet.options, "resources": {"a-node-that-is-gone": 1}}   # the replacement: no room
        killed = []

        def submit(actor, task):   # the first call loses its actor (its node is lost) for certain
            killed.append(task)
            return actor.__ray_call__.remote(lambda worker: os._exit(1))
        with sweep_fakes.failing_if_stuck(120), pytest.raises(SweepError, match="no worker could start for 1s"):
            dispatch(fleet, ["a batch"], submit=submit, on_done=lambda task, value: [],
                     on_failed=lambda task, error: [], in_flight=1, poll=0.2, no_worker_limit=1.0)
        assert killed == ["a batch"] and fleet.replaced == 1
        assert fleet.started == 1 and not fleet.slots[0].up     # its first actor started; the new one never does
    finally:
        fleet.stop()


def test_an_actor_out_of_reach_for_a_moment_is_asked_again_not_replaced(tmp_path, monkeypatch):
    """Ray loses an answer (ActorUnavailableError: a network blip; the call may or may not have run): the actor is
    asked again and the call runs again, and no new actor is started (its model load, probe and compile would be
    paid per blip). An actor still out of reach after UNREACHABLE_GRACE seconds is replaced as if dead."""
    import sweep.fleet as fleet_module
    from ray.exceptions import ActorUnavailableError
    from sweep.fleet import dispatch
    monkeypatch.setattr(fleet_module, "UNREACHABLE_GRACE", 1.0)
    monkeypatch.setattr(fleet_module, "UNREACHABLE_RETRY", 0.1)
    real_get, fleet = ray.get, one_worker_fleet(tmp_path)
    lose = {"next": 0, "refs": set(), "until_replaced": False}

    def get(ref, *args, **kwargs):   # the network loses the answers the test picks
        if lose["next"] or ref in lose["refs"] or (lose["until_replaced"] and not fleet.replaced):
            lose["next"] = max(0, lose["next"] - 1)
            lose["refs"].discard(ref)
            raise ActorUnavailableError("injected: connection reset", None)
        return real_get(ref, *args, **kwargs)
    monkeypatch.setattr(ray, "get", get)
    calls, done = [], []

    def submit(actor, task):
        calls.append(task)
        ref = actor.info.remote()
        if task == "lost once" and calls.count(task) == 1:
            lose["refs"].add(ref)
        return ref

    def run(tasks):
        dispatch(fleet, tasks, submit=submit, on_done=lambda task, value: done.append(task) or [],
                 on_failed=lambda task, error: pytest.fail(error), in_flight=1, poll=0.2)
    try:
        with sweep_fakes.failing_if_stuck(120):
            first = fleet.slots[0].actor
            lose["next"] = 1                          # first_ready's first answer: its ping
            info = fleet.first_ready(lambda actor: actor.info.remote(), gpu_wait=600, stream=io.StringIO(),
                                     interval=0.2)
            assert info["device"] == "cpu" and lose["next"] == 0 and fleet.replaced == 0 and fleet.out_of_reach == 1
            run(["lost once", "b", "c"])
            assert sorted(done) == ["b", "c", "lost once"] and calls.count("lost once") == 2
            assert fleet.replaced == 0 and fleet.slots[0].actor is first and fleet.slots[0].up
            assert fleet.out_of_reach == 2        # each blip counted once, however many pings it took
            lose["until_replaced"] = True             # out of reach for good
            run(["d"])
            assert done[-1] == "d" and calls.count("d") == 2 and fleet.replaced == 1
            assert fleet.slots[0].actor is not first and fleet.slots[0].up and fleet.out_of_reach == 3
    finally:
        fleet.stop()


def test_a_batch_whose_answer_ray_lost_after_it_was_stored_is_stored_once(tmp_path, monkeypatch):
    """The worst case of an out-of-reach worker: the batch ran and wrote its file, then Ray lost the answer. The
    batch runs again and rewrites the same file, so every item is stored once, and no worker is replaced."""
    from ray.exceptions import ActorUnavailableError
    from sweep.worker import BatchReport
    real_get, lost = ray.get, []

    def get(ref, *args, **kwargs):
        value = real_get(ref, *args, **kwargs)
        if isinstance(value, BatchReport) and not lost:
            lost.append(value.index)
            raise ActorUnavailableError("injected: the answer was lost", None)
        return value
    monkeypatch.setattr(ray, "get", get)
    store, out = tmp_path / "s", io.StringIO()
    summary = run_sweep(config(store, jobs="octave", batch_size=2), stream=out)
    assert lost and summary.complete and summary.failed == () and summary.actors_replaced == 0
    assert summary.out_of_reach == 1 and "1 out of reach for a while" in summary.lines()[0]
    assert_exactly_once(store, 10)


def test_a_hung_worker_is_ended_and_its_batches_run_again(tmp_path):
    """A batch that never returns (a stuck device): once its worker has done no step, finished no batch and been
    handed none for --stall-timeout seconds, the driver says so and ends it; its batches run again and land once."""
    from sweep.cli import run as run_command
    assert next(p.default for p in run_command.params if p.name == "stall_timeout") == ClusterConfig().stall_timeout
    store, out = tmp_path / "s", io.StringIO()
    where = ClusterConfig(cpus_per_worker=0.5, progress_every=1.0, in_flight=2, stall_timeout=3.0)
    with sweep_fakes.failing_if_stuck(240):
        summary = run_sweep(config(store, jobs="octave", batch_size=2, cluster=where,
                                   engine="sweep_fakes:hang_once_run_batch"), stream=out)
    assert sweep_fakes.happened("hang") and summary.complete and summary.failed == (), out.getvalue()
    assert summary.actors_replaced >= 1
    # the hung batch, and the batch queued behind it on that worker if the queue still had one for it
    assert re.search(r"worker \d made no progress for \d+s on (1 task|2 tasks) \(hung\?\): ending it", out.getvalue())
    assert_exactly_once(store, 10)


class OneWorkerDispatch(NamedTuple):
    done: list          # the values of the tasks done
    failed: list        # (task, error) of the tasks given up
    notes: list         # the lines the loop said
    replaced: int       # actors replaced
    handed: list        # the tasks handed to an actor, in order (a task once per try)


def dispatch_on_one_worker(tmp_path, tasks: list[str], bad: str, misbehave: Callable[[], None],
                           then: Callable[[str], list] = lambda task: [], in_flight: int = 1,
                           **options) -> OneWorkerDispatch:
    """The one dispatch loop (every command's) on one model-free actor, one call at a time: a task's call returns
    the task, except `bad`'s, which calls `misbehave()` in the actor on every try; `then(task)`, run by the loop
    when a task is done, gives the tasks to queue next."""
    from sweep.fleet import dispatch
    fleet = one_worker_fleet(tmp_path)
    done, failed, notes, handed = [], [], [], []

    def submit(actor, task):
        handed.append(task)
        return actor.__ray_call__.remote(lambda worker, t=task: misbehave() if t == bad else t)
    try:
        with sweep_fakes.failing_if_stuck(120):
            dispatch(fleet, tasks, submit=submit, on_done=lambda task, value: done.append(value) or then(value),
                     on_failed=lambda task, error: failed.append((task, error)) or [], in_flight=in_flight,
                     poll=0.2, note=notes.append, **options)
    finally:
        fleet.stop()
    return OneWorkerDispatch(done, failed, notes, fleet.replaced, handed)


def test_a_task_that_hangs_every_time_fails_as_hung_and_its_ended_actor_takes_no_task(tmp_path):
    """The hang watch in the one dispatch loop (every command's): a call that never ends, on every new actor, is
    ended each time and fails after its tries with the reason; the other tasks are done.

    `first`'s result handler takes long enough that the actor, running `hangs` after `first`, is quiet past the
    limit when it ends, and queues `later` in that same loop turn: the ended actor still counts as up until the loop
    sees its calls die, and must not be handed `later` (which would die with it, costing a try)."""
    def then(task: str) -> list:
        if task != "first":
            return []
        time.sleep(1.2)            # past the stall limit: the hang watch ends the actor at the end of this turn
        return ["later"]
    run = dispatch_on_one_worker(tmp_path, ["first", "hangs"], "hangs", lambda: time.sleep(600), then=then,
                                 in_flight=2, max_crashes=2, stall_limit=1.0)
    assert run.done == ["first", "later"] and [task for task, _ in run.failed] == ["hangs"] and run.replaced == 2
    assert run.handed == ["first", "hangs", "hangs", "later"]
    assert run.failed[0][1].startswith("worker made no progress for 1s (hung) and was ended while running this task")
    assert len(run.notes) == 2 and all(re.match(r"worker 0 made no progress for \ds on 1 task \(hung\?\)", n)
                                       for n in run.notes), run.notes


@pytest.mark.slow   # five actor starts for --max-attempts 4 or more on one worker; run with --run-slow
def test_a_task_that_kills_its_actor_every_time_uses_all_its_tries_on_one_worker(tmp_path):
    """A batch that kills its actor whenever it runs, on one worker, with more tries than the deaths in a row that
    mean "the workers die whatever they run" (one slot: 3): it fails alone after its own tries instead of ending the
    run (it used to raise "workers keep dying" at its fourth death); the other task is done."""
    run = dispatch_on_one_worker(tmp_path, ["kills", "fine"], "kills", lambda: os._exit(1), max_crashes=4)
    assert run.done == ["fine"] and [task for task, _ in run.failed] == ["kills"] and run.replaced == 4
    assert run.failed[0][1].startswith("worker died while running this task")


def test_the_hang_watch_counts_only_running_calls_of_current_actors_and_ends_each_once(monkeypatch):
    """end_hung: quiet since the last progress (a call handed over, finished, or reporting steps); only calls still
    running on the slot's current actor count (a dead actor's task waits in the queue, perhaps for long); an actor
    is ended once; with progress unknown (the step counter unreadable) nobody is."""
    from types import SimpleNamespace
    from sweep.fleet import end_hung
    ended, notes = [], []
    monkeypatch.setattr(ray, "kill", lambda actor, **kwargs: ended.append(actor))
    slots = [SimpleNamespace(number=n, generation=1, actor=f"actor-{n}") for n in range(3)]
    owner = {"ref-a": (slots[0], 1, "a"), "ref-b": (slots[1], 1, "b"), "ref-old": (slots[2], 0, "old")}
    now = time.monotonic()
    active_at, hung = {(0, 1): now - 100, (1, 1): now - 100, (2, 0): now - 100}, set()
    end_hung(owner, active_at, hung, 50.0, None, notes.append)             # progress unknown: nobody
    assert ended == [] and hung == set()
    end_hung(owner, active_at, hung, 50.0, {"ref-b"}, notes.append)        # b reported steps just now
    assert ended == ["actor-0"] and hung == {id("a")} and notes[0].startswith("worker 0 made no progress for 1m4")
    end_hung(owner, active_at, hung, 50.0, set(), notes.append)            # once
    assert ended == ["actor-0"] and len(notes) == 1


def test_the_summary_counts_workers_replaced_and_workers_out_of_reach():
    from sweep.driver import SweepSummary
    summary = SweepSummary("s", 10, 10, 0, (), 61.0, 2, "gpu", 1, False, 8, out_of_reach=3)
    assert summary.lines() == ["store s: 10/10 items done (10 new in 1m01s, 2 gpu workers, batch 8, 1 replaced, 3 out "
                               "of reach for a while)"]
    assert "out of reach" not in SweepSummary("s", 10, 10, 0, (), 61.0, 2, "gpu", 0, False, 8).lines()[0]


def test_the_summary_counts_one_failed_or_missing_item_in_the_singular():
    from sweep.driver import SweepSummary
    failed = SweepSummary("s", 10, 9, 0, (("octave:-:3:-1:0", "injected"),), 61.0, 2, "gpu", 0, False, 8).lines()
    assert failed[1:] == ["1 item failed (recorded in s/failures/):", "  octave:-:3:-1:0: injected"]
    assert SweepSummary("s", 10, 9, 0, (), 61.0, 2, "gpu", 0, False, 8).lines()[1:] == [
        "1 item missing: run the same command again"]


def test_a_driver_whose_lease_another_took_stops_and_leaves_the_lease_to_it(tmp_path):
    """Another driver takes the store over mid-sweep (this one's heartbeats had failed for a lease timeout, say):
    at its next heartbeat this run sees it, stops its workers and says so, leaves the other's lease in place, and
    nothing it wrote is stored twice."""
    import json
    from sweep.lease import LEASE
    store = tmp_path / "s"
    intruder = {"host": "elsewhere", "pid": 1, "run": "intruder", "started": "2026-11-29T00:00:00+00:00",
                "heartbeat": time.time() + 3600}

    def take_over() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((store / IMAGES).glob("part-*")):
            time.sleep(0.05)
        (store / LEASE).write_text(json.dumps(intruder))
        sweep_fakes.mark("lease-taken")
    thief = threading.Thread(target=take_over, daemon=True)
    thief.start()
    with sweep_fakes.failing_if_stuck(180), pytest.raises(SweepError, match="another driver took the lease"):
        run_sweep(config(store, jobs="octave,opposite", batch_size=1, lease_timeout=2.0,
                         engine="sweep_fakes:after_takeover_slow_run_batch"), stream=io.StringIO())
    thief.join()
    assert json.loads((store / LEASE).read_text())["run"] == "intruder"      # not released as if it were ours
    written = pd.read_parquet(store / IMAGES, columns=["key"])
    assert 1 <= len(written) < 20 and written.key.is_unique


@pytest.mark.parametrize("worker, started, why", [
    ("sweep.worker:SweepWorker", "0 of 1 started", "no node has room for one"),     # asks for more CPUs than there are
    ("sweep_fakes:HangingSetupWorker", "1 of 1 started", "it hangs there: a stalled weight download")])
def test_a_first_worker_that_never_answers_is_given_up_on_in_one_line(tmp_path, worker, started, why):
    """No node with room for a worker (and no autoscaler), or a worker that starts and then hangs in its first call:
    instead of waiting forever, the run gives up after the wait (no_worker_wait; 1 s here) and says which it was."""
    fleet = one_worker_fleet(tmp_path, worker, cpus=4.0 if worker.startswith("sweep.") else 0.5)
    try:
        with sweep_fakes.failing_if_stuck(60), pytest.raises(SweepError) as raised:
            if started.startswith("1"):   # started before the 1-s wait counts, however busy this machine is
                ray.get(fleet.slots[0].actor.__ray_ready__.remote())
            fleet.first_ready(lambda actor: actor.setup.remote(None), gpu_wait=600, stream=io.StringIO(),
                              interval=0.2, give_up_after=1.0)
    finally:
        fleet.stop()
    assert str(raised.value).startswith("no worker was ready after ") and f"{started}, none answered" in str(
        raised.value) and why in str(raised.value) and "run the same command again" in str(raised.value)


@pytest.mark.slow   # a message only; 4 s with its slow-starting actor
def test_a_slow_first_worker_is_waited_for_aloud(tmp_path, monkeypatch):
    """A first worker that takes long to start (its node busy, its model slow to load) is waited for, not silently:
    the driver says how long it has waited and what the cluster has free."""
    import sweep.fleet as fleet_module
    monkeypatch.setattr(fleet_module, "QUIET_START", 0.5)
    fleet, out = one_worker_fleet(tmp_path, "sweep_fakes:SlowStartWorker"), io.StringIO()
    try:
        info = fleet.first_ready(lambda actor: actor.info.remote(), gpu_wait=600, stream=out, interval=0.2)
    finally:
        fleet.stop()
    assert info["device"] == "cpu" and fleet.started == 1
    assert "waiting for the first worker to be ready (placed on a node, model loaded, batch size chosen): " \
        in out.getvalue()
    assert "free in the cluster now: " in out.getvalue()


@pytest.mark.slow   # actor deaths and restarts; run with --run-slow
def test_a_batch_that_kills_its_actor_every_time_takes_no_other_batch_with_it(tmp_path):
    """One actor holds two batches; one of them kills it whenever it runs. Both are run again, each alone, so only
    the killer's items fail: the batch that was merely beside it is stored."""
    store, out = tmp_path / "s", io.StringIO()
    where = ClusterConfig(workers=1, device="cpu", cpus_per_worker=0.5, progress_every=1.0, in_flight=2)
    summary = run_sweep(config(store, jobs="octave", classes="0-5", batch_size=2, max_attempts=2, cluster=where,
                               engine="sweep_fakes:killer_run_batch"), stream=out)
    killed_batch = {key for key, _ in summary.failed}
    assert len(killed_batch) == 2 and all("worker died" in error for _, error in summary.failed), out.getvalue()
    stored = assert_exactly_once(store, 4)
    assert sorted(stored.key) == sorted(set(stored.key)) and not killed_batch & set(stored.key)
    assert summary.done == 4 and summary.actors_replaced >= 2


def test_more_cpus_per_worker_than_a_local_ray_has_is_refused_instead_of_waiting_forever(tmp_path):
    where = ClusterConfig(cpus_per_worker=4, progress_every=1.0)   # the module's Ray has 2 CPUs: no room, ever
    with sweep_fakes.failing_if_stuck(60), pytest.raises(SweepError, match="--cpus-per-worker 4: .* 2 CPUs"):
        run_sweep(config(tmp_path / "s", jobs="octave", classes="0-1", cluster=where), stream=io.StringIO())


class TerminalStream(io.StringIO):
    """What a terminal gets: the progress draws its bar (tqdm) on a stream whose `isatty()` is true."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("command", ["run", "score", "features"])
def test_a_command_stopped_by_an_error_closes_its_progress_bar_before_the_error_is_said(tmp_path, command):
    """The bar on a terminal is closed (its line ended) by the time the error leaves the command, wherever it
    stopped (here: refused once the Ray session had begun, before any worker): left open, the CLI's `Error: ...`
    line ran on from the bar's, `sweep run`'s on every error and the others' on one before their fleet started."""
    from sweep.score import ScoreConfig, run_score
    where = ClusterConfig(cpus_per_worker=4)   # the module's Ray has 2 CPUs: no worker could ever start
    store = tmp_path / "s"
    if command != "run":
        sweep_fakes.build_store(store, classes="0-1", jobs="octave", pairs=None)
    run = {"run": lambda out: run_sweep(config(store, jobs="octave", classes="0-1", cluster=where), stream=out),
           "score": lambda out: run_score(ScoreConfig(str(store), "digits", "random", cluster=where), stream=out),
           "features": lambda out: run_features(FeatureConfig(str(store), "block2", (0,), cluster=where), stream=out)}
    out = TerminalStream()
    with sweep_fakes.failing_if_stuck(60):
        try:
            run[command](out)
        except SweepError as error:   # read here, as the CLI says it: the error's traceback still holds the command
            error_line, shown = str(error), out.getvalue()
        else:
            pytest.fail("the command did not stop")
    assert re.match(r"--cpus-per-worker 4: .* 2 CPUs", error_line)
    assert "%|" in shown and shown.endswith("\n"), repr(shown[-200:])


def test_progress_drops_the_steps_a_dead_actor_reported_for_a_batch_that_runs_again(tmp_path):
    """A batch whose actor died runs again under a new token: the steps the dead actor had reported for it must
    leave the progress, or the batch counts almost twice (100% and ETA 0s with work still running)."""
    from types import SimpleNamespace
    from sweep.driver import SweepDispatch, Task
    from sweep.progress import Progress
    from sweep.worker import StepCounter
    prepared = prepare(config(tmp_path / "s", jobs="octave", classes="0-3"))
    counter = ray.remote(StepCounter).options(num_cpus=0).remote()
    progress = Progress(4, work_total=1000, stream=io.StringIO(), interval=10)
    sweep = SweepDispatch(prepared.config, prepared.store, prepared.schedule, progress, counter)
    actor = SimpleNamespace(run=SimpleNamespace(remote=lambda *args: None))
    task = Task(prepared.plan.batches()[0], (1, 1, 1, 1))
    sweep.submit(actor, task)
    ray.get(counter.report.remote(task.token, 600))    # the first actor got far, then died
    sweep.submit(actor, task)                           # dispatch runs the same task again on a new actor
    sweep.tick()
    assert progress.work == 0


@pytest.fixture(scope="module")
def actor_deaths(tmp_path_factory):
    """One sweep whose actors die twice: between a batch's render and its write, and after another batch's write
    but before its report (sweep_fakes.DieAroundWriteWorker)."""
    store = tmp_path_factory.mktemp("deaths") / "s"
    return store, run_sweep(config(store, **sweep_fakes.ACTOR_DEATHS), stream=io.StringIO())


def test_actor_dying_after_writing_before_reporting_leaves_no_duplicate(actor_deaths):
    sweep_fakes.assert_a_death_after_writing_left_no_duplicate(*actor_deaths)   # S3 twin: test_object_stores.py


def test_failures_are_retried_recorded_and_reported(tmp_path):
    store = tmp_path / "s"
    summary = run_sweep(config(store, jobs="octave", batch_size=2, max_attempts=3,
                               engine="sweep_fakes:misbehaving_run_batch"), stream=io.StringIO())
    # batches of two classes: [2, 3] loses 3 on every try, [4, 5] loses 4 once, [6, 7] raises on every try
    assert (sweep_fakes.FAIL_TARGET, sweep_fakes.FLAKY_TARGET, sweep_fakes.RAISE_TARGET) == (3, 4, 7)
    key = "octave:-:{}:-1:0".format
    assert not summary.complete and summary.exit_status == 1 and summary.done == 7
    assert dict(summary.failed).keys() == {key(3), key(6), key(7)}
    assert "injected" in dict(summary.failed)[key(3)] and "engine exploded" in dict(summary.failed)[key(6)]
    assert any(key(3) in line for line in summary.lines())
    failures = pd.read_parquet(store / FAILURES)
    assert failures.groupby("key").attempt.apply(sorted).to_dict() == {
        key(3): [1, 2, 3], key(4): [1], key(6): [1, 2, 3], key(7): [1, 2, 3]}
    # The next run retries only the missing items, numbering their tries on from the recorded ones.
    again = run_sweep(config(store, jobs="octave", batch_size=2, max_attempts=1,
                             engine="sweep_fakes:misbehaving_run_batch"), stream=io.StringIO())
    assert again.done_before == 7 and again.done == 7 and again.workers == 1
    assert pd.read_parquet(store / FAILURES).groupby("key").attempt.max().to_dict() == {
        key(3): 4, key(4): 1, key(6): 4, key(7): 4}


def test_an_interrupted_run_still_lists_the_items_it_gave_up_on(tmp_path, monkeypatch):
    """Ctrl-C after an item failed for good: the summary says it failed (and where it is recorded), as a run that
    ends by itself does, instead of an interruption line alone."""
    from sweep.driver import SweepDispatch
    real = SweepDispatch.settle

    def settle_then_interrupt(self, task, failed):
        retry = real(self, task, failed)
        if self.given_up:
            raise KeyboardInterrupt     # as Ctrl-C in the dispatch loop, right after the give-up
        return retry
    monkeypatch.setattr(SweepDispatch, "settle", settle_then_interrupt)
    summary = run_sweep(config(tmp_path / "s", jobs="octave", batch_size=2, max_attempts=1,
                               engine="sweep_fakes:failing_run_batch"), stream=io.StringIO())
    bad = f"octave:-:{sweep_fakes.FAIL_TARGET}:-1:0"
    assert summary.interrupted and dict(summary.failed).keys() == {bad}, summary.lines()
    assert any(line.startswith("1 item failed") for line in summary.lines())


def test_a_run_interrupted_while_its_first_worker_starts_says_no_worker_ran(tmp_path, monkeypatch):
    """Ctrl-C while the run waits for its first worker (placed, model loaded; GPU nodes may take minutes): the summary
    is the one of a run stopped before any worker started, not one that counts the fleet it was still waiting for."""
    from sweep.fleet import FleetRun
    from sweep.interrupts import INTERRUPTED

    def interrupted(self, worker_config, first_call):
        raise KeyboardInterrupt          # as Ctrl-C in `first_ready`'s wait
    monkeypatch.setattr(FleetRun, "start", interrupted)
    summary = run_sweep(config(tmp_path / "s", jobs="octave"), stream=io.StringIO())
    assert summary.interrupted and summary.lines() == [f"store {summary.store}: 0/10 items done", INTERRUPTED]


def test_a_corrected_command_into_a_store_with_no_image_drops_the_old_failures(tmp_path):
    """A first run that stored failures but no image (a wrong schedule, say) does not hold the store to its settings:
    the corrected command's run deletes the old attempts, so that its own tries count from 1."""
    store = Store.open(str(tmp_path / "s"))
    store.write_manifest(prepare(config(store.uri, jobs="octave", classes="0-1", schedule="digits")).manifest)
    old = [store.write_table(f"{FAILURES}/part-00000{i}-octave-0-a1.parquet", failures_table(
        [(JobSpec("octave", i), 1, "injected")], "w")) for i in range(2)]
    assert store.files(FAILURES) == old
    summary = run_sweep(config(store.uri, jobs="octave", classes="0-1"), stream=io.StringIO())
    assert summary.complete and summary.done == 2 and store.files(FAILURES) == []
    assert store.read_manifest()["schedule"] == "tiny"


def test_feature_pass_writes_features_parquet(full_sweep):
    store = full_sweep[0]
    written = run_features(FeatureConfig(store=str(store), layer="block3", maps=(0, 4), cluster=ClusterConfig(
        workers=1, cpus_per_worker=0.5, progress_every=1.0)), stream=io.StringIO())   # 10 images: one actor
    path, rows = written.path, written.images
    assert written.sides == (32,) and written.lines()[0].endswith("at 32 px (resized, --feature-size input)")
    frame = pd.read_parquet(path)
    assert rows == 10 and list(frame.columns) == ["key", "target", "target_name", "layer", "feature_size", "side",
                                                  "map_0", "map_4"]
    assert frame.target.tolist() == list(range(10)) and (frame.layer == "block3").all()
    assert (frame.feature_size == "input").all() and (frame.side == 32).all()   # the digits model's input size
    assert frame.map_0.dtype == np.float32 and frame.key.str.startswith("octave:").all()
    assert path == str(store / "analysis" / "features.parquet")


def test_sigterm_stops_cleanly_and_the_next_run_resumes(tmp_path):
    store = tmp_path / "s"
    sweep = config(store, jobs="octave", batch_size=2, engine="sweep_fakes:slow_run_batch")

    def terminate_after_first_file():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((store / IMAGES).glob("part-*")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)     # what `ray job stop` or a batch scheduler sends

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=terminate_after_first_file)
    thread.start()
    stopped = run_sweep(sweep, stream=io.StringIO())
    thread.join()
    assert stopped.interrupted and stopped.exit_status == 130 and 0 < stopped.done < 10
    assert "interrupted: run the same command again to resume" in stopped.lines()
    assert signal.getsignal(signal.SIGTERM) is before          # the sweep's handler is gone again
    resumed = run_sweep(sweep, stream=io.StringIO())
    assert resumed.done_before == stopped.done and resumed.complete
    assert_exactly_once(store, 10)


def test_actor_dying_between_render_and_write_reruns_the_batch(actor_deaths):
    sweep_fakes.assert_a_death_before_writing_reran_the_batch(*actor_deaths)   # S3 twin: test_object_stores.py


class Damaged(NamedTuple):
    store: Path
    lost: set          # keys of the files deleted (as if never written)
    bad: Path          # the truncated file
    unreadable: set    # its keys
    summary: object    # of the resume
    output: str
    reads: dict        # images/ file name -> how many times the resume's driver read it
    worker_config: WorkerConfig   # the resume's, as its fleet got it


@pytest.fixture(scope="module")
def damaged_and_resumed(full_sweep, tmp_path_factory) -> Damaged:
    """A copy of the full sweep's store that lost its first two files and had its third truncated, then resumed
    with another batch size (3) on one worker instead of two, with batch norms folded (`--fold-batchnorm`, off by
    default on the CPU) and with `--fp16` (a GPU option: ignored on the CPU): one resume for the tests of what it
    does."""
    from sweep.fleet import FleetRun
    store = Path(shutil.copytree(full_sweep[0], tmp_path_factory.mktemp("damaged") / "s"))
    files = sorted((store / IMAGES).glob("*.parquet"))
    keys = [set(pq.read_table(path, columns=["key"]).column("key").to_pylist()) for path in files[:3]]
    for path in files[:2]:
        path.unlink()
    bad = files[2]
    bad.write_bytes(bad.read_bytes()[:64])
    out, reads, read_file, start, started = io.StringIO(), collections.Counter(), Store.read_file, FleetRun.start, []

    def counted(self, path, columns=None):
        if Path(path).parent.name == IMAGES:
            reads[Path(path).name] += 1
        return read_file(self, path, columns)
    def recorded_start(self, worker_config, first_call):
        started.append(worker_config)
        return start(self, worker_config, first_call)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "read_file", counted)
        patch.setattr(FleetRun, "start", recorded_start)
        resume = {**FULL, "batch_size": 3, "workers": 1, "fold_batchnorm": True, "bf16": False,
                  "fp16": True}   # bf16 and fp16 as `--fp16` sets them
        summary = run_sweep(config(store, **resume), stream=out)
    return Damaged(store, keys[0] | keys[1], bad, keys[2], summary, out.getvalue(), dict(reads), *started)


def test_auto_batch_is_recorded_and_a_resume_with_another_batch_size_completes_once(full_sweep, damaged_and_resumed):
    store, first = full_sweep[:2]                    # the full sweep ran with the automatic batch size
    manifest = Store.open(str(store)).read_manifest()
    (run,) = manifest["runs"]
    rows = [pq.read_metadata(p).num_rows for p in (store / IMAGES).iterdir()]
    assert first.complete and run["batch_size"] == first.batch_size == max(rows)
    assert run["batch_size_option"] == "auto" and run["device"] == "cpu" and "batch_size" not in manifest["options"]
    damaged = damaged_and_resumed
    again = damaged.summary
    missing = len(damaged.lost) + len(damaged.unreadable)
    assert again.complete and again.done_before == FULL_ITEMS - missing and again.batch_size == 3
    assert [r["batch_size"] for r in Store.open(str(damaged.store)).read_manifest()["runs"]] == [run["batch_size"], 3]
    assert damaged.lost <= set(assert_exactly_once(damaged.store, FULL_ITEMS).key)


def test_each_run_records_whether_its_workers_folded_batch_norms(damaged_and_resumed):
    """`--fold-batchnorm` reaches the workers (a setting of the run, not of the store: a resume may change it), and
    the manifest's run record says what the workers did: off on the CPU unless asked."""
    runs = Store.open(str(damaged_and_resumed.store)).read_manifest()["runs"]
    assert [(r["device"], r["fold_batchnorm"]) for r in runs] == [("cpu", False), ("cpu", True)]


def test_each_run_records_its_autocast_and_fp16_reaches_the_workers(damaged_and_resumed):
    """`--fp16` is a setting of the run, not of the store (a resume may add or drop it, as with bf16): it reaches
    the workers, and the manifest's run record says what they did: no autocast on the CPU, bf16 or fp16."""
    damaged = damaged_and_resumed
    assert damaged.summary.complete and (damaged.worker_config.fp16, damaged.worker_config.bf16) == (True, False)
    runs = Store.open(str(damaged.store)).read_manifest()["runs"]
    assert [(r["device"], r["bf16"], r["fp16"]) for r in runs] == [("cpu", False, False), ("cpu", False, False)]
    assert "fp16" not in Store.open(str(damaged.store)).read_manifest()["options"]


def test_a_resume_reads_each_images_file_once(damaged_and_resumed):
    """The quarantine pass reads every images/ file's keys, which the resume's pending work takes; its summary reads
    only the files the run wrote (three reads of each before: the quarantine pass, the pending work, the summary)."""
    damaged = damaged_and_resumed
    now = {path.name for path in (damaged.store / IMAGES).glob("*.parquet")}
    assert damaged.reads == {name: 1 for name in now | {damaged.bad.name}}
    assert damaged.summary.complete and damaged.summary.done == FULL_ITEMS     # counted from known and new files


def test_prepare_records_each_jobs_schedule_and_input_convention(tmp_path):
    """Per-job schedules: the model's defaults, a --job-schedule override, all in the manifest (before Ray)."""
    from sweep.driver import SweepConfig, prepare
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", jobs="octave,dream",
                                   classes="0-1", sample_images=True, job_schedules=("dream=tiny",)))
    recorded = prepared.manifest["job_schedules"]
    assert recorded["octave"] == {"schedule": "digits", "schedule_id": prepared.schedule.for_job("octave").id,
                                  "input": "normalized"}
    assert recorded["dream"]["schedule"] == "tiny" and recorded["dream"]["input"] == "raw"
    assert prepared.manifest["schedule_id"] == prepared.schedule.id and not (tmp_path / "s").exists()


def test_an_unreadable_file_is_quarantined_and_its_items_run_again_exactly_once(damaged_and_resumed):
    """Issue 15.4: `sweep run` moves a truncated images/ file into quarantine/ and re-runs its items, once."""
    damaged = damaged_and_resumed
    summary = damaged.summary
    assert summary.complete and summary.done - summary.done_before == len(damaged.unreadable) + len(damaged.lost)
    assert f"moved {damaged.bad} into" in damaged.output and "(unreadable: " in damaged.output
    assert "its items run again" in damaged.output
    assert (damaged.store / "quarantine" / IMAGES / damaged.bad.name).exists()
    assert damaged.unreadable <= set(assert_exactly_once(damaged.store, FULL_ITEMS).key)
    assert not (damaged.store / "lease.json").exists()         # released when the run ends
    again = run_sweep(config(damaged.store, **FULL), stream=io.StringIO())
    assert again.done == again.done_before == FULL_ITEMS       # nothing left: once


def test_pending_tasks_of_a_new_store_are_the_plans_own_batches_at_any_size():
    """Batch names are file names: a run's tasks must cut the plan exactly as `Plan.batches` does, or a resume
    would write its items into other files."""
    import dataclasses
    from sweep.driver import Pending
    from sweep.plan import make_plan
    plan = make_plan(n_classes=6, jobs="octave,opposite,addition", pairs="0+1,2+3,4+5", seeds=2, batch_size=4)
    for size in (None, 1, 3, 4, 50):
        expected = plan if size is None else dataclasses.replace(plan, batch_size=size)
        assert [(t.batch.index, t.batch.name) for t in Pending(plan, frozenset(), {}).tasks(size)] == \
            [(b.index, b.name) for b in expected.batches()]


def test_item_work_counts_each_items_steps_under_its_jobs_schedule():
    from jobs.catalog import JobSpec
    from jobs.schedules import default_schedules, schedule_set
    from sweep.driver import item_work
    from sweep.worker import item_steps
    schedules = schedule_set(default_schedules("digits", ("octave", "opposite")), "tiny", {"opposite": "digits"})
    items = [JobSpec("octave", 0), JobSpec("opposite", 1), JobSpec("octave", 2, seed=1)]
    assert item_steps(schedules, "octave") != item_steps(schedules, "opposite")
    assert item_work(schedules, items) == 2 * item_steps(schedules, "octave") + item_steps(schedules, "opposite")
    assert item_work(schedules, []) == 0


def test_a_resume_with_trajectories_lands_every_row_once(tmp_path):
    """`--trajectory`: a batch whose images never landed (its trajectory rows did: they are written first) runs
    again on the resume, and its rows replace the first ones: every image's rows once (test_trajectories: what the
    analysis and the videos make of them)."""
    from jobs.render import TrajectoryOptions
    from sweep.store import TRAJECTORIES
    store, trajectory = tmp_path / "s", TrajectoryOptions(every=2, snapshots=2)
    # The first run's files as its workers write them (in-process); the resume runs through the driver and Ray.
    sweep_fakes.build_store(store, jobs="octave", classes="0-5", pairs=None, batch_size=2, trajectory=trajectory)
    sorted((store / IMAGES).iterdir())[0].unlink()
    where = ClusterConfig(cpus_per_worker=1.0, workers=1, device="cpu", progress_every=1.0)
    again = run_sweep(config(store, jobs="octave", classes="0-5", batch_size=2, trajectory=trajectory, cluster=where),
                      stream=io.StringIO())
    assert again.complete and again.done_before == 4
    images = pd.read_parquet(store / IMAGES, columns=["key"])
    rows = pd.read_parquet(store / TRAJECTORIES, columns=["key", "step"])
    assert len(images) == 6 and images.key.is_unique
    assert set(rows.key) == set(images.key) and len(rows) == 6 * 2 and not rows.duplicated().any()


def test_pending_work_cuts_batches_of_the_missing_items_only_and_continues_try_numbers():
    from sweep.driver import Pending
    from sweep.plan import make_plan
    plan = make_plan(n_classes=5, jobs="octave", batch_size=2)            # items 0-4 in batches [0 1] [2 3] [4]
    keys = [item.key for item in plan.items()]
    pending = Pending(plan, frozenset({keys[1]}), {keys[3]: 2})           # 1 stored; 3 failed twice before
    assert [item.key for item in pending.items] == [keys[0], keys[2], keys[3], keys[4]] and pending.total == 5
    assert [(t.batch.keys, t.attempts) for t in pending.tasks()] == [
        ((keys[0],), (1,)), ((keys[2], keys[3]), (1, 3)), ((keys[4],), (1,))]   # the same boundaries as a first run
    assert [(t.batch.keys, t.attempts) for t in pending.tasks(3)] == [
        ((keys[0], keys[2]), (1, 1)), ((keys[3], keys[4]), (3, 1))]          # another size: batches of 3, item 1 out
