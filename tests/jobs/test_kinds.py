"""Jobs: result fields, labels, feature means, and the quality of octaves, opposites and additions on the demo
model (one batched run of the digit jobs, shared through tests/conftest.py)."""
import itertools
import math

import numpy as np
import pytest
import torch

from jobs import kinds
from jobs.catalog import JOBS, VARIANTS
from jobs.kinds import JobSpec, feature_means, margin_label, own_classes, run_batch
from jobs.render import generators_for, initial_images
from jobs.schedules import load_schedule


def test_margin_label_is_the_class_standing_furthest_above_the_next():
    v = np.array([0.0, 5.0, 4.5, -3.0, 1.0], dtype=np.float32)    # sorted: 5, 4.5, 1, 0, -3; gaps .5, 3.5, 1, 3
    assert margin_label(v) == 2
    assert margin_label(np.array([2.0, 9.0, 1.0])) == 1
    assert margin_label(np.array([3.0])) == 0


def test_margin_label_leaves_out_the_minimised_target():
    # An opposite image: the target (index 0) far below; among the rest class 3 stands out above the next.
    v = np.array([-50.0, 1.0, 1.5, 6.0, 2.0])
    assert margin_label(v) == 1  # the class just above the target wins on the gap to it
    assert margin_label(v, exclude=(0,)) == 3
    assert margin_label(np.array([5.0, 1.0]), exclude=(0,)) == 1


def test_job_tables():
    assert JOBS == ("octave", "opposite", "addition")
    assert VARIANTS["addition"] == ("merge", "juxtapose")


@pytest.mark.parametrize("spec, message", [
    (JobSpec("sketch", 1), "unknown job"),
    (JobSpec("dream", 1, variant="block2", source="a.png"), "takes no target"),
    (JobSpec("dream", -1, variant="block9", source="a.png"), "no layer .block9."),
    (JobSpec("transfigure", 1), "starts from a real image"),
    (JobSpec("transfigure", 1, source="absent.png"), "no source image named"),
    (JobSpec("octave", 10), "not a class index"),
    (JobSpec("addition", 1, variant="merge"), "partner"),
    (JobSpec("addition", 1, variant="sum", partner=2), "no variant 'sum'"),
    (JobSpec("opposite", 1, partner=3), "takes no partner"),
])
def test_invalid_specs_raise_before_any_work(random_digits_model, spec, message):
    with pytest.raises(ValueError, match=message):
        run_batch(random_digits_model, [JobSpec("octave", 0), spec], load_schedule("tiny"))


def test_results_carry_the_image_and_the_logits_of_that_uint8_image(random_digits_model):
    tiny = load_schedule("tiny")
    specs = [JobSpec("octave", 1, seed=3), JobSpec("addition", 2, 0, "juxtapose", 5)]
    results = run_batch(random_digits_model, specs, tiny)
    assert [r.spec for r in results] == specs
    for r in results:
        assert r.error is None and r.image.dtype == np.uint8 and r.image.shape == (40, 40, 3)
        assert r.logits.dtype == np.float32 and r.logits.shape == (10,)
        x = torch.from_numpy(r.image).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad(), random_digits_model.input_as(tiny.input):   # the convention it was made under
            assert np.allclose(random_digits_model(x)[0].numpy(), r.logits, atol=1e-5)
        assert r.label == int(np.argmax(r.logits))
        assert r.margin_label == margin_label(r.logits, exclude=own_classes(r.spec))
        assert r.target_logit == pytest.approx(float(r.logits[r.spec.target]))
        assert r.target_prob == pytest.approx(float(torch.softmax(torch.tensor(r.logits), 0)[r.spec.target]))
        assert (r.model, r.weights, r.schedule_id) == ("digits", "random:seed=0", tiny.id)
        assert r.seconds > 0
    assert math.isnan(results[0].partner_logit)
    assert results[1].partner_logit == pytest.approx(float(results[1].logits[5]))


def test_stored_logits_do_not_depend_on_the_batch(random_digits_model):
    """Batch independence (`jobs.render`) holds for what is stored, not only for the image: the logits of an image
    scored alone, in a chunk of one or inside a batch are the same bit for bit on the CPU (a batch of one takes
    another convolution path there)."""
    images = np.random.default_rng(0).integers(0, 256, size=(5, 40, 40, 3), dtype=np.uint8)
    together = kinds.logits_of(random_digits_model, images)
    for j in range(len(images)):
        np.testing.assert_array_equal(kinds.logits_of(random_digits_model, images[j:j + 1]), together[j:j + 1])
    np.testing.assert_array_equal(kinds.logits_of(random_digits_model, images, chunk=4), together)
    means = feature_means(random_digits_model, images, "block2", [0, 5], chunk=4)
    np.testing.assert_array_equal(feature_means(random_digits_model, images[:1], "block2", [0, 5]), means[:1])
    tiny = load_schedule("tiny")
    specs = [JobSpec("opposite", 2, seed=2), JobSpec("addition", 1, seed=3, variant="merge", partner=4)]
    for spec, in_batch in zip(specs, run_batch(random_digits_model, specs, tiny)):
        alone = run_batch(random_digits_model, [spec], tiny)[0]
        np.testing.assert_array_equal(alone.image, in_batch.image)
        np.testing.assert_array_equal(alone.logits, in_batch.logits)


