"""What a store holds against what its manifest planned: done / total per job and variant, and the failures."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Sequence

import pyarrow.fs as pafs

from jobs.catalog import ALL_JOBS, job_of_key
from jobs.text import counted, first_line, listing
from sweep.plan import Plan
from sweep.lease import running_sweep
from sweep.store import FAILURES, IMAGES, MANIFEST, QUARANTINE, Store, StoreError, is_frame_key, open_store


@dataclass(frozen=True)
class StoreStatus:
    store: str
    manifest: dict
    counts: tuple[tuple[str, str, int, int], ...]   # (job, variant, done, total)
    failed_attempts: int                             # rows in failures/
    still_failing: tuple[tuple[str, str], ...]       # (key, last error) of failed items not in images/
    duplicates: int                                  # keys stored more than once (never, unless files were copied in)
    running: str | None = None                       # the driver holding the store's lease now, described
    unplanned: tuple[tuple[str, int], ...] = ()      # (job, images) stored that the manifest's plan does not list
    unplanned_failing: tuple[tuple[str, int], ...] = ()   # (job, items) failed, not stored, and not in the plan
    quarantined: int = 0                             # files `sweep run` set aside under quarantine/

    @property
    def done(self) -> int:
        return sum(c[2] for c in self.counts)

    @property
    def total(self) -> int:
        return sum(c[3] for c in self.counts)

    @property
    def complete(self) -> bool:
        """Every planned item stored and none still failing (`sweep status` exits 1 otherwise, as `sweep run`): the
        plan's items only, as `sweep run` with this manifest retries no other."""
        return self.done == self.total and not self.still_failing

    def lines(self) -> list[str]:
        m = self.manifest
        jw = max([12, *(len(c[0]) + 2 for c in self.counts)])       # column widths: dream layer specs can be long
        vw = max([12, *(len(c[1]) + 2 for c in self.counts)])
        schedule = m.get("schedule") or "not recorded"   # a manifest written by hand may not name it
        out = [f"store {self.store}: model {m['model']} ({m['weights']}), schedule {schedule} "
               f"({m['schedule_id']}), {m['n_classes']} classes",
               f"{'job':<{jw}}{'variant':<{vw}}{'done/total':>12}"]
        out += [f"{job:<{jw}}{variant or '-':<{vw}}{f'{done}/{total}':>12}"
                for job, variant, done, total in self.counts]
        out.append(f"{'total':<{jw + vw}}{f'{self.done}/{self.total}':>12}")
        if self.unplanned:
            out.append(unplanned_line(self.unplanned))
        out.append(f"failures: {counted(self.failed_attempts, 'failed attempt')}, "
                   f"{counted(len(self.still_failing), 'item')} still failing")
        out += failure_lines(self.still_failing, 20)
        if self.unplanned_failing:
            out.append(unplanned_failures_line(self.unplanned_failing))
        if self.quarantined:
            out.append(f"{counted(self.quarantined, 'file')} set aside in {self.store}/{QUARANTINE}/ (unreadable, or "
                       f"left by a stopped run): `sweep run` runs again those of their items not stored since")
        if self.running:
            out.append(f"a sweep is running on this store ({self.running})")
        if self.duplicates:
            out.append(f"warning: {counted(self.duplicates, 'row')} of {IMAGES}/ repeat a key stored in an earlier "
                       f"file (the readers take each key from the first file by name)")
        return out


def unplanned_line(unplanned: Sequence[tuple[str, int]]) -> str:
    """The images a store holds beyond its plan, per job: the counts above cover the plan only (a manifest edited
    by hand, files copied in from another store)."""
    images = sum(count for _, count in unplanned)
    return (f"{counted(images, 'image')} outside the plan (stored, but the manifest's options plan no such item): "
            f"{per_job(unplanned)}")


def unplanned_failures_line(failing: Sequence[tuple[str, int]]) -> str:
    """The failed items a store does not hold that its plan does not list, per job: not "still failing" (no run
    of this manifest tries them again), and no reason for `sweep status` to exit 1."""
    items = sum(count for _, count in failing)
    return (f"{counted(items, 'item')} outside the plan failed (not stored, and the manifest's options plan no such "
            f"item: `sweep run` will not try again): {per_job(failing)}")


def per_job(counts: Sequence[tuple[str, int]]) -> str:
    """"transfigure 8, interpolate 4"."""
    return ", ".join(f"{job} {count}" for job, count in counts)


def failure_lines(failed: Sequence[tuple[str, str]], limit: int, more: str = "") -> list[str]:
    """`  key: error` for the first `limit` failed items (each error on one line: `error_line`), then how many more
    (`more`: where to see them all)."""
    out = [f"  {key}: {error_line(error)}" for key, error in failed[:limit]]
    if len(failed) > limit:
        out.append(f"  ... and {len(failed) - limit} more{more}")
    return out


