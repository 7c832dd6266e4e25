"""`sweep score` and `sweep compare` on a local Ray (2 CPUs, started once for the module), with tiny sweeps of the
two demo models (written in-process, as the workers write them): self-scoring reproduces the stored logits, resume
exactly once, separate scorers, refusals."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from scipy.special import softmax

import sweep_fakes
from analysis.synthetic import Image, write_store
from analysis.transfer import store_transfer
from sweep.cli import main
from sweep.fleet import ClusterConfig
from sweep.plan import PlanError
from sweep.score import SCORER_FILE, SCORES, ScoreConfig, ScoreSummary, prepare, rescale, run_score, scorer_id
from sweep.store import FRAMES, IMAGES, Store, StoreError
from sweep_fakes import start_local_ray

ray = pytest.importorskip("ray")
CLUSTER = ClusterConfig(workers=1, cpus_per_worker=1.0, progress_every=60.0)


@pytest.fixture(scope="module")
def local_ray():
    start_local_ray()
    yield
    ray.shutdown()


def tiny_sweep(path: Path, model: str, jobs: str = "octave,opposite,addition") -> Path:
    """`model` (shipped weights), tiny schedule, classes 0-2, merges 0+1 and 1+2, batches of 3 (no Ray needed)."""
    sweep_fakes.build_store(path, model=model, weights="DEFAULT", jobs=jobs, classes="0-2", pairs="0+1,1+2",
                            variants="merge", batch_size=3)
    return path


def score(store: Path, model: str, **changes):
    return run_score(ScoreConfig(store=str(store), model=model, cluster=CLUSTER, **changes),
                     stream=io.StringIO())


@pytest.fixture(scope="module")
def unscored_digits(local_ray, tmp_path_factory):
    """A tiny sweep of the shipped digits model: 3 octaves, 3 opposites, 2 merges; never scored (tests copy it)."""
    return tiny_sweep(tmp_path_factory.mktemp("score") / "unscored", "digits")


@pytest.fixture(scope="module")
def digits_store(unscored_digits, tmp_path_factory):
    """A copy of `unscored_digits` that the tests share: each may score it, in any order. Its first scoring by each
    demo model is a fixture of its own (`self_scored`, `resnet_scored`): one fleet each for the module."""
    return Path(shutil.copytree(unscored_digits, tmp_path_factory.mktemp("score") / "digits"))


@pytest.fixture(scope="module")
def self_scored(digits_store) -> ScoreSummary:
    """The first scoring of `digits_store` by the model that made it (the shipped digits)."""
    return score(digits_store, "digits")


@pytest.fixture(scope="module")
def resnet_scored(digits_store) -> ScoreSummary:
    """The first scoring of `digits_store` by the other demo model (the shipped digits-resnet)."""
    return score(digits_store, "digits-resnet")


@pytest.fixture
def unscored_store(unscored_digits, tmp_path) -> Path:
    """A test's own copy of `unscored_digits`, for the tests that count a first scoring (milliseconds to copy)."""
    return Path(shutil.copytree(unscored_digits, tmp_path / "digits"))


def stored(store: Path) -> pd.DataFrame:
    return pd.read_parquet(store / IMAGES, columns=["key", "job", "target", "partner", "logits"]).set_index("key")


def scored(store: Path, scorer: str) -> pd.DataFrame:
    return pd.read_parquet(store / SCORES / scorer).set_index("key")


