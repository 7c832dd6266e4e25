"""The batched optimisation loop: B images, B objectives, one forward and one backward pass per step.

This is the octave method of Image generation I ("Jitter using cropped octaves") run for many targets at once:

    x = start images (noise, or photographs fitted to the first size)
    for each octave: resize the image to the octave's size
        for i in 0..n-1:
            resize the image through the octave's cycle while it runs          (transformation resiliency)
            take each image's random crop (or the whole image)
            loss_j = objective_j(model(input)_j)                                one forward for the whole batch
            g = d(sum_j loss_j) / d input                                        one backward, input gradient only
            crop_j -= lr_i * g_j   (or lr_i * sign(g_j))                         the article's plain step
            x = gaussian_blur(x, 3, sigma_i)     whole image (article), or the crop only (option)
            x = pad(x, 1, fill 0.7)              the first octave of googlenet-pad: the image grows
    errors: the elements whose loss or image went NaN/inf

`render` reads as that loop: `start_images`, `enter_octave`, `step`, `record`, `errors`.

Trajectories (option `trajectory=TrajectoryOptions(every=N, snapshots=M)`; off by default): every N steps `record`
keeps the outputs the step's own forward pass already computed (B x n_classes float32, as the objectives read them:
no extra forward pass) and its losses, and every M steps a host copy of the images that step cropped from.
Recording never makes the host wait for the device: outputs and losses stay on the device until the render ends (one
copy then), and a snapshot's copy is queued without blocking (into page-locked memory on a GPU), so the device's
queue of steps never drains for it; the render waits for those copies once, at its end. A record at step t is the
state after t updates: the image the t-th step started from (after its resize cycle) and the network's output on
that step's crop (and padding) of it. This is the article's video material (Input generation,
"InceptionV3 and GoogleNet Compared": "each gradient descent iteration ... with a scatterplot of the activation
values for each output class at that iteration").

Batch independence. The model is frozen and in eval mode, so batch elements do not interact: the gradient of the
summed loss with respect to element j is the gradient of loss_j alone, and every random choice (initial noise,
crop positions) comes from that element's own generator on the CPU. What the arithmetic guarantees is agreement
within float tolerance. Exact agreement is a property of the kernels: on the CPU, PyTorch's convolution takes
another path for a batch of one than for any larger batch (up to 65/255 in a pixel after a full schedule). So a
render of one element runs it as a batch of two (the element and a copy, the copy dropped). For the demo models
batches of two or more then agree bit for bit with each other, so a one-image render equals the same image inside
any batch on the CPU (tested). Larger networks' layers are not so regular: the CPU's matrix products and
convolutions also pick kernels by batch size beyond one (measured on GoogLeNet: its 1024 -> 1000 `fc` gives other
last bits for 2-3 rows than for 4 or more, and its inception blocks change again at 17 images), as GPU kernels
do; there, and on GPUs, agreement is within float tolerance (about 1e-7 in a pixel after a few steps).

The network is fed images under the schedule's `input` convention ("raw": the pixels as they are, as in the
articles' code; "normalized": ImageNet mean/std first).

Pure computation: tensors in, tensors out. Converting to uint8 and computing the logits of results is in `kinds`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Collection, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from jobs import transforms
from jobs.objectives import Objective, ObjectiveBatch, Outputs, Step
from jobs.schedules import Octave, Schedule
from jobs.text import is_whole_number

Progress = Callable[[int, int], None]   # (steps done, total steps)


@dataclass
class Rendered:
    """What `render` returns: the final images and, per element, the error that stopped it (if any)."""
    images: Tensor                      # B x 3 x H x W float32 on the CPU (not clamped, not quantised)
    errors: list[Optional[str]]         # None, or why the element failed
    losses: Tensor                      # B: each element's loss at the last step it ran (CPU, float32)
    frames: dict[int, list[tuple[int, Tensor]]] = field(default_factory=dict)
    # element -> [(steps done, 3 x h x w CPU snapshot)], for the elements that asked for frames
    trajectory: Optional["Trajectory"] = None   # the recorded steps, when `render` was given `trajectory`


MAX_STEP = 2**31 - 1   # the largest step number trajectories/ stores (an int32 column)


@dataclass(frozen=True)
class TrajectoryOptions:
    """What a render records along the way (`sweep run --trajectory every:N[,snapshots:M]`)."""
    every: int = 10                     # record the outputs every N steps (cost goal: < 5% at N = 10)
    snapshots: int = 0                  # also keep the images every M steps (0: none); a multiple of `every`
    k: int = 5                          # top-k outputs stored per recorded step

    def __post_init__(self) -> None:
        for name, least in (("every", 1), ("snapshots", 0), ("k", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"trajectory: {name} must be at least {least}, got {name}:{getattr(self, name)}")
        for name in ("every", "snapshots"):   # a step number fits trajectories/' int32 column; past it, numbers
            if getattr(self, name) > MAX_STEP:   # such as every:10^20 overflowed the readers' int64 arithmetic
                raise ValueError(f"trajectory: {name} must be at most {MAX_STEP} (a step number), got "
                                 f"{name}:{getattr(self, name)}")
        if self.snapshots % self.every:
            raise ValueError(f"trajectory: snapshots:{self.snapshots} must be a multiple of every:{self.every} "
                             f"(a snapshot row is a recorded step)")

    @classmethod
    def parse(cls, text: str) -> "TrajectoryOptions":
        """`every:N` or `every:N,snapshots:M` (also `k:K`) -> options; ValueError with a one-line reason."""
        fields: dict[str, int] = {}
        for part in text.split(","):
            name, _, value = part.strip().partition(":")
            if name not in ("every", "snapshots", "k") or not is_whole_number(value.strip()):
                raise ValueError(f"--trajectory {text!r}: expected every:N[,snapshots:M] with whole numbers")
            if name in fields:
                raise ValueError(f"--trajectory {text!r}: {name} is given twice")
            fields[name] = int(value)
        if "every" not in fields:
            raise ValueError(f"--trajectory {text!r}: every:N is required")
        return cls(**fields)

    def as_json(self) -> dict:
        return {"every": self.every, "snapshots": self.snapshots, "k": self.k}


@dataclass
class Trajectory:
    """What `render` recorded (CPU tensors): T recorded steps of B elements."""
    steps: Tensor                       # T long: steps done (the record of step t is the state after t updates)
    octaves: Tensor                     # T long: the octave each recorded step belongs to
    outputs: Tensor                     # T x B x n_classes float32: the outputs the objectives read at that step
    losses: Tensor                      # T x B float32
    snapshots: dict[int, Tensor]        # step -> B x 3 x h x w float32 image that step cropped from

    def select(self, rows: slice) -> "Trajectory":
        """The records of some elements (a batch of one runs as two)."""
        return Trajectory(self.steps, self.octaves, self.outputs[:, rows], self.losses[:, rows],
                          {t: x[rows] for t, x in self.snapshots.items()})


class Recorder:
    """Keeps a render's trajectory records without waiting for the device: outputs and losses stay on it until the
    end, snapshots are copied to the host as the render goes (queued, not waited for); `result` waits once."""

    def __init__(self, options: Optional[TrajectoryOptions], device: torch.device) -> None:
        self.options = options
        self.device = device
        self.steps: list[tuple[int, int]] = []
        self.outputs: list[Tensor] = []
        self.losses: list[Tensor] = []
        self.snapshots: dict[int, Tensor] = {}   # step -> host tensor, being filled until `result` has waited

    def result(self, n: int, n_classes: int) -> Optional[Trajectory]:
        if self.options is None:
            return None
        if self.snapshots and self.device.type == "cuda":   # the snapshots' non-blocking copies are complete
            torch.cuda.current_stream(self.device).synchronize()
        steps = torch.tensor([t for t, _ in self.steps], dtype=torch.long)
        octaves = torch.tensor([o for _, o in self.steps], dtype=torch.long)
        outputs = (torch.stack(self.outputs).cpu() if self.outputs
                   else torch.empty(0, n, n_classes))                        # T x B x n_classes
        losses = torch.stack(self.losses).cpu() if self.losses else torch.empty(0, n)           # T x B
        return Trajectory(steps, octaves, outputs, losses, self.snapshots)


def initial_images(schedule: Schedule, generators: Sequence[torch.Generator]) -> Tensor:
    """`randn * init_std + init_mean` at the first octave's size, one draw per generator (the author's published
    `randn / 20 + 0.7`; see `Schedule.init_mean`). B x 3 x S x S on the CPU."""
    size = schedule.octaves[0].size
    return torch.stack([torch.randn(3, size, size, generator=g) * schedule.init_std + schedule.init_mean
                        for g in generators])


def generators_for(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per element, seeded with its own seed (so batch composition never matters)."""
    return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]


