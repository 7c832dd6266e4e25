"""The second demo model: accurate on held-out digits, its own class images read as digits, and class images
transfer between it and `digits` (issue 13: a class image should mean its class to a model that did not make it)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from jobs import kinds
from jobs.digits import digits_dataset
from jobs.digits_resnet import CHECKPOINT
from jobs.kinds import JobSpec, run_batch
from jobs.models import default_dream_layer, list_models, load_model
from jobs.schedules import default_schedule

PAIRS = list(itertools.combinations(range(10), 2))


@pytest.fixture(scope="module")
def resnet_model():
    return load_model("digits-resnet", "DEFAULT")


@pytest.fixture(scope="module")
def octaves(digits_octaves, resnet_model):
    """Each model's 10 octave images (its default schedule, the digits preset; seed 0), as uint8 (digits' from the
    shared run of conftest)."""
    specs = [JobSpec("octave", c) for c in range(10)]
    return {"digits": np.stack([digits_octaves[spec].image for spec in specs]),
            "digits-resnet": np.stack([r.image for r in run_batch(resnet_model, specs,
                                                                  default_schedule("digits-resnet"))])}


def _top1(model, images: np.ndarray) -> np.ndarray:
    return kinds.logits_of(model, images).argmax(1)


def test_registered_in_the_zoo_with_the_digits_schedule(resnet_model, digits_model):
    assert resnet_model.name == "digits-resnet" and resnet_model.weights_id == "shipped"
    assert resnet_model.class_names == digits_model.class_names and resnet_model.input_size == 32
    assert CHECKPOINT.stat().st_size < 2 * 1024 * 1024       # small enough to ship inside the package
    info = {i.name: i for i in list_models()}["digits-resnet"]
    assert info.weights_offline and info.n_classes == 10
    assert default_schedule("digits-resnet") == default_schedule("digits")
    layer = default_dream_layer(resnet_model)
    logits, acts = resnet_model.taps(torch.rand(2, 3, 40, 40), [layer])
    assert logits.shape == (2, 10) and acts[layer].shape == (2, 96, 10, 10)


def test_random_weights_are_seeded(resnet_model):
    a, b, c = (load_model("digits-resnet", "random", seed=s) for s in (0, 0, 1))
    assert a.weights_id == "random:seed=0"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.net.stem[0].weight, c.net.stem[0].weight)
    assert not torch.equal(a.net.stem[0].weight, resnet_model.net.stem[0].weight)


def test_shipped_checkpoint_meets_held_out_accuracy(resnet_model):
    _, _, test_images, test_labels = digits_dataset()
    with torch.no_grad():
        accuracy = (resnet_model(test_images).argmax(1) == test_labels).float().mean().item()
    print(f"\ndigits-resnet held-out accuracy {accuracy:.4f} on {len(test_labels)} images")
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}"


def test_own_octave_images_are_classified_as_their_target(octaves, resnet_model):
    hits = int((_top1(resnet_model, octaves["digits-resnet"]) == np.arange(10)).sum())
    assert hits >= 9, f"{hits}/10 octave images top-1 = target"


def test_octave_images_transfer_between_the_two_models(octaves, digits_model, resnet_model):
    # Measured with the shipped checkpoints: digits' images are top-1 = target for digits-resnet in 10/10 classes;
    # digits-resnet's in 9/10 for digits (its 0 reads as a 1). The bar is 9/10 in both directions.
    by_resnet = int((_top1(resnet_model, octaves["digits"]) == np.arange(10)).sum())
    by_digits = int((_top1(digits_model, octaves["digits-resnet"]) == np.arange(10)).sum())
    print(f"\noctave transfer: digits images top-1 = target for digits-resnet {by_resnet}/10; "
          f"digits-resnet images for digits {by_digits}/10")
    assert by_resnet >= 9 and by_digits >= 9, (by_resnet, by_digits)


@pytest.mark.slow
def test_merged_additions_keep_both_classes_in_the_other_models_top_two(digits_all_additions, resnet_model):
    images = np.stack([digits_all_additions[JobSpec("addition", a, 0, "merge", b)].image for a, b in PAIRS])
    top_two = np.argsort(-kinds.logits_of(resnet_model, images), axis=1)[:, :2]
    kept = sum(set(t.tolist()) == {a, b} for t, (a, b) in zip(top_two, PAIRS))
    print(f"\ndigits merges with both classes in digits-resnet's top 2: {kept}/45")
    # Measured: 31/45 (digits itself: 42/45). The bar is the "most pairs": a majority, 23 of 45.
    assert kept >= 23, f"{kept}/45"
