"""The fleet of actors on a local Ray (2 CPUs, 2 fake GPUs, started once for the module): the one dispatch loop's
hang watch, actors that never start, die at start, hang or drop out of reach, and the first worker's wait. A module
of its own (out of test_driver.py) so that `make test`'s processes share the actor-heavy tests."""
from __future__ import annotations

import io
import os
import re
import time
from typing import Callable, NamedTuple

import pytest

import sweep_fakes
from sweep.driver import run_sweep
from sweep.fleet import ClusterConfig, SweepError
from sweep_fakes import assert_exactly_once, one_worker_fleet, tiny_sweep

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory):
    sweep_fakes.start_ray_with_markers(tmp_path_factory.mktemp("markers"))
    yield
    ray.shutdown()


def test_more_workers_than_gpus_finish_on_the_actors_that_start(tmp_path):
    """--workers 3 on 2 GPUs and no autoscaler: the third actor never starts, so it must hold no batch; the two
    that start run the whole sweep instead of it waiting forever on that actor's share."""
    store, out = tmp_path / "s", io.StringIO()
    where = ClusterConfig(workers=3, device="gpu", cpus_per_worker=0.5, progress_every=1.0, in_flight=2)
    with sweep_fakes.failing_if_stuck(240):
        summary = run_sweep(tiny_sweep(store, jobs="octave", batch_size=2, cluster=where,
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
        summary = run_sweep(tiny_sweep(store, jobs="octave", batch_size=2, cluster=where,
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
    summary = run_sweep(tiny_sweep(store, jobs="octave", batch_size=2), stream=out)
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
        summary = run_sweep(tiny_sweep(store, jobs="octave", batch_size=2, cluster=where,
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
    summary = run_sweep(tiny_sweep(store, jobs="octave", classes="0-5", batch_size=2, max_attempts=2, cluster=where,
                               engine="sweep_fakes:killer_run_batch"), stream=out)
    killed_batch = {key for key, _ in summary.failed}
    assert len(killed_batch) == 2 and all("worker died" in error for _, error in summary.failed), out.getvalue()
    stored = assert_exactly_once(store, 4)
    assert sorted(stored.key) == sorted(set(stored.key)) and not killed_batch & set(stored.key)
    assert summary.done == 4 and summary.actors_replaced >= 2
