"""Killing the driver: `sweep run` as a subprocess is SIGKILLed mid-sweep. Every run checks what the kill leaves:
whole files, and a store whose next run takes the dead driver's lease over and has exactly the missing items to do.
With --run-slow the store is also interrupted with Ctrl-C (SIGINT), then re-run to completion with another batch
size (two more Ray starts, about 10 s each here): every item must land exactly once and every file be readable.
A resume with another batch size and worker count runs in every run in test_driver (`damaged_and_resumed`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs.schedules import load_schedule
from sweep.driver import SweepConfig, pending_work, prepare
from sweep.lease import read_lease, running_sweep
from sweep.store import IMAGES, Store

pytest.importorskip("ray")
ROOT = Path(__file__).parents[2]
ITEMS = 3 * 2 * 2           # octave and opposite, 3 classes, 2 seeds
BATCHES = ITEMS // 2


def quarter_digits_schedule(folder: Path) -> Path:
    """The digits preset with a quarter of its steps (20 + 30): unlike tiny's, its batches keep the sweep busy long
    enough to be killed in the middle (the kill follows the first file within a poll), and the last run has a quarter
    of the rendering to finish."""
    schedule = load_schedule("digits").to_dict()
    for octave, iterations in zip(schedule["octaves"], (20, 30)):
        octave["iterations"] = iterations
    path = folder / "quarter-digits.json"
    path.write_text(json.dumps({**schedule, "name": "quarter-digits"}))
    return path


def command(store: Path, batch: int = 2, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", "run", "--store", str(store), "--model", "digits", "--weights",
            "random", "--schedule", str(quarter_digits_schedule(store.parent)), "--jobs", "octave,opposite",
            "--classes", "0-2", "--seeds", "2", "--batch-size", str(batch), "--workers", str(workers)]


def start(store: Path, batch: int = 2, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CLASSWEEP_OFFLINE": "1"}
    # A session of its own: after a SIGKILL we can find and end exactly the Ray processes this run started.
    return subprocess.Popen(command(store, batch, workers), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def session_processes(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":   # fields after the name: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def end_session(sid: int) -> None:
    for pid in session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def part_files(store: Path) -> list[Path]:
    return sorted((store / "images").glob("part-*.parquet")) if (store / "images").exists() else []


def wait_for_files(store: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(part_files(store)) < count:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the sweep wrote no file in time"
        time.sleep(0.05)


def killed_after_its_first_file(store: Path) -> int:
    """Start the sweep, SIGKILL its driver (no cleanup at all) once its first file is stored, and end the processes
    it started: the driver's pid."""
    first = start(store)
    try:
        wait_for_files(store, 1, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        end_session(first.pid)
    return first.pid


def test_a_killed_driver_leaves_whole_files_and_a_store_its_next_run_resumes(tmp_path):
    store = tmp_path / "store"
    killed = killed_after_its_first_file(store)
    files = part_files(store)
    assert 1 <= len(files) < BATCHES
    stored = pd.concat([pq.read_table(path).to_pandas() for path in files])   # every file whole
    assert len(stored) == 2 * len(files) and stored.key.is_unique
    assert not [p for p in (store / IMAGES).iterdir() if not p.name.startswith("part-")]
    # Its lease is left behind, and judged dead (its process on this host is gone): the next run is not held back.
    st = Store.open(str(store))
    assert read_lease(st)["pid"] == killed and running_sweep(st) is None
    # The next run, with another batch size, has exactly the items the killed one did not store.
    schedule = str(quarter_digits_schedule(tmp_path))
    prepared = prepare(SweepConfig(store=str(store), model="digits", weights="random", schedule=schedule,
                                   jobs="octave,opposite", classes="0-2", seeds=2, batch_size=3))
    pending = pending_work(prepared.plan, st)
    assert pending.total == ITEMS and {item.key for item in pending.items} == \
        {item.key for item in prepared.plan.items()} - set(stored.key)


# Two more Ray starts (about 20 s here): a resume with another batch size runs in every run in test_driver, and the
# Ctrl-C stop there (SIGTERM) and in test_hostile (signals during start-up).
@pytest.mark.slow
@pytest.mark.parametrize("interrupted_too", [False, True])
def test_killed_then_interrupted_driver_resumes_exactly_once(tmp_path, interrupted_too):
    store = tmp_path / "store"
    killed_after_its_first_file(store)                     # 1. SIGKILL
    killed_at = len(part_files(store))
    assert 1 <= killed_at < BATCHES
    # 2. Ctrl-C: a clean stop with a message and exit status 130.
    if interrupted_too:
        second = start(store)
        try:
            wait_for_files(store, killed_at + 1, second)
            second.send_signal(signal.SIGINT)
            output, _ = second.communicate(timeout=60)
        finally:
            end_session(second.pid)
        assert second.returncode == 130, output
        assert "interrupted" in output and f"resuming: {2 * killed_at}/{ITEMS}" in output
        assert len(part_files(store)) < BATCHES
    before_last = len(part_files(store))
    # 3. The same command with another batch size (as after an out-of-memory error) completes only what is missing,
    # on one worker (the worker count is no part of a store's identity; one actor start less on a busy machine).
    third = start(store, batch=3, workers=1)
    try:
        output, _ = third.communicate(timeout=180)
    finally:
        end_session(third.pid)
    assert third.returncode == 0, output
    assert f"{ITEMS}/{ITEMS} items done" in output and f"resuming: {2 * before_last}/{ITEMS}" in output
    for path in part_files(store):
        assert pq.read_table(path).num_rows >= 1                  # no unreadable or empty file
    assert not [p for p in (store / "images").iterdir() if not p.name.startswith("part-")]
    frame = pd.read_parquet(store / "images", columns=["key"])
    assert len(frame) == ITEMS and frame.key.is_unique
