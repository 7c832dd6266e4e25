"""Octave schedules as data: one frozen dataclass per octave and one for the whole run, with presets.

The octave method (Image generation I, "Jitter using cropped octaves"): starting from scaled noise (the author's
published settings: `randn / 20 + 0.7`), each octave runs `iterations` gradient steps at one image size, the
learning rate and the blur sigma moving linearly from start to end (`start * (n - i) / n + end * i / n` at
iteration i of n); between octaves the image is resized.
An octave may optimise random crops of the image (positional jitter), pad the image each step (the article's
`Pad([1, 1], fill=0.7)`), and resize the image through a cycle of sizes (transformation resiliency).

Presets live in `jobs/presets/*.json` and reproduce the settings the article's author published with the articles'
code: "googlenet", "googlenet-pad", "inception_v3" (class images), "dream" (deep dream and directed dream),
"transfigure" (transfiguration and interpolation from a photograph); "googlenet-printed" runs the article's
printed GoogLeNet lines (octave 1 at lr 6 -> 5 without padding); "fixed-224" (class images for networks that take
one input size only), the demo's "digits" and the tests' "tiny". `load_schedule` takes a preset name or a .json
(or, when PyYAML is importable, .yaml) file; `Schedule.id` is a short hash of the content that identifies a run.

A sweep runs one `ScheduleSet`: a schedule per job, chosen by default per model and job family
(`default_schedules`) and overridable per job (`schedule_set`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from jobs.catalog import ALL_JOBS, BY_NAME, CATALOG, on_feature_maps
from jobs.demo_models import DEMO_MODELS
from jobs.text import flattened

PRESETS_DIR = Path(__file__).parent / "presets"
# Schedule fields added after stores were first written, with their defaults: left out of `Schedule.id` at the
# default, so that the schedules of existing stores keep their ids and their sweeps can be resumed.
ADDED_FIELDS = {"jitter": 0.0, "antialias": True, "interpolation_warmup": True, "jitter_clamp": False}
STEP_RULES = ("plain", "sign")
# What the network is fed (Image generation I: the author passes the noise image straight to the hub
# GoogLeNet/InceptionV3, which apply their own `transform_input`; no mean/std normalisation):
INPUTS = ("raw", "normalized")      # raw: the pixels as they are (articles); normalized: (x - mean) / std first
PAD_MODES = ("image", "frame")      # image: the article's Pad grows the image; frame: pad the model input only
BLUR_SCOPES = ("image", "crop")     # crop octaves: blur the whole image (article) or only the updated crop
INTERPOLATIONS = ("weighted", "targets")   # article's weighted outputs, or our moving targets
SOURCE_FITS = ("crop", "squash")    # a photograph: shorter side + centre crop, or squashed to a square (article)


# Bounds checked when a schedule is loaded (each error names the field and the bound), far beyond the articles'
# settings (octaves of 224-460 px, 10-250 iterations, lr 0.5-6, sigma 0.1-2.4), so that an absurd schedule is
# refused before anything starts instead of filling memory or running for ever.
MAX_SIDE = 2048                     # any image side an octave reaches (size, crop, pad growth, resize cycle)
MAX_ITERATIONS = 100_000            # gradient steps in one octave
MAX_LR = 1000.0                     # learning rate
MAX_SIGMA = 100.0                   # blur sigma (a 3-px kernel is flat long before this)
MAX_FRAMES = 1000                   # interpolation frames kept
MAX_FILE_BYTES = 1 << 20            # a schedule file (the presets are about 1 KB)
MAX_NODES = 100_000                 # values in a schedule file's structure (lists, mappings, scalars)
MAX_DEPTH = 50                      # nesting of a YAML schedule file (a schedule-set file nests 5 deep)


def _interpolate(start: float, end: float, i: int, n: int) -> float:
    # The article's schedule: start*(n-i)/n + end*i/n; i runs 0..n-1 so the end value is approached, not reached.
    return start * (n - i) / n + end * i / n


# A number written as text: YAML 1.1 (PyYAML) reads an exponent as a number only after a dot and with a sign
# (`1.0e-3`), so `lr: 1e-3` arrives as the string "1e-3"; a quoted number is text in YAML and JSON alike.
_NUMBER_TEXT = re.compile(r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:[eE]([-+]?)([0-9]+))?")


def _text_number_hint(value: Any, whole: bool = False) -> str:
    """` (YAML reads 1e-3 as text: write 1.0e-3)` when `value` (or an item of it) is text that reads as a number,
    else "": the hint a refusal of a number field adds. `whole`: the field takes integers (`1e3` -> `1000`)."""
    texts = [v.strip() for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, str)]
    found = next((match for match in map(_NUMBER_TEXT.fullmatch, texts) if match), None)
    if found is None:
        return ""
    text, (mantissa, sign, exponent) = found.group(), found.groups()
    number = float(text)
    if whole and not number.is_integer():
        return ""
    if whole:
        written = str(int(number))
    elif exponent is not None:   # YAML 1.1's float: a dot in the mantissa, a sign on the exponent
        written = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{sign or '+'}{exponent}"
    else:
        written = text
    why = f"YAML reads {text} as text" if exponent is not None else f"{text!r} in quotes is text"
    return f" ({why}: write {written})"


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{what} must be a pair [start, end] of numbers, got {value!r}{_text_number_hint(value)}")
    start, end = float(value[0]), float(value[1])
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return start, end


def _int(value: Any, what: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}{_text_number_hint(value, whole=True)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{what} must be at most {maximum}, got {value}")
    return value


def _at_most(pair: tuple[float, float], bound: float, what: str) -> None:
    if max(pair) > bound:
        raise ValueError(f"{what} must be at most {bound:g}, got {pair}")


@dataclass(frozen=True)
class Octave:
    """One octave: `iterations` steps at `size` x `size` pixels."""
    size: int                                   # image side during this octave (resized to it on entry)
    iterations: int                             # gradient steps in this octave
    lr: tuple[float, float] = (1.5, 1.0)        # learning rate, start -> end (the author's published GoogLeNet
                                                #   octave 1; the article prints [6, 5]: "googlenet-printed")
    sigma: tuple[float, float] = (2.4, 0.8)     # Gaussian blur sigma, start -> end (article's octave 1)
    crop: int | None = None                     # side of the random crop optimised each step; None: whole image
    pad: int = 0                                # pixels of `pad_fill` added around the image each step (the
                                                #   schedule's `pad_mode` says whether the image grows)
    blur_every: int = 1                         # blur after every k-th step (1: every step, 0: never)
    blur_until: int | None = None               # blur only while i < blur_until (None: the whole octave;
                                                #   article's smoothness curriculum: three quarters of the steps)
    resize_cycle: tuple[int, ...] = ()          # before step i < cycle_steps resize the image to
    cycle_steps: int = 0                        #   resize_cycle[i % len] (transformation resiliency: 256, 198,
                                                #   160, 180, 200 over the first 76 of 100 steps)

    def __post_init__(self) -> None:
        _int(self.size, "octave size", 1, MAX_SIDE)
        _int(self.iterations, "octave iterations", 1, MAX_ITERATIONS)
        object.__setattr__(self, "lr", _pair(self.lr, "octave lr"))
        object.__setattr__(self, "sigma", _pair(self.sigma, "octave sigma"))
        if min(self.lr) < 0:
            raise ValueError(f"octave lr must be >= 0, got {self.lr}")
        _at_most(self.lr, MAX_LR, "octave lr")
        if min(self.sigma) <= 0:
            raise ValueError(f"octave sigma must be > 0 (torchvision's gaussian_blur), got {self.sigma}")
        _at_most(self.sigma, MAX_SIGMA, "octave sigma")
        if self.crop is not None:
            _int(self.crop, "octave crop", 1, MAX_SIDE)
            if self.crop > self.size:
                raise ValueError(f"octave crop {self.crop} is larger than the octave size {self.size}")
        _int(self.pad, "octave pad", 0, MAX_SIDE)
        _int(self.blur_every, "octave blur_every", 0)
        if self.blur_until is not None:
            _int(self.blur_until, "octave blur_until", 0)
        if not isinstance(self.resize_cycle, (list, tuple)):
            raise ValueError(f"octave resize_cycle must be a list of sizes, got {self.resize_cycle!r}")
        object.__setattr__(self, "resize_cycle", tuple(_int(v, "octave resize_cycle size", 1, MAX_SIDE)
                                                       for v in self.resize_cycle))
        _int(self.cycle_steps, "octave cycle_steps", 0)
        if self.cycle_steps and not self.resize_cycle:
            raise ValueError("octave cycle_steps needs a resize_cycle")
        if self.resize_cycle and (self.crop is not None or self.pad):
            raise ValueError("an octave with a resize_cycle takes neither crop nor pad")

    @property
    def cycles(self) -> bool:
        return bool(self.resize_cycle) and self.cycle_steps > 0

    def size_at(self, i: int) -> int:
        """The image side step i works on, before any padding (the cycle's size while it runs)."""
        if self.cycles and i < self.cycle_steps:
            return self.resize_cycle[i % len(self.resize_cycle)]
        if self.cycles:
            return self.resize_cycle[(min(self.cycle_steps, self.iterations) - 1) % len(self.resize_cycle)]
        return self.size

    def end_size(self, pad_mode: str = "image") -> int:
        """The image side after the octave: grown by the pad (image mode), or where the resize cycle left it."""
        if self.cycles:
            return self.size_at(self.iterations - 1)
        return self.size + (2 * self.pad * self.iterations if pad_mode == "image" else 0)

    def lr_at(self, i: int) -> float:
        """Learning rate at iteration i of this octave."""
        return _interpolate(*self.lr, i, self.iterations)

    def sigma_at(self, i: int) -> float:
        """Blur sigma at iteration i of this octave."""
        return _interpolate(*self.sigma, i, self.iterations)

    def blurs_at(self, i: int) -> bool:
        """Whether the image is blurred after iteration i."""
        if self.blur_until is not None and i >= self.blur_until:
            return False
        return self.blur_every > 0 and (i + 1) % self.blur_every == 0


@dataclass(frozen=True)
class Schedule:
    """A whole generation run: the initial image, the octaves, the step rule and the class loss's constant."""
    name: str                                   # preset or file name (not part of `id`)
    octaves: tuple[Octave, ...]                 # run in order; the image is resized between them
    init_mean: float = 0.7                      # initial image randn * init_std + init_mean (the author's published
                                                #   randn/20 + 0.7; the article's text prints rand/25 + 0.5 at 256
                                                #   px for its early runs and rand/10 + 0.5 for Deep dream's noise)
    init_std: float = 1 / 20
    step: str = "plain"                         # "plain": x -= lr * grad (articles); "sign": x -= lr * sign(grad)
    C: float = 200.0                            # the constant in the class loss C - O_c (article: 200)
    absolute: bool = True                       # |C - O_c| as in the article's code, else C - O_c
    l1: float = 0.0                             # weight of the L1 penalty on the input (the article found 0 best
                                                #   for octaves; its early single-scale runs used 0.001)
    blur_kernel: int = 3                        # Gaussian kernel side (article: 3)
    pad_fill: float = 0.7                       # value of the padding frame (article: 0.7, the initial mean)
    clamp: bool = False                         # clamp the image to [0, 1] after each step (articles: no)
    # Jobs from real images (Deep dream; Latent space, "Dog transfiguration"):
    dream_blur_every: int = 5                   # directed dream blurs only every k steps (article: 5-10); a dream
                                                #   on whole layers never blurs, on chosen maps after every step
    layer_weight: float = 1.0                   # directed dream: weight of the layer objective ...
    class_weight: float = 1.0                   #   ... and of the class objective (the article's a and b)
    frames: int = 8                             # interpolation frames kept, evenly spaced, the last one final
    interpolation_logit: float = 25.0           # c: interpolation moves (O_a, O_b) from (c, 0) to (0, c); about
                                                #   the logit a class image reaches (digits preset: 10)
    output: str = "logits"                      # the head class objectives read: "logits", or "AuxLogits"
                                                #   (InceptionV3's auxiliary classifier)
    input: str = "raw"                          # "raw": the network gets the pixels as they are (the articles'
                                                #   code); "normalized": ImageNet mean/std first (torchvision)
    pad_mode: str = "image"                     # "image": pad the image itself, it grows 2 px a step (Image
                                                #   generation I, "Padding in the first octave": `single_input =
                                                #   Pad([1, 1], fill=0.7)(single_input)`); "frame": frame the
                                                #   model input only, the image keeps its size (ours)
    blur_scope: str = "image"                   # crop octaves blur the whole image (the article's code, whose
                                                #   "light grey border" it shows) or "crop": only the updated
                                                #   crop ("Jitter using Cropped Octaves": "or else we may only
                                                #   blur the areas that were updated")
    interpolation: str = "weighted"             # "weighted": the article's loss (c - w_a O_a) + (c - w_b O_b);
                                                #   "targets": hold (O_a, O_b) at moving targets (ours)
    source_fit: str = "crop"                    # photographs: "squash" resizes them to the first size's
                                                #   square, as the article's data loader does (Image generation
                                                #   I, "Input Generation with Auxiliary Outputs": `Resize(size=
                                                #   [299, 299])`; "Image Transfiguration": "the same method we
                                                #   used to import our images"): the presets of the jobs from
                                                #   photographs (transfigure, dream) say so. "crop" (ours, and
                                                #   this field's value before them, kept as the default so that
                                                #   a schedule file without the field keeps its id and stores):
                                                #   shorter side to the size, then a centre crop
    interpolation_warmup: bool = True           # several octaves: the first pushes the photograph to class a
                                                #   alone and the interpolation moves over the later ones (see
                                                #   `jobs.kinds.interpolation_start`); false: over the whole run
    jitter: float = 0.0                         # each step, first add uniform noise in [-c, c] to every pixel
                                                #   (Image generation I, "Transformation Resiliency": the
                                                #   article's ColorJitter(0.0001), seeded here per image)
    jitter_clamp: bool = False                  # the jitter then clamps the image to [0, 1], as the article's
                                                #   `ColorJitter(0.0001)(single_input)` does to a float image on
                                                #   every step (the transfigure preset); false: no clamp (the
                                                #   article's text, which leaves it unsaid; kept as the default
                                                #   so that a schedule file without the field keeps its id)
    antialias: bool = True                      # resizes antialias, as the articles' `Resize(size)` does on
                                                #   today's torchvision; false: as it did for tensors in their
                                                #   time (only shrinking steps differ: transfigure's cycle,
                                                #   googlenet-pad's 739 -> 490 px)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"schedule name must be a non-empty string, got {self.name!r}")
        octaves = tuple(o if isinstance(o, Octave) else _octave_from_dict(o, i) for i, o in enumerate(self.octaves))
        if not octaves:
            raise ValueError(f"schedule {self.name!r} has no octaves")
        object.__setattr__(self, "octaves", octaves)
        for what in ("init_mean", "init_std", "C", "l1", "pad_fill", "layer_weight", "class_weight",
                     "interpolation_logit", "jitter"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"schedule {what} must be a finite number, got {value!r}{_text_number_hint(value)}")
            object.__setattr__(self, what, float(value))
        if self.init_std < 0 or self.l1 < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("schedule init_std and l1 must be >= 0, and jitter in [0, 1]")
        if self.step not in STEP_RULES:
            raise ValueError(f"schedule step must be one of {', '.join(STEP_RULES)}, got {self.step!r}")
        if not all(isinstance(getattr(self, what), bool)
                   for what in ("absolute", "clamp", "antialias", "interpolation_warmup")):
            raise ValueError("schedule absolute, clamp, antialias and interpolation_warmup must be true or false")
        if not isinstance(self.jitter_clamp, bool):
            raise ValueError(f"schedule jitter_clamp must be true or false, got {self.jitter_clamp!r}")
        if self.jitter_clamp and not self.jitter:
            raise ValueError("schedule jitter_clamp clamps where the jitter is applied (as ColorJitter does): give "
                             "the schedule a jitter, or leave jitter_clamp false")
        _int(self.dream_blur_every, "schedule dream_blur_every", 1)
        _int(self.frames, "schedule frames", 1, MAX_FRAMES)
        if not isinstance(self.output, str) or not self.output:
            raise ValueError(f"schedule output must be a layer name such as 'logits' or 'AuxLogits', "
                             f"got {self.output!r}")
        if _int(self.blur_kernel, "schedule blur_kernel", 1, MAX_SIDE) % 2 == 0:
            raise ValueError(f"schedule blur_kernel must be odd, got {self.blur_kernel}")
        for what, allowed in (("input", INPUTS), ("pad_mode", PAD_MODES), ("blur_scope", BLUR_SCOPES),
                              ("interpolation", INTERPOLATIONS), ("source_fit", SOURCE_FITS)):
            if getattr(self, what) not in allowed:
                raise ValueError(f"schedule {what} must be one of {', '.join(allowed)}, got {getattr(self, what)!r}")
        if self.pad_mode == "image" and any(o.pad and o.crop for o in octaves):
            raise ValueError("an octave that pads the image (pad_mode image) cannot also crop: the crop positions "
                             "are drawn for a fixed image size; use pad_mode frame")
        for i, o in enumerate(octaves):   # the blur pads by reflection, which needs sides above half its kernel
            blurred = min((o.crop if o.crop and self.blur_scope == "crop" else o.size, *o.resize_cycle))
            if blurred <= self.blur_kernel // 2:
                raise ValueError(f"octave {i}: blur_kernel {self.blur_kernel} cannot blur a {blurred}-px image "
                                 f"(its reflect padding needs sides of at least {self.blur_kernel // 2 + 1} px)")
        for i, o in enumerate(octaves):   # the image grows with the pad each step (pad_mode image)
            side = o.end_size(self.pad_mode) + (2 * o.pad if self.pad_mode == "frame" else 0)
            if side > MAX_SIDE:
                raise ValueError(f"octave {i}: the image reaches {side} px (size {o.size}, pad {o.pad} x "
                                 f"{o.iterations} steps), more than the {MAX_SIDE} px bound")

    def for_job(self, job: str, variant: str = "") -> "Schedule":
        """The schedule a job (of `variant`: a dream's layer spec) runs. Deep dream: a dream on whole layers never
        blurs ("Layer Optimization", a_{n+1} = O(a_n + eps g_n)); a dream on chosen feature maps keeps the
        octaves' blur after every step (a_{n+1} = O(N(a_n + eps g_n)), "optimizing one or two features at a
        time"); a directed dream blurs every `dream_blur_every` steps ("Directed dream"). Every other job runs
        this schedule unchanged. Which rhythm a job has is its `blur` in `jobs.catalog`."""
        rhythm = BY_NAME[job].blur if job in BY_NAME else "octaves"
        every = {"octaves": None, "layers": None if on_feature_maps(variant) else 0,
                 "directed": self.dream_blur_every}[rhythm]
        if every is None:
            return self
        return dataclasses.replace(self, octaves=tuple(dataclasses.replace(o, blur_every=every)
                                                       for o in self.octaves))

    @property
    def total_iterations(self) -> int:
        return sum(o.iterations for o in self.octaves)

    @property
    def members(self) -> tuple["Schedule", ...]:
        """The schedules a run of this one holds: itself (as `ScheduleSet.members`)."""
        return (self,)

    @property
    def final_size(self) -> int:
        """Side of the images the schedule produces."""
        return self.octaves[-1].end_size(self.pad_mode)

    def model_input_sizes(self) -> list[int]:
        """Every side the network is fed during the run (crops, pads and resize cycles included), sorted."""
        sizes = set()
        for o in self.octaves:
            side = o.crop or o.size
            if o.pad:
                grow = 2 * o.pad
                # image mode: step i sees the image grown by i pads; frame mode: always one frame
                sizes.update(range(side, side + grow * o.iterations, grow) if self.pad_mode == "image"
                             else (side + grow,))
            elif o.cycles:
                sizes.update(o.size_at(i) for i in range(o.iterations))
            else:
                sizes.add(side)
        return sorted(sizes)

    def shortened(self, iterations: int = 1) -> "Schedule":
        """The same schedule with at most `iterations` steps per octave (tests, smoke checks, the calibration's
        timed batch)."""
        return dataclasses.replace(self, octaves=tuple(
            dataclasses.replace(o, iterations=min(o.iterations, iterations),
                                cycle_steps=min(o.cycle_steps, iterations)) for o in self.octaves))

    @property
    def id(self) -> str:
        """Short stable hash of the content (everything but the name): same id, same computation."""
        content = self.content_dict()
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["octaves"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}
                           for o in data["octaves"]]
        return data

    def content_dict(self) -> dict[str, Any]:
        """`to_dict` without the name (what `id` hashes), and without the fields added since stores were first
        written while they hold their default, so that an earlier store's schedule keeps its id."""
        content = self.to_dict()
        del content["name"]
        for field, default in ADDED_FIELDS.items():
            if content[field] == default:
                del content[field]
        return content

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Schedule":
        """A schedule from plain data (JSON/YAML); unknown keys and bad values raise ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a schedule must be a mapping, got {type(data).__name__}")
        _refuse_unknown_fields(data, cls, "unknown schedule field(s)")
        missing = [k for k in ("name", "octaves") if k not in data]
        if missing:
            raise ValueError(f"schedule is missing {', '.join(missing)}")
        if not isinstance(data["octaves"], (list, tuple)):
            raise ValueError("schedule octaves must be a list of octaves")
        return cls(**{**data, "octaves": tuple(data["octaves"])})


def _refuse_unknown_fields(data: Mapping[str, Any], cls: type, what: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _octave_from_dict(data: Any, index: int) -> Octave:
    if not isinstance(data, Mapping):
        raise ValueError(f"octave {index} must be a mapping, got {data!r}")
    _refuse_unknown_fields(data, Octave, f"octave {index}: unknown field(s)")
    try:
        return Octave(**data)
    except TypeError as error:  # missing size/iterations
        raise ValueError(f"octave {index}: {error}") from None
    except ValueError as error:
        raise ValueError(f"octave {index}: {error}") from None


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def _read_file(path: Path) -> Any:
    """A schedule file's data: at most MAX_FILE_BYTES of UTF-8 text (a byte-order mark allowed), JSON or (.yaml,
    .yml) YAML without aliases, and at most MAX_NODES values; ValueError (one line) otherwise. Schedule files are
    small: the caps stop a hostile file (an alias bomb expands nine lines into billions of values) before it is
    built."""
    with open(path, "rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB: not a schedule file")
    try:
        text = raw.decode("utf-8-sig")   # with or without the byte-order mark Notepad writes
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file (schedules are JSON or YAML)") from None
    if path.suffix in (".yaml", ".yml"):
        return _read_yaml(path, text)
    try:
        data = json.loads(text, object_pairs_hook=_mapping_without_repeats)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path} is not valid JSON: {flattened(error)}") from None
    except _KeyGivenTwice as error:
        raise ValueError(f"{path} maps the key {error.key!r} twice: keep one") from None
    _count_nodes(data, path)
    return data


class _KeyGivenTwice(ValueError):
    def __init__(self, key: Any, where: str = "") -> None:
        super().__init__(key, where)
        self.key, self.where = key, where


def _mapping_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice (json.loads keeps the last one without a word)."""
    data = {}
    for key, value in pairs:
        if key in data:
            raise _KeyGivenTwice(key)
        data[key] = value
    return data


