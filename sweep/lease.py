"""The store's lease: one driver per store.

```
{store}/lease.json             the running driver's lease: host, pid, run id, timeout and heartbeat (`Lease`)
{store}/leases/RUN.json        on an object store, the lease as one claim object per driver (`Lease`)
```
`sweep run` takes the lease before it changes anything in the store and refreshes it while it runs; the readers ask
who holds it (`running_sweep`) to say why a store has no images yet. Heartbeat ages compare wall clocks, so hosts
need roughly synchronised time.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterator

import pyarrow.fs as pafs

from jobs.text import first_line
from sweep.store import StoreError

if TYPE_CHECKING:
    from sweep.store import Store

LEASE = "lease.json"                  # the running driver's lock object on a file system (`Lease`)
LEASES = "leases"                     # on an object store: one claim object per driver (`Lease`)
LEASE_TIMEOUT = 60.0   # seconds without a heartbeat after which a driver's lease is stale (a crashed driver's)


class StoreBusy(StoreError):
    """Another driver holds the store's lease (or took it over from this one)."""


@dataclass
class Lease:
    """The store's lock: which driver runs on the store (host, pid, run id) and when it last said so (`heartbeat`,
    Unix seconds). `sweep run` takes it before it changes anything in the store (temp-file cleanup, quarantine,
    manifest) and refreshes it while it runs; a second driver is refused while the heartbeat is younger than
    `timeout`, and takes a stale lease over, so a crashed driver never blocks a resume.

    On a local file system the lease is `{store}/lease.json`, created with O_EXCL (exactly one of two drivers
    starting together gets it); a stale one is renamed aside before a new one is made.

    On an object store pyarrow offers no conditional write (S3's If-None-Match, GCS's ifGenerationMatch), so the
    lease is a claim protocol over plain PUT, LIST and DELETE (`claim_on_object_store`): each driver writes its own
    claim `{store}/leases/{run}.json` ("claiming"), lists the claims, and holds the lease ("held") only if it saw
    no other live claim; otherwise it deletes its claim, and is refused (another holds) or retries after a random
    wait (another was claiming too). S3 (since December 2020), GCS and MinIO list an object as soon as its PUT
    returns, so of two drivers the one that lists second always sees the other's claim: at most one holds. A
    refresh that finds its claim deleted (judged stale by another driver), or another held claim older than its
    own, gives the lease up (`lost`)."""
    store: Store
    record: dict                        # host, pid, pid_namespace, run, timeout, started, heartbeat (and state,
                                        #   held_since on object stores)
    timeout: float = LEASE_TIMEOUT
    lost: str | None = None             # set when a refresh found another driver's lease

    @classmethod
    def acquire(cls, store: Store, run: str, timeout: float = LEASE_TIMEOUT) -> "Lease":
        """Take the store's lease for run `run`, or raise StoreBusy naming the driver that holds it."""
        record = {"host": socket.gethostname(), "pid": os.getpid(), "pid_namespace": pid_namespace(), "run": run,
                  "timeout": timeout,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "heartbeat": time.time()}
        if store.is_object_store:
            return cls(store, claim_on_object_store(store, record, timeout), timeout)
        data = json.dumps(record).encode()
        for _ in range(3):
            if _create_exclusive(store, LEASE, data):
                return cls(store, record, timeout)
            current = read_lease(store)
            if current is None:              # released in between: try again
                continue
            if not lease_expired(current, timeout):
                raise busy(store, current, timeout)
            _break_lease(store, current)
        raise StoreBusy(f"store {store.uri}: another driver keeps taking the lease ({LEASE}); try again")

    def refresh(self) -> bool:
        """Write a new heartbeat if the lease is still this run's; otherwise set `lost` and return False."""
        if self.store.is_object_store:
            claims = read_claims(self.store)
            mine = next((record for path, record in claims if path == self.store.path(self.relative)), None)
            older = [record for path, record in claims if record is not mine and record.get("state") == "held"
                     and not record.get("unreadable") and not lease_expired(record, self.timeout)
                     and held_order(record) < held_order(self.record)]
            current = older[0] if older else None if mine is None else self.record
        else:
            current = read_lease(self.store)
        if current is None or current.get("run") != self.record["run"]:
            self.lost = (f"store {self.store.uri}: another driver took the lease "
                         f"({describe_lease(current) if current else 'it was removed'}); this run stops")
            return False
        self.record = {**self.record, "heartbeat": time.time()}
        self.store.write_bytes(self.relative, json.dumps(self.record).encode())
        return True

    @property
    def relative(self) -> str:
        """Where this lease lives in the store."""
        return claim_file(self.record["run"]) if self.store.is_object_store else LEASE

    def release(self) -> None:
        """Remove the lease if it is still this run's."""
        if self.store.is_object_store:
            self.store.delete(self.relative)   # a claim object is only ever this run's
            return
        current = read_lease(self.store)
        if current is not None and current.get("run") == self.record["run"]:
            self.store.delete(LEASE)

    @contextlib.contextmanager
    def kept(self) -> Iterator["Lease"]:
        """Refresh the heartbeat every `timeout / 4` seconds on a thread while the block runs; release at the end
        (an exception in the block included). `lost` tells the caller when another driver took over."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.timeout / 4):
                try:
                    if not self.refresh():
                        return
                except (OSError, StoreError):   # a failed heartbeat is retried; the lease goes stale only if they
                    continue                      # all fail
                except Exception as error:        # not the store's answer: every beat would fail so, and the lease
                    self.lost = (f"store {self.store.uri}: the lease's heartbeat failed ({first_line(error)}); "
                                 f"this run stops rather than go on without it")   # go stale under a running driver
                    return

        thread = threading.Thread(target=beat, name="classweep-lease", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(OSError, StoreError):   # it goes stale by itself (an object store's: StoreError)
                self.release()


# ---- the object-store lease: claims over PUT, LIST and DELETE ---------------------------------------------------

CLAIM_TIMEOUT = 15.0    # seconds after which a claim still "claiming" is a crashed driver's (a claim takes < 1 s)
CLAIM_ATTEMPTS = 6      # rounds of claiming before a driver that keeps meeting other claimants gives up
CLAIM_WAIT = 0.5        # seconds: the mean random wait after a round that met another claimant, times the round


def claim_on_object_store(store: Store, record: dict, timeout: float) -> dict:
    """Hold the object-store lease with `record` (its state "held"), or raise StoreBusy (see `Lease`).

    Why at most one driver holds: a driver writes its claim before it lists, and a holder's claim stays in place
    until it releases. Of two drivers A and B, say A lists first; B's write came either before A's list (A sees
    B and does not hold) or after it, and then B's list comes after A's write (B sees A and does not hold)."""
    mine = {**record, "state": "claiming"}
    relative = claim_file(record["run"])
    own = store.path(relative)
    for attempt in range(1, CLAIM_ATTEMPTS + 1):
        store.write_bytes(relative, json.dumps({**mine, "heartbeat": time.time()}).encode())
        live = []
        for path, other in read_claims(store):
            if path == own:
                continue
            held = other.get("state") == "held"
            if lease_expired(other, timeout if held else min(timeout, CLAIM_TIMEOUT)):
                with contextlib.suppress(OSError, StoreError):
                    store.delete_file(path)   # a crashed driver's claim
            else:
                live.append(other)
        if not live:
            now = time.time()
            held = {**mine, "state": "held", "held_since": now, "heartbeat": now}
            store.write_bytes(relative, json.dumps(held).encode())
            return held
        store.delete(relative)
        holders = [other for other in live if other.get("state") == "held"]
        if holders:
            raise busy(store, min(holders, key=held_order), timeout)
        time.sleep(random.uniform(0, 2 * CLAIM_WAIT) * attempt)   # another driver claims too: one of us goes first
    raise StoreBusy(f"store {store.uri}: other drivers kept claiming the lease ({LEASES}/) for "
                    f"{CLAIM_ATTEMPTS} rounds; try again")


def claim_file(run: str) -> str:
    """A driver's claim object, relative to the store."""
    return f"{LEASES}/{run}.json"