def test_self_score_reproduces_the_stored_logits(digits_store, self_scored):
    summary = self_scored
    assert summary.scorer == scorer_id("digits", "shipped") and summary.scored == summary.images == 8
    assert summary.rate > 0 and "images/s once a worker was ready" in summary.lines()[0]
    ours, theirs = stored(digits_store), scored(digits_store, summary.scorer)
    assert sorted(theirs.index) == sorted(ours.index)
    got = np.stack(theirs.loc[ours.index, "logits"])                         # 8 x 10
    want = np.stack(ours["logits"])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # label, target and partner probabilities follow from the scorer's own outputs
    assert (theirs.loc[ours.index, "label"].to_numpy() == want.argmax(1)).all()
    probs = softmax(want.astype(np.float64), axis=1)
    np.testing.assert_allclose(theirs.loc[ours.index, "target_prob"], probs[np.arange(8), ours["target"]], atol=1e-5)
    has_partner = ours["partner"].notna().to_numpy()
    partners = ours["partner"][has_partner].astype(int).to_numpy()
    np.testing.assert_allclose(theirs.loc[ours.index[has_partner], "partner_prob"],
                               probs[has_partner][np.arange(has_partner.sum()), partners], atol=1e-5)
    assert theirs.loc[ours.index[~has_partner], "partner_prob"].isna().all()
    schema = pq.read_schema(next((digits_store / SCORES / summary.scorer).glob("part-*.parquet")))
    assert str(schema.field("logits").type) == "fixed_size_list<element: float>[10]"



def test_the_summary_says_which_scorer_is_the_generating_model(self_scored, resnet_scored):
    """Its scores are the stored logits', which the transfer table reads for it: `sweep score` says so."""
    assert self_scored.generator and not resnet_scored.generator


def test_resume_scores_each_image_exactly_once(digits_store, resnet_scored, tmp_path):
    scorer = scorer_id("digits-resnet", "shipped")
    store = Path(shutil.copytree(digits_store, tmp_path / "digits"))   # scored once: a copy to damage
    directory = store / SCORES / scorer
    parts = {p.name: p.stat().st_mtime_ns for p in directory.glob("part-*.parquet")}
    assert resnet_scored.scored == 8 and len(parts) >= 2

    again = score(store, "digits-resnet")
    assert (again.scored, again.skipped) == (0, 8)
    assert again.lines() == [f"scorer {scorer}: nothing to score: all 8 images already scored under "
                             f"{store}/{SCORES}/{scorer}/"]
    assert {p.name: p.stat().st_mtime_ns for p in directory.glob("part-*.parquet")} == parts

    lost = sorted(parts)[0]
    lost_keys = set(pq.read_table(directory / lost, columns=["key"]).column("key").to_pylist())
    (directory / lost).unlink()
    redone = score(store, "digits-resnet")
    assert redone.scored == len(lost_keys) and redone.skipped == 8 - len(lost_keys)
    assert {p.name for p in directory.glob("part-*.parquet")} == set(parts)       # the same unit, the same file
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in directory.glob("part-*.parquet"))
            if n != lost} == {n: t for n, t in parts.items() if n != lost}         # nothing else rewritten
    frame = scored(store, scorer)
    assert frame.index.is_unique and set(frame.index) == set(stored(store).index)


def test_a_job_selection_then_the_rest_scores_each_image_once(unscored_store):
    scorer = scorer_id("digits", "random:seed=0")
    octaves = score(unscored_store, "digits", weights="random", jobs="octave")
    assert octaves.scored == 3 and set(scored(unscored_store, scorer)["scorer"]) == {scorer}
    assert all(k.startswith("octave:") for k in scored(unscored_store, scorer).index)
    rest = score(unscored_store, "digits", weights="random")
    assert (rest.scored, rest.skipped) == (5, 3)
    assert scored(unscored_store, scorer).index.is_unique


def test_two_scorers_stay_apart(digits_store, self_scored, resnet_scored):
    own, other = scorer_id("digits", "shipped"), scorer_id("digits-resnet", "shipped")
    for scorer, model in ((own, "digits"), (other, "digits-resnet")):
        frame = scored(digits_store, scorer)
        assert set(frame["scorer"]) == {scorer} and len(frame) == 8
        record = json.loads((digits_store / SCORES / scorer / SCORER_FILE).read_text())
        assert record["model"] == model and record["weights"] == "shipped"
    assert not np.allclose(np.stack(scored(digits_store, own).sort_index()["logits"]),
                           np.stack(scored(digits_store, other).sort_index()["logits"]))
    # a scorer directory recorded with other settings is never added to
    record_path = digits_store / SCORES / other / SCORER_FILE
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "input_size": 99}))
    try:
        with pytest.raises(StoreError, match="scored differently"):
            score(digits_store, "digits-resnet")
    finally:
        record_path.write_text(json.dumps(record))


