"""Sweep orchestration benchmark: per-batch overhead, scaling over fake-GPU actors, and a worker's overlap.

    PYTHONPATH=. python benchmarks/bench_sweep.py [--batches 64] [--seconds 0.25]

1. Overhead per batch: one warm actor runs a trivial job (no rendering) on one-item batches; what is left is the
   driver (dispatch, bookkeeping), Ray (two calls in flight, the report back) and the worker's PNG encoding and
   atomic Parquet write. Reported with one and with two batches in flight.
2. Scaling: a fixed amount of work (`--batches` batches of a job that sleeps `--seconds`, so that two CPU cores
   suffice) on 1, 2, 4 and 8 actors, each holding one fake GPU. Efficiency = T(1) / (k * T(k)); goal >= 0.9 at 8.
3. Overlap (in-process, no Ray: the worker's calls made from two threads, as a Ray actor with max_concurrency=2 gets
   them): batches whose rendering sleeps `--seconds` and whose writing sleeps `--write-seconds` more, run one call at
   a time and two at a time; overlapped, N batches take about N x max, not N x sum, of the two. Prints the share of
   the run the render loop waited (goal < 5%).
Actor start-up (importing torch, loading the model) is excluded: the actors are started and warmed up first.
"""
from __future__ import annotations

import argparse
import collections
import io
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SLEEP_ENV = "CLASSWEEP_BENCH_SLEEP"


def _results(model, specs, schedule, seconds: float):
    from jobs.kinds import JobResult
    image = np.full((16, 16, 3), 128, np.uint8)
    logits = np.zeros(model.n_classes, np.float32)
    return [JobResult(s, model=model.name, weights=model.weights_id, schedule_id=schedule.id, image=image,
                      logits=logits, label=0, margin_label=0, target_logit=0.0, target_prob=0.1,
                      partner_logit=float("nan"), seconds=seconds / max(len(specs), 1)) for s in specs]


def trivial_run_batch(model, specs, schedule, **_):
    """No rendering at all: measures everything around the engine."""
    return _results(model, specs, schedule, 0.0)


def sleep_run_batch(model, specs, schedule, **_):
    """A fixed-duration job (sleeps, so the CPU stays free): measures how the orchestration scales."""
    seconds = float(os.environ.get(SLEEP_ENV, "0.25"))
    time.sleep(seconds)
    return _results(model, specs, schedule, seconds)


def run_batches(fleet, slots, store, batches, in_flight: int) -> float:
    """Dispatch `batches` to the actors in `slots` (warm) through the sweep's own loop; return the wall time."""
    from sweep.driver import SweepConfig, SweepDispatch, Task
    from sweep.fleet import ClusterConfig, dispatch
    from sweep.progress import Progress
    fleet.slots = slots
    sweep = SweepDispatch(SweepConfig(store=store.uri), store, fleet.worker_config.schedule,
                          Progress(len(batches), stream=io.StringIO()), None)
    started = time.perf_counter()
    dispatch(fleet, [Task(b, (1,) * len(b.items)) for b in batches], submit=sweep.submit, on_done=sweep.on_done,
             on_failed=sweep.on_failed, in_flight=in_flight, tick=sweep.tick, poll=1.0,
             stall_limit=ClusterConfig().stall_timeout, progressed=sweep.progressed)   # as `sweep run` does
    elapsed = time.perf_counter() - started
    assert not sweep.given_up, sweep.given_up
    return elapsed