def held_order(record: dict) -> tuple[float, str]:
    """Sort key of held claims: the one that took the lease first comes first (ties broken by run id)."""
    return record.get("held_since", 0), str(record.get("run"))


def read_claims(store: Store) -> list[tuple[str, dict]]:
    """(path, record) of every claim object in `{store}/leases/`; one that is not readable JSON counts as a
    claim written at the object's modification time, one deleted since the listing (a claimant stepping back, a
    release) as none."""
    claims = []
    for info in store.listing(LEASES):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            record = read_record(store, info)
            if record is not None:
                claims.append((info.path, record))
    return claims


def read_lease(store: Store) -> dict | None:
    """The lease record now (None when there is none): `lease.json`, or on an object store the oldest held
    claim."""
    if store.is_object_store:
        held = [record for _, record in read_claims(store) if record.get("state") == "held"]
        return min(held, key=held_order) if held else None
    info = store.bounded(store.fs.get_file_info, store.path(LEASE))
    if info.type != pafs.FileType.File:
        return None
    return read_record(store, info)


def read_record(store: Store, info: pafs.FileInfo) -> dict | None:
    """A lease record, or None when the file is gone by the time it is read. One that is not readable JSON (a
    writer caught between create and write, or a damaged file) counts as written at the file's modification time."""
    try:
        record = parsed_lease(store.bounded(store._whole_file, info.path))
    except FileNotFoundError:
        return None
    except OSError:
        record = None
    if record is not None:
        return record
    mtime = info.mtime.timestamp() if info.mtime is not None else time.time()
    return {"host": "?", "pid": -1, "run": "?", "heartbeat": mtime, "unreadable": True, "state": "held"}


