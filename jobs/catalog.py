"""The table of jobs and the work item: what each job's work items look like (`Job`), and one item (`JobSpec`).
Light on purpose (no torch), so that the planner (`sweep.plan`), the store and the analysis read the same table and
pass the same items as the recipes (`jobs.kinds`) without loading the engine.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from jobs.text import is_whole_number


@dataclass(frozen=True)
class Job:
    """One job of the engine, as planning and analysis see it (the recipe itself lives in `jobs.kinds`)."""
    name: str
    paired: bool = False               # items are (target, partner) pairs of classes
    pair_commutes: bool = False        # a+b makes the same image as b+a (both objectives are symmetric), so the
                                       #   plan leaves b+a out after a+b
    classless: bool = False            # no target class: target -1
    from_image: bool = False           # starts from a real image (`--images`), one item per source
    layer_variant: bool = False        # the variant is a layer spec (`--layers`), not one of `variants`
    variants: tuple[str, ...] = ("",)  # the fixed variants ("": none)
    family: str = "class"              # whose default schedule it runs on an ImageNet model (`jobs.schedules`):
                                       #   "class", "transfigure" or "dream"
    blur: str = "octaves"              # how often it blurs (`Schedule.for_job`): "octaves" (each octave's own
                                       #   `blur_every`), "layers" (never on whole layers, the octaves' on chosen
                                       #   feature maps) or "directed" (every `dream_blur_every` steps)
    framed: bool = False               # stores frames of its way there (interpolation), besides the final image
    aim: str = "target"                # the class its finished image should read as: "target", or "partner"
                                       #   (an interpolation ends at class b); a class-less job has neither


CATALOG = (
    Job("octave"),
    Job("opposite"),
    Job("addition", paired=True, pair_commutes=True, variants=("merge", "juxtapose")),
    Job("transfigure", from_image=True, family="transfigure"),
    Job("interpolate", paired=True, from_image=True, family="transfigure", framed=True, aim="partner"),
    Job("dream", classless=True, from_image=True, layer_variant=True, family="dream", blur="layers"),
    Job("directed-dream", from_image=True, layer_variant=True, family="dream", blur="directed"),
)
BY_NAME = {job.name: job for job in CATALOG}
ALL_JOBS = tuple(job.name for job in CATALOG)                             # noise jobs first
JOBS = tuple(job.name for job in CATALOG if not job.from_image)           # the default selection without --images
IMAGE_JOBS = tuple(job.name for job in CATALOG if job.from_image)         # start from a real image (in this order)
FRAMED = frozenset(job.name for job in CATALOG if job.framed)
PAIRED = frozenset(job.name for job in CATALOG if job.paired)
CLASSLESS = frozenset(job.name for job in CATALOG if job.classless)
LAYER_JOBS = frozenset(job.name for job in CATALOG if job.layer_variant)
VARIANTS = {job.name: job.variants for job in CATALOG if not job.layer_variant}
ALL_VARIANTS = tuple(dict.fromkeys(v for job in CATALOG for v in job.variants if v))   # the default --variants


@dataclass(frozen=True)
class JobSpec:
    """One image to generate: a work item of the plan (`sweep.plan`) and what a recipe renders (`jobs.kinds`)."""
    job: str                # a name of `ALL_JOBS`
    target: int             # class index; -1 for a class-less job (dream)
    seed: int = 0           # same seed -> same image (initial noise, crop positions)
    variant: str = ""       # "" or, for addition, "merge" | "juxtapose"; for dreams the layer spec
    partner: int = -1       # second class for addition and interpolation, -1 when none
    source: str = ""        # name of the real image a job starts from ("" for noise)

    @property
    def key(self) -> str:
        """The item's name in the store, for ever (`key_of`)."""
        return key_of(self.job, self.variant, self.target, self.partner, self.seed, self.source)


def key_of(job: str, variant: str, target: int, partner: int, seed: int, source: str = "") -> str:
    """The store's key of one image, the one definition of the format: `job:variant:target:partner:seed`
    (variant "-" when empty), plus `:source` for a job that starts from a real image."""
    key = f"{job}:{variant or '-'}:{target}:{partner}:{seed}"
    return f"{key}:{source}" if source else key


