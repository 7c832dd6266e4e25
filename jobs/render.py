"""The batched optimisation loop: B images, B objectives, one forward and one backward pass per step.

This is the octave method of Image generation I ("Jitter using cropped octaves") run for many targets at once:

    for each octave: resize the image to the octave's size
        for i in 0..n-1:
            take each image's random crop (or the whole image), pad the model input if the octave says so
            loss_j = objective_j(model(input)_j)                         one forward for the whole batch
            g = d(sum_j loss_j) / d input                                 one backward, input gradient only
            crop_j -= lr_i * g_j   (or lr_i * sign(g_j))                  the article's plain step
            crop_j = gaussian_blur(crop_j, 3, sigma_i)                    smoothness prior
            write the crops back

The model is frozen and in eval mode, so batch elements do not interact: the gradient of the summed loss with
respect to element j is the gradient of loss_j alone. Every random choice (initial noise, crop positions) comes
from that element's own generator on the CPU, so an image is the same whether rendered alone or in a batch, and
on any device. An element whose loss or image becomes NaN/inf is marked failed (checked on the device without
synchronising each step); the others are unaffected and finish.

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
from jobs.schedules import Schedule

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


def render(model: torch.nn.Module, objectives: Sequence[Objective], schedule: Schedule, seeds: Sequence[int], *,
           device: torch.device | str = "cpu", autocast_bf16: bool = False, channels_last: bool = False,
           progress: Optional[Progress] = None, init: Optional[Sequence[Optional[Tensor]]] = None,
           frame_steps: Optional[Sequence[Collection[int]]] = None) -> Rendered:
    """Optimise B images, image j for `objectives[j]` from `seeds[j]`, following `schedule`.

    `device`: where the model and the images live (the model is moved there). `autocast_bf16`, `channels_last`:
    speed options applied on CUDA only (ignored elsewhere). `init`: optional starting images, one per element
    (a 3 x H x W tensor in [0, 1], or None for the schedule's noise), resized to the first octave's size
    (transfiguration, interpolation and dreams start from real images). `frame_steps`: optional per element
    the steps done (0 .. total) after which to keep a snapshot of the image (interpolation frames).
    """
    if len(objectives) != len(seeds):
        raise ValueError(f"render got {len(objectives)} objectives but {len(seeds)} seeds")
    if not objectives:
        return Rendered(torch.empty(0, 3, schedule.final_size, schedule.final_size), [], torch.empty(0))
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    model = model.to(device).eval()
    if on_cuda and channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda and autocast_bf16
                else contextlib.nullcontext())

    n = len(objectives)
    generators = generators_for(seeds)
    x = initial_images(schedule, generators)                              # draws from the generators either way
    if init is not None:
        if len(init) != n:
            raise ValueError(f"render got {len(init)} initial images for {n} objectives")
        first = transforms.resize(schedule.octaves[0].size)
        x = torch.stack([x[j] if image is None else first(image.float().cpu()[None])[0]
                         for j, image in enumerate(init)])
    x = x.to(device)                                                      # B x 3 x S x S
    keep = [set(steps) for steps in frame_steps] if frame_steps is not None else [set()] * n
    frames: dict[int, list[tuple[int, Tensor]]] = {j: [(0, x[j].float().cpu())] if 0 in steps else []
                                                    for j, steps in enumerate(keep) if steps}
    batch = ObjectiveBatch(objectives, device)                            # groups and parameters, built once
    failed_at = torch.full((n,), -1, dtype=torch.long, device=device)    # first failing step per element
    last_loss = torch.full((n,), float("nan"), device=device)
    total, t = schedule.total_iterations, 0

    # Class objectives read the head the schedule names: the logits, or a tapped head such as AuxLogits.
    head = None if schedule.output == "logits" else schedule.output
    captured = sorted(set(batch.layers) | ({head} if head else set()))
    with torch.enable_grad(), model.capture(captured) as activations:
        for o, octave in enumerate(schedule.octaves):
            if x.shape[-1] != octave.size:
                x = transforms.resize(octave.size)(x)                     # B x 3 x size x size
            pad = transforms.pad(octave.pad, schedule.pad_fill)
            take = transforms.crop(octave.crop) if octave.crop else None
            if take is not None:  # each element draws its crop positions for the whole octave from its generator
                all_offsets = transforms.random_offsets(octave.size, octave.crop, generators,
                                                        octave.iterations).to(device)  # B x n x 2
            for i in range(octave.iterations):
                step = Step(octave=o, i=i, n=octave.iterations, t=t, total=total)
                if take is not None:
                    offsets = all_offsets[:, i]                               # B x 2
                    part = take(x, offsets)                               # B x 3 x crop x crop
                else:
                    part = x
                part = part.detach().requires_grad_(True)
                model_input = pad(part)                                   # B x 3 x (h + 2 pad) x (w + 2 pad)
                if on_cuda and channels_last:
                    model_input = model_input.contiguous(memory_format=torch.channels_last)
                with autocast:
                    logits = model(model_input)                           # B x n_classes
                if head:
                    logits = activations[head]                            # B x n_classes from the tapped head
                outputs = Outputs(logits.float(), {k: v.float() for k, v in activations.items()}, part, step)
                losses = batch(outputs)                                   # B
                (grad,) = torch.autograd.grad(losses.sum(), part)         # B x 3 x h x w; frees the graph
                with torch.no_grad():
                    update = grad.sign() if schedule.step == "sign" else grad
                    part = part.detach() - octave.lr_at(i) * update
                    if octave.blurs_at(i):
                        part = transforms.blur(octave.sigma_at(i), schedule.blur_kernel)(part)
                    if schedule.clamp:
                        part = part.clamp(0.0, 1.0)
                    finite = torch.isfinite(losses) & torch.isfinite(part).flatten(1).all(1)
                    failed_at = torch.where((failed_at < 0) & ~finite, t, failed_at)
                    last_loss = torch.where(failed_at < 0, losses.detach(), last_loss)
                    x = transforms.paste(x, part, offsets) if take is not None else part
                t += 1
                for j in frames:
                    if t in keep[j]:
                        frames[j].append((t, x[j].detach().float().cpu()))
                if progress is not None:
                    progress(t, total)

    failed = failed_at.cpu().tolist()
    errors = [None if f < 0 else
              f"non-finite loss or image at step {f} of {total} for objective {obj.description!r} "
              f"(the loss or its gradient overflowed: lower the learning rate or check the objective)"
              for f, obj in zip(failed, objectives)]
    return Rendered(x.detach().float().cpu(), errors, last_loss.float().cpu(), frames)
