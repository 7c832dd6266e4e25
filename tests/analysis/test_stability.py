"""Stability of the classification during generation, from a hand-made trajectory table with known answers."""
import io
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from analysis.analyze import analyze_store
from analysis.drawing import rgb_pixels
from analysis.figures import stability_figure, trajectory_frames, trajectory_gif
from analysis.stability import compare_stability, run_stability, stability_summary, stability_table
from handmade import make_small_store
from jobs.catalog import key_of
from sweep.store import ANALYSIS, TRAJECTORIES, Store, StoreError, encode_png

A, B, D = key_of("octave", "", 3, -1, 0), key_of("octave", "", 5, -1, 0), key_of("dream", "x", -1, -1, 0)
MERGE, JUXTAPOSE = key_of("addition", "merge", 0, 1, 0), key_of("addition", "juxtapose", 0, 1, 0)
# key, job, target, octave (as trajectories/ stores it: 0 for the first), [(step, label)]
RECORDS = [
    (A, "octave", 3, 0, [(0, 1), (10, 3), (20, 1), (30, 3)]),   # 3 changes, top-1 half the time, settles at 30
    (A, "octave", 3, 1, [(40, 3), (50, 3), (60, 3)]),           # stable: settles at 40
    (B, "octave", 5, 0, [(0, 5), (10, 5), (20, 2), (30, 2)]),   # 1 change, top-1 half the time, never settles
    (B, "octave", 5, 1, [(40, 5)]),                             # one record: no change rate
    (D, "dream", None, 0, [(0, 4), (10, 6)]),                   # no target: no share, never settles
]


def handmade_trajectories(seed: int = 0) -> pd.DataFrame:
    rows = [{"key": key, "job": job, "target": target, "octave": octave, "step": step, "label": label}
            for key, job, target, octave, steps in RECORDS for step, label in steps]
    frame = pd.DataFrame(rows).astype({"target": "Int32"})
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)   # the table sorts by itself


def test_per_image_and_octave_numbers():
    table = stability_table(handmade_trajectories()).set_index(["key", "octave"])
    expected = {  # (changes, rate, share, settled, final label, records); octaves numbered from 1 (audit nit)
        (A, 1): (3, 1.0, 0.5, 30, 3, 4), (A, 2): (0, 0.0, 1.0, 40, 3, 3),
        (B, 1): (1, 1 / 3, 0.5, -1, 2, 4), (B, 2): (0, math.nan, 1.0, 40, 5, 1),
        (D, 1): (1, 1.0, math.nan, -1, 6, 2)}
    assert sorted(table.index) == sorted(expected)
    for index, (changes, rate, share, settled, final, records) in expected.items():
        row = table.loc[index]
        assert row.argmax_changes == changes and row.settled_step == settled and row.final_label == final
        assert row.recorded_steps == records
        assert row.change_rate == pytest.approx(rate, nan_ok=True)
        assert row.target_top1_share == pytest.approx(share, nan_ok=True)


def test_summary_per_model_job_and_octave():
    summary = stability_summary(stability_table(handmade_trajectories()), "net").set_index(["job", "octave"])
    first, second = summary.loc[("octave", 1)], summary.loc[("octave", 2)]
    assert first.images == 2 and first.argmax_changes == 2.0 and first.change_rate == pytest.approx(2 / 3)
    assert first.target_top1_share == 0.5 and first.settled_share == 0.5 and first.settled_step_median == 30
    assert second.change_rate == 0.0 and second.settled_share == 1.0 and second.settled_step_median == 40
    assert math.isnan(summary.loc[("dream", 1)].target_top1_share) and (summary.model == "net").all()


def variant_trajectories() -> pd.DataFrame:
    """An addition pair in both variants, 4 records each: merge keeps one argmax, juxtapose (each step pushes the
    weaker class) changes it at every record."""
    labels = {MERGE: [0, 0, 0, 0], JUXTAPOSE: [0, 1, 0, 1]}   # the hand-made store's 0+1 in both variants
    rows = [{"key": key, "job": "addition", "target": 0, "octave": 0, "step": 10 * i, "label": label}
            for key, steps in labels.items() for i, label in enumerate(steps)]
    return pd.DataFrame(rows).astype({"target": "Int32"})