def test_transfer_table_of_a_scored_store(digits_store, resnet_scored):
    table = store_transfer(Store.open(str(digits_store)))
    own = scorer_id("digits", "shipped")
    assert set(table["scorer"]) >= {own, scorer_id("digits-resnet", "shipped")}
    # the generating model's row is computed from the stored logits
    images = stored(digits_store)
    octave = images[images["job"] == "octave"]
    labels = np.stack(octave["logits"]).argmax(1)
    row = table[(table["scorer"] == own) & (table["job"] == "octave")].iloc[0]
    assert row["own"] and row["images"] == 3 and row["top1_share"] == pytest.approx(np.mean(labels == octave["target"]))


def test_the_report_shows_the_transfer_matrix_and_each_scorers_top3(digits_store, resnet_scored, tmp_path):
    from analysis import analyze_store, write_figures
    analyze_store(Store.open(str(digits_store)))
    index = write_figures(Store.open(str(digits_store)), str(tmp_path / "fig"), stream=io.StringIO())
    assert "Transfer to other models" in index.read_text() and (tmp_path / "fig" / "transfer.png").exists()
    page = (tmp_path / "fig" / "classes" / "0000.html").read_text()
    assert "What each model sees" in page and scorer_id("digits-resnet", "shipped") in page


def test_compare_two_stores_scored_by_each_other(digits_store, resnet_scored, tmp_path):
    other = tiny_sweep(tmp_path / "resnet", "digits-resnet", jobs="octave")
    score(other, "digits")
    out = tmp_path / "compare"
    result = CliRunner().invoke(main, ["compare", str(digits_store), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "compare.parquet")
    octave = table[table["job"] == "octave"].pivot_table(index="generator", columns="scorer", values="top1_share")
    a, b = scorer_id("digits", "shipped"), scorer_id("digits-resnet", "shipped")
    assert set(octave.index) == {a, b} and set(octave.columns) >= {a, b}   # (+ the random scorer of a test above)
    for store, generator in ((digits_store, a), (other, b)):
        own = store_transfer(Store.open(str(store)))
        for scorer in (a, b):
            want = own[(own["job"] == "octave") & (own["scorer"] == scorer)]["top1_share"].iloc[0]
            assert octave.loc[generator, scorer] == pytest.approx(want)
    assert (out / "compare.png").stat().st_size > 0


def test_interpolation_frames_are_not_scored(tmp_path):
    logits = np.eye(10, dtype=np.float32)
    images = [Image("octave", 1, logits[1]), Image("interpolate", 2, logits[3], partner=3, source="a.png"),
              Image("interpolate", 2, logits[2], partner=3, source="a.png", frame=0),
              Image("interpolate", 2, logits[3], partner=3, source="a.png", frame=1)]
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)], images)
    prepared = prepare(ScoreConfig(store=path, model="digits", weights="random"))
    keys = [k for task in prepared.tasks for k in task.keys]
    assert prepared.images == 2 and len(keys) == 2 and not [k for k in keys if "#frame" in k]


def test_the_summary_says_which_time_its_figures_count():
    line = ScoreSummary("s", "w", images=10, scored=8, skipped=2, seconds=12.0, rate=4.0).lines()[0]
    assert "8 images scored in 12.0s with start-up (4.0 images/s once a worker was ready), 2 already scored" in line
    assert line.endswith("10 in all; written under s/scores/w/")


def test_the_summary_says_when_nothing_was_scored_and_claims_nothing_written():
    assert ScoreSummary("s", "w", 10, 0, 10, 0.0).lines() == [
        "scorer w: nothing to score: all 10 images already scored under s/scores/w/"]
    assert ScoreSummary("s", "w", 0, 0, 0, 0.0).lines() == [
        "scorer w: nothing to score: s holds no images to score (interpolation frames are never scored); "
        "nothing written"]


