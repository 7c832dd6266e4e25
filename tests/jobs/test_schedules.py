"""Schedules: presets equal the article author's published numbers, files round-trip, bad ones fail clearly."""
import dataclasses
import json

import pytest

from jobs.schedules import (FAMILIES, Octave, Schedule, default_schedule, default_schedules,
                            load_schedule, preset_names, schedule_set)


def octave_numbers(schedule):
    return [(o.size, o.iterations, o.lr, o.sigma, o.crop, o.pad) for o in schedule.octaves]


def test_googlenet_preset_is_the_published_two_octaves():
    s = load_schedule("googlenet")
    assert octave_numbers(s) == [(299, 220, (1.5, 1.0), (2.4, 0.8), None, 0),
                                 (490, 500, (1.3, 0.45), (1.5, 0.4), 470, 0)]
    assert (s.init_mean, s.init_std, s.step, s.C, s.absolute, s.blur_kernel) == (0.7, 1 / 20, "plain", 200, True, 3)
    assert all(o.blur_every == 1 for o in s.octaves) and s.total_iterations == 720 and s.final_size == 490


def test_googlenet_printed_preset_is_the_articles_printed_lines():
    """Image generation I, "Jitter using cropped octaves": `octave(..., 220, [6, 5], [2.4, 0.8], 0, pad=False,
    crop=False)`, Resize([490, 490]), `octave(..., 500, [1.3, 0.45], [1.5, 0.4], 470, pad=False, crop=True)`; the
    author's published settings (the `googlenet` preset) start at lr 1.5 without padding."""
    s, published = load_schedule("googlenet-printed"), load_schedule("googlenet")
    assert octave_numbers(s) == [(299, 220, (6.0, 5.0), (2.4, 0.8), None, 0),
                                 (490, 500, (1.3, 0.45), (1.5, 0.4), 470, 0)]
    assert s.octaves[1:] == published.octaves[1:] and s.octaves[0].lr != published.octaves[0].lr
    assert (s.init_mean, s.init_std, s.input, s.pad_mode) == (published.init_mean, published.init_std, "raw",
                                                               published.pad_mode)


def test_googlenet_pad_preset():
    s = load_schedule("googlenet-pad")
    assert octave_numbers(s) == [(299, 220, (6.0, 5.0), (2.4, 0.8), None, 1),
                                 (490, 500, (1.3, 0.45), (1.5, 0.4), 470, 0)]
    assert s.pad_fill == 0.7 and s.pad_mode == "image"
    # Padding in the first octave: the image grows a pixel a side each step, 299 -> 739, then is resized to 490
    assert s.octaves[0].end_size(s.pad_mode) == 739 and s.final_size == 490
    assert s.model_input_sizes()[:2] == [299, 301] and max(s.model_input_sizes()) == 737


def test_inception_v3_preset_is_the_published_three_octaves():
    s = load_schedule("inception_v3")
    assert octave_numbers(s) == [(299, 100, (1.5, 1.0), (2.4, 0.8), None, 0),
                                 (340, 100, (1.3, 0.45), (1.5, 0.4), 320, 0),
                                 (390, 100, (1.3, 0.45), (1.5, 0.4), None, 0)]


def test_every_preset_loads_and_has_a_distinct_id():
    names = preset_names()
    assert {"googlenet", "googlenet-pad", "inception_v3", "digits", "tiny"} <= set(names)
    ids = {load_schedule(n).id for n in names}
    assert len(ids) == len(names)
    assert load_schedule("tiny").total_iterations <= 8


def test_default_schedule_per_model():
    assert default_schedule("digits").name == "digits"
    assert default_schedule("inception_v3").name == "inception_v3"
    assert default_schedule("googlenet").name == "googlenet"
    assert default_schedule("resnet50").name == "googlenet"


