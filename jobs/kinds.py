"""Jobs as recipes: a `JobSpec` (what image to make, `jobs.catalog`) becomes an objective; `run_batch` renders a
batch of them.

- `octave`: a class image from noise, minimising the schedule's class loss `|C - O_c|` (Image generation I).
- `opposite`: minimise `O_c` (Latent space, "Opposites"); the result is labelled by argmax, and also by the
  article's margin opposite: the class whose output stands furthest above the next lower output.
- `addition`: two classes, `merge` (`|C - O_a| + |C - O_b|`) or `juxtapose` (push the weaker one each step)
  (Latent space, "Vector addition and subtraction").

Jobs from a real image (`JobSpec.source` names it; `run_batch(..., sources=...)` holds the pixels):
- `transfigure`: push a photograph toward a class with the class loss (Image generation I, "Transfiguration");
- `interpolate`: from a photograph, the objective moves from class a (`target`) to b (`partner`) with weights
  (q-n)/q and n/q, keeping `schedule.frames` frames (Latent space, "Dog transfiguration"); with several octaves
  the first pushes the photograph to class a alone and the q interpolation steps are the remaining octaves;
- `dream`: raise hidden layers' activations, no blur (Deep dream); `variant` is the layer spec, e.g.
  `inception4c` or `Mixed_6d+Mixed_6e:0,4` (layers joined by `+`, chosen feature maps after `:`);
- `directed-dream`: `layer_weight * dream + class_weight * class loss`, blurred every few steps only
  (Deep dream, "Directed dream").

Each result carries the final image as uint8 RGB and the model's full output vector on exactly that uint8 image
(what a reader of the stored PNG would compute), in float32.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping, Optional, Sequence

import numpy as np
import torch

from jobs import objectives as obj
from jobs import transforms
from jobs.catalog import (ALL_JOBS, CLASSLESS, FRAMED, IMAGE_JOBS, LAYER_JOBS, PAIRED, VARIANTS, JobSpec, layer_terms,
                          parse_layers)
from jobs.outputs import softmax
from jobs.render import Progress, Trajectory, TrajectoryOptions, render
from jobs.schedules import Schedule


@dataclass
class Frame:
    """One kept step of an interpolation."""
    step: int                           # steps done when the frame was taken
    image: np.ndarray                   # h x w x 3 uint8 (the octave's size at that step)
    logits: np.ndarray                  # float32 [n_classes] on that uint8 image


@dataclass
class TrajectoryRecord:
    """One image's recorded steps (`render(..., trajectory=...)`), T rows: what `sweep run --trajectory` stores.
    Computed from the outputs the step's forward pass had (on the step's float crop, not on a uint8 image)."""
    steps: np.ndarray                   # T int32: steps done (state after that many updates)
    octaves: np.ndarray                 # T int32
    losses: np.ndarray                  # T float32: the image's loss at that step
    target_logit: np.ndarray            # T float32 (nan: a job without a target class)
    target_rank: np.ndarray             # T int32: 1 + classes with a higher output (1: the target is top-1; -1: none)
    labels: np.ndarray                  # T int32: argmax of the outputs
    topk_classes: np.ndarray            # T x k int32, highest output first
    topk_logits: np.ndarray             # T x k float32
    snapshots: dict = field(default_factory=dict)
    # step -> (h x w x 3 uint8 image the step cropped from, n_classes float32 outputs at that step)


@dataclass
class JobResult:
    spec: JobSpec
    model: str
    weights: str
    schedule_id: str
    image: Optional[np.ndarray]         # H x W x 3 uint8 RGB (None when error)
    logits: Optional[np.ndarray]        # float32 [n_classes]: the model's output on the final uint8 image
    label: int                          # argmax of logits (-1 when error)
    margin_label: int                   # "standout": class furthest above the next lower output (-1 when error)
    target_logit: float                 # on the final image
    target_prob: float                  # softmax probability of the target on the final image
    partner_logit: float                # nan when no partner
    seconds: float                      # this image's share of the batch's wall time
    error: Optional[str] = None         # None on success; why the image failed otherwise
    frames: list[Frame] = field(default_factory=list)   # interpolation frames, in order (others: empty)
    trajectory: Optional[TrajectoryRecord] = None        # with `trajectory=` only (None: not recorded)


# -- recipes: spec -> objective -------------------------------------------------------------------------------
def _octave(spec: JobSpec, s: Schedule) -> obj.Objective:
    return obj.class_logit(spec.target, s.C, absolute=s.absolute)


def _opposite(spec: JobSpec, s: Schedule) -> obj.Objective:
    return obj.opposite(spec.target)


def _addition(spec: JobSpec, s: Schedule) -> obj.Objective:
    """Latent space, "Vector Addition and Subtraction": g = grad(C - O_1) + grad(C - O_2) (merge), or g' that
    follows the weaker output (juxtapose). Each class term is the schedule's class loss: `|C - O|` in every preset
    (`absolute`, Image generation I's `torch.abs(200 - output[0][c])`, of which the article's C is the 200), the
    same gradient as the formulas while an output is below C; past C it pulls that output back, and juxtapose then
    follows the output furthest from C. `absolute: false` is the formulas exactly."""
    combine = obj.merge if spec.variant == "merge" else obj.juxtapose
    return combine(spec.target, spec.partner, s.C, absolute=s.absolute)


def _dream(spec: JobSpec, s: Schedule) -> obj.Objective:
    """Deep dream on the sum of the variant's layers, in their one order (`layer_terms`): every spelling of a
    variant, an older store's included, renders one objective (one description, one batch group)."""
    return sum(obj.dream(name, maps) for name, maps in layer_terms(spec.variant))