def test_rescale_keeps_a_flat_image_flat_and_sizes_it():
    flat = np.full((2, 40, 40, 3), 77, np.uint8)
    assert rescale(flat, 1.0) is flat
    small = rescale(flat, 0.5)
    assert small.shape == (2, 20, 20, 3) and (small == 77).all()
    assert rescale(flat, 299 / 224).shape == (2, 53, 53, 3)


@pytest.mark.parametrize("extra, fragment", [
    (["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["--model", "digits", "--weights", "nosuch.pth"], "not found"),
    (["--model", "digits", "--jobs", "octave,paint"], "unknown job 'paint'"),
    (["--model", "digits", "--jobs", "dream"], "holds no dream images"),
    (["--model", "digits", "--jobs", ""], "no job given"),       # as `sweep run --jobs ""`: not "every job"
    (["--model", "digits", "--jobs", ","], "no job given"),
    (["--model", "digits", "--jobs", "octave,,opposite"], "empty entry in --jobs 'octave,,opposite'"),   # a typo
    (["--model", "mobilenet_v3_small", "--weights", "random"], "has 1000 classes"),
    (["--model", "digits", "--batch-size", "0"], "Invalid value for '--batch-size'"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, extra, fragment):
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)],
                       [Image("octave", 1, np.eye(10, dtype=np.float32)[1])])
    result = CliRunner().invoke(main, ["score", "--store", path, *extra])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("Error: ") and fragment in lines[0], result.output
    assert lines[1:] in ([], ["Try 'main score -h' for help."]), result.output   # click's hint on usage errors
    assert not (tmp_path / "store" / SCORES).exists()


def test_no_store_and_compare_of_no_store_are_refused(tmp_path):
    result = CliRunner().invoke(main, ["score", "--store", str(tmp_path / "none"), "--model", "digits"])
    assert result.exit_code == 2 and result.output.startswith("Error: no store at")
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.startswith("Error: no store at")
    assert not (tmp_path / "out").exists()


def test_batch_size_must_be_positive(tmp_path):
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)],
                       [Image("octave", 1, np.eye(10, dtype=np.float32)[1])])
    with pytest.raises(PlanError):
        prepare(ScoreConfig(store=path, model="digits", batch_size=0))


def test_a_scorer_of_another_input_size_rescales_by_the_ratio(tmp_path):
    rows = [Image("octave", 1, np.zeros(1000, np.float32))]
    path = write_store(str(tmp_path / "store"), [f"class {i}" for i in range(1000)], rows, model="inception_v3")
    assert prepare(ScoreConfig(store=path, model="resnet18", weights="random")).plan.scale == pytest.approx(224 / 299)


@pytest.mark.slow
def test_imagenet_plumbing_rescales_to_the_scorers_input_size(local_ray, tmp_path):
    """1000 classes, random weights: an InceptionV3-made store (299 px input) scored by ResNet-18 (224 px) sees
    each image scaled by 224/299 before the engine's own `logits_of`."""
    from jobs.kinds import logits_of
    from jobs.models import load_model
    from analysis.synthetic import noise_png
    from sweep.store import decode_png
    rng = np.random.default_rng(0)
    rows = [Image("octave", c, rng.normal(size=1000).astype(np.float32), png=noise_png(rng, 64)) for c in (1, 2, 3)]
    path = write_store(str(tmp_path / "store"), [f"class {i}" for i in range(1000)], rows, model="inception_v3")
    summary = score(Path(path), "resnet18", weights="random")
    assert summary.scored == 3
    got = scored(Path(path), summary.scorer).sort_index()
    pngs = pd.read_parquet(Path(path) / IMAGES, columns=["key", "png"]).set_index("key").sort_index()
    images = np.stack([decode_png(p) for p in pngs["png"]])                   # 3 x 64 x 64 x 3
    small = rescale(images, 224 / 299)
    assert small.shape[1:3] == (48, 48)
    want = logits_of(load_model("resnet18", "random"), small)
    np.testing.assert_allclose(np.stack(got["logits"]), want, rtol=0, atol=1e-4)


