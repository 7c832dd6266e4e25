"""The Ray side of every command that starts workers (`sweep run`, `sweep score`, `sweep analyze --features`):
the Ray session, SIGTERM as Ctrl-C, a fleet of actors in numbered slots, and one dispatch loop.

    session   a local instance is started, or the cluster at `address` is joined (and left again afterwards)
    fleet     one actor per GPU (`num_gpus=1`), or CPU actors when the cluster has no GPU; a dead actor is replaced
              in its slot by a new one, and a generation number tells its stale calls from the new actor's
    dispatch  each actor holds at most `in_flight` tasks; a task whose call raised goes to `on_failed`, a task whose
              actor died is run again (first in the queue, and alone on its actor) up to `max_crashes` times, then
              goes to `on_failed`; an actor Ray cannot reach for the moment is asked again, not replaced, until it
              has been unreachable for UNREACHABLE_GRACE seconds; an actor that makes no progress for
              `stall_timeout` seconds is hung: ended, and its tasks run again like a dead one's
    FleetRun  the three in the one order every command follows (session, fleet, first worker, dispatch, teardown);
              `run_on_fleet` for a command whose tasks need nothing from its first worker

No work queue is shared with the actors (a queue's `get()` loses a task when its consumer dies): everything the
actors hold is known here. What a task is, how it is submitted and what its result means is the caller's: the
loop only takes tasks, a `submit(actor, task)` and the handlers.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TextIO

from jobs.text import is_whole_number
from sweep.interrupts import own_sigterm_kept, sigterm_as_interrupt
from sweep.store import store_settings, within

DEVICES = ("auto", "gpu", "cpu")


class SweepError(RuntimeError):
    """The run cannot go on (e.g. every new worker dies at start); the message is one line."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how the workers of one command run (shared by `sweep run`, `analyze --features`, ...)."""
    address: str | None = None          # None: start a local Ray; "auto" or HOST:PORT: join that cluster
    workers: int | None = None          # actors; None: one per GPU, or one per `cpus_per_worker` CPUs without GPUs
    device: str = "auto"                # auto: GPU actors if the cluster has GPUs now; gpu: always (autoscaling)
    cpus_per_worker: float = 1.0        # CPU reservation of each actor (and its torch threads)
    in_flight: int = 2                  # tasks handed to one actor at a time: one running, one ready to start
    gpu_wait: float = 600.0             # --device gpu on a cluster without GPUs: seconds to wait for GPU nodes
    stall_timeout: float = 1200.0       # seconds an actor holding calls may go without progress: then it is hung
    num_cpus: int | None = None         # local Ray only: CPUs to offer (None: all)
    num_gpus: int | None = None         # local Ray only: GPUs to offer (None: detect; tests fake some)
    worker_logs: bool = False           # forward the actors' stdout/stderr to the driver
    progress_every: float | None = None  # seconds between progress lines (None: 0.25 on a terminal, 10 in a log)

    @property
    def threads(self) -> int:
        """The torch threads of each actor: one per CPU it reserves (at least one)."""
        return max(1, int(self.cpus_per_worker))


def check_cluster(cluster: ClusterConfig) -> None:
    """Refuse what cannot work, before Ray starts (PlanError: one line, exit status 2, nothing written): an unknown
    device, `--device gpu` on a local Ray of a machine without a GPU (nothing can ever add one to it), more
    `--cpus-per-worker` than a local Ray would have, or a cluster address nothing answers at."""
    from sweep.plan import PlanError
    if cluster.device not in DEVICES:
        raise PlanError(f"unknown device {cluster.device!r}: choose from {', '.join(DEVICES)}")
    if cluster.in_flight < 1:
        raise PlanError(f"in_flight must be at least 1 (got {cluster.in_flight})")
    if cluster.address:
        import ray
        if not ray.is_initialized():
            check_reachable(cluster.address)
    if cluster.address is None:
        import ray
        if ray.is_initialized():
            return   # a Ray the caller started: cluster_plan checks its nodes
        if cluster.device == "gpu" and not cluster.num_gpus and local_gpus() == 0:
            raise PlanError("--device gpu: this machine has no GPU, and a local Ray cannot gain one "
                            "(use --device auto or cpu, or --address to join a cluster with GPU nodes)")
        cpus = cluster.num_cpus or local_cpus()
        if cluster.cpus_per_worker > cpus:
            raise PlanError(f"--cpus-per-worker {cluster.cpus_per_worker:g}: the local Ray would have {cpus:g} CPUs, "
                            f"so no worker could ever start (ask for at most {cpus:g}, or join a cluster with "
                            f"--address)")