def _directed_dream(spec: JobSpec, s: Schedule) -> obj.Objective:
    return s.layer_weight * _dream(spec, s) + s.class_weight * _octave(spec, s)


def interpolation_start(s: Schedule) -> int:
    """The step where interpolation begins. The article's J_n runs its q steps over a single-scale run from the
    photograph (Latent space, "Dog transfiguration"; the `transfigure` preset), going "from (y_250, y_251) = (c, 0)
    to (0, c) as n -> q". Several octaves are ours: with `interpolation_warmup` (the default) the first octave pushes
    the photograph to class a alone, so that the interpolation starts from (c, 0) and moves over the later octaves;
    without it the q steps span the whole run."""
    return s.octaves[0].iterations if s.interpolation_warmup and len(s.octaves) > 1 else 0


def interpolation_frames(s: Schedule) -> list[int]:
    """`s.frames` steps spread evenly from the interpolation's start to the end of the schedule, the last one the
    final image (a single frame is the final image, not the start)."""
    t0, total = interpolation_start(s), s.total_iterations
    if s.frames == 1:
        return [total]
    return sorted({round(t0 + k * (total - t0) / max(1, s.frames - 1)) for k in range(s.frames)})


@functools.lru_cache(maxsize=None)
def _interpolation_targets(c: float, t0: int) -> tuple[obj.Weight, obj.Weight]:
    # Cached, as `obj.fades` is: every spec of a schedule shares the same target functions, hence one group.
    fade_out, fade_in = obj.fades(t0)

    def b_target(step: obj.Step) -> float:
        return c * fade_in(step)                                            # c n/q

    def a_target(step: obj.Step) -> float:
        return c * fade_out(step)                                           # c (q-n)/q
    return a_target, b_target


def _interpolate(spec: JobSpec, s: Schedule) -> obj.Objective:
    """Latent space, "Dog transfiguration": over the q interpolation steps the objective moves from class a to
    class b. `interpolation: "weighted"` (default) is the article's loss as written,
    `J_n = (c - O_a (q-n)/q) + (c - O_b n/q)`, the weighted outputs (c = the schedule's `C`; it does not change the
    gradient). `"targets"` is ours: hold (O_a, O_b) at moving targets `(c (q-n)/q, c n/q)` with
    c = `interpolation_logit`; the weighted form only ever pushes both logits up, so O_a keeps rising for much
    of the run, while tracking targets makes O_a fall and O_b rise across the frames (the digits preset uses it)."""
    t0 = interpolation_start(s)
    if s.interpolation == "targets":
        a_target, b_target = _interpolation_targets(s.interpolation_logit, t0)
        return obj.logit_toward(spec.target, a_target) + obj.logit_toward(spec.partner, b_target)
    return obj.interpolate(spec.target, spec.partner, s.C, start=t0)