def test_a_store_with_nothing_to_score_says_so_and_writes_nothing(tmp_path):
    """A store whose images/ hold only interpolation frames (as stores did before frames had a table of their own;
    frames are never scored): no Ray, no scorer directory, and no line claiming one."""
    logits = np.eye(10, dtype=np.float32)
    frames = [Image("interpolate", 2, logits[2], partner=3, source="a.png", frame=f) for f in range(2)]
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)], frames)
    (tmp_path / "store" / FRAMES).rename(tmp_path / "store" / IMAGES)
    summary = run_score(ScoreConfig(store=path, model="digits", weights="random"), stream=io.StringIO())
    assert (summary.images, summary.scored) == (0, 0)
    assert summary.lines()[0].startswith("scorer digits.random") and "nothing to score" in summary.lines()[0]
    assert "written under" not in summary.lines()[0] and not (tmp_path / "store" / SCORES).exists()


def test_a_key_held_by_two_images_files_is_scored_once(tmp_path):
    """images/ may hold a key twice (a hung batch's late write landing after its rerun): the key is one image, to
    score once, from the first file in name order as the readers take it, and counted once."""
    logits = np.eye(10, dtype=np.float32)
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)],
                       [Image("octave", 1, logits[1]), Image("octave", 2, logits[2])])
    images = tmp_path / "store" / IMAGES
    shutil.copy(images / "part-000000.parquet", images / "part-000001.parquet")
    prepared = prepare(ScoreConfig(store=path, model="digits", weights="random"))
    keys = [k for task in prepared.tasks for k in task.keys]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 2
    assert prepared.images == 2 and [t.path.rsplit("/", 1)[-1] for t in prepared.tasks] == ["part-000000.parquet"]


@pytest.mark.parametrize("text", ["{", "[1, 2]", ""])
def test_a_damaged_scorer_manifest_is_one_line_naming_it(tmp_path, text):
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)],
                       [Image("octave", 1, np.eye(10, dtype=np.float32)[1])])
    from jobs.models import load_model
    model = load_model("digits", "random")
    scorer = tmp_path / "store" / SCORES / scorer_id(model.name, model.weights_id)
    scorer.mkdir(parents=True)
    (scorer / SCORER_FILE).write_text(text)
    with pytest.raises(StoreError, match=f"{SCORER_FILE} is not a scorer manifest") as error:
        prepare(ScoreConfig(store=path, model="digits", weights="random"))
    assert f"{SCORES}/{scorer.name}" in str(error.value) and "\n" not in str(error.value)


def test_a_damaged_scores_part_is_refused_with_a_way_on_that_works(tmp_path):
    """`sweep run --check-files` quarantines images/, frames/, trajectories/ and failures/, never scores/: the
    refusal of a damaged part names it and says what does help (removing it; `sweep score` then scores its images
    again), both for the resume of `sweep score` and for the analysis that reads the scores."""
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)],
                       [Image("octave", 1, np.eye(10, dtype=np.float32)[1])])
    first = prepare(ScoreConfig(store=path, model="digits", weights="random"))
    scorer = tmp_path / "store" / SCORES / first.plan.scorer
    scorer.mkdir(parents=True)
    (scorer / SCORER_FILE).write_text(json.dumps(first.scorer))
    (scorer / "part-damaged.parquet").write_bytes(b"not parquet")
    for read in (lambda: prepare(ScoreConfig(store=path, model="digits", weights="random")),
                 lambda: store_transfer(Store.open(path))):
        with pytest.raises(StoreError, match="part-damaged.parquet") as error:
            read()
        assert "--check-files" not in str(error.value) and "sweep score" in str(error.value)