def test_linear_interpolation_within_an_octave():
    o = Octave(size=10, iterations=4, lr=(2.0, 1.0), sigma=(1.0, 3.0))
    assert [o.lr_at(i) for i in range(4)] == [2.0, 1.75, 1.5, 1.25]       # start*(n-i)/n + end*i/n
    assert [o.sigma_at(i) for i in range(4)] == [1.0, 1.5, 2.0, 2.5]
    assert [o.blurs_at(i) for i in range(4)] == [True] * 4
    assert [Octave(10, 4, blur_every=2).blurs_at(i) for i in range(4)] == [False, True, False, True]
    assert not any(Octave(10, 4, blur_every=0).blurs_at(i) for i in range(4))


def test_json_round_trip_and_id(tmp_path):
    s = load_schedule("googlenet")
    again = Schedule.from_dict(json.loads(s.to_json()))
    assert again == s and again.id == s.id
    path = tmp_path / "mine.json"
    data = json.loads(s.to_json())
    data["name"] = "mine"
    path.write_text(json.dumps(data))
    loaded = load_schedule(str(path))
    assert loaded.name == "mine" and loaded.id == s.id                   # the id is content, not name
    data["octaves"][1]["iterations"] = 499
    path.write_text(json.dumps(data))
    assert load_schedule(path).id != s.id
    assert len(s.id) == 12 and s.id == load_schedule("googlenet").id      # stable


def test_yaml_schedule(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({"octaves": [{"size": 16, "iterations": 3}], "step": "sign"}))
    s = load_schedule(path)
    assert s.name == "small" and s.step == "sign" and s.octaves == (Octave(16, 3),)


def test_a_schedule_file_saved_with_a_byte_order_mark_loads(tmp_path):
    """Notepad saves UTF-8 with a byte-order mark, which json.loads refuses ("Unexpected UTF-8 BOM")."""
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"marked{suffix}"
        path.write_bytes(json.dumps({"octaves": [{"size": 16, "iterations": 3}]}).encode("utf-8-sig"))
        assert load_schedule(path).octaves == (Octave(16, 3),)


@pytest.mark.parametrize("change, message", [
    ({"octaves": []}, "no octaves"),
    ({"step": "adam"}, "step must be one of plain, sign"),
    ({"colour": 1}, "unknown schedule field"),
    ({"octaves": [{"size": 32, "iterations": 5, "crop": 40}]}, "crop 40 is larger than the octave size 32"),
    ({"octaves": [{"size": 32, "iterations": 5, "sigma": [1.0, 0.0]}]}, "sigma must be > 0"),
    ({"octaves": [{"size": 32, "iterations": 0}]}, "iterations must be an integer >= 1"),
    ({"octaves": [{"size": 32, "iterations": 5, "lr": [1.0]}]}, r"lr must be a pair"),
    ({"octaves": [{"size": 32, "iterations": 5, "jitter": 2}]}, "octave 0: unknown field"),
    ({"octaves": [{"iterations": 5}]}, "octave 0"),
    ({"blur_kernel": 4}, "must be odd"),
    ({"blur_kernel": 9, "octaves": [{"size": 4, "iterations": 2}]}, "blur_kernel 9 cannot blur a 4-px image"),
    ({"blur_kernel": 5, "blur_scope": "crop", "octaves": [{"size": 20, "iterations": 2, "crop": 2}]},
     "octave 0: blur_kernel 5 cannot blur a 2-px image"),
    ({"octaves": [{"size": 20, "iterations": 2}, {"size": 20, "iterations": 2, "resize_cycle": [16, 1],
                                                  "cycle_steps": 2}]}, "octave 1: blur_kernel 3 cannot blur a 1-px"),
    ({"init_std": -1}, ">= 0"),
])
def test_invalid_schedules_raise_clear_errors(tmp_path, change, message):
    data = {"name": "bad", "octaves": [{"size": 32, "iterations": 5}], **change}
    with pytest.raises(ValueError, match=message):
        Schedule.from_dict(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="invalid schedule .*bad.json"):
        load_schedule(path)


