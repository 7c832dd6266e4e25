"""Jobs from real images on the demo model and scikit-learn's two sample photographs: transfiguration,
class interpolation, deep dream and directed dream; and the auxiliary head as the class objectives' output."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from jobs import objectives as obj
from jobs.images import sample_images
from jobs.transforms import resize
from jobs.catalog import layer_spec_text, layer_terms, parse_layers
from jobs.kinds import JobSpec, from_uint8, interpolation_start, logits_of, objective_for, run_batch, to_uint8
from jobs.models import load_model
from jobs.render import render
from jobs.schedules import load_schedule

PAIRS = [(0, 1), (3, 8), (7, 2)]
# Each digit transfigured from one photograph, the two taking turns: every digit and both photographs are checked
# in half the renders of all 20 pairs.
TRANSFIGURED = {digit: ("china.jpg", "flower.jpg")[digit % 2] for digit in range(10)}


@pytest.fixture(scope="module")
def photos():
    return {image.name: image.read() for image in sample_images()}


@pytest.fixture(scope="module")
def image_runs(digits_model, photos):
    schedule = load_schedule("digits")
    specs = ([JobSpec("transfigure", digit, source=name) for digit, name in TRANSFIGURED.items()]
             + [JobSpec("interpolate", a, partner=b, source=name) for name in photos for a, b in PAIRS]
             + [JobSpec("dream", -1, variant="block2", source=name) for name in photos]
             + [JobSpec("dream", -1, variant=v, source="china.jpg") for v in ("block3:0,5", "block2:0")]
             + [JobSpec("directed-dream", 4, variant="block2", source=name) for name in photos])
    return {r.spec: r for r in run_batch(digits_model, specs, schedule, sources=photos)}, schedule


def test_transfiguring_the_photographs_to_each_digit(image_runs, photos):
    results, _ = image_runs
    assert sorted(TRANSFIGURED) == list(range(10)) and set(TRANSFIGURED.values()) == set(photos)
    for digit, name in TRANSFIGURED.items():
        r = results[JobSpec("transfigure", digit, source=name)]
        assert r.error is None and r.label == digit and r.target_prob >= 0.9, (name, digit, r.target_prob)


def test_interpolation_frames_move_from_a_to_b(image_runs, photos, digits_model):
    results, schedule = image_runs
    for name in photos:
        for a, b in PAIRS:
            r = results[JobSpec("interpolate", a, partner=b, source=name)]
            assert len(r.frames) == schedule.frames and r.frames[-1].step == schedule.total_iterations
            assert r.frames[0].step == interpolation_start(schedule) == schedule.octaves[0].iterations
            np.testing.assert_array_equal(r.frames[-1].image, r.image)
            assert int(np.argmax(r.frames[0].logits)) == a  # the interpolation starts from an image of class a
            for frame in r.frames:  # logits computed in batches per size equal each frame's own forward pass
                np.testing.assert_allclose(frame.logits, logits_of(digits_model, frame.image[None])[0],
                                           rtol=1e-4, atol=1e-4)
            steps = [f.step for f in r.frames]
            falling = spearmanr(steps, [f.logits[a] for f in r.frames]).statistic
            rising = spearmanr(steps, [f.logits[b] for f in r.frames]).statistic
            assert falling <= -0.8 and rising >= 0.8, (name, a, b, falling, rising)
            assert r.label == b


def _as_first_octave(pixels, size):
    """The photograph as the render starts from it (resized to the first octave), as uint8."""
    return to_uint8(resize(size)(from_uint8(pixels[None])))[0]


def _layer_mean(model, image_uint8, layer, maps=()):
    _, acts = model.taps(from_uint8(image_uint8[None]), [layer])
    act = acts[layer][:, list(maps)] if maps else acts[layer]
    return act.mean().item()


def test_dream_raises_the_chosen_layer(image_runs, digits_model, photos):
    results, schedule = image_runs
    size = schedule.octaves[0].size
    for name, pixels in photos.items():
        start = _as_first_octave(pixels, size)
        dreamt = results[JobSpec("dream", -1, variant="block2", source=name)].image
        assert _layer_mean(digits_model, dreamt, "block2") > 1.1 * _layer_mean(digits_model, start, "block2")
    start = _as_first_octave(photos["china.jpg"], size)
    chosen = results[JobSpec("dream", -1, variant="block3:0,5", source="china.jpg")].image
    assert (_layer_mean(digits_model, chosen, "block3", (0, 5))
            > _layer_mean(digits_model, start, "block3", (0, 5)))


def test_directed_dream_brings_in_its_class(image_runs, photos):
    results, _ = image_runs
    for name in photos:
        directed = results[JobSpec("directed-dream", 4, variant="block2", source=name)]
        plain = results[JobSpec("dream", -1, variant="block2", source=name)]
        assert directed.label == 4 and directed.logits[4] > plain.logits[4] + 2.0


def test_dreams_blur_as_the_article_says():
    """Deep dream: whole layers without smoothness; one or two feature maps with the blur after every step; a
    directed dream every `dream_blur_every` steps."""
    schedule = load_schedule("digits")
    for whole_layers in ("", "block2", "block1+block2", "block1+block2:0"):
        assert all(o.blur_every == 0 for o in schedule.for_job("dream", whole_layers).octaves), whole_layers
    for maps in ("block2:0,3", "block1:1+block2:0"):
        assert schedule.for_job("dream", maps) is schedule, maps               # the octaves' own blur, every step
    assert all(o.blur_every == 1 for o in schedule.octaves)
    assert all(o.blur_every == schedule.dream_blur_every for o in schedule.for_job("directed-dream").octaves)
    assert all(o.blur_every == schedule.dream_blur_every
               for o in schedule.for_job("directed-dream", "block2:0").octaves)
    assert schedule.for_job("transfigure") is schedule


def test_a_dream_on_feature_maps_is_blurred_and_one_on_a_layer_is_not(image_runs):
    """The same photograph dreamt on one map of block2 (blurred after each step) and on the whole of block2 (never
    blurred), in one batch: two renders under two schedules, the first the smoother image."""
    runs, schedule = image_runs
    maps, layer = (runs[JobSpec("dream", -1, variant=v, source="china.jpg")] for v in ("block2:0", "block2"))
    assert maps.schedule_id == schedule.for_job("dream", "block2:0").id == schedule.id
    assert layer.schedule_id == schedule.for_job("dream", "block2").id != schedule.id

    def roughness(image):
        x = image.astype(np.float64)
        return np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()
    assert roughness(maps.image) < roughness(layer.image)


def test_layer_specs_parse():
    assert parse_layers("Mixed_6d+Mixed_6e:0,4") == [("Mixed_6d", ()), ("Mixed_6e", (0, 4))]
    with pytest.raises(ValueError, match="integers"):
        parse_layers("block2:a")
    # int() takes "-1" (Python's last map: `block2:-1` ran map 63 under a key of its own) and "1_0"
    for maps in ("-1", "0,-2", "1_0", "\u00b2"):
        with pytest.raises(ValueError, match=r"integers from 0 \(map indices\)"):
            parse_layers(f"block2:{maps}")
    assert parse_layers("block2: 0 , 4") == [("block2", (0, 4))]


def test_a_sum_of_layers_has_one_spelling():
    """The layers joined by `+` in name order, numbers compared as numbers (`block2` before `block10`), each one's
    maps ascending and once; a layer named twice stays twice (the sum weighs it double)."""
    assert layer_spec_text("block3:5,0+block2:1") == layer_spec_text("block2:1+block3:0,5") == "block2:1+block3:0,5"
    assert layer_spec_text("features.10+features.2 + features.2.0") == "features.2+features.2.0+features.10"
    assert layer_spec_text("block2:1+block2+block2:0,1") == "block2+block2:0,1+block2:1"
    assert layer_spec_text("block2+block2") == "block2+block2"
    assert layer_terms("Mixed_6e:4,0+Mixed_6d") == [("Mixed_6d", ()), ("Mixed_6e", (0, 4))]


def test_every_spelling_of_a_sum_of_layers_dreams_one_objective_and_image(random_digits_model, photos):
    """A dream sums its layers in their one order whatever the spelling: one objective (one description, one batch
    group) and the same image, bit for bit, on the demo model under the tiny schedule."""
    tiny = load_schedule("tiny")
    spellings = ("block1:2+block2+block3:0,5", "block3:5,0+block2+block1:2", "block2+block3:0,5+block1:2")
    specs = [JobSpec("dream", -1, variant=v, source="china.jpg") for v in spellings]
    assert len({objective_for(spec, tiny.for_job("dream", spec.variant)).description for spec in specs}) == 1
    assert len({objective_for(spec, tiny.for_job("dream", spec.variant)).key for spec in specs}) == 1
    images = [run_batch(random_digits_model, [spec], tiny, sources=photos)[0].image for spec in specs]
    for image in images[1:]:
        np.testing.assert_array_equal(image, images[0])


def test_source_image_jobs_are_seeded(random_digits_model, photos):
    spec = JobSpec("transfigure", 3, seed=2, source="flower.jpg")
    tiny = load_schedule("tiny")
    alone = run_batch(random_digits_model, [spec], tiny, sources=photos)[0]
    mixed = run_batch(random_digits_model, [JobSpec("octave", 1), spec], tiny, sources=photos)[1]
    np.testing.assert_array_equal(alone.image, mixed.image)


def test_auxiliary_head_drives_class_objectives():
    model = load_model("inception_v3", "random")
    seen = []

    def record(out):
        seen.append(out.logits.detach().clone())
        return -out.logits[7]
    schedule = dataclasses.replace(load_schedule("tiny"), output="AuxLogits",
                                   octaves=(dataclasses.replace(load_schedule("tiny").octaves[0], size=299,
                                                                iterations=1, crop=None, pad=0),))
    start = torch.rand(3, 299, 299)
    render(model, [obj.Objective(record, "aux logit 7")], schedule, [0], init=[start])
    with model.input_as(schedule.input):   # a render of one runs as a batch of two (jobs.render): compare alike
        _, acts = model.taps(torch.stack([start, start]), ["AuxLogits"])
    torch.testing.assert_close(seen[0], acts["AuxLogits"][0], rtol=1e-4, atol=1e-4)