def start_images(schedule: Schedule, generators: Sequence[torch.Generator],
                 init: Optional[Sequence[Optional[Tensor]]] = None) -> Tensor:
    """The images step 0 starts from: each element's noise, or its photograph (3 x H x W in [0, 1]) fitted to the
    first octave's size by the schedule's `source_fit` (the noise is drawn either way, so that the generators
    are in the same state). B x 3 x S x S on the CPU."""
    x = initial_images(schedule, generators)
    if init is None:
        return x
    if len(init) != len(generators):
        raise ValueError(f"render got {len(init)} initial images for {len(generators)} objectives")
    first = transforms.fit(schedule.octaves[0].size, schedule.source_fit, schedule.antialias)
    return torch.stack([x[j] if image is None else first(image.float().cpu()[None])[0]
                        for j, image in enumerate(init)])


@dataclass
class OctaveState:
    """What one octave's steps share: the octave, and each element's crop positions for all its steps."""
    index: int
    octave: Octave
    offsets: Optional[Tensor]           # B x n x 2 (top, left) per step, or None without crops


def enter_octave(x: Tensor, index: int, octave: Octave, generators: Sequence[torch.Generator],
                 antialias: bool = True) -> tuple[Tensor, OctaveState]:
    """Resize the images to the octave's size and draw each element's crop positions for the whole octave from
    its own generator."""
    if x.shape[-1] != octave.size:
        x = transforms.resize(octave.size, antialias)(x)                    # B x 3 x size x size
    offsets = None
    if octave.crop:
        offsets = transforms.random_offsets(octave.size, octave.crop, generators,
                                            octave.iterations).to(x.device)  # B x n x 2
    return x, OctaveState(index, octave, offsets)


