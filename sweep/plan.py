"""Work planning: command-line selections -> work items -> batches, all pure and deterministic.

A sweep is the product jobs x variants x targets (or pairs) x seeds. Each work item has a key
`{job}:{variant or '-'}:{target}:{partner}:{seed}` that names it in the store for ever, and the full plan is cut
into batches at fixed boundaries, so that a re-run of the same command forms the same batches and resumes by
dropping the keys the store already holds.
"""
from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

# The pair list `--pairs all` may expand to before we ask the user to choose (45 for the digits, 499500 for 1000).
MAX_DEFAULT_PAIRS = 1000
PAIRS_RANDOM_SEED = 0   # `random:N` draws the same N pairs for the same class selection, on every machine
PAIRED_JOBS = frozenset({"addition", "interpolate"})   # jobs whose items are (target, partner) pairs


class PlanError(ValueError):
    """A selection that cannot be planned; the message is one line meant for the user."""


def engine_jobs() -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The engine's job names and each job's variants (`jobs.JOBS`, `jobs.VARIANTS`)."""
    from jobs.kinds import JOBS, VARIANTS
    return tuple(JOBS), {job: tuple(VARIANTS.get(job, ("",))) for job in JOBS}


@dataclass(frozen=True, order=True)
class WorkItem:
    """One image to generate; the fields of `jobs.JobSpec` in key order."""
    job: str
    variant: str       # "" unless the job has variants (addition: merge | juxtapose)
    target: int
    partner: int       # the second class of an addition, -1 otherwise
    seed: int

    @property
    def key(self) -> str:
        return f"{self.job}:{self.variant or '-'}:{self.target}:{self.partner}:{self.seed}"

    @classmethod
    def from_key(cls, key: str) -> "WorkItem":
        job, variant, target, partner, seed = key.split(":")
        return cls(job, "" if variant == "-" else variant, int(target), int(partner), int(seed))


@dataclass(frozen=True)
class Batch:
    """A run of work items of one job and variant, as the engine will render them together."""
    index: int                     # position in the full plan: fixes the batch's identity across runs
    items: tuple[WorkItem, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(item.key for item in self.items)

    @property
    def name(self) -> str:
        """File stem for what this exact set of items produces: same items, same name (idempotent re-writes)."""
        digest = hashlib.sha1("\n".join(self.keys).encode()).hexdigest()[:10]
        return f"part-{self.index:06d}-{self.items[0].job}-{digest}"

    def without(self, keys: Iterable[str]) -> "Batch":
        drop = set(keys)
        return Batch(self.index, tuple(item for item in self.items if item.key not in drop))


@dataclass(frozen=True)
class Plan:
    """What a sweep generates: the user's selections, checked, in canonical form (this is what the manifest keeps)."""
    jobs: tuple[str, ...]
    classes: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    variants: tuple[str, ...]
    seeds: int                     # seeds 0 .. seeds-1
    batch_size: int

    def items(self) -> list[WorkItem]:
        """Every work item, job by job, in a fixed order."""
        _, job_variants = engine_jobs()
        out: list[WorkItem] = []
        for job in self.jobs:
            variants = [v for v in job_variants[job] if v in self.variants] if job_variants[job] != ("",) else [""]
            for variant in variants:
                for seed in range(self.seeds):
                    if job in PAIRED_JOBS:
                        out += [WorkItem(job, variant, a, b, seed) for a, b in self.pairs]
                    else:
                        out += [WorkItem(job, variant, c, -1, seed) for c in self.classes]
        return out

    def batches(self) -> list[Batch]:
        """The plan cut into batches of at most `batch_size` items of one (job, variant); boundaries never move."""
        batches: list[Batch] = []
        for _, group in itertools.groupby(self.items(), key=lambda item: (item.job, item.variant)):
            group = list(group)
            for start in range(0, len(group), self.batch_size):
                batches.append(Batch(len(batches), tuple(group[start:start + self.batch_size])))
        return batches

    def options(self) -> dict:
        """JSON form, as stored under `options` in manifest.json."""
        return {"jobs": list(self.jobs), "classes": list(self.classes), "pairs": [list(p) for p in self.pairs],
                "variants": list(self.variants), "seeds": self.seeds, "batch_size": self.batch_size}

    @classmethod
    def from_options(cls, options: dict) -> "Plan":
        return cls(tuple(options["jobs"]), tuple(options["classes"]), tuple(tuple(p) for p in options["pairs"]),
                   tuple(options["variants"]), int(options["seeds"]), int(options["batch_size"]))


def _index(text: str, n_classes: int, what: str = "class") -> int:
    text = text.strip()
    if not text.isdigit():
        raise PlanError(f"{what} {text!r} is not a class index (expected a whole number 0-{n_classes - 1})")
    value = int(text)
    if value >= n_classes:
        raise PlanError(f"class {value} is out of range: the model has {n_classes} classes (0-{n_classes - 1})")
    return value


