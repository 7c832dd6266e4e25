"""What a store should hold (its manifest's sweep options) against what it holds: the statement of what is missing.

Pure computation: takes the manifest dict and the keys present, returns a `Coverage`. The options are read
tolerantly, since they may be stored expanded (lists) or as the command line gave them (`"all"`, `"0-9,15"`,
`"1+2,3+4"`, a seed count): what cannot be expanded (`random:N` pairs, a pairs file) is counted, not listed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable

from sweep.plan import IMAGE_JOBS
from sweep.store import is_frame_key, key_of as item_key   # the store's key format, defined once

# Variants of each job when the options do not say (the engine's VARIANTS; the dreams' are the options' layers).
DEFAULT_VARIANTS = {"octave": ("",), "opposite": ("",), "addition": ("merge", "juxtapose")}
# How many missing items a statement names before it says "and N more".
LIST_LIMIT = 12


@dataclass(frozen=True)
class JobCoverage:
    job: str
    present: int                       # distinct images of this job in the store
    expected: int | None               # images the options ask for (None when they cannot be counted)
    missing: tuple[str, ...]           # keys asked for and absent (empty when they cannot be listed)


@dataclass(frozen=True)
class Coverage:
    n_classes: int
    planned_classes: tuple[int, ...]   # classes the sweep covers
    classes_without_image: tuple[int, ...]   # planned classes that have no octave image
    jobs: tuple[JobCoverage, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.classes_without_image and all(
            j.expected is not None and j.present >= j.expected and not j.missing for j in self.jobs)

    def lines(self, class_names: tuple[str, ...] = ()) -> list[str]:
        """Human-readable statements: what the sweep covers and what is missing."""
        out = []
        if len(self.planned_classes) < self.n_classes:
            out.append(f"the sweep covers {len(self.planned_classes)} of the model's {self.n_classes} classes")
        for j in self.jobs:
            if j.expected is None:
                out.append(f"{j.job}: {j.present} images (how many were planned is unknown)")
            elif j.missing:
                out.append(f"{j.job}: {j.present} of {j.expected} images; missing {len(j.missing)}: "
                           f"{_listing(j.missing)}")
            else:
                out.append(f"{j.job}: all {j.expected} images present")
        if self.classes_without_image:
            names = [_class_label(c, class_names) for c in self.classes_without_image]
            out.append(f"{len(self.classes_without_image)} classes have no octave image and are left out of the "
                       f"class tables: {_listing(names)}")
        out.extend(self.notes)
        out.append("store complete" if self.complete else "store INCOMPLETE: the tables cover what is present")
        return out


def coverage(manifest: dict, present_keys: Iterable[str]) -> Coverage:
    """Compare the images a store holds (`present_keys`) with what its manifest's options plan."""
    n = int(manifest["n_classes"])
    options = manifest.get("options") or {}
    present = {k for k in present_keys if not is_frame_key(k)}
    present_jobs = sorted({k.split(":", 1)[0] for k in present})
    notes = []

    classes = _parse_classes(options.get("classes"), n)
    if classes is None:
        notes.append(f"the manifest's classes option ({options.get('classes')!r}) could not be read; "
                     f"all {n} classes assumed")
        classes = tuple(range(n))
    seeds = _parse_seeds(options.get("seeds"))
    jobs = _parse_list(options.get("jobs")) or present_jobs
    variants_option = _parse_list(options.get("variants"))

    reports = []
    for job in dict.fromkeys([*jobs, *present_jobs]):
        have = {k for k in present if k.startswith(job + ":")}
        if job in jobs and job in IMAGE_JOBS:
            planned = _image_job_keys(job, options, classes, seeds)
            reports.append(JobCoverage(job, len(have), None if planned is None else len(planned),
                                       tuple(k for k in planned or () if k not in have)))
            continue
        if job not in jobs or job not in DEFAULT_VARIANTS:  # not planned, or a job whose plan we cannot expand
            reports.append(JobCoverage(job, len(have), None, ()))
            continue
        if job == "addition":
            variants = tuple(variants_option) if variants_option else DEFAULT_VARIANTS["addition"]
            pairs = _parse_pairs(options.get("pairs"), classes)
            if pairs is None:
                count = _count_pairs(options.get("pairs"))
                expected = None if count is None else count * len(variants) * len(seeds)
                reports.append(JobCoverage(job, len(have), expected, ()))
                continue
            planned = [item_key(job, v, a, b, s) for a, b in pairs for v in variants for s in seeds]
        else:
            planned = [item_key(job, "", c, -1, s) for c in classes for s in seeds]
        missing = tuple(k for k in planned if k not in have)
        reports.append(JobCoverage(job, len(have), len(planned), missing))

    with_octave = {int(k.split(":")[2]) for k in present if k.startswith("octave:")}
    without = tuple(c for c in classes if c not in with_octave)
    return Coverage(n, tuple(classes), without, tuple(reports), tuple(notes))