def _read_yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ValueError(f"{path}: reading YAML needs PyYAML; use a .json schedule instead") from None

    class ScheduleLoader(yaml.SafeLoader):
        """SafeLoader that refuses aliases (`*name`) and counts nodes as it composes them, so that nothing large
        is ever built."""
        nodes = depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError(f"aliases (*{self.peek_event().anchor}) are not allowed in a schedule file")
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise yaml.YAMLError(f"more than {MAX_NODES} values: not a schedule file")
            if self.depth >= MAX_DEPTH:
                raise yaml.YAMLError(f"values nested more than {MAX_DEPTH} deep: not a schedule file")
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            """A mapping, refusing a key given twice (PyYAML keeps the last one without a word)."""
            seen = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = self.construct_object(key_node)
                    if key in seen:
                        mark = key_node.start_mark
                        raise _KeyGivenTwice(key, f" (line {mark.line + 1}, column {mark.column + 1})")
                    seen.add(key)
            return super().construct_mapping(node, deep)

    loader = ScheduleLoader(text)
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, RecursionError) as error:
        raise ValueError(f"{path} is not a valid schedule file: {flattened(error)}") from None
    except _KeyGivenTwice as error:
        raise ValueError(f"{path} maps the key {error.key!r} twice{error.where}: keep one") from None
    finally:
        loader.dispose()