def parse_classes(text: str, n_classes: int) -> tuple[int, ...]:
    """`all`, a range `0-999`, or a list `1,5,7-9` -> sorted distinct class indices."""
    text = text.strip()
    if text == "all":
        return tuple(range(n_classes))
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise PlanError(f"empty entry in --classes {text!r}")
        if "-" in part[1:]:
            low_text, high_text = part.split("-", 1)
            low, high = _index(low_text, n_classes), _index(high_text, n_classes)
            if low > high:
                raise PlanError(f"class range {part} runs backwards (write {high}-{low})")
            chosen.update(range(low, high + 1))
        else:
            chosen.add(_index(part, n_classes))
    return tuple(sorted(chosen))


def _parse_pair(text: str, n_classes: int, where: str) -> tuple[int, int]:
    parts = text.replace(",", "+").replace(" ", "+").split("+")
    parts = [p for p in parts if p]
    if len(parts) != 2:
        raise PlanError(f"{where}: {text.strip()!r} is not a pair (write A+B, e.g. 1+2)")
    try:
        a, b = (_index(p, n_classes) for p in parts)
    except PlanError as error:
        raise PlanError(f"{where}: {error}") from None
    if a == b:
        raise PlanError(f"{where}: pair {a}+{b} adds a class to itself")
    return a, b


def all_pairs(classes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple(itertools.combinations(sorted(classes), 2))


def parse_pairs(text: str | None, n_classes: int, classes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """`1+2,3+4`, a FILE with one pair per line (`#` comments), `random:N`, or `all` (None: all, if few enough).

    `random:N` and `all` draw from the selected `classes`; explicit pairs may name any class of the model.
    """
    if text is None or text.strip() == "all":
        pairs = all_pairs(classes)
        if text is None and len(pairs) > MAX_DEFAULT_PAIRS:
            raise PlanError(f"addition over all pairs of {len(classes)} classes would be {len(pairs)} pairs: "
                            f"choose them with --pairs (e.g. --pairs random:100)")
        return pairs
    text = text.strip()
    if text.startswith("random:"):
        count = text[len("random:"):]
        if not count.isdigit() or int(count) < 1:
            raise PlanError(f"--pairs {text!r}: expected random:N with N a positive whole number")
        pool = all_pairs(classes)
        if int(count) > len(pool):
            raise PlanError(f"--pairs {text}: only {len(pool)} distinct pairs exist among {len(classes)} classes")
        return tuple(sorted(random.Random(PAIRS_RANDOM_SEED).sample(pool, int(count))))
    path = Path(text)
    if path.is_file():
        lines = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(path.read_text().splitlines(), 1)]
        pairs = [_parse_pair(line, n_classes, f"{path}:{n}") for n, line in lines if line]
        if not pairs:
            raise PlanError(f"pairs file {path} lists no pair")
    elif "+" in text:
        pairs = [_parse_pair(part, n_classes, "--pairs") for part in text.split(",")]
    else:
        raise PlanError(f"--pairs {text!r} is neither a pair list (1+2,3+4), random:N, all, nor an existing file")
    return tuple(dict.fromkeys(pairs))   # drop repeats, keep the user's order


def parse_names(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """A comma list checked against `allowed` (in the user's order, repeats dropped)."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise PlanError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}: choose from "
                        f"{', '.join(allowed)}")
    return names


def make_plan(*, n_classes: int, jobs: str | None = None, classes: str = "all", pairs: str | None = None,
              variants: str | None = None, seeds: int = 1, batch_size: int = 8) -> Plan:
    """Check and expand the command-line selections (strings as typed) into a `Plan`; raises `PlanError`."""
    all_jobs, job_variants = engine_jobs()
    chosen_jobs = parse_names(jobs, all_jobs, "job") if jobs else all_jobs
    all_variants = tuple(dict.fromkeys(v for job in all_jobs for v in job_variants[job] if v))
    chosen_variants = parse_names(variants, all_variants, "variant") if variants else all_variants
    if seeds < 1:
        raise PlanError(f"--seeds must be at least 1 (got {seeds})")
    if batch_size < 1:
        raise PlanError(f"--batch-size must be at least 1 (got {batch_size})")
    chosen_classes = parse_classes(classes, n_classes)
    needs_pairs = bool(PAIRED_JOBS.intersection(chosen_jobs))
    chosen_pairs = parse_pairs(pairs, n_classes, chosen_classes) if needs_pairs or pairs else ()
    if needs_pairs and not chosen_pairs:
        raise PlanError("addition needs at least two classes or explicit --pairs")
    if not needs_pairs:
        chosen_pairs = ()   # checked above, but unused without a paired job
    return Plan(chosen_jobs, chosen_classes, chosen_pairs, chosen_variants, seeds, batch_size)


def parse_features(text: str) -> tuple[str, tuple[int, ...]]:
    """`LAYER:0,4` -> (layer, maps): the hidden layer and feature maps of the feature latent space."""
    layer, sep, maps_text = text.strip().rpartition(":")
    if not sep or not layer or not maps_text:
        raise PlanError(f"--features {text!r}: expected LAYER:MAPS, e.g. inception5a:0,4")
    maps = []
    for part in maps_text.split(","):
        if not part.strip().isdigit():
            raise PlanError(f"--features {text!r}: {part.strip()!r} is not a feature map index")
        maps.append(int(part))
    return layer, tuple(dict.fromkeys(maps))