def test_the_variants_of_a_job_are_summarised_apart():
    """An addition's merge and juxtapose were averaged into one row (change rate 0.5): juxtapose flips the argmax
    by design, merge does not, and the summary hid both."""
    table = stability_table(variant_trajectories())
    summary = stability_summary(table, "net")
    assert list(zip(summary.job, summary.change_rate)) == [("addition", 1.0), ("addition", 0.0)]   # not 0.5
    assert list(zip(summary.variant, summary.octave, summary.images)) == [("juxtapose", 1, 1), ("merge", 1, 1)]
    assert dict(zip(table.key, table.variant)) == {MERGE: "merge", JUXTAPOSE: "juxtapose"}
    plain = stability_summary(stability_table(handmade_trajectories()), "net")
    assert dict(zip(plain.job, plain.variant)) == {"octave": "", "dream": "x"}   # "" for a job without one


def test_the_stability_figure_draws_one_variant_and_names_it():
    """The figure averaged an addition's variants per octave under "(addition images)"."""
    table = stability_table(variant_trajectories())
    both = compare_stability([stability_summary(table, "jumpy"), stability_summary(table, "steady")])
    figure = stability_figure(both)
    assert "(addition/juxtapose images)" in figure._suptitle.get_text()
    assert [p.get_height() for p in figure.axes[0].patches] == [1.0, 1.0]   # 2 models x 1 octave, juxtapose's


def test_analyze_and_the_stability_command_say_each_variant_apart(tmp_path):
    """`sweep analyze`'s summary and `sweep stability`'s table had one addition row per octave, merge and
    juxtapose averaged (a change rate of 50%)."""
    from click.testing import CliRunner

    from sweep.cli import main
    first, second = make_small_store(tmp_path / "a"), make_small_store(tmp_path / "b")
    for path in (first, second):
        Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(
            keys=(MERGE, JUXTAPOSE), frame=variant_trajectories()))
    lines = analyze_store(first).lines()
    assert [line.split(":")[0] for line in lines if line.startswith("stability")] == [
        "stability (addition/juxtapose, octave 1, 1 image)", "stability (addition/merge, octave 1, 1 image)"]
    assert "argmax changed between 100.0% of recorded steps" in " ".join(lines)
    saved = pd.read_parquet(tmp_path / "a" / ANALYSIS / "stability_summary.parquet")
    assert list(zip(saved.variant, saved.change_rate)) == [("juxtapose", 1.0), ("merge", 0.0)]
    said = CliRunner().invoke(main, ["stability", first, second, "--out", str(tmp_path / "out")])
    assert said.exit_code == 0, said.output
    header = next(line.split() for line in said.output.splitlines() if line.split()[:2] == ["model", "job"])
    assert header[:4] == ["model", "job", "variant", "octave"]
    compared = pd.read_parquet(tmp_path / "out" / "stability_compare.parquet")
    assert list(zip(compared.variant, compared.change_rate)) == [("juxtapose", 1.0)] * 2 + [("merge", 0.0)] * 2


def test_an_older_summarys_rows_without_a_variant_still_read_and_draw():
    """summary.json and stability_summary.parquet written before the variant column (ANALYSIS_VERSION 5): `sweep
    figures` analyses such a store again, but their words and figure do not fail meanwhile."""
    from analysis.analyze import stability_words
    row = {"job": "addition", "octave": 1, "images": 2, "change_rate": 0.5, "target_top1_share": 0.5,
           "settled_share": 0.0}
    assert stability_words(row).startswith("stability (addition, octave 1, 2 images): argmax changed between 50.0%")
    assert stability_words({**row, "variant": "merge"}).startswith("stability (addition/merge, octave 1")
    older = stability_summary(stability_table(variant_trajectories()), "net").drop(columns="variant")
    assert "(addition images)" in stability_figure(older)._suptitle.get_text()