def _count_nodes(data: Any, path: Path) -> None:
    """Refuse a structure with more than MAX_NODES values (JSON has no aliases: its size is the file's)."""
    stack, count = [data], 0
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ValueError(f"{path} holds more than {MAX_NODES} values: not a schedule file")
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


SCHEDULE_SUFFIXES = (".json", ".yaml", ".yml")


def load_schedule(name_or_path: str | Path) -> Schedule:
    """A preset by name, or a schedule from a .json (.yaml with PyYAML) file; ValueError when unknown/invalid."""
    text = str(name_or_path)
    preset = PRESETS_DIR / f"{text}.json"
    path = preset if text in preset_names() else Path(text)
    if path.is_dir():
        raise ValueError(f"schedule file {text!r} is a folder, not a file: give a .json file in it, or a preset "
                         f"({', '.join(preset_names())})")
    if not path.is_file():
        looks_like_a_file = path.suffix.lower() in SCHEDULE_SUFFIXES or "/" in text or "\\" in text
        what = f"no schedule file {text!r} (no such file)" if looks_like_a_file else f"unknown schedule {text!r}"
        raise ValueError(f"{what}: use a preset ({', '.join(preset_names())}) or a schedule file "
                         f"(.json, or .yaml with PyYAML installed)")
    data = _read_file(path)
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": path.stem}
    try:
        return Schedule.from_dict(data)
    except ValueError as error:
        raise ValueError(f"invalid schedule {path}: {error}") from None


