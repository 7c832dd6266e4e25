"""Transforms: blur against an independent Gaussian convolution, crop/paste/pad/resize shapes and values, seeds."""
import math
import os
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from jobs import transforms


def reference_blur(image, sigma, kernel=3):
    """A k x k Gaussian (normalised, reflect padding) written out by hand, per channel."""
    half = kernel // 2
    xs = torch.arange(-half, half + 1, dtype=torch.float64)
    g = torch.exp(-(xs ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    k2 = torch.outer(g, g).to(image.dtype)
    weight = k2.expand(image.shape[1], 1, kernel, kernel)
    padded = F.pad(image, (half, half, half, half), mode="reflect")
    return F.conv2d(padded, weight, groups=image.shape[1])


@pytest.mark.parametrize("sigma", [0.4, 0.8, 2.4])
def test_blur_matches_a_hand_written_gaussian(sigma):
    image = torch.rand(2, 3, 17, 13, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(transforms.blur(sigma)(image), reference_blur(image, sigma), atol=1e-6)


def test_blur_per_image_sigma_equals_separate_blurs():
    image = torch.rand(3, 3, 9, 9, generator=torch.Generator().manual_seed(2))
    out = transforms.blur([0.5, 2.0, 0.5])(image)
    for j, s in enumerate([0.5, 2.0, 0.5]):
        assert torch.allclose(out[j], reference_blur(image[j:j + 1], s)[0], atol=1e-6)
    with pytest.raises(ValueError, match="3 images"):
        transforms.blur([1.0])(image)


def test_crop_takes_each_images_square_and_paste_writes_it_back():
    image = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    offsets = torch.tensor([[0, 2], [3, 1]])
    crops = transforms.crop(3)(image, offsets)
    assert crops.shape == (2, 3, 3, 3)
    assert torch.equal(crops[0], image[0, :, 0:3, 2:5])
    assert torch.equal(crops[1], image[1, :, 3:6, 1:4])
    pasted = transforms.paste(image, crops + 1000, offsets)
    assert torch.equal(pasted[1, :, 3:6, 1:4], image[1, :, 3:6, 1:4] + 1000)
    outside = torch.ones_like(image, dtype=torch.bool)
    outside[0, :, 0:3, 2:5] = False
    outside[1, :, 3:6, 1:4] = False
    assert torch.equal(pasted[outside], image[outside])          # only the crops change
    assert torch.equal(transforms.paste(image, crops, offsets), image)


def test_random_offsets_are_per_generator_and_in_range():
    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]
    batch = transforms.random_offsets(10, 4, gens([5, 6, 7]))
    assert batch.shape == (3, 2) and batch.min() >= 0 and batch.max() <= 6
    alone = transforms.random_offsets(10, 4, gens([6]))
    assert torch.equal(batch[1], alone[0])                       # the batch does not change an image's crop
    draws = torch.cat([transforms.random_offsets(10, 4, gens([s])) for s in range(50)])
    assert set(draws.flatten().tolist()) == set(range(7))       # every position reachable
    assert torch.equal(transforms.random_offsets(5, 5, gens([1])), torch.zeros(1, 2, dtype=torch.long))
    per_step = transforms.random_offsets(10, 4, gens([5, 6]), steps=7)
    assert per_step.shape == (2, 7, 2)
    assert torch.equal(per_step[1], transforms.random_offsets(10, 4, gens([6]), steps=7)[0])
    with pytest.raises(ValueError, match="crop size"):
        transforms.random_offsets(4, 5, gens([1]))


def test_pad_frames_the_image_and_passes_the_gradient_to_the_interior():
    image = torch.rand(2, 3, 5, 5, requires_grad=True)
    padded = transforms.pad(1, 0.7)(image)
    assert padded.shape == (2, 3, 7, 7)
    assert torch.all(padded[:, :, 0, :] == 0.7) and torch.all(padded[:, :, :, -1] == 0.7)
    assert torch.equal(padded[:, :, 1:-1, 1:-1], image)
    (grad,) = torch.autograd.grad((padded * torch.arange(49.0).reshape(7, 7)).sum(), image)
    assert torch.equal(grad[0, 0], torch.arange(49.0).reshape(7, 7)[1:-1, 1:-1])
    assert transforms.pad(0)(image) is image


def test_resize_is_antialiased_bilinear():
    image = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    up = transforms.resize(49)(image)
    down = transforms.resize(20)(image)
    assert up.shape == (2, 3, 49, 49) and down.shape == (2, 3, 20, 20)
    expected = F.interpolate(image, size=(20, 20), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(down, expected, atol=1e-6)
    # antialiasing: halving averages 2x2 neighbourhoods rather than sampling them
    assert not torch.allclose(down, F.interpolate(image, size=(20, 20), mode="bilinear", align_corners=False))


def test_resize_without_antialias_samples_like_the_torchvision_of_the_articles_time():
    image = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    plain = F.interpolate(image, size=(20, 20), mode="bilinear", align_corners=False)
    assert torch.allclose(transforms.resize(20, antialias=False)(image), plain, atol=1e-6)
    # growing is the same either way: only shrinking steps differ
    assert torch.allclose(transforms.resize(49, antialias=False)(image), transforms.resize(49)(image), atol=1e-5)
    squashed = transforms.fit(20, "squash", antialias=False)(image)
    cropped = transforms.fit(20, "crop", antialias=False)(image[..., :30])      # 40 x 30 -> 26 x 20 -> 20 x 20
    assert torch.allclose(squashed, plain, atol=1e-6)
    expected = F.interpolate(image[..., :30], size=(26, 20), mode="bilinear", align_corners=False)[..., 3:23, :]
    assert torch.allclose(cropped, expected, atol=1e-6)


# torchvision is the reference for blur and resize: the transforms are its tensor functions written out in torch
# (no torchvision import in the workers), and must give the same tensors bit for bit.
@pytest.mark.parametrize("sigma", [0.3, 0.8, 2.4])
@pytest.mark.parametrize("shape", [(2, 3, 17, 13), (1, 3, 40, 40)])
def test_blur_is_torchvisions_gaussian_blur_bit_for_bit(sigma, shape):
    TF = pytest.importorskip("torchvision.transforms.functional")
    image = torch.rand(*shape, generator=torch.Generator().manual_seed(4))
    assert torch.equal(transforms.blur(sigma)(image), TF.gaussian_blur(image, [3, 3], [sigma, sigma]))
    assert torch.equal(transforms.gaussian_blur(image, 5, sigma), TF.gaussian_blur(image, [5, 5], [sigma, sigma]))
    with torch.autocast("cpu", dtype=torch.bfloat16):   # the kernel in bf16, the image cast to it and back
        ours, theirs = transforms.blur(sigma)(image), TF.gaussian_blur(image, [3, 3], [sigma, sigma])
    assert ours.dtype == theirs.dtype == torch.float32 and torch.equal(ours, theirs)


@pytest.mark.parametrize("antialias", [True, False])
def test_resize_and_fit_are_torchvisions_bit_for_bit(antialias):
    TF = pytest.importorskip("torchvision.transforms.functional")
    bilinear = pytest.importorskip("torchvision.transforms").InterpolationMode.BILINEAR
    image = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    for size in (20, 40, 49, 299):
        assert torch.equal(transforms.resize(size, antialias)(image),
                           TF.resize(image, [size, size], interpolation=bilinear, antialias=antialias))
    for height, width in ((40, 30), (30, 40), (41, 40), (40, 40), (17, 40)):
        photo = image[..., :height, :width]
        for size in (20, 29, 64):
            expected = TF.center_crop(TF.resize(photo, size, interpolation=bilinear, antialias=antialias), [size, size])
            got = transforms.fit(size, "crop", antialias)(photo)
            assert got.shape == expected.shape and torch.equal(got, expected), (height, width, size)
            squashed = TF.resize(photo, [size, size], interpolation=bilinear, antialias=antialias)
            assert torch.equal(transforms.fit(size, "squash", antialias)(photo), squashed)


def test_rendering_never_imports_torchvision():
    """A worker's first blur or resize must not pay torchvision's import (over a second: it brings torch._dynamo)."""
    import subprocess
    import sys
    code = ("import sys; from jobs.kinds import JobSpec, run_batch; from jobs.models import load_model; "
            "from jobs.schedules import load_schedule; model = load_model('digits', 'random', seed=0); "
            "run_batch(model, [JobSpec('octave', 1)], load_schedule('tiny')); "
            "from jobs import transforms; import torch; x = torch.rand(1, 3, 30, 20); "
            "transforms.fit(16)(x); transforms.resize(12)(x); transforms.blur(0.5)(x); "
            "print('torchvision' in sys.modules)")
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CLASSWEEP_OFFLINE": "1"})
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stdout + result.stderr


def test_compose_applies_left_to_right():
    image = torch.rand(1, 3, 8, 8)
    out = transforms.compose(transforms.pad(2), transforms.resize(6))(image)
    assert out.shape == (1, 3, 6, 6)
    assert torch.allclose(out, transforms.resize(6)(transforms.pad(2)(image)))
    assert math.isclose(transforms.compose()(image).sum().item(), image.sum().item())


def test_jitter_clamps_to_the_unit_range_as_torchvisions_colorjitter_does():
    """The article's call, `torchvision.transforms.ColorJitter(0.0001)(single_input)` on every step (Image generation
    I, "Transformation Resiliency"), clamps a float image to [0, 1] (torchvision's brightness blend); `clamp=True`
    does the same after the noise, `clamp=False` (the article's text alone) leaves the values where they are."""
    from torchvision.transforms import ColorJitter
    image = torch.linspace(-0.5, 1.5, 75).reshape(1, 3, 5, 5)                # values on both sides of [0, 1]
    gens = lambda: [torch.Generator().manual_seed(3)]                         # noqa: E731
    theirs = ColorJitter(0.0001)(image)
    assert theirs.min() == 0 and theirs.max() == 1                             # what the article's loop did
    clamped = transforms.jitter(0.0001, gens(), clamp=True)(image)
    torch.testing.assert_close(clamped, theirs, rtol=0, atol=3e-4)            # the same up to the noise (1e-4 x 1.5)
    assert torch.equal(clamped, transforms.jitter(0.0001, gens())(image).clamp(0, 1))
    assert transforms.jitter(0.0001, gens(), clamp=False)(image).min() < -0.49


def test_jitter_adds_seeded_noise_within_c_to_every_pixel_per_image():
    """The article's ColorJitter(c) as it describes it: epsilon in [-c, c] added to every pixel, each step."""
    image = torch.full((2, 3, 5, 5), 0.5)
    gens = lambda *seeds: [torch.Generator().manual_seed(s) for s in seeds]   # noqa: E731
    out = transforms.jitter(0.01, gens(1, 2))(image)
    change = out - image
    assert change.abs().max() <= 0.01 and (change != 0).float().mean() > 0.99
    assert change.min() < -0.005 and change.max() > 0.005                     # both signs, the whole range
    assert not torch.equal(change[0], change[1])                               # each image its own draw
    alone = transforms.jitter(0.01, gens(2))(image[1:])
    assert torch.equal(alone, out[1:])                                         # the same inside a batch or alone
    assert torch.equal(transforms.jitter(0.01, gens(1, 2))(image), out)        # same seeds, same noise
