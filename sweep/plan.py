"""Work planning: command-line selections -> work items -> batches, all pure and deterministic.

A sweep is the product jobs x variants x targets (or pairs) x seeds; the jobs that start from a real image are
also multiplied by the source images (`--images`), and the dreams by their layer specs (`--layers`, which take
the variant's place):

    octave, opposite     classes x seeds                     addition     pairs x variants x seeds
    transfigure          classes x sources x seeds           interpolate  pairs x sources x seeds
    dream                layers x sources x seeds (target -1) directed-dream  classes x layers x sources x seeds

Each work item (a `jobs.catalog.JobSpec`) has a key `{job}:{variant or '-'}:{target}:{partner}:{seed}` (plus
`:{source}` for a job from a real image, `JobSpec.key`) that names it in the store for ever, and the full plan is
cut into batches at fixed boundaries, so that a re-run of the same command forms the same batches and resumes by
dropping the keys the store already holds.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from jobs.catalog import (ALL_JOBS, ALL_VARIANTS, BY_NAME, IMAGE_JOBS, JOBS, LAYER_JOBS, PAIRED, JobSpec,
                          layer_spec_text)
from jobs.text import counted, is_whole_number, listing

# Without --pairs, all pairs of the classes when there are at most this many (45 for the digits); above it (499500
# for 1000 classes) a seeded random sample of this many, as `--pairs random:1000` would draw. The latent-space
# article adds a few hand-picked pairs ("Vector Addition and Subtraction": turtle + snowbird, snowbird + tarantula);
# a sample as large as the class jobs themselves keeps a full-class sweep's additions statistical without letting
# them outnumber the rest of the sweep 250 to 1.
MAX_DEFAULT_PAIRS = 1000
PAIRS_RANDOM_SEED = 0   # `random:N` draws the same N pairs for the same class selection, on every machine
# The manifest's word for "every pair of the classes, in `all_pairs` order": 499500 pairs for 1000 classes took
# 14 MB of manifest.json as a list, read several times by every run.
ALL_PAIRS = "all"
OWN_PAIRS_JOB = "interpolate"   # the paired job `--interpolate-pairs` may give pairs of its own
# The most items one sweep may plan: the driver holds each as a JobSpec, its key and its batch (about half a KB in
# all; 10^6 items take about 6 s to plan). 1000 classes with every pair and 10 seeds are 10^7.
MAX_ITEMS = 20_000_000


class PlanError(ValueError):
    """A selection that cannot be planned; the message is one line meant for the user."""


@dataclass(frozen=True)
class Batch:
    """A run of work items of one job and variant, as the engine will render them together."""
    index: int                     # position in the full plan: fixes the batch's identity across runs
    items: tuple[JobSpec, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(item.key for item in self.items)

    @property
    def name(self) -> str:
        """File stem for what this exact set of items produces: same items, same name (idempotent re-writes)."""
        digest = hashlib.sha1("\n".join(self.keys).encode()).hexdigest()[:10]
        return f"part-{self.index:06d}-{self.items[0].job}-{digest}"

    def without(self, keys: Iterable[str]) -> "Batch":
        drop = keys if isinstance(keys, (set, frozenset)) else set(keys)   # a run's done keys: no copy per batch
        return Batch(self.index, tuple(item for item in self.items if item.key not in drop))


def cut_batches(items: Sequence[JobSpec], batch_size: int) -> list[Batch]:
    """`items` (a plan's, in its order) cut into batches of at most `batch_size` items of one (job, variant)."""
    batches: list[Batch] = []
    for _, group in itertools.groupby(items, key=lambda item: (item.job, item.variant)):
        group = list(group)
        for start in range(0, len(group), batch_size):
            batches.append(Batch(len(batches), tuple(group[start:start + batch_size])))
    return batches


@dataclass(frozen=True)
class Plan:
    """What a sweep generates: the user's selections, checked, in canonical form (this is what the manifest keeps)."""
    jobs: tuple[str, ...]
    classes: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    variants: tuple[str, ...]
    seeds: int                     # seeds 0 .. seeds-1
    batch_size: int
    sources: tuple[str, ...] = ()  # names of the real images the image jobs start from
    layers: tuple[str, ...] = ()   # layer specs of the dreams (`block2`, `a+b:0,4`), one variant each
    interpolate_pairs: tuple[tuple[int, int], ...] = ()   # interpolation's own pairs; empty: `pairs`
    pairs_drawn: str = ""          # how the default pairs were drawn when all pairs were too many (`random:N of M`)

    def items(self) -> list[JobSpec]:
        """Every work item, job by job, in a fixed order."""
        out: list[JobSpec] = []
        for job, variants, sources in self._job_axes():
            pairs = self.job_pairs(job.name)
            for variant in variants:
                for seed in range(self.seeds):
                    for source in sources:
                        item = functools.partial(JobSpec, job.name, seed=seed, variant=variant, source=source)
                        if job.paired:
                            out += [item(a, partner=b) for a, b in pairs]
                        elif job.classless:
                            out.append(item(-1))
                        else:
                            out += [item(c) for c in self.classes]
        return out

    def count(self) -> int:
        """len(self.items()), counted without making them (a plan too large to hold is refused before it is made)."""
        return sum(len(variants) * self.seeds * len(sources) * (len(self.job_pairs(job.name)) if job.paired else
                                                                1 if job.classless else len(self.classes))
                   for job, variants, sources in self._job_axes())

    def _job_axes(self) -> Iterator[tuple]:
        """(job, its variants, its sources: ("",) for a job from noise) of each chosen job, in the plan's order."""
        for job in map(BY_NAME.__getitem__, self.jobs):
            variants = list(self.layers) if job.layer_variant else [v for v in job.variants if v in self.variants
                                                                    or not v]
            yield job, variants, (self.sources if job.from_image else ("",))

    def job_pairs(self, name: str) -> tuple[tuple[int, int], ...]:
        """The pairs a paired job renders: interpolation's own when given; for a job whose pair commutes
        (addition: merge sums both gradients, juxtapose follows the weaker of the two) b+a after a+b is left out."""
        pairs = (self.interpolate_pairs or self.pairs) if name == OWN_PAIRS_JOB else self.pairs
        if not BY_NAME[name].pair_commutes:
            return pairs
        seen: set[frozenset[int]] = set()
        kept = []
        for pair in pairs:
            if frozenset(pair) not in seen:
                seen.add(frozenset(pair))
                kept.append(pair)
        return tuple(kept)

    def batches(self) -> list[Batch]:
        """The plan cut into batches of at most `batch_size` items of one (job, variant); boundaries never move."""
        return cut_batches(self.items(), self.batch_size)

    def options(self) -> dict:
        """JSON form, as stored under `options` in manifest.json (the image jobs' fields only when used, so that
        the manifest of a sweep without them reads as before; a pair selection that is every pair of the classes as
        "all", `pairs_option`)."""
        options = {"jobs": list(self.jobs), "classes": list(self.classes),
                   "pairs": pairs_option(self.pairs, self.classes),
                   "variants": list(self.variants), "seeds": self.seeds, "batch_size": self.batch_size}
        if self.sources:
            options["sources"] = list(self.sources)
        if self.layers:
            options["layers"] = list(self.layers)
        if self.interpolate_pairs:
            options["interpolate_pairs"] = pairs_option(self.interpolate_pairs, self.classes)
        if self.pairs_drawn:
            options["pairs_drawn"] = self.pairs_drawn
        return options

    def notes(self) -> list[str]:
        """What the user should know about choices made for them (printed before a run and by the dry run)."""
        notes = []
        if self.pairs_drawn:
            notes.append(f"pairs: {self.pairs_drawn} pairs of the {len(self.classes)} classes, drawn with seed "
                         f"{PAIRS_RANDOM_SEED} (all pairs would be too many; choose others with --pairs)")
        for name in self.jobs:
            if BY_NAME[name].pair_commutes:
                kept = set(self.job_pairs(name))   # a set: `--pairs all` of 1000 classes has 499500
                left_out = [f"{a}+{b}" for a, b in self.pairs if (a, b) not in kept]
                if left_out:
                    notes.append(f"{name}: {listing(left_out)} left out, the same image{'s' * (len(left_out) > 1)}"
                                 f" as the pair{'s' * (len(left_out) > 1)} in the other order")
        return notes

    @classmethod
    def from_options(cls, options: dict) -> "Plan":
        """The plan a manifest's `options` describe (a pair list as older stores kept it, or "all")."""
        classes = tuple(options["classes"])
        return cls(tuple(options["jobs"]), classes, pairs_from_option(options["pairs"], classes),
                   tuple(options["variants"]), int(options["seeds"]),
                   int(options.get("batch_size", 8)),   # a run's setting, kept in options by older stores only
                   tuple(options.get("sources", ())), tuple(options.get("layers", ())),
                   pairs_from_option(options.get("interpolate_pairs", ()), classes), options.get("pairs_drawn", ""))


def comma_items(text: str, where: str) -> list[str]:
    """`text`'s comma-separated items, each stripped; [] when it holds none (`""`, `" , "`: each caller says what is
    missing). An empty item among others (`1,,2`, a trailing comma) is refused, `empty entry in {where}`: the
    doubled comma is a typo, which dropping the item would hide."""
    items = [item.strip() for item in text.split(",")]
    if any(items) and not all(items):
        raise PlanError(f"empty entry in {where}")
    return [item for item in items if item]


def _index(text: str, n_classes: int, what: str = "class") -> int:
    text = text.strip()
    if not is_whole_number(text):
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
    parts = comma_items(text, f"--classes {text!r}")
    if not parts:
        raise PlanError(f"empty entry in --classes {text!r}")
    for part in parts:
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
    """`A+B` -> (A, B); a pairs file's line may also split the two at a comma or any whitespace (`A,B`, `A B`,
    `A<TAB>B`: a spreadsheet's CSV or TSV line)."""
    parts = [p for p in re.split(r"[+,\s]+", text) if p]
    if len(parts) != 2:
        raise PlanError(f"{where}: {text.strip()!r} is not a pair (write A+B, e.g. 1+2)")
    try:
        a, b = (_index(p, n_classes) for p in parts)
    except PlanError as error:
        raise PlanError(f"{where}: {error}") from None
    if a == b:
        raise PlanError(f"{where}: pair {a}+{b} pairs a class with itself (a pair needs two classes)")
    return a, b


def all_pairs(classes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple(itertools.combinations(sorted(classes), 2))


def pairs_option(pairs: Sequence[Sequence[int]], classes: Sequence[int]) -> list[list[int]] | str:
    """A pair selection as the manifest keeps it: ALL_PAIRS when it is every pair of `classes` in `all_pairs`
    order, however it was asked for (`all`, the default, the list typed out), else the list of pairs."""
    count = len(classes) * (len(classes) - 1) // 2
    every = itertools.combinations(sorted(classes), 2)   # all_pairs, one at a time: no second list of 499500
    if pairs and len(pairs) == count and all(tuple(p) == q for p, q in zip(pairs, every)):   # p: a JSON list too
        return ALL_PAIRS
    return [list(p) for p in pairs]


def pairs_from_option(value: Sequence[Sequence[int]] | str, classes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The pairs a manifest's `pairs_option` stands for."""
    return all_pairs(classes) if value == ALL_PAIRS else tuple(tuple(p) for p in value)


def in_table_order(names: list, table: Sequence[str]) -> list:
    """`names` in `table`'s order (names not in it last, as they were): the order `--jobs` or `--variants` was
    typed in changes no item."""
    return sorted(names, key=lambda name: table.index(name) if name in table else len(table))


def in_unordered_pair_order(pairs: list) -> list:
    """`pairs` sorted by the classes they join, A+B and B+A keeping their order (the one listed first is the
    addition's image): pairs listed in another order plan the same items."""
    return sorted(pairs, key=sorted)   # stable: B+A stays after A+B when listed after it


def canonical_options(options: dict) -> dict:
    """A manifest's `options` as this version compares them: each pair selection as it writes it (`pairs_option`),
    so that a store whose manifest lists every pair (written before "all") and a command planning them all compare
    equal; and the lists whose order changes no item (jobs, variants, layers, pairs) in one order, so that the same
    selections typed in another order are the same sweep. Fields that are not a plan's (a hand-edited manifest) are
    left as they are, for the comparison to show."""
    canonical = dict(options)
    for name, table in (("jobs", ALL_JOBS), ("variants", ALL_VARIANTS)):
        if isinstance(options.get(name), list):
            canonical[name] = in_table_order(options[name], table)
    with contextlib.suppress(TypeError):   # layers that are not names: compared as they are
        if isinstance(options.get("layers"), list):
            canonical["layers"] = sorted(options["layers"])
    for name in ("pairs", "interpolate_pairs"):
        value, classes = options.get(name), options.get("classes")
        if isinstance(value, list) and isinstance(classes, list):
            with contextlib.suppress(TypeError):   # classes or pairs that are not numbers: compared as they are
                canonical[name] = pairs_option(in_unordered_pair_order(value), classes)
    return canonical


def default_pairs_drawn(classes: Sequence[int]) -> str:
    """How the default pairs of `classes` are drawn: "" (all of them) or `random:N of M` above MAX_DEFAULT_PAIRS."""
    count = len(classes) * (len(classes) - 1) // 2
    return f"random:{MAX_DEFAULT_PAIRS} of {count}" if count > MAX_DEFAULT_PAIRS else ""


def parse_pairs(text: str | None, n_classes: int, classes: Sequence[int],
                option: str = "--pairs") -> tuple[tuple[int, int], ...]:
    """`1+2,3+4`, a FILE with one pair per line (`#` comments), `random:N`, or `all`. None (no --pairs): all pairs,
    or above MAX_DEFAULT_PAIRS of them the seeded sample `random:MAX_DEFAULT_PAIRS` (`default_pairs_drawn`).

    `random:N` and `all` draw from the selected `classes`; explicit pairs may name any class of the model. `option`:
    the option given, as errors name it (`--interpolate-pairs`).
    """
    if text is None and default_pairs_drawn(classes):
        text = f"random:{MAX_DEFAULT_PAIRS}"
    if text is None or text.strip() == "all":
        return all_pairs(classes)
    text = text.strip()
    if text.startswith("random:"):
        count = text[len("random:"):]
        if not is_whole_number(count) or int(count) < 1:
            raise PlanError(f"{option} {text!r}: expected random:N with N a positive whole number")
        pool = all_pairs(classes)
        if int(count) > len(pool):
            exist = "exists" if len(pool) == 1 else "exist"
            raise PlanError(f"{option} {text}: only {counted(len(pool), 'distinct pair')} {exist} among "
                            f"{counted(len(classes), 'class', 'classes')}")
        return tuple(sorted(random.Random(PAIRS_RANDOM_SEED).sample(pool, int(count))))
    path = Path(text)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")   # UTF-8, with or without the byte-order mark Notepad writes
        except UnicodeDecodeError as error:
            raise PlanError(f"pairs file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
                            f"{error.start}): save it as UTF-8, one A+B pair per line") from None
        lines = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), 1)]
        pairs = [_parse_pair(line, n_classes, f"{path}:{n}") for n, line in lines if line]
        if not pairs:
            raise PlanError(f"pairs file {path} lists no pair")
    elif path.is_dir():
        raise PlanError(f"{option} {text!r} is a folder, not a pairs file: give a file in it with one A+B pair per "
                        f"line")
    elif looks_like_a_path(text):   # `/x/no+file.txt` is no pair list: "class '/x/no' is not a class index"
        raise PlanError(f"{option} {text!r}: no such file (give an existing pairs file, or pairs as 1+2,3+4)")
    elif "+" in text:
        parts = comma_items(text, f"{option} {text!r}")
        spaced = [part for part in parts if "+" not in part]   # a pairs file's `3 4`; on the command line 3+4 only
        if spaced:
            raise PlanError(f"{option} {text!r}: {spaced[0].strip()!r} is not a pair (write A+B, e.g. 1+2)")
        pairs = [_parse_pair(part, n_classes, option) for part in parts]
    else:
        raise PlanError(f"{option} {text!r} is neither a pair list (1+2,3+4), random:N, all, nor an existing file")
    return tuple(dict.fromkeys(pairs))   # drop repeats, keep the user's order