def test_compare_puts_models_side_by_side_and_draws():
    table = stability_table(handmade_trajectories())
    steady = stability_table(handmade_trajectories().assign(label=lambda f: f.target.fillna(0).astype(int)))
    both = compare_stability([stability_summary(table, "jumpy"), stability_summary(steady, "steady")])
    octave = both[both.job == "octave"]
    assert list(octave.model) == ["jumpy", "steady", "jumpy", "steady"]
    assert (octave[octave.model == "steady"].change_rate == 0).all()
    figure = stability_figure(both)
    assert len(figure.axes) == 2 and len(figure.axes[0].patches) == 4   # 2 models x 2 octaves
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["octave 1", "octave 2"]   # as the table


def trajectory_rows(keys=(A,), n_classes: int = 6, frame: pd.DataFrame | None = None) -> pa.Table:
    """A trajectories/ table for the hand-made store: every row of `frame` (`RECORDS`) for `keys`, a snapshot at
    step 0."""
    frame = handmade_trajectories() if frame is None else frame
    frame = frame[frame.key.isin(keys)].sort_values(["key", "step"]).reset_index(drop=True)
    shot = encode_png(np.full((8, 8, 3), 100, np.uint8))
    return pa.table({
        "key": frame.key, "job": frame.job, "target": pa.array(frame.target.astype(object).where(
            frame.target.notna(), None).tolist(), pa.int32()),
        "step": pa.array(frame.step, pa.int32()), "octave": pa.array(frame.octave, pa.int32()),
        "label": pa.array(frame.label, pa.int32()),
        "logits": pa.array([list(np.arange(n_classes, dtype=np.float32)) if s == 0 else None for s in frame.step],
                           pa.list_(pa.float32(), n_classes)),
        "png": pa.array([shot if s == 0 else None for s in frame.step], pa.binary())})


def test_a_store_without_trajectories_analyses_as_before_and_one_with_them_gets_stability_tables(tmp_path):
    path = make_small_store(tmp_path / "s")                   # octave images of classes 0-5, no trajectories
    plain = analyze_store(path)
    assert plain.stability == [] and not (tmp_path / "s" / ANALYSIS / "stability.parquet").exists()
    st = Store.open(path)
    octave3 = key_of("octave", "", 3, -1, 0)
    st.write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A, "octave:-:9:-1:0")))
    assert A == octave3
    summary = analyze_store(path)
    per_image = pd.read_parquet(tmp_path / "s" / ANALYSIS / "stability.parquet")
    assert set(per_image.key) == {A}                           # a trajectory without its image is left out
    assert [s["octave"] for s in summary.stability] == [1, 2] and summary.classes == plain.classes
    assert any("stability (octave, octave 2" in line for line in summary.lines())
    st.delete(f"{TRAJECTORIES}/part-1.parquet")
    analyze_store(path)                                        # the stale tables go with the trajectories
    assert not (tmp_path / "s" / ANALYSIS / "stability_summary.parquet").exists()


def test_stability_command_compares_stores_and_refuses_one_without_trajectories(tmp_path):
    first, second = make_small_store(tmp_path / "a"), make_small_store(tmp_path / "b")
    with pytest.raises(StoreError, match="no trajectories"):
        run_stability([first, second], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    for path in (first, second):
        Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows())
    table, written, notes = run_stability([first, second], str(tmp_path / "out"))
    assert len(notes) == 2 and all(note.startswith("warning: synthetic (") for note in notes)   # every:N unknown
    assert table["aligned_every"].isna().all()                          # nothing aligned
    assert sorted(set(table.octave)) == [1, 2]                          # as the summary and figures count
    assert len(set(table.model)) == 2 and all((tmp_path / "out" / name).exists()
                                              for name in ("stability_compare.parquet", "stability_compare.png"))


