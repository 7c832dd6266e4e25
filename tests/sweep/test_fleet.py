"""Without Ray: the refusals of `--device gpu` where no GPU can ever come, and `--batch-size auto|N`."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from sweep.cli import BatchSize, main


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_gpu_on_a_local_ray_without_gpus_is_refused_before_ray(tmp_path):
    ray = pytest.importorskip("ray")
    store = tmp_path / "s"
    result = CliRunner().invoke(main, ["run", "--store", str(store), "--model", "digits", "--weights", "random",
                                       "--schedule", "tiny", "--device", "gpu"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --device gpu") and "no GPU" in lines[0]
    assert not store.exists() and not ray.is_initialized()


def test_batch_size_option_takes_auto_or_a_positive_number(tmp_path):
    kind = BatchSize()
    assert kind.convert("auto", None, None) is None and kind.convert("AUTO", None, None) is None
    assert kind.convert("12", None, None) == 12
    for bad, fragment in (("0", "at least 1"), ("big", "neither auto nor")):
        result = CliRunner().invoke(main, ["run", "--store", str(tmp_path / "s"), "--model", "digits",
                                           "--batch-size", bad])
        assert result.exit_code == 2 and fragment in result.output and not (tmp_path / "s").exists()


def test_a_driver_joining_a_cluster_hands_its_store_settings_but_no_secret_to_the_workers(monkeypatch):
    import ray
    from sweep.fleet import ClusterConfig, ray_session
    from sweep.store import STORE_SETTING_VARIABLES, store_settings
    environ = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
               "AWS_ACCESS_KEY_ID": "id", "CLOUD_STORAGE_EMULATOR_ENDPOINT": "", "HOME": "/root"}
    assert store_settings(environ) == {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1"}
    for name in STORE_SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with ray_session(ClusterConfig(address="10.0.0.1:6379")):
        pass
    assert calls[0]["address"] == "10.0.0.1:6379"
    assert calls[0]["runtime_env"] == {"env_vars": {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1"}}
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_REGION")
    with ray_session(ClusterConfig(address="10.0.0.1:6379")):
        pass
    assert "runtime_env" not in calls[1]                 # nothing set here: the nodes' own settings stay


def test_an_address_nothing_answers_at_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    import socket
    import ray
    monkeypatch.setattr(ray, "is_initialized", lambda: False)   # as in a fresh `sweep` process
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]                    # closed again: nothing listens there
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        line = refused_run(tmp_path / "s", "--address", address)
        assert line.startswith(f"Error: cannot join the Ray cluster at {address}: connection refused")


def refused_run(store, *options) -> str:
    """`sweep run` of a tiny digits sweep with `options`, refused in one line before `store` is written: the line."""
    result = CliRunner().invoke(main, ["run", "--store", str(store), "--model", "digits", "--weights", "random",
                                       "--schedule", "tiny", "--classes", "0-1", "--jobs", "octave", *options])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert not store.exists()
    return lines[0]


def test_addresses_the_reachability_check_leaves_to_ray():
    from sweep.fleet import check_reachable
    for address in ("auto", "local", "http://127.0.0.1:8265", "head-node"):
        check_reachable(address, timeout=0.1)            # not HOST:PORT: Ray resolves these itself


def test_a_run_that_lost_its_workers_waits_at_least_ten_minutes_for_new_ones():
    """A replacement actor needs time to start: a short --gpu-wait (0: do not wait for GPU nodes) must not end a
    run the moment its only actor dies."""
    from sweep.fleet import NO_WORKER_WAIT, ClusterConfig, no_worker_wait
    assert no_worker_wait(ClusterConfig(gpu_wait=0)) == NO_WORKER_WAIT == 600
    assert no_worker_wait(ClusterConfig(gpu_wait=3600)) == 3600


def test_an_address_whose_port_is_not_ascii_digits_is_left_to_ray_not_a_traceback():
    from sweep.fleet import check_reachable
    assert check_reachable("localhost:\u00b2", timeout=0.1) is None    # "²" passed str.isdigit(), then int() raised


def test_more_cpus_per_worker_than_a_local_ray_would_have_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """A walk-through saw this refused only after Ray had started (10 s), with exit status 1 and a manifest left."""
    import ray
    from sweep.fleet import local_cpus
    monkeypatch.setattr(ray, "is_initialized", lambda: False)   # as in a fresh `sweep` process
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    too_many = f"{local_cpus() + 1:g}"
    line = refused_run(tmp_path / "s", "--cpus-per-worker", too_many)
    assert line.startswith(f"Error: --cpus-per-worker {too_many}: the local Ray would have")


class FakeCall:
    """A call of a fake actor (`dispatch` with Ray faked in-process): what `ray.get` gives or raises for it."""

    def __init__(self, actor, task=None, outcome=None) -> None:
        self.actor, self.task, self.outcome = actor, task, outcome


def fake_actor(number: int, generation: int, run=None):
    """A fake actor handle: `__ray_ready__.remote()` answers at once; `run.remote(...)` is `run` (None: none)."""
    from types import SimpleNamespace
    name = f"{number}.{generation}"
    return SimpleNamespace(name=name, __ray_ready__=SimpleNamespace(remote=lambda: FakeCall(name)),
                           run=SimpleNamespace(remote=run))


class FakeFleet:
    """`dispatch`'s view of a fleet, without Ray: `count` slots up from the start; a replaced actor must be pinged."""

    def __init__(self, count: int, run=None) -> None:
        from sweep.fleet import Slot
        self.run = run
        self.slots = [Slot(n, fake_actor(n, 0, run), up=True, ever_up=True) for n in range(count)]
        self.replaced = 0

    @staticmethod
    def to_ping(slot, pinged) -> bool:
        from sweep.fleet import Fleet
        return Fleet.to_ping(slot, pinged)

    def mark_up(self, slot) -> None:
        slot.up = True

    def replace(self, slot) -> None:
        slot.generation += 1
        slot.actor, slot.up = fake_actor(slot.number, slot.generation, self.run), False
        self.replaced += 1

    def counts_as_death(self, slot, error) -> bool:
        return True