RECIPES: dict[str, Callable[[JobSpec, Schedule], obj.Objective]] = {
    "octave": _octave, "opposite": _opposite, "addition": _addition,
    "transfigure": _octave, "interpolate": _interpolate, "dream": _dream, "directed-dream": _directed_dream}


def check_spec(spec: JobSpec, n_classes: int, layers: Optional[Collection[str]] = None,
               sources: Optional[Collection[str]] = None) -> None:
    """ValueError with a clear message for a spec no recipe can run. `layers`: the model's layer names (checks
    dream layer specs); `sources`: the names of the real images at hand."""
    if spec.job not in RECIPES:
        raise ValueError(f"unknown job {spec.job!r}; jobs: {', '.join(ALL_JOBS)}")
    if spec.job in LAYER_JOBS:
        unknown = [name for name, _ in parse_layers(spec.variant) if layers is not None and name not in layers]
        if unknown:
            raise ValueError(f"job {spec.job!r}: the model has no layer {', '.join(map(repr, unknown))}")
    elif spec.variant not in VARIANTS[spec.job]:
        raise ValueError(f"job {spec.job!r} has no variant {spec.variant!r}; "
                         f"variants: {', '.join(repr(v) for v in VARIANTS[spec.job])}")
    if spec.job in CLASSLESS:
        if spec.target != -1:
            raise ValueError(f"job {spec.job!r} takes no target class (got {spec.target}; use -1)")
    elif not 0 <= spec.target < n_classes:
        raise ValueError(f"target {spec.target} is not a class index of a model with {n_classes} classes")
    if spec.job in PAIRED:
        if not 0 <= spec.partner < n_classes:
            raise ValueError(f"{spec.job} needs a partner class in 0..{n_classes - 1}, got {spec.partner}")
    elif spec.partner != -1:
        raise ValueError(f"job {spec.job!r} takes no partner (got {spec.partner})")
    if spec.job in IMAGE_JOBS and not spec.source:
        raise ValueError(f"job {spec.job!r} starts from a real image: give the spec a source")
    if spec.source and sources is not None and spec.source not in sources:
        raise ValueError(f"no source image named {spec.source!r} was given")


def objective_for(spec: JobSpec, schedule: Schedule) -> obj.Objective:
    """The objective a spec optimises, plus the schedule's L1 penalty when it has one."""
    objective = RECIPES[spec.job](spec, schedule)
    return objective + obj.l1(schedule.l1) if schedule.l1 > 0 else objective