def test_trajectory_video_frames_show_the_image_and_every_output():
    names = [f"c{i}" for i in range(6)]
    shots = pd.DataFrame({"step": [10, 0], "octave": [0, 0], "target": [3, 3], "label": [3, 1],
                          "logits": [np.arange(6.0), np.arange(6.0)[::-1]],
                          "png": [encode_png(np.full((8, 8, 3), v, np.uint8)) for v in (200, 50)]})
    frames = trajectory_frames(shots, names)
    assert len(frames) == 2
    first = frames[0]
    image_ax, scatter_ax = first.axes
    assert image_ax.get_title().startswith("step 0")                   # in step order
    points = np.concatenate([c.get_offsets() for c in scatter_ax.collections])
    assert len(points) == 6 and [3, 2] in points.tolist()               # every class, the target's own output
    gif = Image.open(io.BytesIO(trajectory_gif([rgb_pixels(f) for f in frames])))
    assert gif.n_frames == 2


# --- read a part at a time (audit ascale A11) ---------------------------------------------------------------------

def recorded_store(path) -> tuple[str, int]:
    """The hand-made store with recorded steps in five files, as sweeps leave them: batches of its octave and
    opposite images (one file's targets null, so that parts differ in dtype), an orphan batch (no image of it
    stored), and a batch run twice under two names (an image's steps in two files). (store, most rows of a file)."""
    from analysis.synthetic import workload_trajectories
    from jobs.catalog import JobSpec

    store = make_small_store(path)
    st = Store.open(store)
    rng = np.random.default_rng(0)
    batches = {"part-a": [JobSpec("octave", 0), JobSpec("octave", 1)],
               "part-b": [JobSpec("octave", 2), JobSpec("octave", 3), JobSpec("opposite", 0)],
               "part-c": [JobSpec("octave", 4), JobSpec("octave", 5)],
               "part-d": [JobSpec("octave", 9)],                              # no image: left out
               "part-e": [JobSpec("octave", 2), JobSpec("opposite", 1)]}      # octave 2 again
    most = 0
    for name, items in batches.items():
        steps = workload_trajectories(items, rng, 6, [40, 60], every=5)
        if name == "part-c":
            steps = steps.set_column(2, "target", pa.nulls(steps.num_rows, pa.int32()))
        st.write_table(f"{TRAJECTORIES}/{name}.parquet", steps)
        most = max(most, steps.num_rows)
    return store, most


def every_step_at_once(store: str) -> pd.DataFrame:
    """The reference: `sweep analyze`'s stability table as it was, from one read of every recorded step."""
    from sweep.store import IMAGES
    st = Store.open(store)
    steps = st.read(TRAJECTORIES, ["key", "job", "target", "step", "octave", "label"]).to_pandas()
    done = set(st.read(IMAGES, ["key"]).column("key").to_pylist())
    return stability_table(steps[steps["key"].isin(done)].reset_index(drop=True))


@pytest.mark.parametrize("steps_at_once", [1, 100, 250_000])   # a file a part, two or three, all in one
def test_the_stability_table_read_in_parts_is_that_of_every_step_read_at_once(tmp_path, monkeypatch, steps_at_once):
    import analysis.stability as stability

    store, _ = recorded_store(tmp_path / "s")
    monkeypatch.setattr(stability, "STEPS_AT_ONCE", steps_at_once)
    table = stability.read_stability(store)
    reference = every_step_at_once(store)
    assert "octave:-:9:-1:0" not in set(table.key) and (table.key == "octave:-:2:-1:0").sum() == 2
    assert table.loc[table.key == "octave:-:2:-1:0", "recorded_steps"].tolist() == [8, 12]   # one run's steps
    pd.testing.assert_frame_equal(table, reference)


def test_analyze_reduces_the_recorded_steps_a_part_at_a_time(tmp_path, monkeypatch):
    """What is held at once: `stability_table` is given one part (here a file) of the steps, never the store's."""
    import analysis.analyze
    import analysis.stability as stability

    store, most = recorded_store(tmp_path / "s")
    monkeypatch.setattr(stability, "STEPS_AT_ONCE", 1, raising=False)
    sizes = []

    def counted(steps):
        sizes.append(len(steps))
        return stability_table(steps)
    monkeypatch.setattr(stability, "stability_table", counted)
    monkeypatch.setattr(analysis.analyze, "stability_table", counted, raising=False)   # where it was called from
    summary = analyze_store(store)
    assert summary.stability and len(sizes) >= 5 and max(sizes) <= most, sizes
    per_image = pd.read_parquet(tmp_path / "s" / ANALYSIS / "stability.parquet")
    pd.testing.assert_frame_equal(per_image, every_step_at_once(store))


