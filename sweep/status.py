"""What a store holds against what its manifest planned: done / total per job and variant, and the failures."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Sequence

from jobs.catalog import ALL_JOBS, job_of_key
from jobs.text import counted, first_line
from sweep.plan import Plan
from sweep.store import FAILURES, IMAGES, MANIFEST, Store, StoreError, is_frame_key, open_store, running_sweep


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

    @property
    def done(self) -> int:
        return sum(c[2] for c in self.counts)

    @property
    def total(self) -> int:
        return sum(c[3] for c in self.counts)

    @property
    def complete(self) -> bool:
        """Every planned item stored and none still failing (`sweep status` exits 1 otherwise, as `sweep run`)."""
        return self.done == self.total and not self.still_failing

    def lines(self) -> list[str]:
        m = self.manifest
        jw = max([12, *(len(c[0]) + 2 for c in self.counts)])       # column widths: dream layer specs can be long
        vw = max([12, *(len(c[1]) + 2 for c in self.counts)])
        out = [f"store {self.store}: model {m['model']} ({m['weights']}), schedule {m.get('schedule')} "
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
            + ", ".join(f"{job} {count}" for job, count in unplanned))


def failure_lines(failed: Sequence[tuple[str, str]], limit: int, more: str = "") -> list[str]:
    """`  key: error` for the first `limit` failed items, then how many more (`more`: where to see them all)."""
    out = [f"  {key}: {error}" for key, error in failed[:limit]]
    if len(failed) > limit:
        out.append(f"  ... and {len(failed) - limit} more{more}")
    return out


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
    last: dict[str, tuple[int, str]] = {}
    for row in failures:
        if row["key"] not in stored and row["attempt"] >= last.get(row["key"], (-1, ""))[0]:
            last[row["key"]] = (row["attempt"], row["error"])
    return StoreStatus(store.uri, manifest, counts, len(failures),
                       tuple(sorted((k, e) for k, (_, e) in last.items())), len(keys) - len(stored),
                       running_sweep(store), tuple(sorted(unplanned.items(), key=catalog_order)))


def catalog_order(job_count: tuple[str, int]) -> tuple[int, str]:
    """Jobs in the catalog's order, a name it lacks after them."""
    job = job_count[0]
    return (ALL_JOBS.index(job) if job in ALL_JOBS else len(ALL_JOBS), job)


def planned_items(store: Store) -> list:
    """The items the manifest's plan expands to; StoreError in one line when its options hold no plan (a
    hand-edited manifest without `jobs` or `classes`): status has nothing to count the images against."""
    try:
        return list(Plan.from_options(store.manifest["options"]).items())
    except (KeyError, TypeError, ValueError) as error:
        raise StoreError(f"{store.uri}/{MANIFEST} holds no sweep plan (options: "
                         f"{plan_problem(store.manifest['options'], error)}): status cannot tell what is missing") \
            from None


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