def fake_ray(monkeypatch, live: list[FakeCall]) -> None:
    """`ray.wait` (a started actor's ping first, then the oldest call) and `ray.get` (a call's outcome, raised when it
    is an error) in-process; `live` holds the calls handed over and not yet answered, oldest first."""
    import ray
    waits = [0]

    def wait(refs, num_returns=1, timeout=None):
        waits[0] += 1
        assert waits[0] < 1000, "the loop no longer ends"
        assert refs, "a wait on nothing returns at once: the loop spins"   # ray.wait([]) does not wait
        ready = [next((ref for ref in refs if ref.task is None), refs[0])] if refs else []
        return ready, [ref for ref in refs if ref not in ready]

    def get(ref, timeout=None):
        if ref in live:
            live.remove(ref)
        if isinstance(ref.outcome, Exception):
            raise ref.outcome
        return ref.outcome

    monkeypatch.setattr(ray, "wait", wait)
    monkeypatch.setattr(ray, "get", get)


def test_dispatch_holds_at_most_in_flight_calls_per_actor_and_a_task_whose_actor_died_runs_alone(monkeypatch):
    """The loop's bookkeeping per actor, with Ray faked (no Ray started): no actor ever holds more than `in_flight`
    calls, and each is kept busy up to that; a task whose actor died runs again on an actor holding nothing else,
    which takes no other task while it runs; the dead actor's other call still counts as done; every task ends
    once."""
    from ray.exceptions import RayError
    from sweep.fleet import dispatch
    in_flight, tasks = 2, [f"t{n}" for n in range(20)]
    live: list[FakeCall] = []                     # calls handed over and not yet answered, oldest first
    handed, done = [], []

    def submit(actor, task):
        holding = [call for call in live if call.actor is actor]
        handed.append((actor.name, task, len(holding), [call.task for call in holding]))
        died = task == "t4" and not any(t == "t4" for _, t, _, _ in handed[:-1])
        call = FakeCall(actor, task, RayError("injected: the actor died") if died else task)
        live.append(call)
        return call

    fake_ray(monkeypatch, live)
    fleet = FakeFleet(3)
    dispatch(fleet, tasks, submit=submit, on_done=lambda task, value: done.append(value) or [],
             on_failed=lambda task, error: pytest.fail(error), in_flight=in_flight, poll=0.0)
    assert sorted(done) == sorted(tasks) and fleet.replaced == 1
    assert max(holding for _, _, holding, _ in handed) == in_flight - 1    # the bound, reached and never passed
    tries = [i for i, (_, task, _, _) in enumerate(handed) if task == "t4"]
    name, _, holding, _ = handed[tries[1]]
    assert len(tries) == 2 and holding == 0                                  # run again on an actor holding nothing
    later = handed[tries[1] + 1:]
    assert later and all("t4" not in others for n, _, _, others in later if n == name), later   # and alone