@pytest.mark.parametrize("layout", ["frames/", "frames in images/"])
def test_analyze_reads_each_images_file_once_with_trajectories(tmp_path, monkeypatch, layout):
    """`sweep analyze` read every images/ file's key column again after its numbers, for the stored images' keys
    that keep the stability tables to them (`Store.done_keys`): now they come from the numbers' own pass (its key
    index). A store written before frames/ existed, its interpolation frames among the images, gives the same."""
    import os

    import pyarrow.parquet as pq
    from analysis.stability import read_stability
    from test_image_figures import counted_reads, make_image_store
    path = make_image_store(tmp_path / "s")
    if layout == "frames in images/":
        frames = os.path.join(path, "frames")
        moved = pq.read_table(frames)
        for name in os.listdir(frames):
            os.remove(os.path.join(frames, name))
        pq.write_table(moved, os.path.join(path, "images", "part-999999.parquet"))
    Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A, "octave:-:9:-1:0")))
    expected = read_stability(path)   # the stored keys read apart
    with monkeypatch.context() as patch:
        opened, _ = counted_reads(patch, path)
        analyze_store(path)
    images = [f"images/{name}" for name in sorted(os.listdir(os.path.join(path, "images")))]
    assert [opened[name] for name in images] == [1] * len(images), opened
    assert set(expected.key) == {A}
    pd.testing.assert_frame_equal(pd.read_parquet(os.path.join(path, ANALYSIS, "stability.parquet")), expected)


def test_an_image_whose_steps_were_recorded_twice_has_the_numbers_of_one_run():
    """A batch run again (its images/ write failed) records the same image's steps twice, in two files: the
    numbers are those of one run (its first, in file order), not of both runs' steps interleaved, which counted
    each step twice and put a non-change between the two copies (A's first octave: 3 changes in 7 pairs)."""
    steps = handmade_trajectories().sort_values(["key", "octave", "step"], kind="stable")
    again = steps[steps["key"] == A].assign(label=lambda f: f["label"].where(f["step"] != 0, 9))   # run 2 differs
    twice = stability_table(pd.concat([steps, again], ignore_index=True))
    pd.testing.assert_frame_equal(twice, stability_table(steps))


def test_stores_of_one_model_in_folders_of_one_name_stay_apart_and_a_store_given_twice_is_refused(tmp_path):
    """runs/a/store and runs/b/store of one model were both labelled "synthetic (store)": the table held two rows
    of one label per job and octave, and the figure averaged the two stores into one bar."""
    first, second = make_small_store(tmp_path / "a" / "store"), make_small_store(tmp_path / "b" / "store")
    for path in (first, second):
        Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows())
    table, _, _ = run_stability([first, second], str(tmp_path / "out"))
    labels = list(dict.fromkeys(table.model))
    assert len(labels) == 2 and all(label.startswith("synthetic (") for label in labels), labels
    assert not table.duplicated(["model", "job", "octave"]).any()
    with pytest.raises(StoreError, match=r"^store .*a/store is given twice: compare each store once$"):
        run_stability([first, second, first], str(tmp_path / "again"))
    assert not (tmp_path / "again").exists()