FP16_LOSS_SCALE = 2.0 ** 10   # float16 flushes gradients below about 6e-8 to zero; a power of two divides exactly


@dataclass
class Loop:
    """The fixed parts of one render: model, objectives, schedule, speed options."""
    model: torch.nn.Module
    batch: ObjectiveBatch
    schedule: Schedule
    head: Optional[str]                 # tapped head the class objectives read, or None for the logits
    activations: dict                   # filled by the model's capture hooks on each forward pass
    autocast: object
    loss_scale: float                   # the loss is multiplied by it before the backward pass, the gradient divided
    channels_last: bool
    generators: Sequence[torch.Generator]   # one per element: the intensity jitter's noise


class Stepped(NamedTuple):
    """What one step gives back: the images after it, and what it saw on the way (for `record`)."""
    images: Tensor                      # B x 3 x H x W after the update
    losses: Tensor                      # B
    outputs: Tensor                     # B x n_classes float32 (detached): what the objectives read
    seen: Tensor                        # B x 3 x h x w: the images the step cropped from (before the update)


def step(loop: Loop, x: Tensor, state: OctaveState, i: int, t: int) -> Stepped:
    """One gradient step of every element. Image generation I: the intensity jitter (clamping the image to [0, 1]
    with `jitter_clamp`, as the article's ColorJitter does) and the resize cycle of transformation resiliency (when
    the schedule has them), the plain step `x -= lr * grad`, then the blur (whole image, or the crop), then the first
    octave's pad."""
    s, octave = loop.schedule, state.octave
    if s.jitter:
        x = transforms.jitter(s.jitter, loop.generators, s.jitter_clamp)(x)  # B x 3 x H x W
    if octave.cycles and i < octave.cycle_steps and x.shape[-1] != octave.size_at(i):
        x = transforms.resize(octave.size_at(i), s.antialias)(x)            # B x 3 x c x c (resize cycle)
    seen = x
    offsets = state.offsets[:, i] if state.offsets is not None else None   # B x 2
    part = transforms.crop(octave.crop)(x, offsets) if offsets is not None else x
    part = part.detach().requires_grad_(True)                               # B x 3 x h x w
    model_input = transforms.pad(octave.pad, s.pad_fill)(part) if s.pad_mode == "frame" else part
    if loop.channels_last:
        model_input = model_input.contiguous(memory_format=torch.channels_last)
    with loop.autocast:
        logits = loop.model(model_input)                                    # B x n_classes
    if loop.head:
        logits = loop.activations[loop.head]                                # B x n_classes from the tapped head
    step_info = Step(octave=state.index, i=i, n=octave.iterations, t=t, total=s.total_iterations)
    read = logits.float()                                                   # B x n_classes (bf16 under autocast)
    outputs = Outputs(read, {k: v.float() for k, v in loop.activations.items()}, part, step_info)
    losses = loop.batch(outputs)                                            # B
    if loop.loss_scale == 1.0:
        (grad,) = torch.autograd.grad(losses.sum(), part)                  # B x 3 x h x w; frees the graph
    else:   # fp16: scaled so that small gradients survive the half-precision backward pass, then scaled back
        (grad,) = torch.autograd.grad(losses.sum() * loop.loss_scale, part)
        grad = grad / loop.loss_scale
    with torch.no_grad():
        update = grad.sign() if s.step == "sign" else grad
        part = part.detach() - octave.lr_at(i) * update
        blur = transforms.blur(octave.sigma_at(i), s.blur_kernel) if octave.blurs_at(i) else None
        if blur is not None and (offsets is None or s.blur_scope == "crop"):
            part = blur(part)
        x = transforms.paste(x, part, offsets) if offsets is not None else part
        if blur is not None and offsets is not None and s.blur_scope == "image":
            x = blur(x)                                                     # the article blurs the whole image
        if octave.pad and s.pad_mode == "image":
            x = transforms.pad(octave.pad, s.pad_fill)(x)                   # B x 3 x (H + 2 pad) x (W + 2 pad)
        if s.clamp:
            x = x.clamp(0.0, 1.0)
    return Stepped(x, losses.detach(), read.detach(), seen)