def test_a_failing_spec_fails_alone(random_digits_model, monkeypatch):
    def poisoned(spec, schedule):
        base = kinds._octave(spec, schedule)
        return base * math.nan if spec.target == 3 else base
    monkeypatch.setitem(kinds.RECIPES, "octave", poisoned)
    results = run_batch(random_digits_model, [JobSpec("octave", c) for c in (2, 3, 4)], load_schedule("tiny"))
    bad = results[1]
    assert bad.error and bad.image is None and bad.logits is None and bad.label == -1 and bad.margin_label == -1
    assert math.isnan(bad.target_logit)
    assert all(r.error is None and r.image is not None for r in (results[0], results[2]))


def test_feature_means_match_a_direct_computation(random_digits_model):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    means = feature_means(random_digits_model, images, "block2", [0, 4, 63], chunk=2)
    assert means.shape == (5, 3) and means.dtype == np.float32
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    _, acts = random_digits_model.taps(x, ["block2"])
    expected = acts["block2"][:, [0, 4, 63]].mean(dim=(2, 3)).detach().numpy()
    assert np.allclose(means, expected, atol=1e-5)
    ragged = feature_means(random_digits_model, [images[0], images[1, :24, :24]], "block2", [1])
    assert ragged.shape == (2, 1)
    with pytest.raises(ValueError, match="64 feature maps"):
        feature_means(random_digits_model, images, "block2", [64])


def test_feature_means_at_a_side_resize_each_image_as_torchvision_does(random_digits_model):
    """The article evaluates its class images at 299 x 299 (Latent space, "Feature latent space":
    `image[0].reshape(1, 3, 299, 299)`); `side` resizes larger ones (antialiased bilinear, torchvision's Resize)."""
    from torchvision.transforms import functional as TF
    rng = np.random.default_rng(1)
    large = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    resized = TF.resize(torch.from_numpy(large).permute(0, 3, 1, 2).float() / 255, [32, 32], antialias=True)
    _, acts = random_digits_model.taps(resized, ["block2"])
    expected = acts["block2"][:, [0, 4]].mean(dim=(2, 3)).detach().numpy()
    at_side = feature_means(random_digits_model, large, "block2", [0, 4], side=32)
    np.testing.assert_allclose(at_side, expected, atol=1e-5)
    ragged = feature_means(random_digits_model, [large[0], large[1, :48, :48]], "block2", [0, 4], side=32)
    np.testing.assert_allclose(ragged[0], expected[0], atol=1e-5)
    as_stored = feature_means(random_digits_model, large, "block2", [0, 4])
    assert np.abs(as_stored - at_side).max() > 1e-3
    same = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)   # already at the side: unchanged
    np.testing.assert_array_equal(feature_means(random_digits_model, same, "block2", [0], side=32),
                                  feature_means(random_digits_model, same, "block2", [0]))


def test_feature_means_resize_without_antialiasing_when_the_schedule_did_not(random_digits_model):
    """A store whose schedule says `antialias: false` (the torchvision of the articles' time) shrinks its images for
    the features as its octaves were shrunk; the default stays antialiased, bit for bit."""
    from torchvision.transforms import functional as TF
    large = np.random.default_rng(2).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    sampled = TF.resize(torch.from_numpy(large).permute(0, 3, 1, 2).float() / 255, [32, 32], antialias=False)
    _, acts = random_digits_model.taps(sampled, ["block2"])
    expected = acts["block2"][:, [0, 4]].mean(dim=(2, 3)).detach().numpy()
    plain = feature_means(random_digits_model, large, "block2", [0, 4], side=32, antialias=False)
    np.testing.assert_allclose(plain, expected, atol=1e-5)
    default = feature_means(random_digits_model, large, "block2", [0, 4], side=32)
    assert np.abs(plain - default).max() > 1e-4
    np.testing.assert_array_equal(default, feature_means(random_digits_model, large, "block2", [0, 4], side=32,
                                                         antialias=True))


# -- quality on the trained demo model (its images: tests/conftest.py) -----------------------------------------
PAIRS = list(itertools.combinations(range(10), 2))