DIGITS = [f"digit {i}" for i in range(10)]


def store_named(tmp_path, names, model: str = "synthetic", drop_names: bool = False) -> str:
    """A one-image store whose manifest names its 10 classes `names` (or, `drop_names`, none, as a hand-made
    manifest may have it)."""
    path = write_store(str(tmp_path / "store"), names, [Image("octave", 1, np.eye(10, dtype=np.float32)[1])],
                       model=model)
    if drop_names:
        manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
        del manifest["class_names"]
        (tmp_path / "store" / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("names, shown", [
    ([f"number {i}" for i in range(10)], "class 0 is 'number 0' in the store, 'digit 0' for the scorer; class 1 is "
                                         "'number 1' in the store, 'digit 1' for the scorer; class 2 is 'number 2' "
                                         "in the store, 'digit 2' for the scorer (10 of 10 classes differ)"),
    ([*DIGITS[:3], DIGITS[4], DIGITS[3], *DIGITS[5:]],                  # one label set, another order
     "class 3 is 'digit 4' in the store, 'digit 3' for the scorer; class 4 is 'digit 3' in the store, 'digit 4' "
     "for the scorer (2 of 10 classes differ)"),
])
def test_a_scorer_with_other_class_names_is_refused_naming_them(tmp_path, names, shown):
    """The class count matched, so a scorer of another label set (or the same names in another order) was scored
    as if its class i were the store's class i: refused in one line naming the first classes that differ, before
    anything is written."""
    path = store_named(tmp_path, names)
    result = CliRunner().invoke(main, ["score", "--store", path, "--model", "digits", "--weights", "random"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"Error: digits names its classes otherwise than the store's model synthetic: {shown}: a scorer must share "
        f"the store's classes"]
    assert not (tmp_path / "store" / SCORES).exists()


@pytest.mark.parametrize("names, model, drop_names", [
    (DIGITS, "synthetic", False),                 # the same names in the same order
    (None, "digits", True),                       # no names in the manifest: its model's, from the zoo
    (None, "synthetic", True),                    # no names, a model the zoo does not know: unknown, not compared
    ([f"class {i}" for i in range(10)], "synthetic", False),   # the stand-in names of a store without names
])
def test_a_scorer_with_the_same_or_unknown_class_names_is_taken(tmp_path, names, model, drop_names):
    path = store_named(tmp_path, names or DIGITS, model=model, drop_names=drop_names)
    prepared = prepare(ScoreConfig(store=path, model="digits", weights="random"))
    assert prepared.images == 1


def test_the_store_names_its_classes_in_its_manifest_or_through_its_model():
    """The manifest's class names (what `sweep run` records); without them, its model's as the zoo names them (no
    network built, no download); unknown (None) for a model the zoo does not know and for the stand-in names."""
    from sweep.score import generator_class_names
    named = {"model": "resnet18", "n_classes": 3, "class_names": ["a", "b", "c"]}
    assert generator_class_names(named) == ("a", "b", "c")
    imagenet = generator_class_names({"model": "resnet18", "n_classes": 1000})
    assert len(imagenet) == 1000 and imagenet[0] == "tench"
    assert generator_class_names({"model": "digits", "n_classes": 10}) == tuple(DIGITS)
    assert generator_class_names({"model": "synthetic", "n_classes": 10}) is None
    assert generator_class_names({"model": "synthetic", "n_classes": 2, "class_names": ["class 0", "class 1"]}) is None


def scored_in_process(store: Path, model: str) -> int:
    """`sweep score` of `store` by `model` without Ray: its units of work run on one in-process worker."""
    from sweep.score import ScoreWorker
    from sweep.worker import WorkerConfig
    prepared = prepare(ScoreConfig(store=str(store), model=model))
    if prepared.tasks and not (store / SCORES / prepared.plan.scorer / SCORER_FILE).exists():
        (store / SCORES / prepared.plan.scorer).mkdir(parents=True, exist_ok=True)
        (store / SCORES / prepared.plan.scorer / SCORER_FILE).write_text(json.dumps(prepared.scorer))
    worker = ScoreWorker(WorkerConfig(str(store), model, "DEFAULT"))
    return sum(worker.score(task, prepared.plan) for task in prepared.tasks)


def written_again_with_other_pixels(store: Path) -> tuple[str, list[str], list[np.ndarray]]:
    """Write the first images/ file again in place, its images inverted and its logits the generating model's on
    them: what a batch run again writes (its file quarantined, or the batch re-run on another device after its
    actor died). Returns the file's name, its keys and its new images."""
    from jobs.models import load_model
    from sweep.score import score_images
    from sweep.store import decode_png, encode_png
    path = sorted((store / IMAGES).glob("part-*.parquet"))[0]
    table = pq.read_table(path)
    images = [255 - decode_png(png) for png in table.column("png").to_pylist()]
    logits = score_images(load_model("digits", "DEFAULT"), images, 1.0, [None] * len(images))
    table = table.set_column(table.schema.get_field_index("png"), "png",
                             pa.array([encode_png(image) for image in images], pa.binary()))
    table = table.set_column(table.schema.get_field_index("logits"), table.schema.field("logits"),
                             pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), logits.shape[1]))
    Store.open(str(store)).write_table(f"{IMAGES}/{path.name}", table)
    return path.name, table.column("key").to_pylist(), images


