"""One driver per store (issue 18.5): the lease object `{store}/lease.json`. Without Ray: a second driver is
refused in one line naming the first before anything is written; a stale lease (no heartbeat, or a dead process
of this host) is taken over; a driver whose lease another took notices at its next heartbeat."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from sweep.cli import main
from sweep.store import LEASE, Lease, Store, StoreBusy, lease_expired, read_lease

RUN = ["--model", "digits", "--weights", "random", "--schedule", "tiny", "--classes", "0-3", "--jobs", "octave",
       "--batch-size", "4"]


def record(pid: int, age: float = 0.0, run: str = "other-run", host: str | None = None) -> dict:
    return {"host": host or socket.gethostname(), "pid": pid, "run": run, "started": "2026-01-01T00:00:00+00:00",
            "heartbeat": time.time() - age}


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_driver_is_refused_naming_the_first(tmp_path):
    store = Store.open(str(tmp_path / "s"))
    first = Lease.acquire(store, "run-one")
    with pytest.raises(StoreBusy) as refused:
        Lease.acquire(store, "run-two")
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "run run-one" in message and socket.gethostname() in message
    assert "\n" not in message
    first.release()
    assert not (tmp_path / "s" / LEASE).exists()
    Lease.acquire(store, "run-two").release()   # free again


def test_sweep_run_on_a_store_another_live_driver_holds_is_one_line_and_writes_nothing(tmp_path):
    store = tmp_path / "s"
    store.mkdir()
    (store / LEASE).write_text(json.dumps(record(os.getpid())))   # this test process: alive
    before = sorted(p.name for p in store.rglob("*"))
    result = CliRunner().invoke(main, ["run", "--store", str(store), *RUN])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "in use by another sweep run" in lines[0]
    assert f"pid {os.getpid()}" in lines[0] and "other-run" in lines[0]
    assert sorted(p.name for p in store.rglob("*")) == before


@pytest.mark.parametrize("stale", [
    dict(age=3600.0),                                # no heartbeat for an hour
    dict(age=0.0, pid=None),                         # fresh, but its process on this host is gone
])
def test_a_stale_lease_is_taken_over(tmp_path, stale):
    store = Store.open(str(tmp_path / "s"))
    os.makedirs(store.root)
    pid = dead_pid() if "pid" in stale else os.getpid()
    (tmp_path / "s" / LEASE).write_text(json.dumps(record(pid, stale["age"])))
    lease = Lease.acquire(store, "mine", timeout=60)
    assert read_lease(store)["run"] == "mine" and lease.record["pid"] == os.getpid()
    assert [p.name for p in (tmp_path / "s").iterdir()] == [LEASE]   # the stale one was not left beside it
    lease.release()


def test_a_fresh_lease_of_another_host_is_respected_until_it_is_stale():
    other = record(pid=1, host="another-host")
    assert not lease_expired(other, timeout=60)
    assert lease_expired({**other, "heartbeat": time.time() - 61}, timeout=60)


def test_an_unreadable_lease_counts_from_its_modification_time(tmp_path):
    store = Store.open(str(tmp_path / "s"))
    os.makedirs(store.root)
    path = tmp_path / "s" / LEASE
    path.write_bytes(b"\x00garbage")
    with pytest.raises(StoreBusy, match="unreadable"):
        Lease.acquire(store, "mine", timeout=60)
    os.utime(path, (time.time() - 120, time.time() - 120))
    Lease.acquire(store, "mine", timeout=60).release()


def test_the_heartbeat_refreshes_and_notices_a_takeover(tmp_path):
    store = Store.open(str(tmp_path / "s"))
    lease = Lease.acquire(store, "mine", timeout=60)
    first = lease.record["heartbeat"]
    time.sleep(0.01)
    assert lease.refresh() and read_lease(store)["heartbeat"] > first
    (tmp_path / "s" / LEASE).write_text(json.dumps(record(os.getpid(), run="intruder")))
    assert not lease.refresh() and "intruder" in lease.lost
    lease.release()                                              # never removes another driver's lease
    assert read_lease(store)["run"] == "intruder"


def test_kept_beats_on_a_thread_and_releases_at_the_end(tmp_path):
    store = Store.open(str(tmp_path / "s"))
    lease = Lease.acquire(store, "mine", timeout=0.2)            # a beat every 0.05 s
    start = lease.record["heartbeat"]
    with lease.kept():
        deadline = time.monotonic() + 30
        while read_lease(store)["heartbeat"] == start and time.monotonic() < deadline:
            time.sleep(0.02)
        assert read_lease(store)["heartbeat"] > start
    assert read_lease(store) is None


def test_on_an_object_store_the_lease_is_written_and_read_back(tmp_path, monkeypatch):
    """pyarrow has no conditional write: the object-store path writes, waits, and reads back (and says so)."""
    monkeypatch.setattr(Store, "is_object_store", property(lambda self: True))
    monkeypatch.setattr(Lease, "OBJECT_SETTLE", 0.0)
    store = Store.open(str(tmp_path / "s"))
    lease = Lease.acquire(store, "mine")
    with pytest.raises(StoreBusy, match="run mine"):
        Lease.acquire(store, "other")
    lease.release()
    assert read_lease(store) is None