def default_schedule(model_name: str) -> Schedule:
    """The class-image preset for a model: a demo model -> its own ("digits"), inception_v3 -> "inception_v3",
    anything else -> "googlenet" (the job families' own presets: `default_schedules`)."""
    presets = {**{m.name: m.preset for m in DEMO_MODELS.values()}, "inception_v3": "inception_v3"}
    return load_schedule(presets.get(model_name, "googlenet"))


# Job families (each job's `family` in `jobs.catalog`) and their default presets for the ImageNet models. Dreams:
# Deep dream's three octaves without crops, 299 -> 380 -> 460; transfiguration and interpolation (which the article
# runs from a photograph with the same method, Latent space "Dog transfiguration"): Image generation I's
# single-scale resize-cycle recipe.
FAMILIES = {job.name: job.family for job in CATALOG}
FAMILY_PRESETS = {"class": None, "transfigure": "transfigure", "dream": "dream"}   # None: `default_schedule`
FIXED_SIZE_PRESET = "fixed-224"   # class images for networks that accept one input size only (ViT, MaxViT)


def family_of(job: str) -> str:
    """The job family whose default schedule a job runs ("class" for any job not listed)."""
    return FAMILIES.get(job, "class")


@dataclass(frozen=True)
class ScheduleSet:
    """The schedules of one sweep: one per job (`jobs`), `default` for every other job.

    The worker needs only `for_job(job)` (the `Schedule` that job runs, with its blur rhythm), `id`, `name`,
    `total_iterations` and `members`. `Schedule` offers the same, so either can be passed where a run's schedules
    are expected.
    """
    name: str                                          # how the set was chosen, e.g. "googlenet+dream+transfigure"
    default: Schedule                                  # jobs without their own entry
    jobs: tuple[tuple[str, Schedule], ...] = ()        # (job, schedule) overrides and family defaults

    def schedule_of(self, job: str) -> Schedule:
        """The schedule as configured for `job` (before `Schedule.for_job`'s blur rhythm)."""
        return dict(self.jobs).get(job, self.default)

    def for_job(self, job: str, variant: str = "") -> Schedule:
        """The schedule `job` (of `variant`) runs."""
        return self.schedule_of(job).for_job(job, variant)

    @property
    def members(self) -> tuple[Schedule, ...]:
        """Every schedule the set holds, the default first, then one per job (by job: two may share a name)."""
        return (self.default, *(s for _, s in self.jobs))

    @property
    def total_iterations(self) -> int:
        """The longest run any job makes."""
        return max(s.total_iterations for s in self.members)

    def job_ids(self, jobs: Sequence[str]) -> dict[str, dict[str, str]]:
        """job -> {"schedule": name, "schedule_id": id} for `jobs` (what the manifest records)."""
        return {job: {"schedule": self.schedule_of(job).name, "schedule_id": self.for_job(job).id,
                      "input": self.for_job(job).input} for job in jobs}

    @property
    def id(self) -> str:
        """Short hash of every schedule's content and which job runs which."""
        content = {"default": self.default.content_dict(),
                   "jobs": {job: s.content_dict() for job, s in sorted(self.jobs)}}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_schedules(model_name: str, jobs: Sequence[str] = ALL_JOBS, *,
                      fixed_size: int | None = None) -> ScheduleSet:
    """The default schedule of every job for `model_name`: the demo model runs its own "digits" preset for every
    job; an ImageNet model runs its class preset (googlenet, inception_v3) for class jobs, "dream" for dreams and
    "transfigure" for transfiguration and interpolation. `fixed_size`: the network accepts only this input side
    (ViT, MaxViT): every job runs "fixed-224" (at that side when it is not 224): the articles' octaves grow the
    image and crop it, and the final image's logits are stored, none of which such a network can follow."""
    if model_name in DEMO_MODELS:
        preset = DEMO_MODELS[model_name].preset
        return ScheduleSet(preset, load_schedule(preset))
    if fixed_size is not None:
        return ScheduleSet(FIXED_SIZE_PRESET, scaled_to(load_schedule(FIXED_SIZE_PRESET), fixed_size))
    default = default_schedule(model_name)
    chosen = {job: load_schedule(FAMILY_PRESETS[family_of(job)]) for job in jobs
              if FAMILY_PRESETS[family_of(job)] is not None}
    names = dict.fromkeys([default.name, *(s.name for s in chosen.values())])
    return ScheduleSet("+".join(names), default, tuple(sorted(chosen.items())))