def run_in_process(worker, batches, concurrency: int) -> tuple[float, list]:
    """The worker's calls as a Ray actor with `max_concurrency=concurrency` receives them, from that many threads
    taking the batches in order; (wall seconds, reports)."""
    pending = collections.deque(batches)
    lock, reports = threading.Lock(), []

    def take():
        while True:
            with lock:
                if not pending:
                    return
                batch = pending.popleft()
            reports.append(worker.run(batch, (1,) * len(batch.items)))

    threads = [threading.Thread(target=take) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, reports


def wait_share(reports) -> float:
    """Share of the render loop's span (renders and the gaps between them) spent waiting."""
    render = sum(r.render_seconds for r in reports)
    waited = sum(r.waited_seconds for r in reports)
    return waited / max(render + waited, 1e-9)


def overlap(root: Path, schedule, n: int, seconds: float, write_seconds: float) -> None:
    """Section 3: a sleeping engine and a sleeping writer, one call at a time against two."""
    from sweep.plan import make_plan
    from sweep.worker import SweepWorker, WorkerConfig
    os.environ[SLEEP_ENV] = str(seconds)
    batches = make_plan(n_classes=10, jobs="octave", classes="all", seeds=(4 * n + 9) // 10,
                        batch_size=4).batches()[:n]
    print(f"overlap: {n} batches, render {seconds} s + write {write_seconds} s each "
          f"(sum {n * (seconds + write_seconds):.1f} s, max {n * max(seconds, write_seconds):.1f} s)")
    for concurrency in (1, 2):
        worker = SweepWorker(WorkerConfig(str(root / f"overlap{concurrency}"), "digits", "random", schedule,
                                          "benchmarks.bench_sweep:sleep_run_batch"))
        real_write = worker.write

        def slow_write(*args, real_write=real_write):
            time.sleep(write_seconds)
            return real_write(*args)

        worker.write = slow_write
        elapsed, reports = run_in_process(worker, batches, concurrency)
        print(f"  {concurrency} call(s) at a time: {elapsed:6.2f} s   render loop waited "
              f"{100 * wait_share(reports):5.1f}% of its span")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=64, help="batches of the scaling runs")
    parser.add_argument("--seconds", type=float, default=0.25, help="duration of one batch in the scaling runs")
    parser.add_argument("--overhead-batches", type=int, default=200, help="batches of the overhead run")
    parser.add_argument("--actors", default="1,2,4,8", help="actor counts of the scaling runs")
    parser.add_argument("--overlap-batches", type=int, default=12, help="batches of the overlap run")
    parser.add_argument("--write-seconds", type=float, default=0.2, help="extra seconds per write (overlap run)")
    args = parser.parse_args()
    counts = [int(c) for c in args.actors.split(",")]

    import ray
    from jobs.schedules import load_schedule
    from sweep.fleet import Fleet
    from sweep.plan import make_plan
    from sweep.store import Store
    from sweep.worker import WorkerConfig

    os.environ[SLEEP_ENV] = str(args.seconds)
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    ray.init(address="local", num_cpus=2, num_gpus=max(counts) + 1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath, SLEEP_ENV: str(args.seconds)}})
    root = Path(tempfile.mkdtemp(prefix="classweep-bench-"))
    try:
        schedule = load_schedule("tiny")
        print(f"ray {ray.__version__}, {os.cpu_count()} CPU cores, fake GPUs: {max(counts) + 1}")

        # 1. overhead per batch
        store = Store.open(str(root / "overhead"))
        config = WorkerConfig(store.uri, "digits", "random", schedule, "benchmarks.bench_sweep:trivial_run_batch")
        fleet = Fleet(config, 1, use_gpu=True, cpus=0.1, concurrency=2)
        ray.get([slot.actor.info.remote() for slot in fleet.slots])
        plan = make_plan(n_classes=10, jobs="octave", classes="all", seeds=args.overhead_batches // 10 or 1,
                         batch_size=1)
        batches = plan.batches()
        run_batches(fleet, fleet.slots, store, batches[:10], 2)            # warm-up (imports, first write)
        for in_flight in (1, 2):
            shutil.rmtree(root / "overhead" / "images", ignore_errors=True)
            elapsed = run_batches(fleet, fleet.slots, store, batches, in_flight)
            print(f"overhead per batch (trivial job, 1-item batches, 1 actor, {in_flight} in flight): "
                  f"{1000 * elapsed / len(batches):.1f} ms over {len(batches)} batches")
        fleet.stop()

        # 2. scaling on a fixed-duration job
        store = Store.open(str(root / "scaling"))
        config = WorkerConfig(store.uri, "digits", "random", schedule, "benchmarks.bench_sweep:sleep_run_batch")
        fleet = Fleet(config, max(counts), use_gpu=True, cpus=0.1, concurrency=2)
        slots = list(fleet.slots)
        ray.get([slot.actor.info.remote() for slot in slots])
        plan = make_plan(n_classes=10, jobs="octave", classes="all", seeds=(4 * args.batches + 9) // 10,
                         batch_size=4)
        batches = plan.batches()[:args.batches]
        run_batches(fleet, slots, store, batches[:len(slots)], 1)          # warm-up: one batch per actor
        ideal = len(batches) * args.seconds
        base = None
        print(f"scaling: {len(batches)} batches of {args.seconds} s (ideal on one actor: {ideal:.1f} s)")
        for count in counts:
            shutil.rmtree(root / "scaling" / "images", ignore_errors=True)
            elapsed = run_batches(fleet, slots[:count], store, batches, 2)
            base = base if base is not None else elapsed * counts[0]
            efficiency = base / (count * elapsed)
            print(f"  {count} actors: {elapsed:6.2f} s   speed-up {base / elapsed:5.2f}   "
                  f"efficiency {efficiency:.3f}   (vs ideal {ideal / (count * elapsed):.3f})")
        fleet.slots = slots
        fleet.stop()

        # 3. overlap inside one worker
        overlap(root, schedule, args.overlap_batches, args.seconds, args.write_seconds)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