@pytest.fixture(scope="module")
def initial(digits_model):
    """The demo model's logits on the preset's starting image (every spec here uses seed 0)."""
    start = kinds.to_uint8(initial_images(load_schedule("digits"), generators_for([0])))
    return kinds.logits_of(digits_model, start)[0]


def test_octave_images_are_classified_as_their_target(digits_class_images):
    for c in range(10):
        r = digits_class_images[JobSpec("octave", c)]
        assert r.label == c and r.target_prob >= 0.9, (c, r.label, r.target_prob)


def test_opposites_lower_their_target_well_below_the_start(digits_class_images, initial):
    for c in range(10):
        r = digits_class_images[JobSpec("opposite", c)]
        assert r.target_logit < initial[c] - 2.0, (c, r.target_logit, initial[c])
        assert r.label != c and r.margin_label != -1


def check_additions(results, initial, pairs) -> dict[str, int]:
    """Assert that both additions of each pair raise its two classes; per variant, the pairs whose two classes end
    as the top two."""
    top_two = {"merge": 0, "juxtapose": 0}
    for a, b in pairs:
        merged = results[JobSpec("addition", a, 0, "merge", b)].logits
        assert merged[a] + merged[b] > initial[a] + initial[b], (a, b)
        juxtaposed = results[JobSpec("addition", a, 0, "juxtapose", b)].logits
        assert min(juxtaposed[a], juxtaposed[b]) > min(initial[a], initial[b]), (a, b)
        for variant, v in (("merge", merged), ("juxtapose", juxtaposed)):
            top_two[variant] += set(np.argsort(-v)[:2].tolist()) == {a, b}
    return top_two


def test_additions_raise_both_classes(digits_class_images, initial):
    """On the pairs of every run: 5, each digit in one (all 45: the slow test below)."""
    pairs = sorted({(s.target, s.partner) for s in digits_class_images if s.job == "addition"})
    assert len(pairs) == 5 and all(sum(c in pair for pair in pairs) == 1 for c in range(10))
    check_additions(digits_class_images, initial, pairs)


@pytest.mark.slow
def test_additions_raise_both_classes_for_all_45_pairs(digits_all_additions, initial):
    """Every pair, and the README's figures (test_additions_raise_both_classes checks 5 pairs in every run)."""
    top_two = check_additions(digits_all_additions, initial, PAIRS)
    # a figure for the README, not a threshold
    print(f"\naddition: pairs whose two classes end as the top two: merge {top_two['merge']}/45 "
          f"({top_two['merge'] / 45:.2f}), juxtapose {top_two['juxtapose']}/45 ({top_two['juxtapose'] / 45:.2f})")


@pytest.mark.parametrize("variant", VARIANTS["addition"])
def test_an_addition_makes_the_same_image_in_either_order(random_digits_model, variant):
    """Why the plan renders b+a only once (`Job.pair_commutes`): both objectives are symmetric in the two classes."""
    tiny = load_schedule("tiny")
    ab, ba = run_batch(random_digits_model, [JobSpec("addition", 2, seed=1, variant=variant, partner=7),
                                             JobSpec("addition", 7, seed=1, variant=variant, partner=2)], tiny)
    assert ab.error is None and ba.error is None
    np.testing.assert_array_equal(ab.image, ba.image)


def test_interpolation_over_several_octaves_leaves_the_first_to_class_a_unless_told_not_to():
    """Latent space, "Dog transfiguration": J_n over a single-scale run, from (c, 0) to (0, c). Several octaves are
    ours: by default the first pushes the photograph to class a alone; `interpolation_warmup: false` spreads the q
    steps over the whole run."""
    import dataclasses
    from jobs.kinds import interpolation_frames, interpolation_start
    digits = load_schedule("digits")                  # two octaves (80 + 120 steps)
    straight = dataclasses.replace(digits, interpolation_warmup=False)
    single = dataclasses.replace(digits, octaves=digits.octaves[:1])
    assert interpolation_start(digits) == 80 == interpolation_start(dataclasses.replace(digits,
                                                                                        interpolation="weighted"))
    assert interpolation_start(straight) == 0 == interpolation_start(single)
    assert interpolation_frames(straight)[0] == 0 and interpolation_frames(digits)[0] == 80
    assert interpolation_start(load_schedule("transfigure")) == 0    # the ImageNet default: one scale


@pytest.mark.parametrize("frames", [1, 2, 8])
def test_interpolation_frames_are_evenly_spaced_and_the_last_is_the_final_image(frames):
    """`Schedule.frames`: "evenly spaced, the last one final", one frame included."""
    import dataclasses
    from jobs.kinds import interpolation_frames
    digits = dataclasses.replace(load_schedule("digits"), frames=frames)      # interpolation over steps 80..200
    kept = interpolation_frames(digits)
    assert len(kept) == frames and kept[-1] == digits.total_iterations == 200
    assert frames == 1 or kept[0] == 80