def scaled_to(schedule: Schedule, side: int) -> Schedule:
    """`schedule` (written for 224-px models) with every octave at `side` pixels, without crops."""
    if side == 224:
        return schedule
    return dataclasses.replace(schedule, name=f"{schedule.name}@{side}", octaves=tuple(
        dataclasses.replace(o, size=side, crop=None) for o in schedule.octaves))


def schedule_set(base: ScheduleSet, overall: str | Path | None = None,
                 per_job: Mapping[str, str | Path] | None = None) -> ScheduleSet:
    """`base` with `overall` (a preset or file) for every job, then `per_job` (job -> preset or file) on top.

    A file may also hold a schedule set: {"default": PRESET_OR_SCHEDULE, "jobs": {JOB: PRESET_OR_SCHEDULE}}.
    ValueError for an unknown preset, an invalid file, or an unknown job name.
    """
    per_job = dict(per_job or {})
    unknown = sorted(set(per_job) - set(ALL_JOBS))
    if unknown:
        raise ValueError(f"no job named {', '.join(map(repr, unknown))}; jobs: {', '.join(ALL_JOBS)}")
    result = base
    if overall is not None:
        loaded = load_schedule_or_set(overall, base)
        result = loaded if isinstance(loaded, ScheduleSet) else ScheduleSet(loaded.name, loaded)
    if per_job:
        jobs = dict(result.jobs)
        for job, source in per_job.items():
            loaded = load_schedule_or_set(source, result)
            jobs[job] = loaded.schedule_of(job) if isinstance(loaded, ScheduleSet) else loaded
        names = dict.fromkeys([result.default.name, *(s.name for s in jobs.values())])
        result = ScheduleSet("+".join(names), result.default, tuple(sorted(jobs.items())))
    return result