# -- results --------------------------------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B x 3 x H x W floats in [0, 1] -> B x H x W x 3 uint8 (clamped, rounded), C-contiguous (as PNG encoding
    wants each image). One new float tensor and one pass to uint8 in the new layout: half the time of a new tensor
    per operation and then a copy of each image."""
    levels = images.detach().clamp(0, 1).mul_(255).round_()                              # B x 3 x H x W
    pixels = torch.empty((levels.shape[0], *levels.shape[2:], 3), dtype=torch.uint8, device=levels.device)
    return pixels.copy_(levels.permute(0, 2, 3, 1)).cpu().numpy()                         # B x H x W x 3


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """B x H x W x 3 uint8 -> B x 3 x H x W float32 in [0, 1]."""
    # np.require copies only read-only or strided arrays (sample photographs are read-only)
    return torch.from_numpy(np.require(images, requirements=["C", "W"])).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def logits_of(model: torch.nn.Module, images: np.ndarray, device: torch.device | str = "cpu",
              chunk: int = 64, input: str | None = None) -> np.ndarray:
    """The model's float32 logits (N x n_classes) on uint8 images (N x H x W x 3), evaluated in float32, with the
    network fed under the `input` convention ("raw" or "normalized"; None: the model's current one) - the
    convention the images were made under, so the stored logits are the output the generation saw."""
    with (model.input_as(input) if input is not None else contextlib.nullcontext()):
        out = []
        for i in range(0, len(images), chunk):
            x = from_uint8(images[i:i + chunk]).to(device)                  # n x 3 x H x W
            out.append(model(at_least_two(x))[:len(x)].float().cpu())      # n x n_classes
    return torch.cat(out).numpy().astype(np.float32)


def at_least_two(x: torch.Tensor) -> torch.Tensor:
    """A batch of one as two copies of it (the caller keeps the first row): on the CPU a batch of one takes another
    convolution path, so an image's outputs would depend on what it is scored with (see `jobs.render`)."""
    return torch.cat([x, x]) if len(x) == 1 else x                             # B>=2 x 3 x H x W


def margin_label(values: np.ndarray, exclude: Sequence[int] = ()) -> int:
    """The project's "standout" statistic (stored as `margin_label`): sort the outputs descending and return the
    class whose value exceeds the next lower value by the most (for an opposite image, the one class that stands
    out). This is NOT the article's margin criterion, which is about the class image's low outputs (Latent space,
    "Opposites"; `analysis.tables.article_margin_opposite`); it borrows its gap idea for the opposite image.

    `exclude` leaves classes out of the ranking: on an opposite image the minimised target sits far below all the
    others, so the class just above it would otherwise always win on the gap to the target.
    """
    keep = np.setdiff1d(np.arange(values.shape[-1]), np.asarray(exclude, dtype=np.int64))
    if keep.size < 2:
        return int(keep[0]) if keep.size else 0
    order = keep[np.argsort(-values[keep], kind="stable")]
    gaps = values[order[:-1]] - values[order[1:]]
    return int(order[int(np.argmax(gaps))])


def own_classes(spec: JobSpec) -> tuple[int, ...]:
    """The classes a job optimises: its target and its partner, when it has them."""
    return tuple(c for c in (spec.target, spec.partner) if c >= 0)


def run_batch(model, specs: Sequence[JobSpec], schedule, *, device: torch.device | str = "cpu",
              autocast_bf16: bool = False, autocast_fp16: bool = False, channels_last: bool = False,
              progress: Optional[Progress] = None,
              sources: Optional[Mapping[str, np.ndarray]] = None,
              trajectory: Optional[TrajectoryOptions] = None) -> list[JobResult]:
    """Generate one image per spec in batched renders; results in the order of `specs`.

    `schedule`: a `Schedule` or a `ScheduleSet`; each spec runs `schedule.for_job(job, variant)`. One
    forward/backward per step for the whole batch; jobs whose schedules differ (the dreams, another preset) form
    their own render. `sources`: name -> H x W x 3 uint8 real image, for the specs that start from one. A spec
    whose loss or image goes NaN/inf gets a result with `error` set and no image; the rest are unaffected.
    `trajectory`: record each image's steps (`JobResult.trajectory`). Invalid specs raise ValueError before any
    work.
    """
    layer_names = getattr(model, "all_layers", None)   # a `Classifier`'s tappable layers (None: not checked)
    for spec in specs:
        check_spec(spec, model.n_classes, layer_names, sources.keys() if sources is not None else ())
    groups: dict[str, tuple[Schedule, list[int]]] = {}   # schedule id -> (the schedule its specs run, their indices)
    for j, spec in enumerate(specs):
        runs = schedule.for_job(spec.job, spec.variant)
        groups.setdefault(runs.id, (runs, []))[1].append(j)
    results: list[Optional[JobResult]] = [None] * len(specs)
    for runs, members in groups.values():
        done = _run_group(model, [specs[j] for j in members], runs, sources or {}, device=device,
                          autocast_bf16=autocast_bf16, autocast_fp16=autocast_fp16, channels_last=channels_last,
                          progress=progress,
                          trajectory=trajectory)
        for j, result in zip(members, done):
            results[j] = result
    return results  # type: ignore[return-value]


def _run_group(model, specs: Sequence[JobSpec], runs: Schedule, sources: Mapping[str, np.ndarray],
               **options) -> list[JobResult]:
    """One render of `specs` under `runs` (the schedule their job runs: `schedule.for_job`)."""
    start = time.perf_counter()
    # Each photograph becomes a float tensor once per group, however many specs start from it; render resizes.
    photos = {name: from_uint8(sources[name][None])[0] for name in {s.source for s in specs if s.source}}
    init = [photos[s.source] if s.source else None for s in specs]
    frame_steps = interpolation_frames(runs)
    rendered = render(model, [objective_for(s, runs) for s in specs], runs, [s.seed for s in specs],
                      init=init if any(i is not None for i in init) else None,
                      frame_steps=[frame_steps if s.job in FRAMED else () for s in specs], **options)
    recorded = (trajectory_records(rendered.trajectory, specs, options["trajectory"].k)
                if rendered.trajectory is not None else {})
    device = options["device"]
    images = to_uint8(rendered.images)                                        # B x H x W x 3
    ok = [j for j, e in enumerate(rendered.errors) if e is None]
    logits = (logits_of(model, images[ok], device, input=runs.input) if ok
              else np.zeros((0, model.n_classes), np.float32))
    seconds = (time.perf_counter() - start) / len(specs)

    results = []
    common = dict(model=model.name, weights=model.weights_id, schedule_id=runs.id, seconds=seconds)
    row = {j: r for r, j in enumerate(ok)}
    frames = _frames(model, {j: rendered.frames.get(j, []) for j in ok}, device, runs.input)
    for j, spec in enumerate(specs):
        if j not in row:
            results.append(JobResult(spec, image=None, logits=None, label=-1, margin_label=-1,
                                     target_logit=float("nan"), target_prob=float("nan"),
                                     partner_logit=float("nan"), error=rendered.errors[j], **common))
            continue
        v = logits[row[j]]
        results.append(JobResult(spec, image=images[j], logits=v, **scores(spec, v), error=None,
                                 frames=frames.get(j, []), trajectory=recorded.get(j), **common))
    return results


def trajectory_records(recorded: Trajectory, specs: Sequence[JobSpec], k: int = 5) -> dict[int, TrajectoryRecord]:
    """Per element, its recorded steps: the target's output and rank, the argmax, the loss and the top-k, computed
    once for the whole batch (T x B x n_classes) from the outputs the render kept; each element's arrays are its
    row of the batch's (B x T) arrays."""
    outputs = recorded.outputs                                                # T x B x C
    if outputs.shape[-1] == 0:
        return {}
    targets = torch.tensor([s.target for s in specs], dtype=torch.long)     # B
    has_target = (targets >= 0).numpy()[:, None]                              # B x 1
    picked = outputs.gather(2, targets.clamp(min=0)[None, :, None].expand(outputs.shape[0], -1, 1))[..., 0]  # T x B
    ranks = 1 + (outputs > picked[..., None]).sum(-1)                         # T x B
    top = outputs.topk(min(k, outputs.shape[-1]), dim=-1)                     # T x B x k

    def by_element(values: torch.Tensor, dtype) -> np.ndarray:               # T x B [x k] -> B x T [x k]
        return np.ascontiguousarray(values.transpose(0, 1).numpy(), dtype=dtype)
    target_logit = np.where(has_target, by_element(picked, np.float32), np.nan).astype(np.float32)   # B x T
    target_rank = np.where(has_target, by_element(ranks, np.int32), -1).astype(np.int32)             # B x T
    labels, losses = by_element(outputs.argmax(-1), np.int32), by_element(recorded.losses, np.float32)  # B x T
    topk_classes, topk_logits = by_element(top.indices, np.int32), by_element(top.values, np.float32)  # B x T x k
    steps, octaves = recorded.steps.numpy().astype(np.int32), recorded.octaves.numpy().astype(np.int32)
    row_of = {int(t): r for r, t in enumerate(recorded.steps.tolist())}
    shots = {t: (to_uint8(x), outputs[row_of[t]].numpy().astype(np.float32))   # B x h x w x 3, B x C
             for t, x in recorded.snapshots.items()}
    return {j: TrajectoryRecord(steps=steps, octaves=octaves, losses=losses[j], target_logit=target_logit[j],
                                target_rank=target_rank[j], labels=labels[j], topk_classes=topk_classes[j],
                                topk_logits=topk_logits[j],
                                snapshots={t: (images[j], values[j]) for t, (images, values) in shots.items()})
            for j in range(len(specs))}


def _frames(model, snapshots: Mapping[int, Sequence[tuple[int, torch.Tensor]]], device,
            input: str | None = None) -> dict[int, list[Frame]]:
    """Frames with the logits of their uint8 images, one forward pass per image size (the frames of one step
    share the octave's size) rather than one per frame."""
    kept = {j: [(t, to_uint8(x[None])[0]) for t, x in shots] for j, shots in snapshots.items() if shots}
    by_size: dict[tuple, list[tuple[int, int]]] = {}
    for j, shots in kept.items():
        for k, (_, image) in enumerate(shots):
            by_size.setdefault(image.shape, []).append((j, k))
    values: dict[tuple[int, int], np.ndarray] = {}
    for members in by_size.values():
        stacked = np.stack([kept[j][k][1] for j, k in members])               # N x h x w x 3
        values.update(zip(members, logits_of(model, stacked, device, input=input)))   # N x n_classes
    return {j: [Frame(t, image, values[(j, k)]) for k, (t, image) in enumerate(shots)] for j, shots in kept.items()}


def scores(spec: JobSpec, v: np.ndarray) -> dict:
    """What a result (or an interpolation frame) records of its output vector v (n_classes): the argmax label,
    the margin label, and the target's logit and probability and the partner's logit (nan when absent)."""
    probs = softmax(np.asarray(v)[None])[0]   # the scorer's and the analysis' probabilities (float64)
    return dict(label=int(np.argmax(v)), margin_label=margin_label(v, exclude=own_classes(spec)),
                target_logit=float(v[spec.target]) if spec.target >= 0 else float("nan"),
                target_prob=float(probs[spec.target]) if spec.target >= 0 else float("nan"),
                partner_logit=float(v[spec.partner]) if spec.partner >= 0 else float("nan"))


@torch.no_grad()
def feature_means(model, images_uint8: np.ndarray, layer: str, maps: Sequence[int],
                  device: torch.device | str = "cpu", chunk: int = 32, input: str | None = None,
                  side: int | None = None, antialias: bool = True) -> np.ndarray:
    """Mean activation of feature maps `maps` of `layer` on each image: N x H x W x 3 uint8 -> N x len(maps)
    float32 (Latent space, "Feature latent space": each image as the vector of its chosen features' means).

    `images_uint8` may also be a list of H x W x 3 arrays of different sizes (evaluated one by one). `input`: the
    convention the images were made under (the manifest's); None: the model's current one. `side`: each image is
    first resized to `side` x `side` (bilinear, `transforms.resize`, as between octaves; `antialias` as the
    images' schedule resized), as the article evaluates its class images at 299 x 299, the side they were
    generated from; None: at the size they have."""
    maps = [int(m) for m in maps]
    if isinstance(images_uint8, np.ndarray):
        batches = [images_uint8[i:i + chunk] for i in range(0, len(images_uint8), chunk)]
    else:
        batches = [np.asarray(im)[None] for im in images_uint8]
    model = model.to(device).eval()
    rows = []
    for batch in batches:
        if len(batch) == 0:
            continue
        x = from_uint8(batch).to(device)                          # N x 3 x H x W
        if side is not None:
            x = transforms.resize(side, antialias)(x)             # N x 3 x side x side
        with (model.input_as(input) if input is not None else contextlib.nullcontext()):
            _, acts = model.taps(at_least_two(x), [layer])
        a = acts[layer][:len(x)].float()                          # N x C x H x W (or N x C for a head)
        a = a.mean(dim=(2, 3)) if a.ndim == 4 else a.flatten(1)
        if maps and max(maps) >= a.shape[1]:
            raise ValueError(f"layer {layer} has {a.shape[1]} feature maps; asked for map {max(maps)}")
        rows.append(a[:, maps].cpu())
    if not rows:
        return np.zeros((0, len(maps)), np.float32)
    return torch.cat(rows).numpy().astype(np.float32)
