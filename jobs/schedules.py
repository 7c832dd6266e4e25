"""Octave schedules as data: one frozen dataclass per octave and one for the whole run, with presets.

The octave method (Image generation I, "Jitter using cropped octaves"): starting from `randn / 20 + 0.7`, each
octave runs `iterations` gradient steps at one image size, the learning rate and the blur sigma moving linearly
from start to end (`start * (n - i) / n + end * i / n` at iteration i of n); between octaves the image is resized.
An octave may optimise random crops of the image (positional jitter) and may pad the model input.

Presets live in `jobs/presets/*.json` ("googlenet", "googlenet-pad", "inception_v3", "digits", "tiny") and
reproduce the settings the article's author published with the articles' code. `load_schedule` takes a preset name or a
.json (or, when PyYAML is importable, .yaml) file; `Schedule.id` is a short hash of the content that identifies a
run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

PRESETS_DIR = Path(__file__).parent / "presets"
STEP_RULES = ("plain", "sign")


def _interpolate(start: float, end: float, i: int, n: int) -> float:
    # The article's schedule: start*(n-i)/n + end*i/n; i runs 0..n-1 so the end value is approached, not reached.
    return start * (n - i) / n + end * i / n


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{what} must be a pair [start, end] of numbers, got {value!r}")
    start, end = float(value[0]), float(value[1])
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return start, end


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Octave:
    """One octave: `iterations` steps at `size` x `size` pixels."""
    size: int                                   # image side during this octave (resized to it on entry)
    iterations: int                             # gradient steps in this octave
    lr: tuple[float, float] = (1.5, 1.0)        # learning rate, start -> end (article's GoogLeNet octave 1)
    sigma: tuple[float, float] = (2.4, 0.8)     # Gaussian blur sigma, start -> end (article's octave 1)
    crop: int | None = None                     # side of the random crop optimised each step; None: whole image
    pad: int = 0                                # pixels of constant frame around the model input each step
    blur_every: int = 1                         # blur after every k-th step (1: every step, 0: never)

    def __post_init__(self) -> None:
        _int(self.size, "octave size", 1)
        _int(self.iterations, "octave iterations", 1)
        object.__setattr__(self, "lr", _pair(self.lr, "octave lr"))
        object.__setattr__(self, "sigma", _pair(self.sigma, "octave sigma"))
        if min(self.lr) < 0:
            raise ValueError(f"octave lr must be >= 0, got {self.lr}")
        if min(self.sigma) <= 0:
            raise ValueError(f"octave sigma must be > 0 (torchvision's gaussian_blur), got {self.sigma}")
        if self.crop is not None:
            _int(self.crop, "octave crop", 1)
            if self.crop > self.size:
                raise ValueError(f"octave crop {self.crop} is larger than the octave size {self.size}")
        _int(self.pad, "octave pad", 0)
        _int(self.blur_every, "octave blur_every", 0)

    def lr_at(self, i: int) -> float:
        """Learning rate at iteration i of this octave."""
        return _interpolate(*self.lr, i, self.iterations)

    def sigma_at(self, i: int) -> float:
        """Blur sigma at iteration i of this octave."""
        return _interpolate(*self.sigma, i, self.iterations)

    def blurs_at(self, i: int) -> bool:
        """Whether the image is blurred after iteration i."""
        return self.blur_every > 0 and (i + 1) % self.blur_every == 0


@dataclass(frozen=True)
class Schedule:
    """A whole generation run: the initial image, the octaves, the step rule and the class loss's constant."""
    name: str                                   # preset or file name (not part of `id`)
    octaves: tuple[Octave, ...]                 # run in order; the image is resized between them
    init_mean: float = 0.7                      # initial image randn * init_std + init_mean (article: randn/20+0.7)
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
    dream_blur_every: int = 5                   # directed dream blurs only every k steps (article: 5-10); a plain
                                                #   dream never blurs
    layer_weight: float = 1.0                   # directed dream: weight of the layer objective ...
    class_weight: float = 1.0                   #   ... and of the class objective (the article's a and b)
    frames: int = 8                             # interpolation frames kept, evenly spaced, the last one final
    interpolation_logit: float = 25.0           # c: interpolation moves (O_a, O_b) from (c, 0) to (0, c); about
                                                #   the logit a class image reaches (digits preset: 10)
    output: str = "logits"                      # the head class objectives read: "logits", or "AuxLogits"
                                                #   (InceptionV3's auxiliary classifier)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"schedule name must be a non-empty string, got {self.name!r}")
        octaves = tuple(o if isinstance(o, Octave) else _octave_from_dict(o, i) for i, o in enumerate(self.octaves))
        if not octaves:
            raise ValueError(f"schedule {self.name!r} has no octaves")
        object.__setattr__(self, "octaves", octaves)
        for what in ("init_mean", "init_std", "C", "l1", "pad_fill", "layer_weight", "class_weight",
                     "interpolation_logit"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"schedule {what} must be a finite number, got {value!r}")
            object.__setattr__(self, what, float(value))
        if self.init_std < 0 or self.l1 < 0:
            raise ValueError("schedule init_std and l1 must be >= 0")
        if self.step not in STEP_RULES:
            raise ValueError(f"schedule step must be one of {', '.join(STEP_RULES)}, got {self.step!r}")
        if not isinstance(self.absolute, bool) or not isinstance(self.clamp, bool):
            raise ValueError("schedule absolute and clamp must be true or false")
        _int(self.dream_blur_every, "schedule dream_blur_every", 1)
        _int(self.frames, "schedule frames", 1)
        if not isinstance(self.output, str) or not self.output:
            raise ValueError(f"schedule output must be a layer name such as 'logits' or 'AuxLogits', "
                             f"got {self.output!r}")
        if _int(self.blur_kernel, "schedule blur_kernel", 1) % 2 == 0:
            raise ValueError(f"schedule blur_kernel must be odd, got {self.blur_kernel}")

    def for_job(self, job: str) -> "Schedule":
        """The schedule a job runs: a dream never blurs; a directed dream blurs every `dream_blur_every` steps
        (Deep dream, "Directed dream"); every other job runs this schedule unchanged."""
        every = {"dream": 0, "directed-dream": self.dream_blur_every}.get(job)
        if every is None:
            return self
        return dataclasses.replace(self, octaves=tuple(dataclasses.replace(o, blur_every=every)
                                                       for o in self.octaves))

    @property
    def total_iterations(self) -> int:
        return sum(o.iterations for o in self.octaves)

    @property
    def final_size(self) -> int:
        """Side of the images the schedule produces."""
        return self.octaves[-1].size

    @property
    def id(self) -> str:
        """Short stable hash of the content (everything but the name): same id, same computation."""
        content = self.to_dict()
        del content["name"]
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["octaves"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}
                           for o in data["octaves"]]
        return data

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
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML; use a .json schedule instead") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def load_schedule(name_or_path: str | Path) -> Schedule:
    """A preset by name, or a schedule from a .json (.yaml with PyYAML) file; ValueError when unknown/invalid."""
    text = str(name_or_path)
    preset = PRESETS_DIR / f"{text}.json"
    path = preset if text in preset_names() else Path(text)
    if not path.is_file():
        raise ValueError(f"unknown schedule {text!r}: use a preset ({', '.join(preset_names())}) "
                         f"or a .json file")
    data = _read_file(path)
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": path.stem}
    try:
        return Schedule.from_dict(data)
    except ValueError as error:
        raise ValueError(f"invalid schedule {path}: {error}") from None


def default_schedule(model_name: str) -> Schedule:
    """The preset for a model: digits and digits-resnet -> "digits", inception_v3 -> "inception_v3", anything else
    -> "googlenet"."""
    presets = {"digits": "digits", "digits-resnet": "digits", "inception_v3": "inception_v3"}
    return load_schedule(presets.get(model_name, "googlenet"))