def _schedule_from(value: Any, where: str) -> Schedule:
    if isinstance(value, str):
        return load_schedule(value)
    if isinstance(value, Mapping):
        try:
            return Schedule.from_dict({"name": where, **value})
        except ValueError as error:
            raise ValueError(f"invalid schedule {where}: {error}") from None
    raise ValueError(f"{where} must be a preset name or a schedule, got {value!r}")


def load_schedule_or_set(name_or_path: str | Path, base: ScheduleSet | None = None) -> Schedule | ScheduleSet:
    """A preset, a schedule file, or a schedule-set file ({"default": ..., "jobs": {JOB: ...}}). A set file without
    a default leaves the jobs it does not name to `base` (the model's defaults), as `--job-schedule` does; without
    `base`, to googlenet."""
    text = str(name_or_path)
    if text not in preset_names() and Path(text).is_file():
        data = _read_file(Path(text))
        if isinstance(data, Mapping) and ("jobs" in data or "default" in data) and "octaves" not in data:
            _refuse_unknown_fields(data, ScheduleSetFile, f"{text}: unknown schedule-set field(s)")
            stem = Path(text).stem
            if "default" in data or base is None:
                default, inherited = _schedule_from(data.get("default", "googlenet"), f"{stem}:default"), {}
            else:
                default, inherited = base.default, dict(base.jobs)
            jobs = data.get("jobs", {})
            if not isinstance(jobs, Mapping):
                raise ValueError(f"{text}: jobs must map job names to schedules")
            unknown = sorted(set(jobs) - set(ALL_JOBS))
            if unknown:
                raise ValueError(f"{text}: no job named {', '.join(map(repr, unknown))}; jobs: {', '.join(ALL_JOBS)}")
            listed = {job: _schedule_from(v, f"{stem}:{job}") for job, v in jobs.items()}
            return ScheduleSet(stem, default, tuple(sorted({**inherited, **listed}.items())))
    return load_schedule(text)


@dataclass(frozen=True)
class ScheduleSetFile:
    """The fields a schedule-set file may have (for the unknown-field check)."""
    default: Any = None     # preset name or schedule mapping for jobs without an entry
    jobs: Any = None        # job -> preset name or schedule mapping