@pytest.mark.parametrize("field, value, message", [
    # YAML 1.1 (PyYAML) reads an exponent as a number only after a dot and with a sign: 1e-3 is a string
    ("lr", "1e-3", r"octave 0: octave lr must be a pair \[start, end\] of numbers, got '1e-3' \(YAML reads 1e-3 "
                   r"as text: write 1\.0e-3\)$"),
    ("lr", "[1e-3, 5.0e-4]", r"got \['1e-3', 0\.0005\] \(YAML reads 1e-3 as text: write 1\.0e-3\)$"),
    ("sigma", "1.5e2", r"octave sigma .* \(YAML reads 1\.5e2 as text: write 1\.5e\+2\)$"),
    ("iterations", "1e3", r"octave iterations must be an integer >= 1, got '1e3' \(YAML reads 1e3 as text: write "
                          r"1000\)$"),
    ("lr", "'0.5'", r"got '0\.5' \('0\.5' in quotes is text: write 0\.5\)$"),
])
def test_a_number_a_yaml_schedule_reads_as_text_is_refused_with_how_to_write_it(tmp_path, field, value, message):
    """`lr: 1e-3` was refused as "must be a pair of numbers, got '1e-3'", with nothing saying why it is text."""
    yaml = pytest.importorskip("yaml")
    octave = {"size": "16", "iterations": "3", field: value}
    path = tmp_path / "small.yaml"
    path.write_text("octaves:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in octave.items()) + "\n")
    with pytest.raises(ValueError, match=message):
        load_schedule(path)
    written = message.rpartition("write ")[2].replace("\\", "")[:-len(")$")]
    assert isinstance(yaml.safe_load(written), (int, float)), written   # the hint's spelling reads as a number


def test_a_schedule_file_mapping_a_key_twice_is_refused_naming_it(tmp_path):
    """json.loads and PyYAML keep the last of two equal keys: `"lr": 6, ..., "lr": 1` ran lr 1 without a word."""
    twice = tmp_path / "twice.json"
    twice.write_text('{"octaves": [{"size": 16, "iterations": 3, "lr": [6, 5], "lr": [1, 1]}]}')
    with pytest.raises(ValueError, match=r"^.*twice\.json maps the key 'lr' twice: keep one$"):
        load_schedule(twice)
    pytest.importorskip("yaml")
    twice = tmp_path / "twice.yaml"
    twice.write_text("octaves:\n  - size: 16\n    iterations: 3\n    lr: 6\n    lr: 1\nstep: sign\n")
    with pytest.raises(ValueError, match=r"^.*twice\.yaml maps the key 'lr' twice .*line 5.*: keep one$"):
        load_schedule(twice)


def test_unknown_preset_and_unreadable_file(tmp_path):
    with pytest.raises(ValueError, match="unknown schedule 'nope'.*googlenet"):
        load_schedule("nope")
    for missing in ("fast.yaml", str(tmp_path / "fast"), "gone.json"):   # a file's name: say that it is missing
        with pytest.raises(ValueError, match=r"no schedule file .* \(no such file\).*\.yaml"):
            load_schedule(missing)
    with pytest.raises(ValueError, match=r"^schedule file .* is a folder, not a file: give a \.json file in it, or a "
                                         r"preset"):   # it was "no such file"
        load_schedule(str(tmp_path))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_schedule(broken)


def test_article_presets_feed_raw_pixels_and_the_demo_keeps_its_own():
    for name in ("googlenet", "googlenet-pad", "inception_v3", "dream", "transfigure", "fixed-224"):
        s = load_schedule(name)
        assert (s.input, s.blur_scope, s.interpolation) == ("raw", "image", "weighted"), name
    digits = load_schedule("digits")
    assert (digits.input, digits.blur_scope, digits.interpolation) == ("normalized", "crop", "targets")


def test_dream_preset_is_the_articles_three_octaves():
    s = load_schedule("dream")
    assert octave_numbers(s) == [(299, 100, (0.5, 0.4), (2.4, 0.8), None, 0),
                                 (380, 100, (0.4, 0.3), (1.5, 0.4), None, 0),
                                 (460, 100, (0.3, 0.2), (1.1, 0.3), None, 0)]
    assert all(o.blur_every == 0 for o in s.for_job("dream").octaves)      # a dream is not blurred
    assert all(o.blur_every == 5 for o in s.for_job("directed-dream").octaves)   # every 5-10 steps


def test_each_job_blurs_as_the_catalog_says():
    s = load_schedule("googlenet")                                            # octaves blur after every step
    assert s.for_job("octave") is s and s.for_job("interpolate") is s
    assert s.for_job("dream", "block2:0,4") is s                               # chosen maps: the octaves' blur
    assert {o.blur_every for o in s.for_job("dream", "block2").octaves} == {0}   # whole layers: never
    assert {o.blur_every for o in s.for_job("directed-dream", "block2").octaves} == {s.dream_blur_every}


def test_transfigure_preset_is_the_resize_cycle_recipe():
    """Image generation I, "Transformation resiliency": 100 steps, resized through 256, 198, 160, 180, 200 before
    each of the first 76, blurred for the first three quarters; ColorJitter(0.0001) on every step, seeded here."""
    s = load_schedule("transfigure")
    (o,) = s.octaves
    assert (o.iterations, o.resize_cycle, o.cycle_steps, o.blur_until) == (100, (256, 198, 160, 180, 200), 76, 75)
    assert [o.size_at(i) for i in range(6)] == [256, 198, 160, 180, 200, 256]
    assert o.size_at(80) == 256 == s.final_size                            # step 75 (75 % 5 == 0) left it at 256
    assert [o.blurs_at(i) for i in (0, 74, 75, 99)] == [True, True, False, False]
    assert (s.l1, s.C, s.absolute, s.jitter, s.jitter_clamp) == (0.001, 200.0, True, 0.0001, True)


TRANSFIGURE_ID_BEFORE_JITTER_CLAMP = "3386b23b7859"   # the transfigure preset before it clamped with its jitter


def test_the_jitter_clamps_as_the_articles_colorjitter_in_the_transfigure_preset_only():
    """The article's `ColorJitter(0.0001)` clamps the image to [0, 1] each step: the transfigure preset says so
    (`jitter_clamp`); a schedule file without the field keeps its id and computation (no clamp, the earlier
    reading of the article's text); a store made with the earlier transfigure preset is refused, naming the field,
    and resumes with a copy that sets it false. The clamp belongs to the jitter: without jitter it is refused."""
    transfigure = load_schedule("transfigure")
    assert transfigure.jitter_clamp and transfigure.id != TRANSFIGURE_ID_BEFORE_JITTER_CLAMP
    assert dataclasses.replace(transfigure, jitter_clamp=False).id == TRANSFIGURE_ID_BEFORE_JITTER_CLAMP
    assert {name: load_schedule(name).jitter_clamp for name in IDS_BEFORE_JITTER} == dict.fromkeys(
        IDS_BEFORE_JITTER, False)
    mine = Schedule.from_dict({"name": "mine", "octaves": [{"size": 64, "iterations": 1}], "jitter": 0.001})
    assert not mine.jitter_clamp and "jitter_clamp" not in mine.content_dict()
    with pytest.raises(ValueError, match="jitter_clamp clamps where the jitter is applied"):
        dataclasses.replace(mine, jitter=0.0, jitter_clamp=True)
    with pytest.raises(ValueError, match="jitter_clamp must be true or false"):
        dataclasses.replace(mine, jitter_clamp="yes")


# Ids of presets as stores written before the `jitter` field recorded them: those stores must still resume.
IDS_BEFORE_JITTER = {"googlenet": "a0da7047b891", "googlenet-pad": "679391adcade", "inception_v3": "60a31ae5c0f8",
                     "digits": "c06e41c3079c", "fixed-224": "326d24a669c3"}
DREAM_ID_BEFORE_SQUASH = "eef8a93daffc"   # the dream preset when photographs were centre-cropped


def test_photographs_are_squashed_to_a_square_as_the_articles_loader_does():
    """Image generation I, `Resize(size=[299, 299])`: the presets of the jobs that start from photographs. A schedule
    file without the field keeps "crop", its value before, so that its id and the stores made with it stay."""
    assert {name: load_schedule(name).source_fit for name in ("transfigure", "dream")} == {
        "transfigure": "squash", "dream": "squash"}
    mine = Schedule.from_dict({"name": "mine", "octaves": [{"size": 64, "iterations": 1}]})
    assert mine.source_fit == "crop" and mine.content_dict()["source_fit"] == "crop"
    assert {load_schedule(name).source_fit for name in IDS_BEFORE_JITTER} == {"crop"}
    dream = load_schedule("dream")
    assert dream.id != DREAM_ID_BEFORE_SQUASH   # a store made with the cropping preset is refused, naming the field
    assert dataclasses.replace(dream, source_fit="crop").id == DREAM_ID_BEFORE_SQUASH   # ... and resumes with it


def test_a_field_added_later_keeps_the_ids_of_schedules_that_leave_it_at_its_default():
    assert {name: load_schedule(name).id for name in IDS_BEFORE_JITTER} == IDS_BEFORE_JITTER
    s = load_schedule("googlenet")
    assert "jitter" not in s.content_dict() and s.to_dict()["jitter"] == 0.0
    jittered = dataclasses.replace(s, jitter=0.0001)
    assert jittered.id != s.id and jittered.content_dict()["jitter"] == 0.0001
    assert Schedule.from_dict(json.loads(jittered.to_json())).id == jittered.id
    with pytest.raises(ValueError, match="jitter"):
        dataclasses.replace(s, jitter=-0.1)
    assert "antialias" not in s.content_dict() and s.to_dict()["antialias"] is True
    sampled = dataclasses.replace(s, antialias=False)
    assert sampled.id not in (s.id, jittered.id) and sampled.content_dict()["antialias"] is False
    assert Schedule.from_dict(json.loads(sampled.to_json())).id == sampled.id
    with pytest.raises(ValueError, match="antialias and interpolation_warmup must be true or false"):
        dataclasses.replace(s, antialias="no")
    assert "interpolation_warmup" not in s.content_dict() and s.to_dict()["interpolation_warmup"] is True
    straight = dataclasses.replace(s, interpolation_warmup=False)
    assert straight.id != s.id and straight.content_dict()["interpolation_warmup"] is False
    with pytest.raises(ValueError, match="interpolation_warmup must be true or false"):
        dataclasses.replace(s, interpolation_warmup=1)


def test_default_schedules_per_model_and_job_family():
    g = default_schedules("googlenet")
    assert {job: g.schedule_of(job).name for job in FAMILIES} == {
        "octave": "googlenet", "opposite": "googlenet", "addition": "googlenet", "transfigure": "transfigure",
        "interpolate": "transfigure", "dream": "dream", "directed-dream": "dream"}
    assert default_schedules("inception_v3").schedule_of("octave").name == "inception_v3"
    assert {default_schedules("digits").schedule_of(job).name for job in FAMILIES} == {"digits"}
    vit = default_schedules("vit_b_16", fixed_size=224)
    assert {tuple(vit.for_job(job).model_input_sizes()) for job in FAMILIES} == {(224,)}
    assert default_schedules("x", fixed_size=384).for_job("octave").model_input_sizes() == [384]
    assert g.total_iterations == 720 and g.id != default_schedules("inception_v3").id
    assert g.job_ids(["dream"]) == {"dream": {"schedule": "dream", "schedule_id": g.for_job("dream").id,
                                              "input": "raw"}}


def test_overrides_for_every_job_and_per_job(tmp_path):
    base = default_schedules("googlenet")
    tiny = schedule_set(base, "tiny")
    assert {tiny.schedule_of(job).name for job in FAMILIES} == {"tiny"} and tiny.total_iterations <= 8
    mixed = schedule_set(base, "tiny", {"dream": "dream"})
    assert mixed.schedule_of("dream").name == "dream" and mixed.schedule_of("octave").name == "tiny"
    assert mixed.id != tiny.id
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"default": "tiny", "jobs": {"transfigure": load_schedule("digits").to_dict()}}))
    from_file = schedule_set(base, str(path))
    assert from_file.schedule_of("octave").name == "tiny" and from_file.schedule_of("transfigure").name == "digits"
    assert schedule_set(base, None, {"transfigure": str(path)}).schedule_of("transfigure").name == "digits"
    with pytest.raises(ValueError, match="no job named 'dreem'"):
        schedule_set(base, None, {"dreem": "dream"})
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_set(base, None, {"dream": "nope"})
    path.write_text(json.dumps({"default": "tiny", "jobz": {}}))
    with pytest.raises(ValueError, match="unknown schedule-set field"):
        schedule_set(base, str(path))