def looks_like_a_path(text: str) -> bool:
    """Whether `--pairs` text names a file rather than lists pairs: it holds a path separator or ends in a text
    file's suffix (.txt, .csv, .tsv), which no pair list does."""
    return "/" in text or "\\" in text or Path(text).suffix.lower() in (".txt", ".csv", ".tsv")


def parse_names(text: str, allowed: Sequence[str], what: str, option: str) -> tuple[str, ...]:
    """A comma list checked against `allowed` (in the user's order, repeats dropped); `option` as typed (`--jobs`),
    for the refusal of an empty entry."""
    names = tuple(dict.fromkeys(comma_items(text, f"{option} {text!r}")))
    unknown = [n for n in names if n not in allowed]
    if not names:
        raise PlanError(f"no {what} given ({text!r}): choose from {', '.join(allowed)}")
    if unknown:
        raise PlanError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}: choose from "
                        f"{', '.join(allowed)}")
    return names


def canonical_layers(specs: Sequence[str]) -> tuple[str, ...]:
    """The dreams' layer specs as typed (`--layers`) -> each in its one spelling (`jobs.catalog.layer_spec_text`:
    feature maps sorted, a map given twice kept once, the layers of a sum in name order), each spelling once, in
    the order given (`block3+block2` and `block2+block3` are one item). PlanError for a spec that does not parse or
    has an empty map entry (`block2:0,,4`)."""
    spellings = []
    for spec in specs:
        for part in spec.split("+"):
            comma_items(part.partition(":")[2], f"--layers {spec!r}")
        try:
            spellings.append(layer_spec_text(spec))
        except ValueError as error:
            raise PlanError(f"--layers {spec!r}: {error}") from None
    return tuple(dict.fromkeys(spellings))


