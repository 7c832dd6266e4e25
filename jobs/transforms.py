"""Image transforms of the octave method, as closures: (config) -> (image) -> image.

Images are float tensors B x 3 x H x W. Every transform here is deterministic given its inputs; the random choices
(where a crop lies, `random_offsets`; the intensity jitter's noise, `jitter`) are drawn from an explicit
`torch.Generator` per image, so an image gets the same crops and noise whether it is rendered alone or in a batch.

- `blur(sigma)`: torchvision's Gaussian blur, kernel 3, applied after every step (Image generation I,
  "smoothness prior"); one sigma for all images or one per image.
- `random_offsets` + `crop` / `paste`: the article's cropped octaves (positional jitter). Each image gets its own
  crop position; all crops of a batch have the same size, so they stack into one B x 3 x s x s tensor. Only the
  crop is updated (`paste` writes it back); the blur covers the whole image, as in the article's code, or with the
  schedule's `blur_scope: "crop"` only the updated crop ("Jitter using Cropped Octaves": "or else we may only
  blur the areas that were updated").
- `pad(width, fill)`: the article's `torchvision.transforms.Pad([1, 1], fill=0.7)` in the first octave (Image
  generation I, "Padding in the first octave"). The render applies it to the image after each step's blur, as the
  author's code does, so over GoogLeNet's 220 first-octave steps the image grows from 299 to 739 px; the schedule
  option `pad_mode: "frame"` instead frames only the model input each step (our earlier reading: the image keeps
  its size, the gradient reaches the interior).
- `resize(size, antialias)`: bilinear resize between octaves (torchvision's `Resize`), also the
  transformation-resiliency cycle (the article switches from `interpolate`'s nearest neighbour to `Resize`'s
  bilinear mode because nearest neighbour translates the image). The articles call `Resize(size)`, which
  antialiases today; the torchvision of their time did not for tensors (the schedule's `antialias: false`).
  Antialiasing changes only shrinking steps.
- `jitter(c, generators)`: "a small intensity change is applied to each pixel at random for each iteration using
  torchvision.transforms.ColorJitter(c) ... epsilon in [-c, c] is added to element a_xy" (Image generation I,
  "Transformation Resiliency"), done as the article describes it: uniform noise in [-c, c] on every pixel, drawn
  from each image's own generator (the article warns that torchvision's ColorJitter cannot be seeded). The
  article's call also clamps the image to [0, 1] on every step (torchvision's ColorJitter blends a float image
  with black and clamps the result): `clamp=True`, the schedule's `jitter_clamp` (the transfigure preset).
- `fit(size, mode)`: a photograph to the first octave's square: "crop" resizes the shorter side and takes the
  centre square (torchvision's classification convention, `Resize(size)` + `CenterCrop(size)`); "squash" resizes
  both sides, losing the aspect ratio.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import Tensor
from torch.nn import functional as F

Transform = Callable[[Tensor], Tensor]


# torchvision's tensor `gaussian_blur` and bilinear `resize`, written out op for op in torch (`gaussian_blur`,
# `bilinear`; tests/jobs/test_transforms.py checks them equal to torchvision's bit for bit): importing torchvision
# takes over a second (its ops bring in torch._dynamo), which every worker would otherwise pay at its first blur.


def gaussian_blur(image: Tensor, kernel: int, sigma: float) -> Tensor:
    """torchvision.transforms.functional.gaussian_blur(image, [kernel, kernel], [sigma, sigma]) on a float
    B x C x H x W tensor: a normalised `kernel` x `kernel` Gaussian, reflect padding, one convolution per channel."""
    half = (kernel - 1) * 0.5
    x = torch.linspace(-half, half, steps=kernel, dtype=image.dtype, device=image.device)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    line = pdf / pdf.sum()                                                  # kernel
    square = torch.mm(line[:, None], line[None, :])                         # kernel x kernel
    weight = square.expand(image.shape[-3], 1, kernel, kernel)               # C x 1 x k x k
    work = image if image.dtype == weight.dtype else image.to(weight.dtype)  # autocast may make the kernel bf16
    edge = kernel // 2
    out = F.conv2d(F.pad(work, [edge, edge, edge, edge], mode="reflect"), weight, groups=image.shape[-3])
    return out if out.dtype == image.dtype else out.to(image.dtype)


def bilinear(image: Tensor, height: int, width: int, antialias: bool) -> Tensor:
    """torchvision.transforms.functional.resize(image, [height, width], BILINEAR, antialias=antialias) on a float
    B x C x H x W tensor (returned as it is when it already has that size, as torchvision does)."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    work = image if image.dtype in (torch.float32, torch.float64) else image.to(torch.float32)
    out = F.interpolate(work, size=[height, width], mode="bilinear", align_corners=False, antialias=antialias)
    return out if out.dtype == image.dtype else out.to(image.dtype)


def compose(*transforms: Transform) -> Transform:
    """Apply `transforms` left to right."""
    def inner(image: Tensor) -> Tensor:
        for t in transforms:
            image = t(image)
        return image
    return inner