def sweep_dispatch(store, max_attempts: int = 3):
    """The sweep's handlers (`SweepDispatch`) on a digits store without Ray: tiny schedule, no step counter."""
    import io
    from jobs.schedules import load_schedule
    from sweep.driver import SweepConfig, SweepDispatch
    from sweep.progress import Progress
    from sweep.store import Store
    config = SweepConfig(store=str(store), schedule="tiny", max_attempts=max_attempts)
    return SweepDispatch(config, Store.open(str(store)), load_schedule("tiny"), Progress(10, stream=io.StringIO()),
                         None)


@pytest.mark.parametrize("first_call", ["dies", "fails"])
def test_an_item_whose_actor_dies_every_time_gets_max_attempts_tries_in_all(tmp_path, monkeypatch, first_call):
    """`--max-attempts` is the tries per item in one run, whatever ends a try: a batch that kills its actor every
    time (or hangs every time) is tried that often in all, then given up, not max_attempts tries of max_attempts
    deaths each (a run on a few workers then stopped with "workers keep dying"); a try the engine failed counts
    too. The other batch is done. Each call is the next try in the try numbers too: the workers record failures
    with them, and the driver records the last death with the last call's (a death's re-run was numbered as the
    call that died, so failures/ said try 1 after three)."""
    import pandas as pd
    from ray.exceptions import RayError
    from sweep.driver import Task, item_work
    from sweep.fleet import dispatch
    from sweep.plan import make_plan
    from sweep.store import FAILURES, IMAGES
    from sweep.worker import BatchReport
    killer, fine = make_plan(n_classes=10, jobs="octave", classes="0-3", batch_size=2).batches()
    live: list[FakeCall] = []
    calls, numbers = [], {}

    def run(batch, attempts, token):
        calls.append(batch.index)
        numbers.setdefault(batch.index, []).append(attempts)
        if batch.index == fine.index:   # written (a worker writes a batch's file before it reports it done)
            (tmp_path / "s" / IMAGES).mkdir(parents=True, exist_ok=True)
            (tmp_path / "s" / IMAGES / f"{batch.name}.parquet").touch()
            outcome = BatchReport(batch.index, batch.keys, (), 0.0, "w")
        elif first_call == "fails" and len([c for c in calls if c == killer.index]) == 1:
            outcome = BatchReport(batch.index, (), tuple((key, "engine failed") for key in batch.keys), 0.0, "w")
        else:
            outcome = RayError("injected: the actor died")
        call = FakeCall(None, batch.index, outcome)
        live.append(call)
        return call

    fake_ray(monkeypatch, live)
    sweep = sweep_dispatch(tmp_path / "s")
    tasks = [Task(killer, (1, 1)), Task(fine, (1, 1))]
    dispatch(FakeFleet(1, run), tasks, **sweep.handlers(), in_flight=1, poll=0.0)   # as `sweep run` gives them
    assert calls.count(killer.index) == 3 and calls.count(fine.index) == 1
    assert set(sweep.given_up) == set(killer.keys) and all("worker died" in e for e in sweep.given_up.values())
    assert sweep.finished_work == item_work(sweep.schedule, [*killer.items, *fine.items])
    failures = pd.read_parquet(tmp_path / "s" / FAILURES)     # the driver's record of the deaths (a fake engine
    assert sorted(failures.key) == sorted(killer.keys)        # failure writes none)
    assert numbers == {killer.index: [(1, 1), (2, 2), (3, 3)], fine.index: [(1, 1)]}
    assert set(failures.attempt) == {3}