def make_plan(*, n_classes: int, jobs: str | None = None, classes: str = "all", pairs: str | None = None,
              variants: str | None = None, seeds: int = 1, batch_size: int = 8, sources: Sequence[str] = (),
              layers: Sequence[str] = (), interpolate_pairs: str | None = None) -> Plan:
    """Check and expand the command-line selections (strings as typed) into a `Plan`; raises `PlanError`.

    `sources`: the names of the real images given (checked and loaded by the caller); `layers`: the dreams' layer
    specs (checked against the model by the caller; spelled one way here, `canonical_layers`). Without `jobs`,
    every noise job runs, and every image job too when there are sources.
    """
    # An empty list given (`--jobs ""`) is an error, not the default: only None means "not given".
    chosen_jobs = (parse_names(jobs, ALL_JOBS, "job", "--jobs") if jobs is not None
                   else ALL_JOBS if sources else JOBS)
    chosen_variants = (parse_names(variants, ALL_VARIANTS, "variant", "--variants") if variants is not None
                       else ALL_VARIANTS)
    if seeds < 1:
        raise PlanError(f"--seeds must be at least 1 (got {seeds})")
    if batch_size < 1:
        raise PlanError(f"--batch-size must be at least 1 (got {batch_size})")
    image_jobs = [job for job in chosen_jobs if job in IMAGE_JOBS]
    if image_jobs and not sources:
        raise PlanError(f"{', '.join(image_jobs)} start{'s' if len(image_jobs) == 1 else ''} from real images: "
                        f"give them with --images DIR_OR_FILE")
    if sources and not image_jobs:
        raise PlanError(f"--images given, but no chosen job starts from an image (jobs: {', '.join(chosen_jobs)}; "
                        f"those that do: {', '.join(IMAGE_JOBS)})")
    chosen_classes = parse_classes(classes, n_classes)
    own_pairs = OWN_PAIRS_JOB in chosen_jobs and interpolate_pairs is not None
    readers = [job for job in pairs_readers(interpolate_pairs) if job in chosen_jobs]   # in the table's order
    needs_pairs = bool(readers)
    chosen_pairs = parse_pairs(pairs, n_classes, chosen_classes) if needs_pairs or pairs else ()
    if needs_pairs and not chosen_pairs:
        raise PlanError(f"{' and '.join(readers)} need{'s' * (len(readers) == 1)} at least two classes or explicit "
                        f"--pairs")
    if not needs_pairs:
        chosen_pairs = ()   # checked above, but unused without a paired job
    drawn = default_pairs_drawn(chosen_classes) if needs_pairs and pairs is None else ""
    chosen_interpolate = (parse_pairs(interpolate_pairs, n_classes, chosen_classes, "--interpolate-pairs")
                          if own_pairs else ())
    if own_pairs and not chosen_interpolate:
        raise PlanError("interpolation needs at least two classes or explicit --interpolate-pairs")
    uses_layers = bool(LAYER_JOBS.intersection(chosen_jobs))
    if uses_layers and not layers:
        raise PlanError("dream and directed-dream need a layer: give one with --layers NAME[:maps]")
    plan = Plan(chosen_jobs, chosen_classes, chosen_pairs, chosen_variants, seeds, batch_size,
                tuple(sources) if image_jobs else (), canonical_layers(layers) if uses_layers else (),
                chosen_interpolate, drawn)
    if plan.count() > MAX_ITEMS:
        raise PlanError(f"the sweep would have {plan.count():,} items, more than {MAX_ITEMS:,}: the driver holds every "
                        f"item in memory (about half a KB each), so lower --seeds or split it into sweeps of fewer "
                        f"classes, pairs or seeds")
    return plan


