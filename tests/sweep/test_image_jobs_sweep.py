"""The jobs from real images through the real sweep (`sweep run --images`), on a local Ray started once for the
module, the digits architecture and the tiny schedule, starting from scikit-learn's two sample photographs:
refusals before anything runs, the stored rows (source, frame, step; interpolation frames), resume, a re-run with
other pictures, status, export, figures, directions and the demo's configuration."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from jobs.images import sample_images
from jobs.schedules import load_schedule
from sweep.cli import main
from sweep.plan import make_plan
from sweep.store import FRAMES, IMAGES, SOURCES, Store, decode_png, source_hash
from sweep.worker import SweepWorker, WorkerConfig
from sweep_fakes import start_local_ray

ray = pytest.importorskip("ray")
JOBS = "octave,transfigure,interpolate,dream,directed-dream"
LAYERS = ("block2", "block3:0,5")
TINY_STEPS = load_schedule("tiny").total_iterations


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The two sample photographs as files: china as PNG, flower as JPEG (quality 95)."""
    folder = tmp_path_factory.mktemp("photos")
    for image in sample_images():
        stem = Path(image.name).stem
        if stem == "china":
            Image.fromarray(image.read()).save(folder / "china.png")
        else:
            Image.fromarray(image.read()).save(folder / "flower.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder


def run_args(store, photos, *extra):
    return ["run", "--store", store, "--model", "digits", "--weights", "random", "--schedule", "tiny",
            "--jobs", JOBS, "--classes", "0-2", "--pairs", "0+1,2+3", "--images", photos,
            "--layers", LAYERS[0], "--layers", LAYERS[1], "--batch-size", 4, "--cpus-per-worker", 1, *extra]


# ---- refusals: one line, exit status 2, nothing written, no Ray --------------------------------------------------

def _refused(result, store, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not Path(store).exists()
    assert not ray.is_initialized()


def test_bad_image_inputs_are_listed_in_one_error(tmp_path, photos):
    fake = tmp_path / "fake.png"
    fake.write_text("this is text, not a PNG")
    store = tmp_path / "store"
    result = invoke("run", "--store", store, "--model", "digits", "--weights", "random", "--jobs", "transfigure",
                    "--images", fake, "--images", tmp_path / "missing.jpg", "--images", photos)
    _refused(result, store, "2 input(s) are not readable images", "fake.png", "missing.jpg: no such file")


def test_image_jobs_without_images_are_refused(tmp_path):
    store = tmp_path / "store"
    result = invoke("run", "--store", store, "--model", "digits", "--weights", "random",
                    "--jobs", "octave,interpolate,dream")
    _refused(result, store, "interpolate, dream start from real images", "--images")


@pytest.mark.parametrize("layers, fragment", [
    (["--layers", "block9"], "no layer 'block9'"),
    (["--layers", "block2", "--layers", "block3:0,500"], "block3 has 128 feature maps"),
    (["--layers", "block2:x"], "integers"),
])
def test_unknown_layers_are_refused(tmp_path, photos, layers, fragment):
    store = tmp_path / "store"
    result = invoke("run", "--store", store, "--model", "digits", "--weights", "random", "--jobs", "dream",
                    "--images", photos, *layers)
    _refused(result, store, fragment)


def test_images_without_an_image_job_are_refused(tmp_path, photos):
    store = tmp_path / "store"
    result = invoke("run", "--store", store, "--model", "digits", "--weights", "random", "--jobs", "octave",
                    "--images", photos)
    _refused(result, store, "no chosen job starts from an image")


def test_plan_counts_of_the_image_jobs():
    plan = make_plan(n_classes=10, jobs=JOBS, classes="0-2", pairs="0+1,2+3", sources=("a.png", "b.jpg"),
                     layers=LAYERS, seeds=2, batch_size=4)
    counts = pd.Series([item.job for item in plan.items()]).value_counts().to_dict()
    # octave 3 x 2 seeds; transfigure 3 x 2 x 2; interpolate 2 pairs x 2 x 2; dream 2 layers x 2 x 2;
    # directed-dream 3 x 2 layers x 2 x 2
    assert counts == {"octave": 6, "transfigure": 12, "interpolate": 8, "dream": 8, "directed-dream": 24}
    keys = [item.key for item in plan.items()]
    assert len(set(keys)) == len(keys)
    assert "dream:block3:0,5:-1:-1:1:b.jpg" in keys and "interpolate:-:2:3:0:a.png" in keys
    own = make_plan(n_classes=10, jobs="addition,interpolate", classes="0-4", pairs="all", sources=("a.png",),
                    interpolate_pairs="3+4")
    assert len(own.pairs) == 10 and own.interpolate_pairs == ((3, 4),)
    assert [i.key for i in own.items() if i.job == "interpolate"] == ["interpolate:-:3:4:0:a.png"]


# ---- the sweep -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    start_local_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def image_sweep(local_ray, photos, tmp_path_factory):
    store = tmp_path_factory.mktemp("images") / "store"
    result = invoke(*run_args(store, photos))
    assert result.exit_code == 0, result.output
    return store, result.output


@pytest.fixture
def own_copy(image_sweep, tmp_path) -> Path:
    """A test's own copy of the module's store, for a test that damages it or writes into it: the tests that read
    the shared store (its counts, its files) never depend on another test's writes."""
    return Path(shutil.copytree(image_sweep[0], tmp_path / "store"))


def _planned_keys() -> list[str]:
    plan = make_plan(n_classes=10, jobs=JOBS, classes="0-2", pairs="0+1,2+3", sources=("china.png", "flower.jpg"),
                     layers=LAYERS, batch_size=4)
    return [item.key for item in plan.items()]


def test_every_planned_image_is_stored_once_with_its_source(image_sweep):
    store, output = image_sweep
    planned = _planned_keys()
    assert len(planned) == 3 + 6 + 4 + 4 + 12 and f"{len(planned)}/{len(planned)} items done" in output
    frame = pd.read_parquet(store / IMAGES)
    assert frame.key.is_unique and (frame.frame == -1).all()     # one row per item: frames live in frames/
    finals = frame
    assert sorted(finals.key) == sorted(planned)
    assert (finals.step == TINY_STEPS).all() and finals.step.dtype == np.int32 and frame.frame.dtype == np.int32
    from_photo = finals[finals.job != "octave"]
    assert set(from_photo.source) == {"china.png", "flower.jpg"} and finals[finals.job == "octave"].source.isna().all()
    assert all(key.endswith(":" + source) for key, source in zip(from_photo.key, from_photo.source))
    dreams = finals[finals.job == "dream"]
    assert set(dreams.variant) == set(LAYERS) and (dreams.target == -1).all() and (dreams.target_name == "").all()
    assert finals.logits.map(len).eq(10).all() and (finals.label == finals.logits.map(np.argmax)).all()


def test_interpolations_keep_their_frames_in_their_own_table(image_sweep):
    store, _ = image_sweep
    frame = pd.read_parquet(store / IMAGES)
    frames = pd.read_parquet(store / FRAMES)
    assert set(frames.job) == {"interpolate"} and frames.key.is_unique and (frames.frame >= 0).all()
    steps_expected = None
    for key in frame[frame.job == "interpolate"].key:
        own = frames[frames.key.str.startswith(key + "#frame")].sort_values("frame")
        assert len(own) >= 2 and list(own.frame) == list(range(len(own)))
        assert list(own.key) == [f"{key}#frame{k}" for k in range(len(own))]
        assert own.step.is_monotonic_increasing and own.step.iloc[-1] == TINY_STEPS
        steps_expected = steps_expected or list(own.step)
        assert list(own.step) == steps_expected                    # same schedule, same kept steps
        final = frame[frame.key == key].iloc[0]
        assert own.png.iloc[-1] == final.png                       # the last frame is the final image
        a, b = int(final.target), int(final.partner)
        assert np.isclose(own.target_logit.iloc[0], own.logits.iloc[0][a])
        assert np.isclose(own.partner_logit.iloc[0], own.logits.iloc[0][b])
    # a batch's frames file is named like its images file and holds the frames of exactly that file's items
    opened = Store.open(str(store))
    frame_files = {os.path.basename(p): p for p in opened.files(FRAMES)}
    assert frame_files
    for path in opened.files(IMAGES):
        items = set(pd.read_parquet(path, columns=["key"]).key)
        own = frame_files.pop(os.path.basename(path), None)
        if own is None:
            assert not any(k.startswith("interpolate:") for k in items)
            continue
        assert {k.split("#frame")[0] for k in pd.read_parquet(own, columns=["key"]).key} == \
            {k for k in items if k.startswith("interpolate:")}
    assert not frame_files                                         # no frames without their batch's images


def test_sources_are_stored_once_with_their_hash_in_the_manifest(image_sweep, photos):
    store, _ = image_sweep
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["options"]["sources"] == ["china.png", "flower.jpg"]
    assert manifest["options"]["layers"] == list(LAYERS)
    assert sorted(os.listdir(store / SOURCES)) == ["china.png.png", "flower.jpg.png"]
    for name, stored in manifest["sources"].items():
        pixels = decode_png((store / SOURCES / f"{name}.png").read_bytes())
        np.testing.assert_array_equal(pixels, np.asarray(Image.open(photos / name).convert("RGB")))
        assert stored == source_hash(pixels)


def test_a_rerun_resumes_and_restores_a_lost_batch_exactly_once(own_copy, photos):
    store = own_copy
    again = invoke(*run_args(store, photos))
    assert again.exit_code == 0 and "nothing left to run" in again.output
    before = pd.read_parquet(store / IMAGES, columns=["key"])
    lost = next(p for p in Store.open(str(store)).files(IMAGES) if "-interpolate-" in p)
    os.remove(lost)
    resumed = invoke(*run_args(store, photos))
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output and "items done (" in resumed.output
    after = pd.read_parquet(store / IMAGES, columns=["key"])
    assert after.key.is_unique and sorted(after.key) == sorted(before.key)


def test_other_pictures_under_the_same_names_are_refused(image_sweep, photos, tmp_path):
    store, _ = image_sweep
    other = tmp_path / "other"
    other.mkdir()
    (other / "china.png").write_bytes((photos / "china.png").read_bytes())
    pixels = np.asarray(Image.open(photos / "flower.jpg").convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]                                # one pixel differs
    Image.fromarray(pixels).save(other / "flower.jpg", quality=100)
    listing = sorted(p.relative_to(store) for p in store.rglob("*"))
    result = invoke(*run_args(store, other))
    assert result.exit_code == 2 and "holds a different sweep" in result.output
    assert "flower.jpg has other pixels" in result.output and "china.png" not in result.output.split("sweep:")[1]
    renamed = invoke(*run_args(store, photos / "china.png"))
    assert renamed.exit_code == 2 and "sources is" in renamed.output
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == listing


def test_status_and_export_know_the_image_jobs(image_sweep, tmp_path):
    store, _ = image_sweep
    status = invoke("status", "--store", store)
    assert status.exit_code == 0
    assert re.search(r"directed-dream\s+block3:0,5\s+6/6", status.output)
    assert re.search(r"total\s+29/29", status.output) and "0 items still failing" in status.output
    exported = invoke("export", "--store", store, "--out", tmp_path / "png")
    rows = len(pd.read_parquet(store / IMAGES, columns=["key"])) + len(pd.read_parquet(store / FRAMES, columns=["key"]))
    assert exported.exit_code == 0 and f"wrote {rows} PNG files" in exported.output
    names = {str(p.relative_to(tmp_path / "png")) for p in (tmp_path / "png").rglob("*.png")}
    assert len(names) == rows                                        # no two rows share a file name
    assert "dream-block3-0-5/china-png_s0.png" in names
    assert "interpolate/0000_digit-0+0001_digit-1_flower-jpg_s0_f00.png" in names


def test_dreams_start_from_another_stores_class_images_and_from_noise(image_sweep, tmp_path):
    """Deep dream, "Enhancements with Dreams": the class images as a_0; and its noise start."""
    classes, _ = image_sweep
    store = tmp_path / "dreams"
    args = ["run", "--store", store, "--model", "digits", "--weights", "random", "--schedule", "tiny", "--jobs",
            "dream", "--images", f"store:{classes}", "--images", "noise:2", "--layers", "block2", "--batch-size", 5,
            "--cpus-per-worker", 1]
    result = invoke(*args)
    assert result.exit_code == 0 and "5/5 items done" in result.output, result.output
    manifest = json.loads((store / "manifest.json").read_text())
    names = ["noise-000", "noise-001", "octave-0000-digit-0", "octave-0001-digit-1", "octave-0002-digit-2"]
    assert manifest["options"]["sources"] == names == sorted(manifest["sources"])
    octaves = pd.read_parquet(classes / IMAGES, filters=[("job", "==", "octave")])
    for target in range(3):
        saved = (store / SOURCES / f"octave-000{target}-digit-{target}.png").read_bytes()
        np.testing.assert_array_equal(decode_png(saved), decode_png(octaves.png[octaves.target == target].iloc[0]))
    noise = decode_png((store / SOURCES / "noise-000.png").read_bytes())
    assert noise.shape == (32, 32, 3) and noise.min() >= 128 and noise.max() <= 153   # the digits side
    dreams = pd.read_parquet(store / IMAGES)
    assert sorted(dreams.source) == names and (dreams.job == "dream").all()
    again = invoke(*args)                                              # the same sources, the same hashes: resumes
    assert again.exit_code == 0 and "nothing left to run" in again.output, again.output
    itself = invoke(*args[:2], classes, *args[3:])
    assert itself.exit_code == 2 and itself.output.count("\n") == 1, itself.output
    assert "that is the store this sweep writes" in itself.output


def test_a_missing_source_fails_its_items_with_a_clear_error(image_sweep, tmp_path):
    store, _ = image_sweep
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "manifest.json").write_text((store / "manifest.json").read_text())   # a store whose sources are gone
    worker = SweepWorker(WorkerConfig(str(copy), "digits", "random", load_schedule("tiny")))
    batch = next(b for b in make_plan(n_classes=10, jobs="transfigure", classes="0-1", sources=("china.png",),
                                      batch_size=4).batches())
    report = worker.run(batch, (1, 1))
    assert report.done == () and len(report.failed) == 2
    assert all("sources/china.png.png is missing" in error for _, error in report.failed)


def test_figures_draw_the_image_jobs(own_copy):
    store = own_copy
    result = invoke("figures", "--store", store)
    assert result.exit_code == 0, result.output
    out = store / "figures"
    html = (out / "index.html").read_text()
    expected = ["transfigure-01.png", "dream-01.png", "directed-dream-01.png"]
    for a, b in ((0, 1), (2, 3)):
        for source in ("china.png", "flower.jpg"):
            expected += [f"interpolation-{a:04d}-{b:04d}-{source}-s0.{ext}" for ext in ("png", "gif")]
    for name in expected:
        assert (out / name).exists() and f'"{name}"' in html, name
    with Image.open(out / "interpolation-0000-0001-china.png-s0.gif") as gif:
        assert gif.n_frames >= 2 and gif.size == (40, 40)           # the tiny schedule's final size
    assert "digit 0 -&gt; digit 1 from china.png" in html


def test_directions_write_their_table_and_figures(own_copy, tmp_path):
    store = own_copy
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n0,low\n1,low\n2,high\n")
    result = invoke("directions", "--store", store, "--groups", groups, "--components", 5, "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "separation ROC AUC" in result.output
    table = pd.read_parquet(store / "analysis" / "directions.parquet")
    assert set(table.group) == {"low", "high", ""} and len(table) == 29   # one row per final image
    assert (tmp_path / "d" / "directions-strip.png").exists()
    assert (tmp_path / "d" / "directions-distribution.svg").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("name,colour\nx,y\n")
    refused = invoke("directions", "--store", store, "--groups", bad)
    assert refused.exit_code == 2 and refused.output.startswith("Error: ") and "'group' column" in refused.output


def test_demo_adds_the_image_jobs_on_the_sample_photographs(monkeypatch, tmp_path):
    import sweep.cli as cli
    from sweep.driver import SweepSummary, load_sources
    configs = []

    def fake_run_sweep(config):
        configs.append(config)
        return SweepSummary(config.store, 1, 1, 0, (), 1.0, 2, "cpu", 0, False)

    monkeypatch.setattr(cli, "run_sweep", fake_run_sweep)
    monkeypatch.setattr(cli, "run_score", lambda config: type("Summary", (), {"lines": lambda self: []})())
    analysed = []
    monkeypatch.setattr(cli, "analysis_functions", lambda: (
        lambda store: analysed.append(store) or type("Summary", (), {"lines": lambda self: []})(),
        lambda store, out: tmp_path / "index.html"))
    result = invoke("demo", "--store", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert analysed == [str(tmp_path / "d")]
    (config,) = configs
    assert config.sample_images and config.jobs is None and config.layers == ()
    plan = make_plan(n_classes=10, pairs=config.pairs, interpolate_pairs=config.interpolate_pairs,
                     sources=tuple(load_sources(config)), layers=("block2",))
    counts = pd.Series([i.job for i in plan.items()]).value_counts().to_dict()
    assert counts == {"octave": 10, "opposite": 10, "addition": 90, "transfigure": 20, "interpolate": 10,
                      "dream": 2, "directed-dream": 20}
    assert plan.sources == ("china.jpg", "flower.jpg")


def test_the_same_images_in_another_order_are_the_same_sweep(tmp_path):
    from sweep.driver import SweepConfig, load_sources
    for name, colour in (("b.png", (200, 0, 0)), ("a.png", (0, 200, 0))):
        Image.new("RGB", (8, 8), colour).save(tmp_path / name)
    forward = load_sources(SweepConfig(store="x", images=(str(tmp_path / "a.png"), str(tmp_path / "b.png"))))
    backward = load_sources(SweepConfig(store="x", images=(str(tmp_path / "b.png"), str(tmp_path / "a.png"))))
    assert list(forward) == list(backward) == ["a.png", "b.png"]


def _dream_store(path, layers) -> None:
    """A small dream store written in-process (no Ray), as `sweep run` writes it (`sweep_fakes.build_store`)."""
    from sweep.driver import SweepConfig, prepare
    prepared = prepare(SweepConfig(store=str(path), model="digits", weights="random", schedule="tiny", jobs="dream",
                                   images=("noise:1",), layers=layers, batch_size=4))
    prepared.store.write_manifest(prepared.manifest)
    for name, image in prepared.sources.items():
        prepared.store.write_source(name, image.read())
    worker = SweepWorker(WorkerConfig(prepared.store.uri, "digits", "random", prepared.schedule))
    for batch in prepared.plan.batches():
        worker.run(batch, (1,) * len(batch.items))


def _resumed(path, layers):
    """(the plan's layer specs, the keys still to do) of `sweep run` resuming `path` with `layers` as typed."""
    from sweep.driver import SweepConfig, pending_work, prepare
    prepared = prepare(SweepConfig(store=str(path), model="digits", weights="random", schedule="tiny", jobs="dream",
                                   images=("noise:1",), layers=layers, batch_size=4))
    return prepared.plan.layers, [item.key for item in pending_work(prepared.plan, prepared.store).items]


def test_one_set_of_feature_maps_is_one_variant_whatever_its_order(tmp_path):
    """`--layers block3:0,5` and `--layers block3:5,0` were two variants (two manifests, two keys) of one dream:
    the maps are a set, spelled ascending, each once."""
    plan = make_plan(n_classes=10, jobs="dream", sources=("a.png",), layers=("block3:5,0", "block3:0,5,5", "block2"))
    assert plan.layers == ("block3:0,5", "block2")
    assert [item.key for item in plan.items()] == ["dream:block3:0,5:-1:-1:0:a.png", "dream:block2:-1:-1:0:a.png"]
    _dream_store(tmp_path / "store", ("block3:5,0",))
    stored = Store.open(str(tmp_path / "store"))
    assert stored.read_manifest()["options"]["layers"] == ["block3:0,5"]
    assert set(stored.read(IMAGES, ["key"]).column("key").to_pylist()) == {"dream:block3:0,5:-1:-1:0:noise-000"}
    assert _resumed(tmp_path / "store", ("block3:0,5",)) == (("block3:0,5",), [])   # the other spelling resumes it


def test_a_store_of_an_older_spelling_resumes_under_its_own_keys(tmp_path, monkeypatch):
    """A store written before the spelling was made one keeps `block3:5,0` in its manifest and keys: either spelling
    resumes it (nothing to do), and its items keep their keys (none run again under `block3:0,5`)."""
    import sweep.plan
    with monkeypatch.context() as before:   # as earlier versions planned: the spec as typed
        before.setattr(sweep.plan, "layer_spec_text", lambda spec: spec, raising=False)
        _dream_store(tmp_path / "store", ("block3:5,0",))
    keys = Store.open(str(tmp_path / "store")).read(IMAGES, ["key"]).column("key").to_pylist()
    assert keys == ["dream:block3:5,0:-1:-1:0:noise-000"]
    for typed in ("block3:0,5", "block3:5,0", "block3: 5,0,5"):
        assert _resumed(tmp_path / "store", (typed,)) == (("block3:5,0",), [])


def test_one_sum_of_layers_is_one_variant_whatever_its_order(tmp_path):
    """`--layers block3+block2` and `--layers block2+block3` were two variants (two keys, two renders) of one
    objective: the layers of a sum are spelled in name order, with their maps ascending, so a variant given twice
    in two spellings is one item, and either spelling writes the same key and the same image, bit for bit."""
    plan = make_plan(n_classes=10, jobs="dream", sources=("a.png",),
                     layers=("block3+block2", "block2+block3", "block3:5,0+block2:1", "block2:1+block3:0,5"))
    assert plan.layers == ("block2+block3", "block2:1+block3:0,5")
    assert [item.key for item in plan.items()] == ["dream:block2+block3:-1:-1:0:a.png",
                                                   "dream:block2:1+block3:0,5:-1:-1:0:a.png"]
    pictures = {}
    for typed in ("block3:5,0+block2", "block2+block3:0,5"):
        store = tmp_path / typed.replace(":", "_").replace(",", "_")
        _dream_store(store, (typed,))
        assert Store.open(str(store)).read_manifest()["options"]["layers"] == ["block2+block3:0,5"]
        stored = pd.read_parquet(store / IMAGES)
        pictures[typed] = dict(zip(stored.key, stored.png))
        assert _resumed(store, ("block3:0,5+block2",)) == (("block2+block3:0,5",), [])   # any spelling resumes it
    assert list(pictures["block3:5,0+block2"]) == ["dream:block2+block3:0,5:-1:-1:0:noise-000"]
    assert pictures["block3:5,0+block2"] == pictures["block2+block3:0,5"]


def test_a_store_of_an_older_layer_order_resumes_under_its_own_keys(tmp_path, monkeypatch):
    """A store written before a sum's layers had one order keeps `block3:5,0+block2` in its manifest and keys
    (and, when it was given both orders, both variants): every spelling resumes it with nothing to do, no item run
    again under `block2+block3:0,5` and no refusal."""
    import sweep.plan
    with monkeypatch.context() as before:   # as earlier versions planned: the spec as typed
        before.setattr(sweep.plan, "layer_spec_text", lambda spec: spec, raising=False)
        _dream_store(tmp_path / "one", ("block3:5,0+block2",))
        _dream_store(tmp_path / "both", ("block3+block2", "block2+block3"))
    keys = Store.open(str(tmp_path / "one")).read(IMAGES, ["key"]).column("key").to_pylist()
    assert keys == ["dream:block3:5,0+block2:-1:-1:0:noise-000"]
    for typed in ("block2+block3:0,5", "block3:5,0+block2", "block3:0,5+block2"):
        assert _resumed(tmp_path / "one", (typed,)) == (("block3:5,0+block2",), [])
    assert len(Store.open(str(tmp_path / "both")).read(IMAGES, ["key"])) == 2
    for typed in (("block2+block3",), ("block3+block2", "block2+block3")):
        assert _resumed(tmp_path / "both", typed) == (("block3+block2", "block2+block3"), [])