def test_stores_recorded_at_different_every_n_are_compared_on_the_steps_all_recorded(tmp_path):
    """A change rate counts argmax changes between consecutive records: at every:10 a store's image counted 3
    changes in 3 pairs of records (rate 1.0) where at every:20 the same run shows none between steps 0 and 20.
    `sweep stability` compared the two without a word; it now compares both on the steps both recorded (every 20)
    and says so in one line naming each store's N. Stores of one N are read as before."""
    from click.testing import CliRunner

    from handmade import OPTIONS
    from sweep.cli import main

    def store(name: str, every: int) -> str:
        path = make_small_store(tmp_path / name, options={**OPTIONS, "trajectory": {"every": every, "snapshots": 0,
                                                                                   "k": 5}})
        rows = trajectory_rows()
        rows = rows.filter(pa.array(rows["step"].to_numpy() % every == 0))   # the steps every:N records
        Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", rows)
        return path
    ten, twenty = store("ten", 10), store("twenty", 20)
    table, _, notes = run_stability([ten, twenty], str(tmp_path / "out"))
    first = table[table["octave"] == 1].set_index("model")
    assert first.loc["synthetic (ten)", "change_rate"] == first.loc["synthetic (twenty)", "change_rate"] == 0.0
    assert notes == ["the stores recorded their steps at different intervals (synthetic (ten) every:10, synthetic "
                     "(twenty) every:20): a change rate counts changes between consecutive records, so each store "
                     "is compared on the steps all of them recorded, every 20 steps"]
    assert pd.read_parquet(tmp_path / "out" / "stability_compare.parquet")["aligned_every"].eq(20).all()
    alone, _, none = run_stability([ten, store("ten-again", 10)], str(tmp_path / "same"))
    assert none == [] and alone[alone["octave"] == 1]["change_rate"].tolist() == [1.0, 1.0]   # as recorded
    assert alone["aligned_every"].eq(10).all()                         # each store's own N
    said = CliRunner().invoke(main, ["stability", ten, twenty, "--out", str(tmp_path / "cli")])
    assert said.exit_code == 0 and said.output.splitlines()[0] == notes[0], said.output


def test_a_store_whose_every_n_is_unknown_is_compared_as_recorded_with_a_warning(tmp_path):
    """A store whose manifest does not give its every:N (written by hand or by another tool) made `sweep stability`
    align none of the stores, without a word, and the table did not say on what spacing its numbers were counted.
    Now the stores of known N are aligned among themselves, the other is compared on its steps as recorded with a
    warning line naming it, and `aligned_every` says each store's spacing (null: unknown)."""
    from click.testing import CliRunner

    from handmade import OPTIONS
    from sweep.cli import main

    def store(name: str, every: int | None) -> str:
        options = OPTIONS if every is None else {**OPTIONS, "trajectory": {"every": every, "snapshots": 0, "k": 5}}
        path = make_small_store(tmp_path / name, options=options)
        rows = trajectory_rows()
        rows = rows.filter(pa.array(rows["step"].to_numpy() % (every or 10) == 0))   # by hand: every 10th step
        Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", rows)
        return path
    ten, twenty, unknown = store("ten", 10), store("twenty", 20), store("unknown", None)
    table, _, notes = run_stability([ten, twenty, unknown], str(tmp_path / "out"))
    first = table[table["octave"] == 1].set_index("model")
    assert first["change_rate"].to_dict() == {"synthetic (ten)": 0.0, "synthetic (twenty)": 0.0,
                                              "synthetic (unknown)": 1.0}   # ten on twenty's steps; unknown as is
    assert notes == [f"warning: synthetic (unknown) ({unknown}): its manifest does not say the --trajectory every:N "
                     "its steps were recorded at, so it could not be aligned with the other stores: it is compared "
                     "on its steps as recorded (aligned_every empty), and its change rates are comparable to theirs "
                     "only if it was recorded at the same interval",
                     "the stores recorded their steps at different intervals (synthetic (ten) every:10, synthetic "
                     "(twenty) every:20): a change rate counts changes between consecutive records, so each store "
                     "is compared on the steps all of them recorded, every 20 steps"]
    import pyarrow.parquet as pq
    written = pq.read_table(tmp_path / "out" / "stability_compare.parquet", columns=["model", "aligned_every"])
    assert written.schema.field("aligned_every").type == pa.int64()          # a step count, null where unknown
    assert dict(zip(*written.to_pydict().values())) == {
        "synthetic (ten)": 20, "synthetic (twenty)": 20, "synthetic (unknown)": None}
    said = CliRunner().invoke(main, ["stability", ten, unknown, "--out", str(tmp_path / "cli")])
    assert said.exit_code == 0 and said.output.startswith("warning: synthetic (unknown)"), said.output
    alone, _, none = run_stability([unknown], str(tmp_path / "alone"))   # nothing to compare it with: no warning
    assert none == [] and alone["aligned_every"].isna().all()