def pairs_readers(interpolate_pairs: str | None) -> list[str]:
    """The jobs that read `--pairs`: the paired jobs, but the interpolation when it has `--interpolate-pairs`."""
    return [job for job in ALL_JOBS if job in PAIRED and not (job == OWN_PAIRS_JOB and interpolate_pairs is not None)]


def refuse_unused_options(chosen_jobs: Sequence[str], *, pairs: str | None, variants: str | None,
                          layers: Sequence[str], interpolate_pairs: str | None) -> None:
    """Refuse (PlanError) an option given as typed that none of `chosen_jobs` reads: a silently ignored option
    hides a forgotten job (`--jobs octave --pairs 1+2` meant the addition too)."""
    def users(of) -> list[str]:
        return [job for job in ALL_JOBS if of(BY_NAME[job])]
    given = [("--pairs given", pairs is not None, pairs_readers(interpolate_pairs)),
             ("--variants given", variants is not None, users(lambda j: any(j.variants) and not j.layer_variant)),
             ("--layers given", any(spec.strip() for spec in layers), sorted(LAYER_JOBS)),
             ("--interpolate-pairs given", interpolate_pairs is not None, [OWN_PAIRS_JOB])]
    for what, is_given, read_by in given:
        if is_given and not set(read_by) & set(chosen_jobs):
            add = ("add the job to --jobs with the images it starts from (--images)"
                   if set(read_by) <= set(IMAGE_JOBS) else "add the job to --jobs")
            raise PlanError(f"{what} (read by {', '.join(read_by)}), but no chosen job uses it (jobs: "
                            f"{', '.join(chosen_jobs)}): {add}, or leave the option out")


def parse_features(text: str) -> tuple[str, tuple[int, ...]]:
    """`LAYER:0,4` -> (layer, maps): the hidden layer and feature maps of the feature latent space."""
    layer, sep, maps_text = text.strip().rpartition(":")
    if not sep or not layer or not maps_text:
        raise PlanError(f"--features {text!r}: expected LAYER:MAPS, e.g. inception5a:0,4")
    parts = comma_items(maps_text, f"--features {text!r}")
    if not parts:   # `block2:,`
        raise PlanError(f"--features {text!r}: expected LAYER:MAPS, e.g. inception5a:0,4")
    maps = []
    for part in parts:
        if not is_whole_number(part):
            raise PlanError(f"--features {text!r}: {part!r} is not a feature map index")
        maps.append(int(part))
    return layer, tuple(dict.fromkeys(maps))