def record(recorder: Recorder, t: int, octave: int, stepped: Stepped) -> None:
    """Keep step t's outputs and losses every `every` steps, and its images every `snapshots` steps. Nothing here
    waits for the device (no `.cpu()`, `.item()`: each would drain its queue of steps)."""
    options = recorder.options
    if options is None or t % options.every:
        return
    recorder.steps.append((t, octave))
    recorder.outputs.append(stepped.outputs)                             # B x n_classes float32, on the device
    recorder.losses.append(stepped.losses.float())                       # B, on the device (float32: no copy)
    if options.snapshots and t % options.snapshots == 0:                 # B x 3 x h x w (float32 like the images)
        recorder.snapshots[t] = stepped.seen.detach().to("cpu", torch.float32, non_blocking=True)


def errors(failed_at: Sequence[int], objectives: Sequence[Objective], total: int) -> list[Optional[str]]:
    """Per element: None, or why it failed (the first step where its loss or image was not finite)."""
    return [None if f < 0 else
            f"non-finite loss or image at step {f} of {total} for objective {o.description!r} "
            f"(the loss or its gradient overflowed: lower the learning rate or check the objective)"
            for f, o in zip(failed_at, objectives)]


def render(model: torch.nn.Module, objectives: Sequence[Objective], schedule: Schedule, seeds: Sequence[int], *,
           device: torch.device | str = "cpu", autocast_bf16: bool = False, autocast_fp16: bool = False,
           channels_last: bool = False,
           progress: Optional[Progress] = None, init: Optional[Sequence[Optional[Tensor]]] = None,
           frame_steps: Optional[Sequence[Collection[int]]] = None,
           trajectory: Optional[TrajectoryOptions] = None) -> Rendered:
    """Optimise B images, image j for `objectives[j]` from `seeds[j]`, following `schedule`.

    `device`: where the model and the images live (the model is moved there). `autocast_bf16`: the network runs
    under bf16 autocast (a GPU speed option; honoured on the CPU too, where it is slow, so that its quality can be
    checked against float32 there; the sweep's workers turn it on only on GPUs). `autocast_fp16`: float16 autocast
    instead (3 more mantissa bits than bf16, the same speed on GPUs with tensor cores, a narrower range): the loss is
    scaled by FP16_LOSS_SCALE before the backward pass and the gradient divided after it, so that small gradients
    are not flushed to zero (`sweep run --fp16`; on the sweep's GPU workers only). `channels_last`: CUDA only.
    `init`: optional starting images, one per element (a 3 x H x W tensor in [0, 1], or None for the schedule's
    noise), fitted to the first octave's size (transfiguration, interpolation and dreams start from real images).
    `frame_steps`: optional per element the steps done (0 .. total) after which to keep a snapshot of the image
    (interpolation frames).
    `trajectory`: what to record along the way (`Rendered.trajectory`; None: nothing).
    """
    if len(objectives) != len(seeds):
        raise ValueError(f"render got {len(objectives)} objectives but {len(seeds)} seeds")
    if autocast_bf16 and autocast_fp16:
        raise ValueError("render got both bf16 and fp16 autocast: choose one")
    if not objectives:
        return Rendered(torch.empty(0, 3, schedule.final_size, schedule.final_size), [], torch.empty(0))
    if len(objectives) == 1:   # a batch of one takes another CPU convolution path: run it as two (see above)
        twice = render(model, [objectives[0]] * 2, schedule, [seeds[0]] * 2, device=device,
                       autocast_bf16=autocast_bf16, autocast_fp16=autocast_fp16, channels_last=channels_last,
                       progress=progress,
                       init=list(init) * 2 if init is not None else None,
                       frame_steps=[frame_steps[0], ()] if frame_steps is not None else None,
                       trajectory=trajectory)
        return Rendered(twice.images[:1], twice.errors[:1], twice.losses[:1],
                        {j: f for j, f in twice.frames.items() if j == 0},
                        twice.trajectory.select(slice(0, 1)) if twice.trajectory is not None else None)
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    model = model.to(device).eval()
    if on_cuda and channels_last:
        model = model.to(memory_format=torch.channels_last)
    n, total = len(objectives), schedule.total_iterations
    generators = generators_for(seeds)
    x = start_images(schedule, generators, init).to(device)                # B x 3 x S x S
    keep = [set(steps) for steps in frame_steps] if frame_steps is not None else [set()] * n
    frames: dict[int, list[tuple[int, Tensor]]] = {j: [(0, x[j].float().cpu())] if 0 in steps else []
                                                    for j, steps in enumerate(keep) if steps}
    batch = ObjectiveBatch(objectives, device)                              # groups and parameters, built once
    failed_at = torch.full((n,), -1, dtype=torch.long, device=device)      # first failing step per element
    last_loss = torch.full((n,), float("nan"), device=device)
    head = None if schedule.output == "logits" else schedule.output        # e.g. AuxLogits
    recorder = Recorder(trajectory, device)
    captured = sorted(set(batch.layers) | ({head} if head else set()))
    with torch.enable_grad(), model.input_as(schedule.input), model.capture(captured) as activations:
        loop = Loop(model, batch, schedule, head, activations,
                    torch.autocast(device.type, dtype=torch.bfloat16) if autocast_bf16
                    else torch.autocast(device.type, dtype=torch.float16) if autocast_fp16
                    else contextlib.nullcontext(), FP16_LOSS_SCALE if autocast_fp16 else 1.0,
                    on_cuda and channels_last, generators)
        t = 0
        for o, octave in enumerate(schedule.octaves):
            x, state = enter_octave(x, o, octave, generators, schedule.antialias)
            for i in range(octave.iterations):
                stepped = step(loop, x, state, i, t)
                record(recorder, t, o, stepped)
                x, losses = stepped.images, stepped.losses
                finite = torch.isfinite(losses) & torch.isfinite(x).flatten(1).all(1)
                failed_at = torch.where((failed_at < 0) & ~finite, t, failed_at)
                last_loss = torch.where(failed_at < 0, losses, last_loss)
                t += 1
                for j in frames:
                    if t in keep[j]:
                        frames[j].append((t, x[j].detach().float().cpu()))
                if progress is not None:
                    progress(t, total)
    return Rendered(x.detach().float().cpu(), errors(failed_at.cpu().tolist(), objectives, total),
                    last_loss.float().cpu(), frames, recorder.result(n, getattr(model, "n_classes", 0)))


