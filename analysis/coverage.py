"""What a store should hold (its manifest's sweep options) against what it holds: the statement of what is missing.

Pure computation: takes the manifest dict and the keys present, returns a `Coverage`. The plan is expanded by
`sweep.plan` (light: it reads the job table of `jobs.catalog`, no torch), the one place that expands a sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from jobs.text import class_label, counted, listing
from sweep.plan import Plan
from sweep.store import is_frame_key

# How many missing items a statement names before it says "and N more".
LIST_LIMIT = 12


@dataclass(frozen=True)
class JobCoverage:
    job: str
    present: int                       # distinct images of this job in the store
    expected: int | None               # images the plan asks for (None: the job is not in the plan)
    missing: tuple[str, ...]           # keys planned and absent


@dataclass(frozen=True)
class Coverage:
    n_classes: int
    planned_classes: tuple[int, ...]   # classes the sweep covers
    classes_without_image: tuple[int, ...]   # planned classes that have no octave image (octave planned)
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
                out.append(f"{j.job}: {counted(j.present, 'image')} (not in the sweep's plan)")
            elif j.missing:
                out.append(f"{j.job}: {j.present} of {j.expected} images; missing {len(j.missing)}: "
                           f"{listing(j.missing, LIST_LIMIT)}")
            else:
                out.append(f"{j.job}: all {j.expected} images present")
        if self.classes_without_image:
            names = [class_label(c, class_names) for c in self.classes_without_image]
            one = len(names) == 1
            out.append(f"{counted(len(names), 'class', 'classes')} {'has' if one else 'have'} no octave image and "
                       f"{'is' if one else 'are'} left out of the class tables: {listing(names, LIST_LIMIT)}")
        out.extend(self.notes)
        out.append("store complete" if self.complete else "store INCOMPLETE: the tables cover what is present")
        return out


def coverage(manifest: dict, present_keys: Iterable[str]) -> Coverage:
    """Compare the images a store holds (`present_keys`) with the items its manifest's plan expands to
    (`sweep.plan.Plan.from_options`, the planner's own expansion); jobs present but not planned are counted."""
    n = int(manifest["n_classes"])
    present = {k for k in present_keys if not is_frame_key(k)}   # frames: rows of older stores' images/ too
    notes = []
    try:
        plan = Plan.from_options(manifest["options"])
    except (KeyError, TypeError, ValueError):
        plan = None
        notes.append("the manifest holds no sweep plan: what was planned is unknown")
    planned: dict[str, list[str]] = {}
    for item in plan.items() if plan else ():
        planned.setdefault(item.job, []).append(item.key)
    reports = []
    for job in dict.fromkeys([*planned, *sorted({k.split(":", 1)[0] for k in present})]):
        have = sum(k.startswith(job + ":") for k in present)
        keys = planned.get(job)
        reports.append(JobCoverage(job, have, None if keys is None else len(keys),
                                   tuple(k for k in keys or () if k not in present)))
    classes = plan.classes if plan else tuple(range(n))
    with_octave = {int(k.split(":")[2]) for k in present if k.startswith("octave:")}
    # a sweep without the octave job (only image jobs, say) is not missing class images
    wants_octaves = plan is None or "octave" in planned
    without = tuple(c for c in classes if c not in with_octave) if wants_octaves else ()
    return Coverage(n, tuple(classes), without, tuple(reports), tuple(notes))

