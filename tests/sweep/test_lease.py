"""One driver per store (issue 18.5): the lease object `{store}/lease.json`. Without Ray: a second driver is
refused in one line naming the first before anything is written; a stale lease (no heartbeat, or a dead process
of this host) is taken over; a driver whose lease another took notices at its next heartbeat."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweep.cli import main
import sweep.lease as lease_module
from sweep.lease import CLAIM_TIMEOUT, LEASE, LEASES, Lease, StoreBusy, lease_expired, read_claims, read_lease
from sweep.store import Store

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


def test_a_lease_of_a_process_this_one_cannot_see_is_judged_by_its_heartbeat_only(tmp_path):
    """Two containers on one host name (`--network host`) each with its own process ids: a live driver's pid is no
    process here, which took its lease over at once. The lease records its pid namespace; only a lease of this one
    is checked by pid (and one written before the namespace was recorded, as before)."""
    from sweep.lease import pid_namespace
    gone = record(dead_pid())
    assert lease_expired({**gone, "pid_namespace": pid_namespace()}, 60) and lease_expired(gone, 60)
    assert not lease_expired({**gone, "pid_namespace": "pid:[1]"}, 60)
    assert lease_expired({**gone, "pid_namespace": "pid:[1]", "heartbeat": time.time() - 61}, 60)
    lease = Lease.acquire(Store.open(str(tmp_path / "s")), "mine")
    assert read_lease(lease.store)["pid_namespace"] == pid_namespace() != ""
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


def test_a_heartbeat_that_fails_unexpectedly_stops_the_run_instead_of_letting_the_lease_go_stale(tmp_path,
                                                                                                  monkeypatch):
    """An error that is not the store's (a bug, a record it cannot read) would fail every beat: the thread ended
    silently, the lease went stale under a running driver and another could take the store. Now the run is told to
    stop, as when another driver took the lease."""
    store = Store.open(str(tmp_path / "s"))
    lease = Lease.acquire(store, "mine", timeout=0.2)            # a beat every 0.05 s

    def broken_refresh():
        raise TypeError("'<' not supported between instances of 'str' and 'float'")
    monkeypatch.setattr(lease, "refresh", broken_refresh)
    with lease.kept():
        deadline = time.monotonic() + 30
        while lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.02)
    assert lease.lost == (f"store {store.uri}: the lease's heartbeat failed ('<' not supported between instances of "
                          "'str' and 'float'); this run stops rather than go on without it")


@pytest.mark.parametrize("claim", [{"heartbeat": "yesterday"}, {"heartbeat": True},
                                   {"heartbeat": 1.0, "held_since": "noon"}])
def test_a_lease_record_with_a_field_that_is_not_a_number_counts_as_unreadable(claim):
    from sweep.lease import parsed_lease
    assert parsed_lease(json.dumps(claim).encode()) is None
    assert parsed_lease(json.dumps({"heartbeat": 1.0, "held_since": 2}).encode()) is not None


# ---- the object-store claim protocol (no conditional write): on the local file system with the object-store path --

@pytest.fixture
def object_store(tmp_path, monkeypatch) -> Store:
    """A local store that takes the object-store lease path (claims under leases/), with short waits."""
    monkeypatch.setattr(Store, "is_object_store", property(lambda self: True))
    monkeypatch.setattr(lease_module, "CLAIM_WAIT", 0.01)
    return Store.open(str(tmp_path / "s"))


def write_claim(store: Store, run: str, state: str, age: float = 0.0, held_since: float | None = None) -> None:
    claim = {**record(os.getpid(), age, run=run), "state": state}
    if held_since is not None:
        claim["held_since"] = held_since
    store.write_bytes(f"{LEASES}/{run}.json", json.dumps(claim).encode())


def test_on_an_object_store_a_second_driver_is_refused_and_the_first_one_releases(object_store):
    first = Lease.acquire(object_store, "run-one")
    assert read_lease(object_store)["run"] == "run-one" and read_lease(object_store)["state"] == "held"
    with pytest.raises(StoreBusy, match="run run-one"):
        Lease.acquire(object_store, "run-two")
    assert [p for p, _ in read_claims(object_store)] == [object_store.path(LEASES, "run-one.json")]  # loser's gone
    first.release()
    assert read_lease(object_store) is None and read_claims(object_store) == []
    Lease.acquire(object_store, "run-two").release()


@pytest.mark.parametrize("state, age", [("held", 3600.0), ("claiming", CLAIM_TIMEOUT + 5)])
def test_on_an_object_store_a_crashed_drivers_claim_is_taken_over(object_store, state, age):
    write_claim(object_store, "crashed", state, age=age, held_since=time.time() - age)
    lease = Lease.acquire(object_store, "mine", timeout=60)
    assert [r["run"] for _, r in read_claims(object_store)] == ["mine"]
    lease.release()


def test_on_an_object_store_a_driver_meeting_another_claimant_waits_for_its_turn(object_store, monkeypatch):
    """Two drivers claiming at once both step back; the one that comes back first to an empty folder holds."""
    write_claim(object_store, "other", "claiming")                      # a live claimant, not yet holding
    waits = []

    def other_steps_back_meanwhile(seconds):
        waits.append(seconds)
        object_store.delete(f"{LEASES}/other.json")
    monkeypatch.setattr(lease_module, "time", types.SimpleNamespace(time=time.time, sleep=other_steps_back_meanwhile))
    lease = Lease.acquire(object_store, "mine")
    assert len(waits) == 1 and read_lease(object_store)["run"] == "mine"
    lease.release()


def test_on_an_object_store_claimants_that_never_step_back_end_in_one_line(object_store):
    write_claim(object_store, "other", "claiming")
    with pytest.raises(StoreBusy, match="kept claiming") as refused:
        Lease.acquire(object_store, "mine")
    assert "\n" not in str(refused.value)
    assert [r["run"] for _, r in read_claims(object_store)] == ["other"]   # its own claim was removed each round


def test_on_an_object_store_a_refresh_notices_a_deleted_claim_and_an_older_holder(object_store):
    lease = Lease.acquire(object_store, "mine")
    assert lease.refresh()
    object_store.delete(f"{LEASES}/mine.json")                          # judged stale by another driver
    assert not lease.refresh() and "removed" in lease.lost
    assert read_claims(object_store) == []                              # a lost lease is never written again

    lease = Lease.acquire(object_store, "late")
    write_claim(object_store, "early", "held", held_since=lease.record["held_since"] - 10)   # held before us
    assert not lease.refresh() and "run early" in lease.lost
    early = Lease(object_store, {**read_lease(object_store)})
    assert early.refresh()                                              # the older holder keeps the store


# ---- the same protocol against real object-store servers (moto's S3, gcp-storage-emulator) ----------------------

from tests.sweep.test_object_stores import gcs, s3, server  # noqa: E402,F401  (module fixtures: one server each)


def race_for_the_lease(store: Store, runs: list[str]) -> dict:
    """Every run in `runs` claims the store's lease at once (one thread each): run -> its Lease or its refusal."""
    start, outcomes = threading.Barrier(len(runs)), {}

    def race(run: str) -> None:
        start.wait()
        try:
            outcomes[run] = Lease.acquire(store, run)
        except StoreBusy as refused:
            outcomes[run] = str(refused)
    threads = [threading.Thread(target=race, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_drivers_starting_together_on_an_object_store_never_both_hold_it(server, monkeypatch):
    """Four drivers race for one bucket's lease, at least three times: never two holders, and the losers are
    refused. A round may end with no holder (all stepped back until they gave up); the rounds go on, up to ten,
    until one had a holder (test_on_an_object_store_a_driver_meeting_another_claimant_waits_for_its_turn checks
    that taking turns ends with a holder without any race)."""
    monkeypatch.setattr(lease_module, "CLAIM_WAIT", 0.1)
    store = Store.open(server.uri("raced"))
    rounds = []
    while len(rounds) < 3 or (max(rounds) == 0 and len(rounds) < 10):
        outcomes = race_for_the_lease(store, [f"r{len(rounds)}-{i}" for i in range(4)])
        holders = [lease for lease in outcomes.values() if isinstance(lease, Lease)]
        assert len(holders) <= 1, outcomes
        assert all("in use by another sweep run" in o or "kept claiming" in o for o in outcomes.values()
                   if isinstance(o, str))
        rounds.append(len(holders))
        if holders:
            assert [r["run"] for _, r in read_claims(store)] == [holders[0].record["run"]]   # losers cleaned up
            holders[0].release()
        assert read_claims(store) == []
    assert max(rounds) == 1, rounds


@pytest.mark.parametrize("stale", ["unreadable", "refreshed"])
def test_of_two_drivers_breaking_a_stale_lease_together_the_second_leaves_the_firsts_new_lease(tmp_path, monkeypatch,
                                                                                                stale):
    """Drivers A and B both judge lease.json stale; A breaks it and takes the lease before B breaks it: B must find
    A's fresh lease in its place and put it back (then be refused), whether the stale lease was unreadable (a
    driver that died between creating and writing it) or a readable one whose driver came back and beat in time."""
    store = Store.open(str(tmp_path / "s"))
    os.makedirs(store.root)
    path = tmp_path / "s" / LEASE
    if stale == "unreadable":
        path.write_bytes(b"")
        os.utime(path, (time.time() - 120, time.time() - 120))
    else:
        path.write_text(json.dumps(record(os.getpid(), age=120, run="mine")))
    real_read_lease, holders = lease_module.read_lease, []

    def a_breaks_it_first(s: Store) -> dict | None:
        seen = real_read_lease(s)                              # B's view: a stale lease
        monkeypatch.setattr(lease_module, "read_lease", real_read_lease)
        if stale == "unreadable":
            holders.append(Lease.acquire(store, "a", timeout=60))
        else:                                                  # the stale driver itself beats just in time
            path.write_text(json.dumps(record(os.getpid(), run="mine")))
        return seen
    monkeypatch.setattr(lease_module, "read_lease", a_breaks_it_first)
    with pytest.raises(StoreBusy):
        Lease.acquire(store, "b", timeout=60)
    assert real_read_lease(store)["run"] == ("a" if stale == "unreadable" else "mine")
    assert [p.name for p in (tmp_path / "s").iterdir()] == [LEASE]


def test_breaking_a_stale_lease_removes_the_asides_that_killed_breakers_left(tmp_path, monkeypatch):
    """A driver killed between renaming a stale lease aside and removing it leaves `lease.json.stale-*` behind:
    the next driver to break a lease removes those renamed more than ASIDE_LEFT_AFTER seconds ago, not a young one
    (another breaker's, between its rename and its remove)."""
    store = Store.open(str(tmp_path / "s"))
    os.makedirs(store.root)
    folder, path = tmp_path / "s", tmp_path / "s" / LEASE
    left = folder / f"{LEASE}.stale-0dead000"
    left.write_text(json.dumps(record(os.getpid(), age=5000, run="long-gone")))

    def take_a_stale_lease(run: str) -> None:
        path.write_text(json.dumps(record(dead_pid(), age=120, run="crashed")))
        Lease.acquire(store, run, timeout=60).release()
    take_a_stale_lease("first")                                     # renamed just now: young, kept
    assert sorted(p.name for p in folder.iterdir()) == [left.name]
    monkeypatch.setattr(lease_module, "ASIDE_LEFT_AFTER", 0.0)      # as if renamed long ago
    take_a_stale_lease("second")
    assert list(folder.iterdir()) == []


def test_a_driver_with_a_shorter_timeout_never_takes_a_lease_its_holder_still_beats(tmp_path):
    """A driver with `--lease-timeout 600` beats every 150 s: another started with the default 60 s must not judge
    its lease stale between two beats (nor `sweep status` say that nothing runs), only after the holder's 600 s."""
    from sweep.lease import running_sweep
    store = Store.open(str(tmp_path / "s"))
    holder = Lease.acquire(store, "patient", timeout=600)
    path = tmp_path / "s" / LEASE
    path.write_text(json.dumps({**json.loads(path.read_text()), "heartbeat": time.time() - 100}))  # between beats
    with pytest.raises(StoreBusy, match=r"run patient.* after 600 s without a heartbeat"):
        Lease.acquire(store, "hasty", timeout=60)
    assert "run patient" in running_sweep(store)
    path.write_text(json.dumps({**json.loads(path.read_text()), "heartbeat": time.time() - 700, "pid": dead_pid()}))
    Lease.acquire(store, "hasty", timeout=60).release()                # a crashed holder's lease is still taken
    assert not holder.refresh()


def test_a_release_the_object_store_does_not_answer_leaves_the_run_s_outcome(object_store, monkeypatch):
    """The lease goes stale by itself: a claim that cannot be deleted at the end (the endpoint gone silent) must not
    replace the run's summary, or its own error, with the store's one line, as it does not on a disk."""
    lease = Lease.acquire(object_store, "mine")
    calls = Store.bounded

    def silent_on_delete(self, call, *args, **kwargs):
        if getattr(call, "__name__", "") == "delete_file":
            raise TimeoutError("no answer in 60 s")           # what `within` raises (an OSError)
        return calls(self, call, *args, **kwargs)
    monkeypatch.setattr(Store, "bounded", silent_on_delete)
    with pytest.raises(KeyError, match="the run's own"):
        with lease.kept():
            raise KeyError("the run's own")
    with lease.kept():
        outcome = "summary"
    assert outcome == "summary"


def test_on_an_object_store_a_claim_withdrawn_between_the_listing_and_its_read_is_no_holder(object_store,
                                                                                             monkeypatch):
    """A claimant that met another steps back by deleting its claim, often just after a racing driver listed it: the
    claim gone when read is no claim, not an unreadable held lease ("in use by another sweep run" when nobody
    holds the store)."""
    write_claim(object_store, "other", "claiming")
    listing = Store.listing

    def other_steps_back_after_the_listing(self, directory="", recursive=False):
        infos = listing(self, directory, recursive)
        if directory == LEASES:
            (Path(self.root) / LEASES / "other.json").unlink(missing_ok=True)
        return infos
    monkeypatch.setattr(Store, "listing", other_steps_back_after_the_listing)
    assert read_lease(object_store) is None
    lease = Lease.acquire(object_store, "mine")
    assert [r["run"] for _, r in read_claims(object_store)] == ["mine"]
    lease.release()


def test_a_claim_deleted_after_the_listing_reads_as_none_on_the_servers(server):
    """What `read_claims` relies on: reading an object deleted since it was listed raises FileNotFoundError."""
    from sweep.lease import read_record
    store = Store.open(server.uri("withdrawn"))
    write_claim(store, "other", "claiming")
    (info,) = store.listing(LEASES)
    assert read_record(store, info)["run"] == "other"
    store.delete(f"{LEASES}/other.json")
    assert read_record(store, info) is None
