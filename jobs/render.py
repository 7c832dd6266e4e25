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

`render` reads as that loop: `start_images`, `enter_octave`, `step`, `errors`.

Batch independence. The model is frozen and in eval mode, so batch elements do not interact: the gradient of the
summed loss with respect to element j is the gradient of loss_j alone, and every random choice (initial noise,
crop positions) comes from that element's own generator on the CPU. What the arithmetic guarantees is agreement
within float tolerance. Exact agreement is a property of the kernels: on the CPU, PyTorch's convolution takes
another path for a batch of one than for any larger batch (up to 65/255 in a pixel after a full schedule), while
batches of two or more agree bit for bit with each other. So a render of one element runs it as a batch of two
(the element and a copy, the copy dropped): a one-image render then equals the same image inside any batch on
the CPU. GPU kernels may choose algorithms by batch size; there, agreement is within float tolerance.

The network is fed images under the schedule's `input` convention ("raw": the pixels as they are, as in the
articles' code; "normalized": ImageNet mean/std first).

Pure computation: tensors in, tensors out. Converting to uint8 and computing the logits of results is in `kinds`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Collection, Optional, Sequence

import torch
from torch import Tensor

from jobs import transforms
from jobs.objectives import Objective, ObjectiveBatch, Outputs, Step
from jobs.schedules import Octave, Schedule

Progress = Callable[[int, int], None]   # (steps done, total steps)


@dataclass
class Rendered:
    """What `render` returns: the final images and, per element, the error that stopped it (if any)."""
    images: Tensor                      # B x 3 x H x W float32 on the CPU (not clamped, not quantised)
    errors: list[Optional[str]]         # None, or why the element failed
    losses: Tensor                      # B: each element's loss at the last step it ran (CPU, float32)
    frames: dict[int, list[tuple[int, Tensor]]] = field(default_factory=dict)
    # element -> [(steps done, 3 x h x w CPU snapshot)], for the elements that asked for frames


def initial_images(schedule: Schedule, generators: Sequence[torch.Generator]) -> Tensor:
    """`randn * init_std + init_mean` at the first octave's size, one draw per generator (article:
    `randn / 20 + 0.7`). B x 3 x S x S on the CPU."""
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
    first = transforms.fit(schedule.octaves[0].size, schedule.source_fit)
    return torch.stack([x[j] if image is None else first(image.float().cpu()[None])[0]
                        for j, image in enumerate(init)])


@dataclass
class OctaveState:
    """What one octave's steps share: the octave, and each element's crop positions for all its steps."""
    index: int
    octave: Octave
    offsets: Optional[Tensor]           # B x n x 2 (top, left) per step, or None without crops


def enter_octave(x: Tensor, index: int, octave: Octave, generators: Sequence[torch.Generator]
                 ) -> tuple[Tensor, OctaveState]:
    """Resize the images to the octave's size and draw each element's crop positions for the whole octave from
    its own generator."""
    if x.shape[-1] != octave.size:
        x = transforms.resize(octave.size)(x)                               # B x 3 x size x size
    offsets = None
    if octave.crop:
        offsets = transforms.random_offsets(octave.size, octave.crop, generators,
                                            octave.iterations).to(x.device)  # B x n x 2
    return x, OctaveState(index, octave, offsets)


@dataclass
class Loop:
    """The fixed parts of one render: model, objectives, schedule, speed options."""
    model: torch.nn.Module
    batch: ObjectiveBatch
    schedule: Schedule
    head: Optional[str]                 # tapped head the class objectives read, or None for the logits
    activations: dict                   # filled by the model's capture hooks on each forward pass
    autocast: object
    channels_last: bool


def step(loop: Loop, x: Tensor, state: OctaveState, i: int, t: int) -> tuple[Tensor, Tensor]:
    """One gradient step of every element: (images after the step, losses B). Image generation I: the plain
    step `x -= lr * grad`, then the blur (whole image, or the crop), then the first octave's pad."""
    s, octave = loop.schedule, state.octave
    if octave.cycles and i < octave.cycle_steps and x.shape[-1] != octave.size_at(i):
        x = transforms.resize(octave.size_at(i))(x)                         # B x 3 x c x c (resize cycle)
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
    outputs = Outputs(logits.float(), {k: v.float() for k, v in loop.activations.items()}, part, step_info)
    losses = loop.batch(outputs)                                            # B
    (grad,) = torch.autograd.grad(losses.sum(), part)                      # B x 3 x h x w; frees the graph
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
    return x, losses.detach()


def errors(failed_at: Sequence[int], objectives: Sequence[Objective], total: int) -> list[Optional[str]]:
    """Per element: None, or why it failed (the first step where its loss or image was not finite)."""
    return [None if f < 0 else
            f"non-finite loss or image at step {f} of {total} for objective {o.description!r} "
            f"(the loss or its gradient overflowed: lower the learning rate or check the objective)"
            for f, o in zip(failed_at, objectives)]


def render(model: torch.nn.Module, objectives: Sequence[Objective], schedule: Schedule, seeds: Sequence[int], *,
           device: torch.device | str = "cpu", autocast_bf16: bool = False, channels_last: bool = False,
           progress: Optional[Progress] = None, init: Optional[Sequence[Optional[Tensor]]] = None,
           frame_steps: Optional[Sequence[Collection[int]]] = None) -> Rendered:
    """Optimise B images, image j for `objectives[j]` from `seeds[j]`, following `schedule`.

    `device`: where the model and the images live (the model is moved there). `autocast_bf16`, `channels_last`:
    speed options applied on CUDA only (ignored elsewhere). `init`: optional starting images, one per element
    (a 3 x H x W tensor in [0, 1], or None for the schedule's noise), fitted to the first octave's size
    (transfiguration, interpolation and dreams start from real images). `frame_steps`: optional per element
    the steps done (0 .. total) after which to keep a snapshot of the image (interpolation frames).
    """
    if len(objectives) != len(seeds):
        raise ValueError(f"render got {len(objectives)} objectives but {len(seeds)} seeds")
    if not objectives:
        return Rendered(torch.empty(0, 3, schedule.final_size, schedule.final_size), [], torch.empty(0))
    if len(objectives) == 1:   # a batch of one takes another CPU convolution path: run it as two (see above)
        twice = render(model, [objectives[0]] * 2, schedule, [seeds[0]] * 2, device=device,
                       autocast_bf16=autocast_bf16, channels_last=channels_last, progress=progress,
                       init=list(init) * 2 if init is not None else None,
                       frame_steps=[frame_steps[0], ()] if frame_steps is not None else None)
        return Rendered(twice.images[:1], twice.errors[:1], twice.losses[:1],
                        {j: f for j, f in twice.frames.items() if j == 0})
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
    captured = sorted(set(batch.layers) | ({head} if head else set()))
    with torch.enable_grad(), model.input_as(schedule.input), model.capture(captured) as activations:
        loop = Loop(model, batch, schedule, head, activations,
                    torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda and autocast_bf16
                    else contextlib.nullcontext(), on_cuda and channels_last)
        t = 0
        for o, octave in enumerate(schedule.octaves):
            x, state = enter_octave(x, o, octave, generators)
            for i in range(octave.iterations):
                x, losses = step(loop, x, state, i, t)
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
                    last_loss.float().cpu(), frames)


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