def test_an_image_written_again_after_it_was_scored_is_scored_again(tmp_path):
    """A key whose images/ row was written again with other pixels after `sweep score` scored it (its batch run
    again) kept its old score: the resume counted every key some part held as done, and the transfer table read the
    old row. Now a score row records which stored image it scored (`image_digest`): the resume scores the key
    again, and readers take the row of the image now stored."""
    from jobs.models import load_model
    from sweep.score import score_images
    unscored_store = tiny_sweep(tmp_path / "digits", "digits")   # no Ray: built and scored in-process
    scorer = scorer_id("digits-resnet", "shipped")
    assert scored_in_process(unscored_store, "digits-resnet") == 8
    _, keys, images = written_again_with_other_pixels(unscored_store)
    again = prepare(ScoreConfig(store=str(unscored_store), model="digits-resnet"))
    assert sorted(k for task in again.tasks for k in task.keys) == sorted(keys)
    assert (again.skipped, again.again) == (8 - len(keys), len(keys))
    assert scored_in_process(unscored_store, "digits-resnet") == len(keys)
    assert not prepare(ScoreConfig(store=str(unscored_store), model="digits-resnet")).tasks
    from analysis.transfer import store_outputs
    _, outputs, _ = store_outputs(str(unscored_store))
    want = score_images(load_model("digits-resnet", "DEFAULT"), images, 1.0, [None] * len(images))
    position = {k: i for i, k in reversed(list(enumerate(outputs[scorer].keys)))}   # a key's first row: the one read
    got = np.stack([outputs[scorer].logits[position[k]] for k in keys])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_part_written_before_scores_recorded_their_image_is_read_and_trusted(tmp_path):
    """A scorer's part without the `image_digest` column (written by an earlier classweep) is read as before, its
    rows taken by the transfer table, and trusted by the resume (nothing says which image it scored: an upgrade
    scores nothing again)."""
    from analysis.transfer import store_outputs
    from sweep.score import IMAGE_DIGEST
    store = tiny_sweep(tmp_path / "digits", "digits")
    scorer = scorer_id("digits-resnet", "shipped")
    assert scored_in_process(store, "digits-resnet") == 8
    for part in (store / SCORES / scorer).glob("part-*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns([IMAGE_DIGEST]), part)
    assert sorted(store_outputs(str(store))[1][scorer].keys) == sorted(stored(store).index)
    prepared = prepare(ScoreConfig(store=str(store), model="digits-resnet"))
    assert (sum(len(t.keys) for t in prepared.tasks), prepared.skipped, prepared.again) == (0, 8, 0)
    assert "scored in 1.0s with start-up (8 again: their stored image is not the one scored, written again " \
           "since), 0 already scored, 8 in all" in ScoreSummary("s", scorer, 8, 8, 0, 1.0, again=8).lines()[0]


def test_a_new_scorers_resume_reads_no_stored_outputs(tmp_path, monkeypatch):
    """The stored outputs say which image a key holds (`image_digest`), which only a scorer whose rows recorded it
    needs: the first `sweep score` of a store by a model read every image's outputs (4 bytes a class: 400 MB at
    10^5 images of 1000 classes, ten times the key and job columns), as did a scorer whose parts were all written
    before scores recorded their image."""
    from sweep.score import IMAGE_DIGEST
    store = tiny_sweep(tmp_path / "digits", "digits")
    columns = []
    read_file = Store.read_file
    monkeypatch.setattr(Store, "read_file", lambda self, path, wanted=None: columns.append(
        (path.rsplit("/", 2)[-2], tuple(wanted or ()))) or read_file(self, path, wanted))
    fresh = prepare(ScoreConfig(store=str(store), model="digits-resnet"))
    assert sum(len(t.keys) for t in fresh.tasks) == 8
    assert not [c for directory, c in columns if directory == IMAGES and "logits" in c]
    assert scored_in_process(store, "digits-resnet") == 8
    columns.clear()
    assert not prepare(ScoreConfig(store=str(store), model="digits-resnet")).tasks    # rows that recorded images:
    assert [c for directory, c in columns if directory == IMAGES and "logits" in c]   # their images compared
    scorer = scorer_id("digits-resnet", "shipped")
    for part in (store / SCORES / scorer).glob("part-*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns([IMAGE_DIGEST]), part)
    columns.clear()
    assert not prepare(ScoreConfig(store=str(store), model="digits-resnet")).tasks
    assert not [c for directory, c in columns if directory == IMAGES and "logits" in c]


def test_a_resume_decodes_only_the_images_left_each_once(tmp_path, monkeypatch):
    """A unit of work decodes and scores the PNGs of the keys it names, not its file's others (a resume after the
    file was half scored), and a key its file holds twice once, from its first row, as `prepare` counted it: the
    worker took every row of a named key, so that key was decoded, scored and counted twice (more images scored
    than the store holds)."""
    import sweep.score
    from sweep.score import ScoreTask, ScoreWorker
    from sweep.worker import WorkerConfig
    logits = np.eye(10, dtype=np.float32)
    path = write_store(str(tmp_path / "store"), [f"digit {i}" for i in range(10)],
                       [Image("octave", c, logits[c]) for c in range(4)])
    file = tmp_path / "store" / IMAGES / "part-000000.parquet"
    table = pq.read_table(file)
    Store.open(path).write_table(f"{IMAGES}/{file.name}", pa.concat_tables([table, table.slice(3, 1)]))
    config = ScoreConfig(store=path, model="digits", weights="random")
    first = prepare(config)
    (task,) = first.tasks
    (tmp_path / "store" / SCORES / first.plan.scorer).mkdir(parents=True)
    (tmp_path / "store" / SCORES / first.plan.scorer / SCORER_FILE).write_text(json.dumps(first.scorer))
    worker = ScoreWorker(WorkerConfig(path, "digits", "random"))
    assert worker.score(ScoreTask.of(task.path, task.keys[:2]), first.plan) == 2     # half the file scored
    decoded = []
    decode_png = sweep.score.decode_png
    monkeypatch.setattr(sweep.score, "decode_png", lambda png: decoded.append(png) or decode_png(png))
    resume = prepare(config)
    assert [t.keys for t in resume.tasks] == [task.keys[2:]] and (resume.images, resume.skipped) == (4, 2)
    assert sum(worker.score(t, resume.plan) for t in resume.tasks) == 2 and len(decoded) == 2
    assert not prepare(config).tasks and sorted(scored(tmp_path / "store", first.plan.scorer).index) == \
        sorted(task.keys)