# -- whether a network takes a schedule's sizes (checked before a sweep starts) ---------------------------------
@torch.no_grad()
def takes_size(model: torch.nn.Module, side: int) -> bool:
    """Whether the network runs on one side x side image (a forward pass on a blank image, on the CPU)."""
    try:
        model(torch.full((1, 3, side, side), 0.5))                           # 1 x 3 x side x side
    except Exception:   # a fixed-size network's assertion, a feature map shrunk to nothing, ...
        return False
    return True


def fixed_input_size(model) -> Optional[int]:
    """`model.input_size` when the network accepts that side only (ViT, MaxViT), else None."""
    return None if takes_size(model, model.input_size + 32) else model.input_size


def check_fits(model, schedules, jobs: Sequence[str]) -> None:
    """ValueError naming the first job whose schedule feeds the network a side it cannot take (the smallest and
    the largest side each schedule uses are tried, and the final image's side, whose logits are stored)."""
    tried: dict[int, bool] = {}
    for job in jobs:
        schedule = schedules.for_job(job)
        sizes = sorted({*schedule.model_input_sizes(), schedule.final_size})
        for side in dict.fromkeys((sizes[0], sizes[-1], schedule.final_size)):
            if side not in tried:
                tried[side] = takes_size(model, side)
            if not tried[side]:
                raise ValueError(f"job {job}: schedule {schedule.name} feeds {model.name} {side}-px images, which it "
                                 f"cannot take (it was trained at {model.input_size} px); give that job a schedule "
                                 f"that fits with --job-schedule {job}=PRESET_OR_FILE")