def local_cpus() -> float:
    """The CPUs a local Ray started here offers (Ray's own count, which heeds a container's CPU quota)."""
    try:
        from ray._private.utils import get_num_cpus
        return float(get_num_cpus())
    except Exception:   # a Ray without it: the machine's count
        return float(os.cpu_count() or 1)


def local_gpus() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def remote_error_line(error: BaseException) -> str:
    """The line that names a (possibly remote) error: the last line of its message that is not a traceback's
    (Ray's task errors carry the remote traceback first, the exception last)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    tail = next((l for l in reversed(lines) if not l.startswith(("File ", "^", "~"))), type(error).__name__)
    return tail[:500]


RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def quiet_local_token_notice(record: logging.LogRecord) -> bool:
    """Logging filter: drop Ray's "Token authentication is enabled for this Ray cluster" notice (a local instance
    this process starts and owns; every other message of that logger passes)."""
    return not record.getMessage().startswith("Token authentication is enabled")


REACH_SECONDS = 5.0   # how long `check_reachable` waits for a cluster's head to take a connection


def check_reachable(address: str, timeout: float = REACH_SECONDS) -> None:
    """Refuse (PlanError, one line) a HOST:PORT or ray://HOST:PORT cluster address whose head takes no connection
    within `timeout` seconds, instead of Ray's minutes of retries. "auto" and other forms are left to Ray."""
    import socket
    from sweep.plan import PlanError
    target = address.removeprefix("ray://")
    host, colon, port = target.rpartition(":")
    if not colon or not is_whole_number(port) or not host or "/" in target:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        why = "no answer" if isinstance(error, socket.timeout) else (error.strerror or type(error).__name__).lower()
        raise PlanError(f"cannot join the Ray cluster at {address}: {why} (waited up to {timeout:g} s; is the head "
                         f"node running, and is --address right: HOST:6379 for its GCS, ray://HOST:10001 for Ray "
                         f"Client?)") from None


@contextlib.contextmanager
def ray_session(cluster: ClusterConfig) -> Iterator[bool]:
    """Use the Ray this process is already connected to, or join `cluster.address`, or start a local instance.

    Yields whether this call started it (and will shut it down).
    """
    import ray
    if ray.is_initialized():
        yield False
        return
    kwargs = {"log_to_driver": cluster.worker_logs, "logging_level": logging.WARNING}
    try:
        with own_sigterm_kept():
            if cluster.address:
                # The workers of other nodes get this driver's endpoint and region settings (no credentials);
                # the nodes' own environment keeps whatever this driver does not set.
                settings = store_settings()
                try:
                    ray.init(address=cluster.address, **kwargs,
                             **({"runtime_env": {"env_vars": settings}} if settings else {}))
                except (ConnectionError, RuntimeError, ValueError) as error:
                    raise SweepError(f"cannot join the Ray cluster at {cluster.address}: "
                                     f"{remote_error_line(error)}") from None
            else:
                # "local" always starts a fresh instance (never attaches to another process's cluster here).
                # Ray turns token authentication on for a local start itself (good) and warns about it on every run.
                logging.getLogger(RAY_AUTH_LOGGER).addFilter(quiet_local_token_notice)
                ray.init(address="local", num_cpus=cluster.num_cpus, num_gpus=cluster.num_gpus,
                         include_dashboard=False, **kwargs)
    except BaseException:   # interrupted (or failed) while starting: end what was started
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise
    try:
        yield True
    finally:
        ray.shutdown()


def cluster_plan(cluster: ClusterConfig, n_tasks: int) -> tuple[bool, int]:
    """(GPU actors?, how many) from the configuration and the cluster's resources now. Refuses (SweepError)
    `cpus_per_worker` beyond every node of a Ray this process started (`ray_started_here`): no node can ever hold a
    worker, which would wait forever."""
    import ray
    if ray_started_here():   # a joined cluster may gain larger nodes (an autoscaler); a local Ray never does
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0)
        if largest < cluster.cpus_per_worker:
            raise SweepError(f"--cpus-per-worker {cluster.cpus_per_worker:g}: this machine's Ray has {largest:g} "
                             f"CPUs, so no worker could ever start (ask for at most {largest:g})")
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 1)
    use_gpu = cluster.device == "gpu" or (cluster.device == "auto" and gpus > 0)
    return use_gpu, worker_count(cluster, use_gpu, gpus, cpus, n_tasks)