def job_of_key(key: str) -> str:
    """The job of a store key (`key_of`): its first field (a job name holds no colon; a layer variant may)."""
    return key.split(":", 1)[0]


# job : variant (shortest: a layer variant may hold ':') : target : partner : seed, then the end, ':source' or a
# frame's '#frame'. Dream jobs are unpaired (partner -1) and seeds are not negative, so a layer variant's maps
# (`a:3:7:-1:0:photo`: variant a:3, target 7) never read as target, partner and seed.
_KEY_FIELDS = re.compile(r"[^:]*:(?P<variant>.*?):-?\d+:-?\d+:\d+(?=$|[:#])")


def variant_of_key(key: str) -> str:
    """The variant of a store key (`key_of`): "" for a job without one (the key's "-"); the layer spec of a dream
    job, colons and all; a key not of that form: its second field."""
    found = _KEY_FIELDS.match(key)
    variant = found["variant"] if found else (key.split(":") + [""])[1]
    return "" if variant == "-" else variant


def job_variant_name(job: str, variant: str | None) -> str:
    """How tables and figures name a job's variant: `job/variant`, or the job alone for one without a variant."""
    return f"{job}/{variant}" if variant else job


def parse_layers(spec: str) -> list[tuple[str, tuple[int, ...]]]:
    """A dream job's layer variant: `"a+b:0,4"` -> [("a", ()), ("b", (0, 4))]: layers joined by `+`, chosen
    feature maps after `:`."""
    parsed = []
    for part in spec.split("+"):
        name, _, maps = part.strip().partition(":")
        if not name:
            raise ValueError(f"empty layer name in layer spec {spec!r}")
        chosen = tuple(m.strip() for m in maps.split(",") if m.strip()) if maps else ()
        if not all(map(is_whole_number, chosen)):   # int() takes "-1", Python's last map, under a key of its own
            raise ValueError(f"feature maps must be integers from 0 (map indices) in layer spec {spec!r}")
        chosen = tuple(map(int, chosen))
        parsed.append((name, chosen))
    return parsed


def layer_terms(spec: str) -> list[tuple[str, tuple[int, ...]]]:
    """`parse_layers` in the one order of a layer variant: each layer's feature maps ascending, each once, and the
    layers joined by `+` sorted by name as people number them (`block2` before `block10`; the name itself breaks a
    tie, then the maps). `a+b` and `b+a` are one objective (a sum: each term's gradient is exactly 1 in either order,
    only the loss's last bits could differ), which the dream sums in this order whatever the spelling. The
    order is the name's, not the network's: the plan, the store's manifest and the recipe spell a variant without a
    model at hand. A layer named twice stays twice (`block2+block2` weighs it double). ValueError as `parse_layers`."""
    terms = [(name, tuple(sorted(set(maps)))) for name, maps in parse_layers(spec)]
    return sorted(terms, key=lambda term: (_numbered(term[0]), term[0], term[1]))


def _numbered(name: str) -> tuple:
    """A layer name's sort key, its runs of digits compared as numbers: `features.10` -> ("features.", 10, "")."""
    return tuple(int(run) if i % 2 else run for i, run in enumerate(re.split(r"(\d+)", name)))


def layer_spec_text(spec: str) -> str:
    """A layer variant's one spelling (`layer_terms`), spaces dropped: `block3:5, 0,5+block2` -> `block2+block3:0,5`.
    The maps are a set and the layers a sum, so two spellings of one objective are one variant and one store key.
    ValueError as `parse_layers` raises it."""
    return "+".join(name + (":" + ",".join(map(str, maps)) if maps else "") for name, maps in layer_terms(spec))


def on_feature_maps(spec: str) -> bool:
    """Whether a layer variant raises chosen feature maps of every layer it names (Deep dream: "optimizing one or
    two features at a time"), rather than whole layers ("Layer Optimization")."""
    return bool(spec) and all(maps for _, maps in parse_layers(spec))