def test_the_jobs_not_judged_by_the_targets_top1_are_named_with_how_to_read_their_shares(tmp_path):
    """`sweep stability` printed an opposite's and an addition's target_top1_share and settled_share beside the
    octaves' without a word, where `sweep analyze` says the opposite's are of the class it minimises and gives none
    for an addition (judged by both classes in the top 2)."""
    path = make_small_store(tmp_path / "s")
    rows = trajectory_rows()
    Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", rows.set_column(
        rows.schema.get_field_index("job"), "job", pa.array(["opposite"] * rows.num_rows)))
    _, _, notes = run_stability([path], str(tmp_path / "out"))
    assert notes == ["opposite: target_top1_share and settled_share are of the class it minimises (low: success)"]
    from analysis.stability import measure_notes
    table = pd.DataFrame({"job": ["addition", "dream", "interpolate", "octave", "opposite", "transfigure"]})
    assert measure_notes(table) == [
        "addition: target_top1_share and settled_share are of its target alone; addition is judged by both classes "
        "in the top 2, which the recorded argmax cannot tell",
        "interpolate: target_top1_share and settled_share are of its target alone; interpolate is judged by top-1 = "
        "class b, which the recorded argmax cannot tell",
        "opposite: target_top1_share and settled_share are of the class it minimises (low: success)"]
    assert measure_notes(table[table.job.isin(["octave", "dream"])]) == []


def test_an_octave_without_a_step_at_the_common_spacing_is_named():
    """Stores recorded at every:2 and every:3 are compared every 6 steps: an octave of steps 2-3 holds none, and it
    dropped out of the table without a word (a hunt with the tiny schedule). Steps count from 0 over the schedule."""
    from analysis.stability import dropped_octaves_note, octaves_without_a_step
    octaves = [{"size": 32, "iterations": n} for n in (2, 2, 8)]     # steps 0-1, 2-3, 4-11
    manifest = {"job_schedules": {"octave": {"schedule_id": "s"}}, "schedule_contents": {"s": {"octaves": octaves}}}
    assert octaves_without_a_step(manifest, ["octave"], 6) == [("octave", 2)]
    assert octaves_without_a_step(manifest, ["octave"], 2) == []
    assert octaves_without_a_step({}, ["octave"], 6) == []         # a manifest without schedule contents
    assert dropped_octaves_note("tiny (a)", [("octave", 2)], 6) == (
        "tiny (a): the octave images' octave 2 holds no step at a multiple of 6, so it is left out of the comparison")


def test_stores_whose_every_n_have_an_lcm_past_int32_are_compared_on_their_first_step(tmp_path):
    """every:65536 beside every:65535: their lcm (4294901760) is past the int32 steps' range, and `sweep stability`
    ended in numpy's OverflowError traceback; the only step both recorded is step 0."""
    from handmade import OPTIONS

    def store(name: str, every: int) -> str:
        path = make_small_store(tmp_path / name, options={**OPTIONS, "trajectory": {"every": every, "snapshots": 0,
                                                                                   "k": 5}})
        rows = trajectory_rows()
        first = rows.filter(pa.array(rows["step"].to_numpy() == 0))   # the one step either records
        Store.open(path).write_table(f"{TRAJECTORIES}/part-1.parquet", first)
        return path
    table, _, notes = run_stability([store("a", 65536), store("b", 65535)], str(tmp_path / "out"))
    assert table["aligned_every"].eq(65536 * 65535).all() and table["octave"].tolist() == [1, 1]
    assert "every 4294901760 steps" in notes[0]