def _image_job_keys(job: str, options: dict, classes: tuple[int, ...], seeds: tuple[int, ...]) -> list[str] | None:
    """The keys an image job plans: transfigure classes x sources x seeds, interpolate pairs x sources x seeds,
    dream layers x sources x seeds, directed-dream classes x layers x sources x seeds (None: not expandable)."""
    sources = _parse_list(options.get("sources"))
    if not sources:
        return None
    if job == "transfigure":
        return [item_key(job, "", c, -1, s, src) for s in seeds for src in sources for c in classes]
    if job == "interpolate":
        pairs = _parse_pairs(options.get("interpolate_pairs") or options.get("pairs"), classes)
        return None if pairs is None else [item_key(job, "", a, b, s, src) for s in seeds for src in sources
                                           for a, b in pairs]
    layers = [str(layer) for layer in options.get("layers") or ()]
    if not layers:
        return None
    if job == "dream":
        return [item_key(job, layer, -1, -1, s, src) for layer in layers for s in seeds for src in sources]
    return [item_key(job, layer, c, -1, s, src) for layer in layers for s in seeds for src in sources
            for c in classes]


# --- option parsing (tolerant: lists, or the command-line strings) ------------------------------------------------

def _parse_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _parse_classes(value, n: int) -> tuple[int, ...] | None:
    if value is None or value == "all" or value == ["all"]:
        return tuple(range(n))
    try:
        if isinstance(value, str):
            out = []
            for part in value.split(","):
                part = part.strip()
                if "-" in part:
                    lo, hi = part.split("-", 1)
                    out.extend(range(int(lo), int(hi) + 1))
                elif part:
                    out.append(int(part))
            return tuple(dict.fromkeys(out))
        return tuple(dict.fromkeys(int(v) for v in value))
    except (TypeError, ValueError):
        return None


def _parse_seeds(value) -> tuple[int, ...]:
    if value is None:
        return (0,)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return tuple(range(int(value)))
    if isinstance(value, str):
        try:
            return tuple(range(int(value)))
        except ValueError:
            return (0,)
    try:
        return tuple(int(v) for v in value) or (0,)
    except (TypeError, ValueError):
        return (0,)


def _parse_pairs(value, classes: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    """Pairs as (a, b) tuples; None when the option names pairs that cannot be expanded here (random:N, a file)."""
    if value is None:
        return ()
    if value == "all":
        return tuple(itertools.combinations(classes, 2))
    try:
        if isinstance(value, str):
            if value.startswith("random:") or "+" not in value:
                return None
            return tuple((int(a), int(b)) for a, b in (p.split("+") for p in value.split(",") if p.strip()))
        pairs = []
        for p in value:
            if isinstance(p, str):
                a, b = p.split("+")
            else:
                a, b = p
            pairs.append((int(a), int(b)))
        return tuple(pairs)
    except (TypeError, ValueError):
        return None


def _count_pairs(value) -> int | None:
    if isinstance(value, str) and value.startswith("random:"):
        try:
            return int(value.split(":", 1)[1])
        except ValueError:
            return None
    return None


def _class_label(c: int, class_names: tuple[str, ...]) -> str:
    return f"{c} ({class_names[c]})" if 0 <= c < len(class_names) else str(c)


def _listing(items) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:LIST_LIMIT])
    return shown + (f" and {len(items) - LIST_LIMIT} more" if len(items) > LIST_LIMIT else "")