def parsed_lease(data: bytes) -> dict | None:
    """The lease record in a lease file's bytes; None when they hold none (not JSON, no heartbeat)."""
    try:
        record = json.loads(data[:65536])
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    # held_since: only on an object store's held claims
    return record if is_number(record.get("heartbeat")) and is_number(record.get("held_since", 0)) else None


def is_number(value) -> bool:
    """An int or float that is not a bool (JSON's true would pass as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pid_namespace() -> str:
    """Which process ids this process sees ("pid:[4026531836]" on Linux; "" where there is no /proc): containers
    that share a host name (`--network host`) but not their process ids differ here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def lease_expired(record: dict, timeout: float) -> bool:
    """No heartbeat for `stale_after` seconds, or held by a process of this host that no longer exists (a process
    this one can see: same host name and process-id namespace; a lease written before the namespace was recorded
    counts as this one's)."""
    if time.time() - float(record["heartbeat"]) > stale_after(record, timeout):
        return True
    if record.get("host") == socket.gethostname() and record.get("pid_namespace", pid_namespace()) == pid_namespace() \
            and isinstance(record.get("pid"), int) and record["pid"] > 0:
        try:
            os.kill(record["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:   # exists, another user's
            return False
    return False


def stale_after(record: dict, timeout: float) -> float:
    """Seconds without a heartbeat after which a lease is stale: `timeout`, or for a held lease the longer timeout
    its own driver took (`--lease-timeout`), which beats only every quarter of it. A claim still "claiming" on an
    object store is judged by `timeout` alone (its caller's short CLAIM_TIMEOUT)."""
    own = record.get("timeout")
    if record.get("state", "held") != "held" or not is_number(own):
        return timeout
    return max(timeout, float(own))


def running_sweep(store: Store, timeout: float = LEASE_TIMEOUT) -> str | None:
    """The driver that holds the store's lease now, described (`describe_lease`); None when no live lease."""
    lease = read_lease(store)
    return describe_lease(lease) if lease is not None and not lease_expired(lease, timeout) else None


def busy(store: Store, holder: dict, timeout: float) -> StoreBusy:
    return StoreBusy(f"store {store.uri} is in use by another sweep run ({describe_lease(holder)}): wait for it to "
                     f"finish; a driver that died releases the store after {stale_after(holder, timeout):g} s "
                     f"without a heartbeat (--lease-timeout)")


def describe_lease(record: dict) -> str:
    if record.get("unreadable"):
        return f"an unreadable lease, last written {time.time() - float(record['heartbeat']):.0f} s ago"
    return (f"host {record.get('host')} pid {record.get('pid')} run {record.get('run')}, last heartbeat "
            f"{max(0.0, time.time() - float(record['heartbeat'])):.0f} s ago")


def _create_exclusive(store: Store, relative: str, data: bytes) -> bool:
    """Create `relative` on a local file system with `data` unless it exists; whether this call created it."""
    path = store.path(relative)
    os.makedirs(store.root, exist_ok=True)
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(handle, data)
        os.fsync(handle)
    finally:
        os.close(handle)
    return True


def _break_lease(store: Store, stale: dict) -> None:
    """Remove a stale `lease.json`, making sure it is the one judged stale: it is renamed aside first (one of two
    drivers breaking it together wins) and put back if it is a lease written since, by a driver that took it
    meanwhile or by the stale one beating again (an unreadable stale lease included: what was moved is readable)."""
    path = store.path(LEASE)
    aside = f"{path}.stale-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        with open(aside, "rb") as handle:
            moved = parsed_lease(handle.read(65536))
    except OSError:
        moved = None
    if moved is not None and (moved.get("run"), moved["heartbeat"]) != (stale.get("run"), stale["heartbeat"]):
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)   # a fresh lease was moved: put it back (link fails if a new one exists)
    with contextlib.suppress(FileNotFoundError):
        os.remove(aside)
    _remove_old_asides(path)


ASIDE_LEFT_AFTER = 600.0   # seconds after which a renamed-aside stale lease is one a dead breaker left (it lives ms)


def _remove_old_asides(path: str) -> None:
    """Remove the `lease.json.stale-*` files that drivers killed while breaking a lease left (each lives only
    between `_break_lease`'s rename and remove): those older than ASIDE_LEFT_AFTER seconds."""
    folder, prefix = os.path.split(path)
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder or "."):
            if entry.name.startswith(f"{prefix}.stale-"):
                with contextlib.suppress(OSError):
                    if time.time() - entry.stat().st_ctime > ASIDE_LEFT_AFTER:   # ctime: the rename's own time
                        os.remove(entry.path)
