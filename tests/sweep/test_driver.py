"""Sweeps on a local Ray (2 CPUs, 2 fake GPUs, started once for the module) with the real engine on the digits
architecture and the tiny schedule: completion, resume, a killed actor, retries, failures, the feature pass. The
fleet's own behaviour (actors that hang, die at start or drop out of reach) is in test_fleet_actors.py."""
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
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import sweep_fakes
from jobs.catalog import JobSpec
from sweep.driver import prepare, run_sweep
from sweep.features import FeatureConfig, run_features
from sweep.fleet import ClusterConfig, SweepError
from sweep.store import FAILURES, IMAGES, Store, failures_table
from sweep.worker import WorkerConfig
from sweep_fakes import assert_exactly_once, tiny_sweep

ray = pytest.importorskip("ray")
COLUMNS = {"key", "job", "variant", "model", "weights", "schedule_id", "target", "partner", "seed", "label",
           "margin_label", "target_name", "label_name", "partner_name", "target_logit", "target_prob",
           "partner_logit", "logits", "png", "width", "height", "seconds", "worker", "source", "frame", "step"}


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory):
    sweep_fakes.start_ray_with_markers(tmp_path_factory.mktemp("markers"))
    yield
    ray.shutdown()


FULL = dict(pairs="random:6", batch_size=None, workers=2)   # the full sweep: all jobs, 6 random pairs, automatic
                                                           # batch size, an actor on each fake GPU
FULL_ITEMS = 10 + 10 + 6 * 2


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory):
    """A 10-class sweep of all jobs, run once for the tests that read it (or a copy of its store)."""
    store = tmp_path_factory.mktemp("full") / "s"
    out = io.StringIO()
    return store, run_sweep(tiny_sweep(store, **FULL), stream=out), out.getvalue()


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
    again = run_sweep(tiny_sweep(store, **FULL), stream=io.StringIO())
    assert again.done_before == expected and again.workers == 0 and again.complete


@pytest.mark.slow   # a kill at any moment: every run kills actors at the two moments that matter (actor_deaths)
def test_killed_actor_is_replaced_and_every_item_lands_once(tmp_path):
    store = tmp_path / "s"
    killed = []
    killer = sweep_fakes.kill_an_actor_once(lambda: bool(list((store / IMAGES).glob("part-*"))), killed)
    summary = run_sweep(tiny_sweep(store, jobs="octave", batch_size=2, in_flight=2,
                               engine="sweep_fakes:slow_run_batch"), stream=io.StringIO())
    killer.join()
    assert killed and summary.actors_replaced >= 1
    assert summary.complete and summary.failed == ()
    assert_exactly_once(store, 10)


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


def test_the_summary_and_status_show_each_recorded_error_on_one_line():
    """A CUDA or compile error spans many lines; the summary's list of up to 10 failed items (status's, of 20)
    repeated them all for each. Each shows its first line and how many more failures/ holds, which keeps them."""
    from sweep.driver import SweepSummary
    from sweep.status import StoreStatus
    error = "RuntimeError: CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be " \
            "asynchronously reported\n\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
    failed = tuple((f"octave:-:{c}:-1:0", error) for c in range(2))
    shown = [f"  octave:-:{c}:-1:0: RuntimeError: CUDA error: an illegal memory access was encountered [2 more "
             f"lines in failures/]" for c in range(2)]
    assert SweepSummary("s", 10, 8, 0, failed, 61.0, 2, "gpu", 0, False, 8).lines()[2:] == shown
    manifest = {"model": "digits", "weights": "random", "schedule": "tiny", "schedule_id": "x", "n_classes": 10}
    status = StoreStatus("s", manifest, (("octave", "", 8, 10),), 2, failed, 0)
    assert [line for line in status.lines() if line.startswith("  octave:")] == shown


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
        run_sweep(tiny_sweep(store, jobs="octave,opposite", batch_size=1, lease_timeout=2.0,
                         engine="sweep_fakes:after_takeover_slow_run_batch"), stream=io.StringIO())
    thief.join()
    assert json.loads((store / LEASE).read_text())["run"] == "intruder"      # not released as if it were ours
    written = pd.read_parquet(store / IMAGES, columns=["key"])
    assert 1 <= len(written) < 20 and written.key.is_unique


def test_more_cpus_per_worker_than_a_local_ray_has_is_refused_instead_of_waiting_forever(tmp_path):
    where = ClusterConfig(cpus_per_worker=4, progress_every=1.0)   # the module's Ray has 2 CPUs: no room, ever
    with sweep_fakes.failing_if_stuck(60), pytest.raises(SweepError, match="--cpus-per-worker 4: .* 2 CPUs"):
        run_sweep(tiny_sweep(tmp_path / "s", jobs="octave", classes="0-1", cluster=where), stream=io.StringIO())


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
    run = {"run": lambda out: run_sweep(tiny_sweep(store, jobs="octave", classes="0-1", cluster=where), stream=out),
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
    prepared = prepare(tiny_sweep(tmp_path / "s", jobs="octave", classes="0-3"))
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
    return store, run_sweep(tiny_sweep(store, **sweep_fakes.ACTOR_DEATHS), stream=io.StringIO())


def test_actor_dying_after_writing_before_reporting_leaves_no_duplicate(actor_deaths):
    sweep_fakes.assert_a_death_after_writing_left_no_duplicate(*actor_deaths)   # S3 twin: test_object_stores.py


def test_failures_are_retried_recorded_and_reported(tmp_path):
    store = tmp_path / "s"
    summary = run_sweep(tiny_sweep(store, jobs="octave", batch_size=2, max_attempts=3,
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
    again = run_sweep(tiny_sweep(store, jobs="octave", batch_size=2, max_attempts=1,
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
    summary = run_sweep(tiny_sweep(tmp_path / "s", jobs="octave", batch_size=2, max_attempts=1,
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
    summary = run_sweep(tiny_sweep(tmp_path / "s", jobs="octave"), stream=io.StringIO())
    assert summary.interrupted and summary.lines() == [f"store {summary.store}: 0/10 items done", INTERRUPTED]


def test_a_corrected_command_into_a_store_with_no_image_drops_the_old_failures(tmp_path):
    """A first run that stored failures but no image (a wrong schedule, say) does not hold the store to its settings:
    the corrected command's run deletes the old attempts, so that its own tries count from 1."""
    store = Store.open(str(tmp_path / "s"))
    store.write_manifest(prepare(tiny_sweep(store.uri, jobs="octave", classes="0-1", schedule="digits")).manifest)
    old = [store.write_table(f"{FAILURES}/part-00000{i}-octave-0-a1.parquet", failures_table(
        [(JobSpec("octave", i), 1, "injected")], "w")) for i in range(2)]
    assert store.files(FAILURES) == old
    summary = run_sweep(tiny_sweep(store.uri, jobs="octave", classes="0-1"), stream=io.StringIO())
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
    sweep = tiny_sweep(store, jobs="octave", batch_size=2, engine="sweep_fakes:slow_run_batch")

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
        summary = run_sweep(tiny_sweep(store, **resume), stream=out)
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
    again = run_sweep(tiny_sweep(damaged.store, **FULL), stream=io.StringIO())
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
    again = run_sweep(tiny_sweep(store, jobs="octave", classes="0-5", batch_size=2, trajectory=trajectory,
                                 cluster=where), stream=io.StringIO())
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