def test_while_every_actor_is_out_of_reach_the_loop_waits_instead_of_spinning(monkeypatch):
    """An actor Ray cannot reach rests UNREACHABLE_RETRY seconds before it is pinged again; while every actor rests
    and none holds a call there is nothing for `ray.wait` to wait on (it returns at once), so the loop sleeps instead
    of spinning a core for up to UNREACHABLE_GRACE seconds. Then the actor answers and the task runs again there."""
    import sweep.fleet
    from ray.exceptions import ActorUnavailableError
    from sweep.fleet import Fleet, dispatch
    live: list[FakeCall] = []
    outcomes = [ActorUnavailableError("injected: a network blip", None), "done"]

    def run(task):
        call = FakeCall(None, task, outcomes.pop(0))
        live.append(call)
        return call

    class BlippingFleet(FakeFleet):             # the fleet's own handling of an actor out of reach
        out_of_reach = 0
        unreachable = Fleet.unreachable
        counts_as_death = Fleet.counts_as_death

    fake_ray(monkeypatch, live)
    monkeypatch.setattr(sweep.fleet, "UNREACHABLE_RETRY", 0.2)   # a shorter rest: the test's time
    fleet, done = BlippingFleet(1, run), []
    dispatch(fleet, ["t"], submit=lambda actor, task: actor.run.remote(task), in_flight=1, poll=0.05,
             on_done=lambda task, value: done.append(value) or [], on_failed=lambda task, error: pytest.fail(error))
    assert done == ["done"] and fleet.out_of_reach == 1 and fleet.replaced == 0


def test_stopping_a_fleet_whose_ray_servers_are_gone_returns(monkeypatch):
    """A SIGTERM to the whole process group (`timeout 3600 sweep run ...`, a batch scheduler) ends the local Ray's
    servers with the driver: Ray's actor table then never answered, and the driver hung in `Fleet.stop` until
    SIGKILL, leaving its lease. The stop now waits for Ray at most `settle` seconds."""
    import threading
    from types import SimpleNamespace
    import ray
    from sweep.fleet import Fleet
    from sweep_fakes import failing_if_stuck
    asked, killed, never, ended = [], [], threading.Event(), threading.Event()
    monkeypatch.setattr(ray._private.state, "actors", lambda **kwargs: asked.append(kwargs) or never.wait(600))
    monkeypatch.setattr(ray, "kill", lambda actor, **kwargs: killed.append(actor) or ended.set())
    fleet = Fleet.__new__(Fleet)
    fleet.slots = [SimpleNamespace(actor=SimpleNamespace(_actor_id=SimpleNamespace(hex=lambda: "a1")))]
    try:
        with failing_if_stuck(60):
            fleet.stop(settle=0.2)
        assert killed == []                                          # returned while Ray had not answered
    finally:
        never.set()
        ended.wait(60)   # the abandoned call ends here, with Ray's calls still faked (a real one would start Ray)
    assert asked == [{"actor_id": "a1"}] and killed == [fleet.slots[0].actor]