def worker_count(cluster: ClusterConfig, use_gpu: bool, gpus: int, cpus: float, n_tasks: int) -> int:
    """The actors of a run: `--workers`, else one per GPU (GPU actors), else one per `cpus_per_worker` of `cpus`;
    never more than its `n_tasks` (an actor takes one at least). The dry run's projection counts them so too."""
    if cluster.workers:
        count = cluster.workers
    elif use_gpu:
        count = max(gpus, 1)
    else:
        count = max(1, int(cpus // max(cluster.cpus_per_worker, 1e-3)))
    return max(1, min(count, n_tasks))


def ray_started_here() -> bool:
    """Whether this process started the Ray it is connected to (a local instance, whose nodes never change) rather
    than joined a cluster (which an autoscaler may grow), whatever `--address` said: a library caller may have
    joined one before calling. A Ray Client connection has no node in this process, so it counts as joined."""
    import ray._private.worker as ray_worker
    return bool(getattr(getattr(ray_worker, "_global_node", None), "head", False))


def no_worker_wait(cluster: ClusterConfig) -> float:
    """Seconds `dispatch` waits with work left once no worker is up (every node that could hold one lost): at least
    NO_WORKER_WAIT, so that a replacement actor has time to start even with a short --gpu-wait."""
    return max(cluster.gpu_wait, NO_WORKER_WAIT)


QUIET_START = 30.0   # seconds the first worker may take to start before the driver says it is still waiting
NOTE_EVERY = 10.0    # seconds between the driver's lines while it waits for GPU nodes
NO_WORKER_WAIT = 600.0   # seconds a run with work left waits once no worker is up (the longer of this and --gpu-wait)
UNREACHABLE_GRACE = 60.0   # seconds an actor Ray cannot reach (ActorUnavailableError) is given before it is replaced
UNREACHABLE_RETRY = 1.0    # seconds between the pings of an unreachable actor


def unreachable_error() -> tuple[type, ...]:
    """Ray's error for an actor it cannot reach for the moment (a network blip, its node overloaded): the actor may
    well be alive, and the call may or may not have run. Ray before 2.30 has none (its errors all mean death)."""
    import ray.exceptions
    error = getattr(ray.exceptions, "ActorUnavailableError", None)
    return (error,) if error is not None else ()


def first_ready_of(refs: list, timeout: float) -> list:
    """The first of `refs` to be ready ([] after `timeout` seconds). With nothing to wait on (every actor resting
    after Ray could not reach it, no call out) it sleeps `timeout`: `ray.wait([])` returns at once, and a loop
    around it would spin a core until an actor is asked again."""
    import ray
    if not refs:
        time.sleep(timeout)
        return []
    ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
    return ready


@dataclass
class Slot:
    """One actor position and the actor currently in it."""
    number: int
    actor: object
    generation: int = 0                        # bumped on each replacement: tells stale calls from current ones
    up: bool = False                           # its actor has started (placed, model loaded): it may take tasks
    ever_up: bool = False                      # an actor of this slot started at some point of the run
    unreachable_since: float | None = None     # monotonic time Ray first could not reach its actor (None: it can)
    ping_after: float = 0.0                    # monotonic time before which its actor is not asked again


class Fleet:
    """The actors of one run, each in a numbered slot; a dead actor is replaced in its slot by a new one.

    An actor runs up to `concurrency` calls at once (threads): the worker overlaps one batch's rendering with the
    previous one's writing, and answers progress questions while it renders."""

    def __init__(self, worker_config, count: int, *, use_gpu: bool, cpus: float,
                 worker: str = "sweep.worker:SweepWorker", concurrency: int = 1) -> None:
        import ray
        from sweep.worker import import_callable
        self.run_id = uuid.uuid4().hex[:8]
        # No automatic restarts: the driver replaces a dead actor itself and knows which tasks it held.
        self.options = {"num_gpus": 1 if use_gpu else 0, "num_cpus": cpus, "max_restarts": 0,
                        "max_concurrency": max(1, concurrency)}
        self.use_gpu = use_gpu
        self.remote = ray.remote(import_callable(worker))
        self.worker_config = worker_config
        self.replaced = 0
        self.out_of_reach = 0                  # times an actor became unreachable (`unreachable`)
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
        slot.up, slot.unreachable_since, slot.ping_after = False, None, 0.0
        self.replaced += 1

    def unreachable(self, slot: Slot) -> bool:
        """Ray could not reach `slot`'s actor (`unreachable_error`): it takes no task until a ping answers, sent
        every UNREACHABLE_RETRY seconds. True once it has been unreachable for UNREACHABLE_GRACE seconds: then it
        counts as dead (replaced), instead of costing a new actor's start (model load, probe, compile) per blip."""
        now = time.monotonic()
        slot.up = False
        if slot.unreachable_since is None:
            slot.unreachable_since = now
            self.out_of_reach += 1
        slot.ping_after = now + UNREACHABLE_RETRY
        return now - slot.unreachable_since >= UNREACHABLE_GRACE

    def counts_as_death(self, slot: Slot, error: BaseException) -> bool:
        """Whether Ray's `error` on a call of `slot`'s actor means the actor is gone: any error but
        `unreachable_error`, and that one once the actor has been out of reach for UNREACHABLE_GRACE seconds
        (`unreachable`)."""
        return not isinstance(error, unreachable_error()) or self.unreachable(slot)

    @staticmethod
    def to_ping(slot: Slot, pinged: Iterable[tuple[Slot, int]]) -> bool:
        """Whether to ask `slot`'s actor now whether it is up: it is not, it has not been asked (`pinged`: (slot,
        generation) of the questions still open), and it is not resting after Ray could not reach it."""
        return (not slot.up and time.monotonic() >= slot.ping_after
                and not any(s is slot and g == slot.generation for s, g in pinged))

    @property
    def started(self) -> int:
        """How many slots had an actor start during the run (the others waited for room in the cluster, or were
        still loading when the run ended)."""
        return sum(slot.ever_up for slot in self.slots)

    def mark_up(self, slot: Slot) -> None:
        slot.up = slot.ever_up = True
        slot.unreachable_since = None

    def stop(self, settle: float = 10.0) -> None:
        """Kill every actor, then wait (at most `settle` seconds) until the processes of those on this node have
        exited: a killed actor's writer thread may still be finishing a batch file, and the summary read from the
        store right after must count it. Ray's answers are waited for `settle` seconds at most too: a SIGTERM sent
        to the whole process group (`timeout`, a batch scheduler) ends the local Ray's own servers with the
        driver, and a call to them then never returns (the driver hung until SIGKILL, its lease left behind)."""
        try:
            pids = within(settle, self._kill_all)
        except TimeoutError:   # Ray's servers are gone: the actors went with them
            return
        deadline = time.monotonic() + settle
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _alive(pid)]
            time.sleep(0.05)

    def _kill_all(self) -> list[int]:
        """Kill every slot's actor; the pids of those that were running on this node."""
        import ray
        pids = []
        for slot in self.slots:
            with contextlib.suppress(Exception):
                info = ray._private.state.actors(actor_id=slot.actor._actor_id.hex())
                here = info.get("Address", {}).get("NodeID") == ray.get_runtime_context().get_node_id()
                if here and info.get("State") == "ALIVE" and int(info.get("Pid") or 0) > 0:   # placed and running
                    pids.append(int(info["Pid"]))
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        return pids

    def first_ready(self, call: Callable, *, gpu_wait: float, stream: TextIO, interval: float,
                    give_up_after: float | None = None, note: Callable[[str], None] | None = None):
        """`call(actor)` on the first actor to start (any slot's), waited for: the first actor starting (model
        loaded) is where a run that asks for GPUs the cluster does not have yet waits for the autoscaler. GPU
        actors on a cluster without a GPU now wait up to `gpu_wait` seconds (`--gpu-wait`): it says so every
        NOTE_EVERY seconds and gives up after that long unless an actor was placed by then. Whatever the cluster,
        it gives up once `give_up_after` seconds pass without an answer (`no_worker_wait`): no node with room for a
        worker and no autoscaler to add one, or a start that hangs (a stalled weight download, a stuck device).

        Not one chosen slot: the cluster places actors in no fixed order, and the new actor of a slot whose actor
        died at start comes after the others, so with more actors than room that slot may never start. Its
        lines go to `note` (a progress bar's `message`, which keeps them off the bar), else to `stream`."""
        import ray
        from ray.exceptions import RayError, RayTaskError
        from sweep.progress import format_duration
        no_gpu_yet = self.use_gpu and not int(ray.cluster_resources().get("GPU", 0))   # an autoscaler may add some
        wait_for_gpus = gpu_wait if no_gpu_yet else None
        say = note or (lambda line: print(line, file=stream, flush=True))
        waiting: dict = {}                      # ref -> (slot, generation, is it the call?)
        started, deaths, quiet_until, gpu_note_at = time.monotonic(), 0, QUIET_START, NOTE_EVERY
        if wait_for_gpus is not None:
            say(f"the cluster has no GPU yet: waiting up to {format_duration(wait_for_gpus)} for GPU nodes "
                f"(an autoscaler adds them on demand; --gpu-wait sets how long)")
        while True:
            asked = [(s, g) for s, g, _ in waiting.values()]
            for slot in self.slots:
                if self.to_ping(slot, asked):
                    waiting[slot.actor.__ray_ready__.remote()] = (slot, slot.generation, False)
            first_up = next((slot for slot in self.slots if slot.up), None)
            if first_up is not None and not any(is_call for _, _, is_call in waiting.values()):
                waiting[call(first_up.actor)] = (first_up, first_up.generation, True)
            ready = first_ready_of(list(waiting), min(interval, UNREACHABLE_RETRY))
            for ref in ready:
                slot, generation, is_call = waiting.pop(ref)
                try:
                    value = ray.get(ref)
                except RayTaskError as error:
                    raise SweepError(f"the first worker failed to start: {remote_error_line(error)}") from None
                except RayError as error:   # it died (a new one in its slot, a few times), or is out of reach
                    if generation != slot.generation or not self.counts_as_death(slot, error):
                        continue                         # out of reach: asked again in a second; a call goes to
                                                         # whoever is up
                    deaths += 1
                    if deaths > len(self.slots) + 1:   # one worker: three deaths, as ever
                        raise SweepError(f"workers keep dying at start: {remote_error_line(error)}") from None
                    self.replace(slot)
                    continue
                if is_call:
                    return value
                if generation == slot.generation:
                    self.mark_up(slot)
            waited = time.monotonic() - started
            if wait_for_gpus is not None and not any(slot.up for slot in self.slots):   # no GPU actor placed yet
                gpus = int(ray.cluster_resources().get("GPU", 0))
                if waited >= wait_for_gpus:
                    raise SweepError(f"no GPU worker could start in {format_duration(waited)} (the cluster has "
                                     f"{gpus} GPUs): add GPU nodes, raise --gpu-wait, or use --device auto or cpu")
                if waited >= gpu_note_at:
                    say(f"waiting for GPU nodes: {format_duration(waited)} of {format_duration(wait_for_gpus)}, "
                        f"cluster GPUs now {gpus}")
                    gpu_note_at = waited + max(interval, NOTE_EVERY)
            elif waited >= quiet_until:   # not silent: placing an actor and loading a model take seconds, not minutes
                free = ray.available_resources()
                say(f"waiting for the first worker to be ready (placed on a node, model loaded, batch size "
                    f"chosen): {format_duration(waited)}; free in the cluster now: {free.get('CPU', 0):g} CPUs, "
                    f"{int(free.get('GPU', 0))} GPUs")
                quiet_until = waited + max(interval, QUIET_START)
            # After the GPU deadline (not longer than this one), whose line says more when GPUs are missing.
            if give_up_after is not None and waited >= give_up_after:
                up = sum(slot.up for slot in self.slots)
                why = ("it hangs there: a stalled weight download or a stuck device? see the worker's log" if up else
                       "no node has room for one, or each hangs while it starts")
                raise SweepError(f"no worker was ready after {format_duration(waited)}: {up} of {len(self.slots)} "
                                 f"started, none answered its first call ({why}); fix that, then run the same "
                                 f"command again to resume (--gpu-wait waits longer)")


class FleetRun:
    """The Ray side of every command that starts workers, one sequence for all (`sweep run`, `sweep score`,
    `sweep analyze --features`):

        run = FleetRun(cluster, progress)
        with run.session(len(tasks)):           # Ray session, SIGTERM as Ctrl-C, the fleet's size (`use_gpu`, `count`)
            first = run.start(worker_config, lambda actor: actor.info.remote())   # the fleet; its first worker's answer
            run.dispatch(tasks, submit=..., on_done=..., on_failed=...)          # the loop, with the cluster's bounds
        # on the way out, however it ends: the fleet stopped, the Ray session left, `progress` closed

    Between the steps is the command's own: `sweep run` says the fleet's size and makes its step counter in the
    session before `start`, and takes its batch size (so its tasks) from the first worker's answer. Its fields say
    how far a run got, also after an interruption (`sweep run`'s summary counts replaced actors and workers)."""

    def __init__(self, cluster: ClusterConfig, progress, *, worker: str = "sweep.worker:SweepWorker",
                 concurrency: int = 1, stream: TextIO | None = None) -> None:
        self.cluster = cluster
        self.progress = progress                 # `sweep.progress.Progress`: its lines, its rate from the first worker
        self.worker, self.concurrency = worker, concurrency   # the actor class; calls each actor runs at once
        self.stream = stream                     # the start-up lines' stream (None: the progress stream)
        self.use_gpu, self.count = False, 0      # the fleet's plan (`cluster_plan`), once the session has begun
        self.fleet: Fleet | None = None          # once `start` made it

    @contextlib.contextmanager
    def session(self, most_tasks: int) -> Iterator[FleetRun]:
        """The Ray session (`ray_session`) with SIGTERM as Ctrl-C, and the fleet's plan for at most `most_tasks`
        tasks; on the way out the fleet (if `start` made one) stopped, the session left, and `progress` closed
        whatever the way out: a bar left open on a terminal would run on into the error's or interruption's line."""
        try:
            # SIGTERM is taken over after ray.init, which installs a handler of its own.
            with ray_session(self.cluster), sigterm_as_interrupt():
                self.use_gpu, self.count = cluster_plan(self.cluster, most_tasks)
                try:
                    yield self
                finally:
                    if self.fleet is not None:
                        self.fleet.stop()
        finally:
            self.progress.close()

    def start(self, worker_config, first_call: Callable):
        """Start the fleet (`count` actors of `worker` with `worker_config`) and return `first_call(actor)`'s answer
        from the first actor to start, waited for as `Fleet.first_ready` says (`--gpu-wait`, then `no_worker_wait`);
        its waiting lines go to `stream`. The progress rate counts from then."""
        cluster = self.cluster
        self.fleet = Fleet(worker_config, self.count, use_gpu=self.use_gpu, cpus=cluster.cpus_per_worker,
                           worker=self.worker, concurrency=self.concurrency)
        first = self.fleet.first_ready(first_call, gpu_wait=cluster.gpu_wait, stream=self.stream,
                                       interval=min(self.progress.interval, 10.0),
                                       give_up_after=no_worker_wait(cluster),
                                       note=lambda line: self.progress.message(line, self.stream))
        self.progress.workers_ready()
        return first

    def dispatch(self, tasks: Iterable, *, submit: Callable, on_done: Callable, on_failed: Callable,
                 max_crashes: int | Callable[[object], int] = 3, tick: Callable[[], None] | None = None,
                 poll: float = 1.0, progressed: Callable[[], set | None] | None = None) -> None:
        """`dispatch` on the started fleet with the cluster's bounds (`in_flight`, `no_worker_wait`, `stall_timeout`);
        `tick` defaults to updating the progress, whose `message` says the loop's lines."""
        cluster = self.cluster
        dispatch(self.fleet, tasks, submit=submit, on_done=on_done, on_failed=on_failed, in_flight=cluster.in_flight,
                 max_crashes=max_crashes, tick=tick or self.progress.update, poll=poll,
                 no_worker_limit=no_worker_wait(cluster), stall_limit=cluster.stall_timeout, progressed=progressed,
                 note=self.progress.message)

    @property
    def started(self) -> int:
        """Slots that had an actor start (`Fleet.started`; 0 before the fleet)."""
        return self.fleet.started if self.fleet else 0

    @property
    def replaced(self) -> int:
        return self.fleet.replaced if self.fleet else 0

    @property
    def out_of_reach(self) -> int:
        return self.fleet.out_of_reach if self.fleet else 0


def run_on_fleet(cluster: ClusterConfig, worker_config, tasks: list, *, submit: Callable, on_done: Callable,
                 on_failed: Callable, progress, stream: TextIO | None, worker: str = "sweep.worker:SweepWorker",
                 max_crashes: int = 3) -> None:
    """`FleetRun` start to end for a command whose tasks need nothing from its first worker (`sweep score`,
    `sweep analyze --features`): a fleet sized for `tasks`, the first worker's `info` waited for, the tasks run,
    and on the way out the fleet stopped and `progress` closed."""
    run = FleetRun(cluster, progress, worker=worker, stream=stream)
    with run.session(len(tasks)):
        run.start(worker_config, lambda actor: actor.info.remote())
        run.dispatch(tasks, submit=submit, on_done=on_done, on_failed=on_failed, max_crashes=max_crashes)


def dispatch(fleet: Fleet, tasks: Iterable, *, submit: Callable, on_done: Callable, on_failed: Callable,
             in_flight: int, max_crashes: int | Callable[[object], int] = 3, tick: Callable[[], None] | None = None,
             poll: float = 1.0, no_worker_limit: float | None = None, stall_limit: float | None = None,
             progressed: Callable[[], set | None] | None = None, note: Callable[[str], None] | None = None) -> None:
    """Run `tasks` on the fleet until every one is done or given up.

    A slot takes tasks only once its actor has started (Ray's `__ray_ready__` answered): an actor the cluster has
    no room for (more `--workers` than GPUs, and no autoscaler to add them) holds none, so the others finish the
    run instead of it waiting forever on that actor's share. `submit(actor, task)` -> ObjectRef starts a task;
    `on_done(task, value)` handles a result and `on_failed(task, error)` a task whose call raised (or whose actors
    kept dying); both return the tasks to queue again (retries; may be empty). A task whose actor died is run again
    first, up to `max_crashes` times, and alone on its actor: of the tasks an actor held when it died only one may
    have killed it, and the others, run alone, finish instead of dying with it again (`max_crashes` may be a function
    of the task: a caller that retries failed work itself gives a retry only the tries its items have left). A task
    whose actor Ray could not reach (`unreachable_error`: the call may or may not have run) is run again the same
    way, but its actor is kept, taking no task until a ping answers, unless it stays out of reach for
    UNREACHABLE_GRACE seconds (then it is replaced as if dead). `tick()` is called at least every `poll` seconds
    (progress).

    Hangs: an actor that holds calls, but has been handed none, finished none and (with `progressed()`: the refs
    whose calls reported progress since it was last asked, or None when that is unknown just now) seen none of them
    progress for `stall_limit` seconds counts as hung (a stuck device, a deadlock): `note(line)` says so, the
    actor is ended (and handed no task while the loop has not yet seen it die), and its tasks run again like a dead
    actor's; a task that exhausts its tries this way fails as "hung". Raises SweepError when new actors keep dying
    before finishing anything, and when work is left but no actor has been up for `no_worker_limit` seconds (the
    cluster lost every node that could hold one).
    """
    import ray
    from ray.exceptions import RayError, RayTaskError
    from sweep.progress import format_duration
    unreachable = unreachable_error()
    queue = collections.deque(tasks)
    owner: dict = {}                          # ObjectRef -> (slot, actor generation, task)
    crashes: collections.Counter = collections.Counter()   # id(task) -> deaths of the actors holding it
    crash_limit = max_crashes if callable(max_crashes) else lambda task: max_crashes
    deaths_without_progress = 0
    pings: dict = {}                          # ObjectRef -> (slot, actor generation): has the actor started?
    active_at: dict = {}                      # (slot number, generation) -> last progress seen (hang watch)
    hung: set = set()                         # id(task) of the tasks whose actor was ended as hung
    # (slot number, generation) -> {ref: task} of the calls that actor holds: `owner` by actor, so that a slot's
    # calls are found without going through the whole fleet's (with hundreds of actors, per slot per completion).
    calls: dict = collections.defaultdict(dict)

    def hand_over(slot: Slot, task) -> None:
        ref = submit(slot.actor, task)
        owner[ref] = (slot, slot.generation, task)
        calls[slot.number, slot.generation][ref] = task

    def take_back(ref) -> tuple:
        slot, generation, task = owner.pop(ref)
        del calls[slot.number, generation][ref]
        return slot, generation, task

    def held(slot: Slot) -> dict:
        """The calls `slot`'s current actor holds ({ref: task})."""
        return calls[slot.number, slot.generation]

    def runs_alone(task) -> bool:                # its actor died while it ran: it runs alone until it ends
        return crashes[id(task)] > 0

    def next_task(slot: Slot):
        """The first queued task `slot` may take now: any for an idle slot, else the first that need not run alone;
        none while the slot holds a task that runs alone."""
        if any(runs_alone(task) for task in held(slot).values()):
            return None
        if not held(slot):
            return queue.popleft()
        for i, task in enumerate(queue):
            if not runs_alone(task):
                del queue[i]
                return task
        return None

    def died(slot: Slot, error: BaseException, task=None) -> None:
        """`slot`'s actor died (while running `task`, when the death was seen through that call's ref): a new one
        in its place. Too many deaths in a row with nothing finished mean the workers die whatever they run (a
        broken image, a node that cannot hold them): SweepError. Never before the dying task has used its own tries
        (a batch that kills its actor every time, on one worker with --max-attempts 4 or more, fails alone)."""
        nonlocal deaths_without_progress
        fleet.replace(slot)
        deaths_without_progress += 1
        limit = max(len(fleet.slots) + 2, crash_limit(task) if task is not None else 0)
        if deaths_without_progress > limit:
            raise SweepError(f"workers keep dying before finishing any task: {remote_error_line(error)}")

    nobody_up_since: float | None = None
    while queue or owner:
        if owner or any(slot.up for slot in fleet.slots):
            nobody_up_since = None
        elif nobody_up_since is None:
            nobody_up_since = time.monotonic()
        elif no_worker_limit is not None and time.monotonic() - nobody_up_since > no_worker_limit:
            raise SweepError(f"no worker could start for {format_duration(no_worker_limit)} with work left (the "
                             f"cluster lost the nodes that could hold one?): add nodes, then run the same command "
                             f"again to resume")
        for slot in fleet.slots:
            if not slot.up:
                if fleet.to_ping(slot, pings.values()):
                    pings[slot.actor.__ray_ready__.remote()] = (slot, slot.generation)
                continue
            if active_at.get((slot.number, slot.generation)) == math.inf:
                continue                     # ended by the hang watch, its death not seen yet: it would die too
            while queue and len(held(slot)) < in_flight:
                task = next_task(slot)
                if task is None:
                    break
                hand_over(slot, task)
                active_at[slot.number, slot.generation] = time.monotonic()
        ready = first_ready_of([*owner, *pings], min(poll, UNREACHABLE_RETRY))
        for ref in ready:
            if ref in pings:
                slot, generation = pings.pop(ref)
                try:
                    ray.get(ref)
                    if generation == slot.generation:
                        fleet.mark_up(slot)
                except RayError as error:            # it died starting, or is out of reach
                    if generation == slot.generation and fleet.counts_as_death(slot, error):
                        died(slot, error)
                continue
            slot, generation, task = take_back(ref)
            active_at[slot.number, generation] = time.monotonic()
            try:
                value = ray.get(ref)
            except RayTaskError as error:        # the actor lives, but the call raised (e.g. the store write)
                crashes.pop(id(task), None)
                hung.discard(id(task))
                queue.extend(on_failed(task, remote_error_line(error)))
                continue
            except RayError as error:            # the actor (or its node) died, or is out of reach
                if generation == slot.generation and fleet.counts_as_death(slot, error):
                    died(slot, error, task)
                was_hung = id(task) in hung              # its actor was ended by the hang watch
                hung.discard(id(task))
                crashes[id(task)] += 1
                if crashes[id(task)] < crash_limit(task):
                    queue.appendleft(task)       # same task: whatever it wrote before the death is overwritten
                else:
                    crashes.pop(id(task), None)
                    what = ("was out of reach" if isinstance(error, unreachable) else
                            f"made no progress for {format_duration(stall_limit)} (hung) and was ended"
                            if was_hung else "died")
                    queue.extend(on_failed(task, f"worker {what} while running this task: {remote_error_line(error)}"))
                continue
            deaths_without_progress = 0
            crashes.pop(id(task), None)
            hung.discard(id(task))
            queue.extend(on_done(task, value))
        if tick is not None:
            tick()
        if stall_limit is not None:
            end_hung(owner, active_at, hung, stall_limit, progressed() if progressed else set(), note)


def end_hung(owner: dict, active_at: dict, hung: set, stall_limit: float, progressed: set | None,
             note: Callable[[str], None] | None) -> None:
    """`dispatch`'s hang watch, once per loop: end the actor of every slot whose calls (`owner`: ref -> (slot,
    generation, task), the calls still running) have shown no progress for `stall_limit` seconds. The loop then
    sees its calls die, as any death."""
    import ray
    from sweep.progress import format_duration
    if progressed is None:    # progress cannot be read just now: nothing says that an actor stopped
        return
    now = time.monotonic()
    held: dict = collections.defaultdict(list)   # (slot number, generation) -> [(slot, task)] of running calls
    for ref, (slot, generation, task) in owner.items():
        if generation == slot.generation:
            held[slot.number, generation].append((slot, task))
            if ref in progressed:
                active_at[slot.number, generation] = now
    for key, calls in held.items():
        quiet = now - active_at.setdefault(key, now)
        if quiet < stall_limit:
            continue
        active_at[key] = math.inf             # ended once: the loop sees its calls die next
        hung.update(id(task) for _, task in calls)
        if note is not None:
            note(f"worker {key[0]} made no progress for {format_duration(quiet)} on {len(calls)} task"
                 f"{'s' if len(calls) > 1 else ''} (hung?): ending it; its tasks run again on a new worker")
        with contextlib.suppress(Exception):
            ray.kill(calls[0][0].actor, no_restart=True)


def _alive(pid: int) -> bool:
    """Whether a process of this machine still runs (a zombie counts as gone)."""
    if pid <= 0:   # os.kill(0, ...) would signal our own process group
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
