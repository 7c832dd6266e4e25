"""What a store should hold (its manifest's sweep options) against what it holds: the statement of what is missing.

Pure computation: takes the manifest dict, the keys of the images the analysis uses and those of the images it
drops because their outputs are not finite (NaN or inf: held, so not missing, and `sweep run` will not render them
again), returns a `Coverage`. The plan is expanded by `sweep.plan` (light: it reads the job table of
`jobs.catalog`, no torch), the one place that expands a sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from jobs.catalog import job_of_key
from jobs.outputs import NOT_FINITE
from jobs.text import class_label, counted, listing
from sweep.plan import Plan
from sweep.store import is_frame_key

# How many missing items a statement names before it says "and N more".
LIST_LIMIT = 12


@dataclass(frozen=True)
class JobCoverage:
    job: str
    present: int                       # distinct images of this job in the store that the analysis uses
    expected: int | None               # images the plan asks for (None: the job is not in the plan)
    missing: tuple[str, ...]           # keys planned and absent
    not_finite: tuple[str, ...] = ()   # keys held whose outputs are not finite: dropped, not missing


@dataclass(frozen=True)
class Coverage:
    n_classes: int
    planned_classes: tuple[int, ...]   # classes the sweep covers
    classes_without_image: tuple[int, ...]   # planned classes that have no octave image (octave planned)
    jobs: tuple[JobCoverage, ...]
    notes: tuple[str, ...] = field(default=())
    classes_not_finite: tuple[int, ...] = ()   # planned classes whose only octave images have outputs not finite

    @property
    def complete(self) -> bool:
        """Every planned image is held (images dropped for outputs not finite are held: a run would not redo them)."""
        return not self.classes_without_image and all(j.expected is not None and not j.missing for j in self.jobs)

    def lines(self, class_names: tuple[str, ...] = ()) -> list[str]:
        """Human-readable statements: what the sweep covers and what is missing."""
        out = []
        if len(self.planned_classes) < self.n_classes:
            out.append(f"the sweep covers {len(self.planned_classes)} of the model's {self.n_classes} classes")
        for j in self.jobs:
            dropped = (f"; {len(j.not_finite)} dropped, {NOT_FINITE} (NaN or inf): "
                       f"{listing(j.not_finite, LIST_LIMIT)}" if j.not_finite else "")
            if j.expected is None:
                out.append(f"{j.job}: {counted(j.present, 'image')} (not in the sweep's plan){dropped}")
            elif j.missing or j.not_finite:
                missing = f"; missing {len(j.missing)}: {listing(j.missing, LIST_LIMIT)}" if j.missing else ""
                out.append(f"{j.job}: {j.present} of {counted(j.expected, 'image')}{missing}{dropped}")
            else:
                out.append(f"{j.job}: {'its one image' if j.expected == 1 else f'all {j.expected} images'} present")
        for classes, why in ((self.classes_without_image, "no octave image"),
                             (self.classes_not_finite, "only octave images whose outputs are not finite")):
            if classes:
                names = [class_label(c, class_names) for c in classes]
                one = len(names) == 1
                out.append(f"{counted(len(names), 'class', 'classes')} {'has' if one else 'have'} {why} and "
                           f"{'is' if one else 'are'} left out of the class tables: {listing(names, LIST_LIMIT)}")
        out.extend(self.notes)
        out.append("store complete" if self.complete else "store INCOMPLETE: the tables cover what is present")
        return out


def coverage(manifest: dict, present_keys: Iterable[str], not_finite_keys: Iterable[str] = ()) -> Coverage:
    """Compare the images a store holds (`present_keys`: those the analysis uses; `not_finite_keys`: those it drops
    because their outputs are not finite) with the items its manifest's plan expands to
    (`sweep.plan.Plan.from_options`, the planner's own expansion); jobs present but not planned are counted. An
    image dropped for its outputs is held: said as dropped, never as missing."""
    n = int(manifest["n_classes"])
    present = {k for k in present_keys if not is_frame_key(k)}   # frames: rows of older stores' images/ too
    held_not_finite = {k for k in not_finite_keys if not is_frame_key(k)} - present
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
    for job in dict.fromkeys([*planned, *sorted({job_of_key(k) for k in present | held_not_finite})]):
        have = sum(job_of_key(k) == job for k in present)
        keys = planned.get(job)
        dropped = tuple(sorted(k for k in held_not_finite if job_of_key(k) == job))
        reports.append(JobCoverage(job, have, None if keys is None else len(keys),
                                   tuple(k for k in keys or () if k not in present and k not in held_not_finite),
                                   dropped))
    classes = plan.classes if plan else tuple(range(n))
    with_octave = _octave_classes(present)
    with_octave_not_finite = _octave_classes(held_not_finite) - with_octave
    # a sweep without the octave job (only image jobs, say) is not missing class images
    wants_octaves = plan is None or "octave" in planned
    without = tuple(c for c in classes if c not in with_octave) if wants_octaves else ()
    return Coverage(n, tuple(classes), tuple(c for c in without if c not in with_octave_not_finite), tuple(reports),
                    tuple(notes), tuple(c for c in without if c in with_octave_not_finite))


def _octave_classes(keys: Iterable[str]) -> set[int]:
    """The targets of the octave images among `keys`."""
    return {int(k.split(":")[2]) for k in keys if k.startswith("octave:")}