def blur(sigma: Union[float, Sequence[float]], kernel: int = 3) -> Transform:
    """Gaussian blur (torchvision `gaussian_blur`, `kernel` x `kernel`) with `sigma` for every image, or one sigma
    per image (images with equal sigma are blurred together)."""
    def inner(image: Tensor) -> Tensor:                 # B x 3 x H x W -> B x 3 x H x W
        if isinstance(sigma, (int, float)):
            return gaussian_blur(image, kernel, float(sigma))
        sigmas = [float(s) for s in sigma]
        if len(sigmas) != image.shape[0]:
            raise ValueError(f"blur got {len(sigmas)} sigmas for {image.shape[0]} images")
        out = torch.empty_like(image)
        for s in sorted(set(sigmas)):
            index = torch.tensor([j for j, v in enumerate(sigmas) if v == s], device=image.device)
            out[index] = gaussian_blur(image[index], kernel, s)
        return out
    return inner


def pad(width: int, fill: float = 0.7) -> Transform:
    """A constant frame `width` pixels wide of value `fill` around each image (differentiable, so the gradient
    with respect to the unpadded image is the interior of the padded input's gradient)."""
    def inner(image: Tensor) -> Tensor:                 # B x 3 x H x W -> B x 3 x (H + 2w) x (W + 2w)
        if width == 0:
            return image
        return F.pad(image, (width, width, width, width), mode="constant", value=fill)
    return inner


def resize(size: int, antialias: bool = True) -> Transform:
    """Bilinear resize to `size` x `size` (between octaves), with antialiasing as torchvision's `Resize` does
    today, or without it (`antialias=False`) as it did for tensors when the articles were written."""
    def inner(image: Tensor) -> Tensor:                 # B x 3 x H x W -> B x 3 x size x size
        return bilinear(image, size, size, antialias)
    return inner


def fit(size: int, mode: str = "crop", antialias: bool = True) -> Transform:
    """A photograph (B x 3 x H x W) to `size` x `size`: "crop" (shorter side to `size`, centre crop) or "squash"."""
    def inner(image: Tensor) -> Tensor:                 # B x 3 x H x W -> B x 3 x size x size
        if mode == "squash":
            return resize(size, antialias)(image)
        if mode != "crop":
            raise ValueError(f"unknown fit {mode!r}: use crop or squash")
        height, width = image.shape[-2:]                # torchvision's Resize(size) + CenterCrop(size):
        short, long = min(height, width), max(height, width)
        scaled = int(size * long / short)               # the longer side, rounded down as torchvision does
        resized = bilinear(image, *((scaled, size) if width <= height else (size, scaled)), antialias)
        top, left = int(round((resized.shape[-2] - size) / 2.0)), int(round((resized.shape[-1] - size) / 2.0))
        return resized[..., top:top + size, left:left + size]
    return inner


def jitter(c: float, generators: Sequence[torch.Generator], clamp: bool = False) -> Transform:
    """Add uniform noise in [-c, c] to every pixel, image j's from `generators[j]` (drawn on the CPU); `clamp`: then
    clamp to [0, 1], as the article's `ColorJitter(c)` does to a float image (torchvision's brightness blend)."""
    def inner(image: Tensor) -> Tensor:                 # B x 3 x H x W -> B x 3 x H x W
        shape = image.shape[1:]
        noise = torch.stack([torch.rand(shape, generator=g) for g in generators])     # B x 3 x H x W in [0, 1)
        jittered = image + ((2 * noise - 1) * c).to(image.device, image.dtype)
        return jittered.clamp(0.0, 1.0) if clamp else jittered
    return inner


def random_offsets(image_size: int, crop_size: int, generators: Sequence[torch.Generator],
                   steps: int | None = None) -> Tensor:
    """Uniformly random crop positions (top, left), each image's drawn from its own generator.

    Returns B x 2 (one position per image), or B x steps x 2 (a position per step, drawn in one go) as a long
    tensor on the CPU. What an image draws never depends on the other images in the batch.
    """
    if not 0 < crop_size <= image_size:
        raise ValueError(f"crop size {crop_size} must be between 1 and the image size {image_size}")
    high = image_size - crop_size + 1
    shape = (2,) if steps is None else (steps, 2)
    return torch.stack([torch.randint(0, high, shape, generator=g) for g in generators])  # B x [steps x] 2


def _crop_index(offsets: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    ar = torch.arange(size, device=offsets.device)
    rows = offsets[:, 0, None] + ar                     # B x s
    cols = offsets[:, 1, None] + ar                     # B x s
    batch = torch.arange(offsets.shape[0], device=offsets.device)[:, None, None]
    return batch, rows[:, :, None], cols[:, None, :]    # broadcast to B x s x s


def crop(size: int) -> Callable[[Tensor, Tensor], Tensor]:
    """`(image, offsets) -> crops`: the `size` x `size` square at `offsets[j]` (top, left) of each image j."""
    def inner(image: Tensor, offsets: Tensor) -> Tensor:   # B x 3 x H x W, B x 2 -> B x 3 x s x s
        b, r, c = _crop_index(offsets.to(image.device), size)
        return image[b, :, r, c].permute(0, 3, 1, 2).contiguous()   # indexing gives B x s x s x 3
    return inner


def paste(image: Tensor, crops: Tensor, offsets: Tensor) -> Tensor:
    """A copy of `image` with `crops[j]` written at `offsets[j]` (the inverse of `crop`)."""
    b, r, c = _crop_index(offsets.to(image.device), crops.shape[-1])
    out = image.clone()
    out[b, :, r, c] = crops.permute(0, 2, 3, 1)          # B x s x s x 3
    return out