def error_line(error: str) -> str:
    """A recorded error on one line: its first, and how many more failures/ holds (a CUDA or compile error spans
    many, and a listing of 20 failed items repeated them all for each)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else str(error)
    return f"{lines[0]} [{counted(len(lines) - 1, 'more line')} in {FAILURES}/]"


def store_status(store: Store | str) -> StoreStatus:
    """Read only the key columns of images/ and failures/ and compare with the manifest's plan."""
    store = open_store(store)
    manifest = store.manifest
    items = planned_items(store)
    keys = [k for k in store.read(IMAGES, ["key"]).column("key").to_pylist()
            if not is_frame_key(k)]   # stores written before frames/ kept frames as extra rows
    stored = set(keys)
    planned = collections.Counter()
    done = collections.Counter()
    for item in items:
        planned[item.job, item.variant] += 1
        done[item.job, item.variant] += item.key in stored
    counts = tuple((job, variant, done[job, variant], total) for (job, variant), total in planned.items())
    planned_keys = {item.key for item in items}
    unplanned = collections.Counter(job_of_key(key) for key in stored if key not in planned_keys)
    failures = store.read(FAILURES, ["key", "attempt", "error"]).to_pylist()
    failing = last_errors(failures, stored)
    unplanned_failing = collections.Counter(job_of_key(key) for key in failing if key not in planned_keys)
    return StoreStatus(store.uri, manifest, counts, len(failures),
                       tuple(sorted((k, e) for k, e in failing.items() if k in planned_keys)), len(keys) - len(stored),
                       running_sweep(store), tuple(sorted(unplanned.items(), key=catalog_order)),
                       tuple(sorted(unplanned_failing.items(), key=catalog_order)),
                       sum(info.type == pafs.FileType.File for info in store.listing(QUARANTINE, recursive=True)))


def last_errors(failures: Sequence[dict], stored: set[str]) -> dict[str, str]:
    """{key: the error of its last attempt} of the failed items that `stored` lacks (`failures`: rows of failures/)."""
    last: dict[str, tuple[int, str]] = {}
    for row in failures:
        if row["key"] not in stored and row["attempt"] >= last.get(row["key"], (-1, ""))[0]:
            last[row["key"]] = (row["attempt"], row["error"])
    return {key: error for key, (_, error) in last.items()}


def catalog_order(job_count: tuple[str, int]) -> tuple[int, str]:
    """Jobs in the catalog's order, a name it lacks after them."""
    job = job_count[0]
    return (ALL_JOBS.index(job) if job in ALL_JOBS else len(ALL_JOBS), job)


def planned_items(store: Store) -> list:
    """The items the manifest's plan expands to; StoreError in one line when its options hold no plan (a
    hand-edited manifest without `jobs` or `classes`): status has nothing to count the images against; or when they
    plan classes the model does not have (items no run can make)."""
    try:
        plan = Plan.from_options(store.manifest["options"])
        items = list(plan.items())
    except (KeyError, TypeError, ValueError) as error:
        raise StoreError(f"{store.uri}/{MANIFEST} holds no sweep plan (options: "
                         f"{plan_problem(store.manifest['options'], error)}): status cannot tell what is missing") \
            from None
    beyond = classes_beyond(plan, store.n_classes)
    if beyond:
        raise StoreError(f"{store.uri}/{MANIFEST} plans classes its model does not have ({listing(beyond)}: "
                         f"{store.manifest['model']} has {counted(store.n_classes, 'class', 'classes')}, "
                         f"0-{store.n_classes - 1}): status cannot count items that can never be made")
    return items


def classes_beyond(plan: Plan, n_classes: int) -> list:
    """The classes a plan names (its classes and pairs) that a model of `n_classes` classes does not have: a
    manifest edited by hand (`sweep run` refuses them)."""
    named = {*plan.classes, *(c for pair in (*plan.pairs, *plan.interpolate_pairs) for c in pair)}
    beyond = [c for c in named if not (isinstance(c, int) and 0 <= c < n_classes)]
    return sorted(beyond, key=lambda c: (0, c) if isinstance(c, (int, float)) else (1, str(c)))   # 9 before 10


def plan_problem(options: dict, error: Exception) -> str:
    """What is wrong with a manifest's options that `Plan.from_options` could not expand, in a few words: an option
    missing (`no jobs`), a job the catalog does not have (a KeyError too), or the error's first line."""
    if not isinstance(error, KeyError) or not error.args:
        return first_line(error)
    name = error.args[0]
    jobs = options.get("jobs")
    if isinstance(jobs, list) and name in jobs and name not in ALL_JOBS:
        return f"unknown job {name!r}"
    return f"no {name}"