def test_a_schedule_set_file_without_a_default_leaves_the_jobs_it_does_not_name_to_the_models_defaults(tmp_path):
    """As --job-schedule does. Every job it did not name ran googlenet, whatever the model (the digits model's
    opposites: 720 iterations at 299 and 490 px instead of its own 200 at 32 and 40), dreams too."""
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"jobs": {"octave": "tiny"}}))
    digits = schedule_set(default_schedules("digits"), str(path))
    assert [digits.schedule_of(job).name for job in ("octave", "opposite", "dream")] == ["tiny", "digits", "digits"]
    googlenet = schedule_set(default_schedules("googlenet"), str(path))
    assert [googlenet.schedule_of(job).name for job in ("octave", "opposite", "dream", "transfigure")] == [
        "tiny", "googlenet", "dream", "transfigure"]
    per_job = schedule_set(default_schedules("digits"), None, {"opposite": str(path)})   # a job the set leaves out
    assert per_job.schedule_of("opposite").name == "digits"
    path.write_text(json.dumps({"default": "googlenet", "jobs": {"octave": "tiny"}}))   # a default, as before
    assert schedule_set(default_schedules("digits"), str(path)).schedule_of("opposite").name == "googlenet"


@pytest.mark.parametrize("change, message", [
    ({"input": "bgr"}, "input must be one of"),
    ({"pad_mode": "grow"}, "pad_mode must be one of"),
    ({"blur_scope": "all"}, "blur_scope must be one of"),
    ({"interpolation": "linear"}, "interpolation must be one of"),
    ({"source_fit": "pad"}, "source_fit must be one of"),
    ({"octaves": [{"size": 20, "iterations": 2, "pad": 1, "crop": 16}]}, "cannot also crop"),
    ({"octaves": [{"size": 20, "iterations": 2, "cycle_steps": 2}]}, "needs a resize_cycle"),
    ({"octaves": [{"size": 20, "iterations": 2, "resize_cycle": [16], "cycle_steps": 2, "crop": 8}]},
     "neither crop nor pad"),
])
def test_invalid_new_fields_raise_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        Schedule.from_dict({"name": "x", "octaves": [{"size": 20, "iterations": 2}], **change})


def test_a_store_of_the_cropping_image_presets_resumes_with_their_crop_copies(tmp_path):
    """The ImageNet set of octave, transfigure and interpolate as stores recorded it before the transfigure preset
    squashed photographs (id taken from that version): a copy of the preset with source_fit crop (and, since it
    clamps with its jitter, jitter_clamp false), given to every job that ran it, gives the store's id again (the
    README's recipe)."""
    old_id = "6ebda162b80f"
    copy = json.loads(load_schedule("transfigure").to_json())
    copy.update(name="transfigure-crop", source_fit="crop", jitter_clamp=False)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(copy))
    base = default_schedules("googlenet", ("octave", "transfigure", "interpolate"))
    assert base.id != old_id                                                     # refused, naming source_fit
    assert schedule_set(base, None, {"transfigure": str(path)}).id != old_id    # one job is not enough
    assert schedule_set(base, None, {"transfigure": str(path), "interpolate": str(path)}).id == old_id
