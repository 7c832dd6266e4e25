"""The batched loop: determinism, batch independence, failures, input gradients only, ImageNet plumbing."""
import math

import torch

from jobs import objectives as obj
from jobs.models import load_model
from jobs.render import generators_for, initial_images, render
from jobs.schedules import Octave, Schedule, load_schedule

# two short octaves, the second with crops, so crop randomness and resizing are exercised
SMALL = Schedule(name="small", octaves=(Octave(32, 4, lr=(1.0, 0.5), sigma=(1.0, 0.5)),
                                        Octave(40, 4, lr=(0.5, 0.2), sigma=(0.8, 0.4), crop=32)))


def classes(*cs):
    return [obj.class_logit(c, 200.0, absolute=True) for c in cs]


def test_same_seed_gives_a_bit_identical_image_on_cpu(random_digits_model):
    a = render(random_digits_model, classes(3, 5), SMALL, [7, 8])
    b = render(random_digits_model, classes(3, 5), SMALL, [7, 8])
    assert a.images.shape == (2, 3, 40, 40)
    assert torch.equal(a.images, b.images)
    c = render(random_digits_model, classes(3, 5), SMALL, [7, 9])
    assert not torch.allclose(a.images[1], c.images[1])                 # another seed, another image


def test_an_image_alone_equals_the_same_image_inside_a_batch(random_digits_model):
    batch = render(random_digits_model, [obj.opposite(1), *classes(3), obj.juxtapose(2, 4, 200.0)] + classes(5, 6),
                   SMALL, [11, 12, 13, 14, 15])
    alone = render(random_digits_model, classes(3), SMALL, [12])
    assert torch.allclose(batch.images[1], alone.images[0], atol=1e-4)
    assert batch.errors == [None] * 5


def test_a_nan_objective_fails_alone_and_the_rest_finish(random_digits_model):
    nan = obj.Objective(lambda out: out.logits[0] * math.nan, "nan on purpose")
    mixed = render(random_digits_model, [classes(2)[0], nan, classes(4)[0]], SMALL, [1, 2, 3])
    assert mixed.errors[0] is None and mixed.errors[2] is None
    assert "non-finite" in mixed.errors[1] and "step 0 of 8" in mixed.errors[1] and "nan on purpose" in mixed.errors[1]
    clean = render(random_digits_model, classes(2, 4), SMALL, [1, 3])
    assert torch.allclose(mixed.images[[0, 2]], clean.images, atol=1e-4)
    assert torch.isfinite(mixed.images[[0, 2]]).all()


def test_an_exploding_step_is_reported_not_raised(random_digits_model):
    wild = Schedule(name="wild", octaves=(Octave(32, 3, lr=(3e38, 3e38)),), step="sign")
    out = render(random_digits_model, classes(1), wild, [0])
    assert out.errors[0] is not None and "lower the learning rate" in out.errors[0]


def test_only_the_input_gets_a_gradient(random_digits_model):
    before = {k: v.clone() for k, v in random_digits_model.state_dict().items()}
    render(random_digits_model, classes(1, 2), SMALL, [0, 1])
    for name, p in random_digits_model.named_parameters():
        assert p.grad is None and not p.requires_grad, name
    for k, v in random_digits_model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_step_follows_the_schedule(random_digits_model):
    """One plain step without blur is x - lr * grad; one sign step moves every pixel by exactly lr."""
    for rule in ("plain", "sign"):
        s = Schedule(name=rule, octaves=(Octave(16, 1, lr=(0.01, 0.01), blur_every=0),), step=rule)
        x0 = initial_images(s, generators_for([4])).requires_grad_(True)
        loss = (200.0 - random_digits_model(x0)[0, 6]).abs()
        (grad,) = torch.autograd.grad(loss, x0)
        out = render(random_digits_model, classes(6), s, [4]).images
        expected = x0.detach() - 0.01 * (grad.sign() if rule == "sign" else grad)
        assert torch.allclose(out, expected, atol=1e-6), rule


def test_initial_image_is_scaled_normal_noise():
    images = initial_images(load_schedule("googlenet"), generators_for([0, 1]))
    assert images.shape == (2, 3, 299, 299)
    assert abs(images.mean().item() - 0.7) < 0.001 and abs(images.std().item() - 0.05) < 0.001
    assert torch.equal(images[1], initial_images(load_schedule("googlenet"), generators_for([1]))[0])


def test_pad_and_channel_objectives_and_progress(random_digits_model):
    padded = Schedule(name="pad", octaves=(Octave(32, 3, pad=1),))
    calls = []
    out = render(random_digits_model, [obj.channel("block2", 5, C=0.0)], padded, [0],
                 progress=lambda done, total: calls.append((done, total)))
    assert out.images.shape == (1, 3, 32, 32)                            # the pad frames the model input only
    assert calls == [(1, 3), (2, 3), (3, 3)]
    start = initial_images(padded, generators_for([0]))
    _, a0 = random_digits_model.taps(start, ["block2"])
    _, a1 = random_digits_model.taps(out.images, ["block2"])
    assert a1["block2"][0, 5].mean() > a0["block2"][0, 5].mean()         # the chosen feature map was raised


def test_googlenet_random_weights_plumbing():
    model = load_model("googlenet", "random", seed=0)
    tiny = Schedule(name="g", octaves=(Octave(64, 1), Octave(72, 1, crop=64)))
    out = render(model, [obj.class_logit(3, 200, absolute=True), obj.opposite(999)], tiny, [0, 1])
    assert out.images.shape == (2, 3, 72, 72) and out.errors == [None, None]
    assert torch.isfinite(out.images).all()
    assert not torch.allclose(out.images[0], out.images[1])
