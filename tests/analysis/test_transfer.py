"""The transfer table, top-3 per scorer and the figures, from hand-made outputs with answers known by construction."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import analyze_store
from analysis.synthetic import Image, write_store
from analysis.analyze import AnalysisSummary, _transfer_numbers
from analysis.transfer import (COLUMNS, Outputs, aim_class, compare_figure, compare_table, store_transfer,
                               success_table, top_classes, transfer_figure, transfer_table)
from sweep.score import SCORER_FILE, SCORES, ScorePlan, scorer_id, scores_table
from sweep.store import Store

N = 6
NAMES = [f"class {i}" for i in range(N)]


def one_hot(c: int, high: float = 5.0, second: int | None = None, low: int | None = None) -> np.ndarray:
    """Outputs with class c on top, optionally `second` next and `low` at the very bottom."""
    v = np.zeros(N, np.float32)
    v[c] = high
    if second is not None:
        v[second] = high - 1
    if low is not None:
        v[low] = -high
    return v


def images() -> pd.DataFrame:
    return pd.DataFrame({
        "key": ["o0", "o1", "o2", "o3", "p0", "p1", "a0", "a1", "i0"],
        "job": ["octave"] * 4 + ["opposite"] * 2 + ["addition"] * 2 + ["interpolate"],
        "variant": [""] * 6 + ["merge"] * 2 + [""],
        "target": [0, 1, 2, 3, 0, 1, 0, 2, 4],
        "partner": [-1] * 6 + [1, 3, 5],
    })


def test_an_interpolation_aims_at_class_b_every_other_job_at_its_target():
    assert aim_class(images()).tolist() == [0, 1, 2, 3, 0, 1, 0, 2, 5]


def outputs() -> dict[str, Outputs]:
    own = {"o0": one_hot(0), "o1": one_hot(1), "o2": one_hot(2), "o3": one_hot(3),
           "p0": one_hot(3, low=0), "p1": one_hot(3, low=1),
           "a0": one_hot(0, second=1), "a1": one_hot(2, second=3), "i0": one_hot(5)}
    # The other scorer: octaves 0 and 1 right, 2 second, 3 wrong entirely; opposite 0 at the bottom, opposite 1 on
    # top; merge 0 both in the top two, merge 1 only one; the interpolation's class b (5) second. It has no output
    # for o3's key at all (left out of its rows).
    other = {"o0": one_hot(0), "o1": one_hot(1), "o2": one_hot(4, second=2),
             "p0": one_hot(4, low=0), "p1": one_hot(1),
             "a0": one_hot(1, second=0), "a1": one_hot(2, second=5), "i0": one_hot(4, second=5)}
    return {"gen": Outputs(list(own), np.stack(list(own.values()))),
            "other": Outputs(list(other), np.stack(list(other.values())))}


def row(table: pd.DataFrame, scorer: str, job: str) -> pd.Series:
    return table[(table["scorer"] == scorer) & (table["job"] == job)].iloc[0]


def test_transfer_table_known_answers():
    table = transfer_table(images(), outputs(), generator="gen")
    assert list(table["scorer"].unique()) == ["gen", "other"] and table["own"].tolist().count(True) == 4
    gen, other = (row(table, "gen", "octave"), row(table, "other", "octave"))
    assert (gen["images"], gen["top1_share"], gen["top5_share"]) == (4, 1.0, 1.0)
    assert (other["images"], other["top1_share"], other["top5_share"]) == (3, pytest.approx(2 / 3), 1.0)
    # mean target probability: softmax of the constructed outputs
    p_top = np.exp(5) / (np.exp(5) + N - 1)
    p_second = np.exp(4) / (np.exp(5) + np.exp(4) + N - 2)
    assert gen["mean_target_prob"] == pytest.approx(p_top)
    assert other["mean_target_prob"] == pytest.approx((2 * p_top + p_second) / 3)
    # additions: both in the top 2 / top 5
    assert row(table, "gen", "addition")["both_top2_share"] == 1.0
    assert row(table, "other", "addition")["both_top2_share"] == 0.5
    assert row(table, "other", "addition")["both_top5_share"] == 1.0
    assert np.isnan(gen["both_top2_share"]) and np.isnan(gen["target_percentile"])
    # opposites: the minimised class at the very bottom is percentile 0; on top, 100
    assert row(table, "gen", "opposite")["target_percentile"] == 0.0
    assert row(table, "other", "opposite")["target_percentile"] == 50.0
    # an interpolation's final image aims at class b
    assert row(table, "gen", "interpolate")["top1_share"] == 1.0
    assert row(table, "other", "interpolate")["top1_share"] == 0.0
    assert row(table, "other", "interpolate")["top5_share"] == 1.0


def test_top_classes_per_scorer():
    octaves = images()[images()["job"] == "octave"]
    top = top_classes(octaves, outputs(), NAMES, k=3)
    assert len(top) == 3 * (4 + 3)
    first = top[(top["scorer"] == "other") & (top["key"] == "o2")].sort_values("rank")
    assert first["label"].tolist()[:2] == [4, 2] and first["label_name"].iloc[0] == "class 4"
    assert first["prob"].is_monotonic_decreasing


def test_compare_table_and_figures():
    a = transfer_table(images(), outputs(), generator="gen")
    swapped = outputs()
    b = transfer_table(images(), {"other": swapped["other"], "gen": swapped["gen"]}, generator="other")
    table = compare_table([a, b])
    octave = table[table["job"] == "octave"]
    assert len(octave) == 4 and set(octave["generator"]) == {"gen", "other"}
    assert not table.duplicated(["generator", "scorer", "job", "variant"]).any()
    assert len(compare_table([a, a])) == len(a)                      # a store given twice counts once
    figure = transfer_figure(a)
    cells = [t.get_text() for t in figure.axes[0].texts]
    # 4 job rows x 2 scorers, each job by its own measure (opposites by percentile), the generating model first
    assert len(cells) == 2 * 4 and "67%" in cells and {"pct 0", "pct 50"} <= set(cells)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["gen", "other"]
    assert len(compare_figure(table).axes) == 4
    top1 = [t.get_text() for t in transfer_figure(a, "top1_share").axes[0].texts]   # one statistic for every job
    assert len(top1) == 2 * 3 and not any(t.startswith("pct") for t in top1)


def judged_table() -> pd.DataFrame:
    """A transfer table where each job's own measure differs from its top-1 share: additions with 40% top-1 but
    95% both classes in the top 2, opposites with their class at percentile 4 (and a top-1 share of 0)."""
    def r(job, variant, top1, both2=np.nan, percentile=np.nan, scorer="gen"):
        return {"generator": "gen", "scorer": scorer, "own": scorer == "gen", "job": job, "variant": variant,
                "images": 10, "top1_share": top1, "top5_share": 1.0, "mean_target_prob": 0.5,
                "both_top2_share": both2, "both_top5_share": 1.0 if job == "addition" else np.nan,
                "target_percentile": percentile}
    return pd.DataFrame([r("octave", "", 0.9), r("addition", "merge", 0.4, both2=0.95),
                         r("opposite", "", 0.0, percentile=4.0), r("interpolate", "", 0.7),
                         r("dream", "x", np.nan)], columns=COLUMNS)


def test_each_job_is_judged_by_its_own_measure():
    judged = success_table(judged_table()).set_index("job")
    assert judged.loc["addition", "measure"] == "both_top2_share" and judged.loc["addition", "value"] == 0.95
    assert judged.loc["opposite", "measure"] == "target_percentile" and judged.loc["opposite", "value"] == 4.0
    assert judged.loc["octave", "value"] == 0.9 and judged.loc["interpolate", "measure_name"] == "top-1 = class b"
    assert "dream" not in judged.index                                  # classless: no measure
    figure = transfer_figure(judged_table())
    cells = [t.get_text() for t in figure.axes[0].texts]
    rows = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert "95%" in cells and "40%" not in cells and "pct 4" in cells
    assert "addition / merge: both classes in the top 2" in rows and "octave: top-1 = target" in rows
    titles = [ax.get_title() for ax in compare_figure(compare_table([judged_table()])).axes]
    assert "addition / merge:\nboth classes in the top 2" in titles
    panel = compare_figure(compare_table([judged_table()])).axes[titles.index("addition / merge:\nboth classes in "
                                                                               "the top 2")]
    assert [t.get_text() for t in panel.texts] == ["95%"]


def test_compare_panel_titles_fit_in_the_figure():
    """Audit: with three panel columns the opposite panel read "percentile of the minimised class, low =", the rest
    past the figure's edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    figure = compare_figure(compare_table([judged_table()]))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()   # constrained layout places the panels when drawn
    renderer = canvas.get_renderer()
    edge = figure.bbox
    for ax in figure.axes:
        box = ax.title.get_window_extent(renderer)
        assert edge.x0 <= box.x0 and box.x1 <= edge.x1, ax.get_title()


def test_the_summary_names_each_job_by_its_own_measure():
    numbers = _transfer_numbers(judged_table())
    assert numbers == {"gen": {"addition/merge": 0.95, "interpolate": 0.7, "octave": 0.9, "opposite": 4.0}}
    summary = AnalysisSummary(store="s", metric="cosine", model="m", n_classes=6, fingerprint="f", images={},
                              coverage=[], complete=True, transfer=numbers)
    line = next(line for line in summary.lines() if line.startswith("scorer gen"))
    assert "addition/merge 95% (both classes in the top 2)" in line and "40%" not in line
    assert "octave 90% (top-1 = target)" in line
    assert "opposite pct 4 (percentile of the minimised class, low = success)" in line
    assert "share top-1 = target" not in line


def test_analyze_writes_the_transfer_table(tmp_path):
    rows = [Image("octave", 0, one_hot(0)), Image("octave", 1, one_hot(1)), Image("octave", 2, one_hot(2)),
            Image("opposite", 0, one_hot(3, low=0)), Image("addition", 0, one_hot(0, second=1), "merge", 1)]
    path = write_store(str(tmp_path / "store"), NAMES, rows)
    store = Store.open(path)
    keys = store.read("images", ["key"]).column("key").to_pylist()
    by_key = {k: v for k, v in zip(sorted(keys), [one_hot(4, second=1), one_hot(0), one_hot(0), one_hot(1),
                                                  one_hot(2, second=0)])}
    # a scorer part written through the scoring module's own table builder
    plan = ScorePlan(scorer="other.w", weights="w", n_classes=N, scale=1.0)
    store.write_bytes(f"{SCORES}/other.w/{SCORER_FILE}", b"{}")
    targets = {k: int(k.split(":")[2]) for k in keys}
    store.write_table(f"{SCORES}/other.w/part-0.parquet",
                      scores_table(list(by_key), [targets[k] for k in by_key], [None] * len(by_key),
                                   np.stack(list(by_key.values())), plan))
    summary = analyze_store(path)
    table = pd.read_parquet(tmp_path / "store" / "analysis" / "transfer.parquet")
    gen = scorer_id("synthetic", "random-synthetic")
    assert set(table["scorer"]) == {gen, "other.w"}
    want = {k: int(np.argmax(v)) == targets[k] for k, v in by_key.items() if k.startswith("octave")}
    assert row(table, "other.w", "octave")["top1_share"] == pytest.approx(np.mean(list(want.values())))
    assert row(table, gen, "octave")["top1_share"] == 1.0
    assert "other.w" in summary.transfer
    top3 = pd.read_parquet(tmp_path / "store" / "analysis" / "transfer_top3.parquet")
    assert set(top3["scorer"]) == {gen, "other.w"} and set(top3["job"]) == {"octave"}


def test_the_analysis_imports_none_of_the_ray_side_modules():
    """The transfer table's statistics come from the light `jobs.outputs`: importing the analysis loads neither the
    scorer's dispatch (sweep.score, sweep.worker, sweep.fleet), nor Ray, nor torch (store_outputs reads scores on
    use)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    heavy = ("sweep.score", "sweep.worker", "sweep.fleet", "ray", "torch")
    code = f"import sys, analysis, analysis.transfer; print([m for m in {heavy!r} if m in sys.modules])"
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_transfer_table_is_computed_a_block_of_rows_at_a_time(monkeypatch):
    """Scale audit: the table took each scorer's outputs whole as float64, then an N x C rank matrix (with its sort
    and index arrays) and an N x C softmax: about 4 GB of temporaries at 10^5 images. Now a block of rows at a time:
    the same table whatever the block, and the peak memory below the outputs' own size."""
    import tracemalloc
    import jobs.outputs
    a = transfer_table(images(), outputs(), generator="gen")
    monkeypatch.setattr(jobs.outputs, "ROW_BLOCK", 2)
    pd.testing.assert_frame_equal(transfer_table(images(), outputs(), generator="gen"), a)
    monkeypatch.setattr(jobs.outputs, "ROW_BLOCK", 1000)
    rng = np.random.default_rng(0)
    n, classes = 40000, 250
    many = pd.DataFrame({"key": [f"k{i}" for i in range(n)], "job": "octave", "variant": "",
                         "target": rng.integers(0, classes, n), "partner": -1})
    logits = rng.normal(size=(n, classes)).astype(np.float32)        # 40 MB
    scorers = {"gen": Outputs(list(many["key"]), logits)}
    tracemalloc.start()
    try:
        table = transfer_table(many, scorers, generator="gen")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table["images"].tolist() == [n] and peak < logits.nbytes


def test_a_scorers_key_held_twice_counts_once_and_keeps_rows_aligned():
    """A key in two of a scorer's parts (images/ may hold a key twice, and `sweep score` then scores it in each of
    its files): its first output counts, once, and every other image keeps its own output (the repeated key shifted
    them: o2's output was read for o3, and so on)."""
    gen = outputs()["gen"]
    twice = Outputs(["o0", *gen.keys], np.concatenate([gen.logits[:1], gen.logits]))
    octaves = images()[images()["job"] == "octave"]
    pd.testing.assert_frame_equal(transfer_table(images(), {"gen": twice}, "gen"),
                                  transfer_table(images(), {"gen": gen}, "gen"))
    pd.testing.assert_frame_equal(top_classes(octaves, {"gen": twice}, NAMES),
                                  top_classes(octaves, {"gen": gen}, NAMES))


def test_sweep_compare_leaves_out_the_images_the_analysis_leaves_out(tmp_path):
    """`sweep compare`'s table of a store is the transfer table `sweep analyze` writes: an image whose outputs are not
    finite is left out of both (compare counted it, as a failure)."""
    broken = one_hot(1)
    broken[2] = np.nan
    rows = [Image("octave", 0, one_hot(0)), Image("octave", 1, broken), Image("octave", 2, one_hot(2))]
    path = write_store(str(tmp_path / "store"), NAMES, rows)
    analyze_store(path)
    analysed = pd.read_parquet(tmp_path / "store" / "analysis" / "transfer.parquet")
    compared = store_transfer(path)
    assert compared["images"].tolist() == analysed["images"].tolist() == [2]
    assert compared["top1_share"].tolist() == analysed["top1_share"].tolist() == [1.0]


def test_scorer_names_with_dollar_signs_are_drawn_as_written():
    """A scorer's id is its model and weights (a weights file's name may hold '$'): drawn as written, not mathtext."""
    from analysis.drawing import rgb_pixels
    named = "w_$5_$10"
    a = transfer_table(images(), {named: outputs()["other"], "gen": outputs()["gen"]}, generator="gen")
    for figure in (transfer_figure(a), compare_figure(compare_table([a]))):
        rgb_pixels(figure)                                             # drawing it raised ValueError (mathtext)
    assert named in [t.get_text() for t in transfer_figure(a).axes[0].get_xticklabels()]


def test_sweep_compare_keeps_two_stores_of_one_model_apart_named_by_folder(tmp_path):
    """Two sweeps of one model and weights (other seeds, other schedules): `sweep compare` kept the first store's
    rows and dropped the second's without a word (one generator id, deduplicated). Each is now a generator row of
    its own, named by its folder as `sweep stability` names two stores of one model; a store given twice is
    refused as there."""
    from analysis.transfer import run_compare
    from sweep.store import StoreError
    good = [Image("octave", c, one_hot(c)) for c in range(3)]
    poor = [Image("octave", c, one_hot((c + 1) % N)) for c in range(3)]   # no octave reads as its class
    first = write_store(str(tmp_path / "seed0"), NAMES, good)
    second = write_store(str(tmp_path / "seed1"), NAMES, poor)
    lines = run_compare([first, second], str(tmp_path / "out"))
    table = pd.read_parquet(tmp_path / "out" / "compare.parquet")
    generator = scorer_id("synthetic", "random-synthetic")
    octave = table[table["job"] == "octave"].set_index("generator")
    assert sorted(octave.index) == [f"{generator} (seed0)", f"{generator} (seed1)"]
    assert octave.loc[f"{generator} (seed0)", "top1_share"] == 1.0
    assert octave.loc[f"{generator} (seed1)", "top1_share"] == 0.0
    assert set(octave["scorer"]) == {generator} and octave["own"].all()
    assert "2 generating stores x 1 scoring model)" in lines[0]   # counted, singular or plural
    with pytest.raises(StoreError, match=r"^store .*seed0 is given twice: compare each store once$"):
        run_compare([first, second, first], str(tmp_path / "again"))
    assert not (tmp_path / "again").exists()


def test_a_scorer_short_of_a_jobs_images_is_named_with_how_many_it_scored():
    """The handmade `other` scorer has no output for o3: its octave shares are of 3 images of 4."""
    from analysis.transfer import partly_scored
    table = transfer_table(images(), outputs(), generator="gen")
    assert partly_scored(table) == ["scorer other has outputs for only some images of gen (octave 3 of 4): its "
                                    "shares are of those (`sweep score` with it scores the rest; an output that is "
                                    "not finite is left out, and scoring again gives it again)"]
    assert partly_scored(transfer_table(images(), {"gen": outputs()["gen"]}, generator="gen")) == []


def test_compare_and_analyze_say_when_a_scorer_scored_only_some_images(tmp_path):
    """A `sweep score` stopped early (or run with --jobs): `sweep compare` printed the scorer's octave share, 100%,
    and `sweep analyze` its summary, with no word that it had scored 1 octave image of 3."""
    from analysis.transfer import run_compare
    path = write_store(str(tmp_path / "store"), NAMES, [Image("octave", c, one_hot(c)) for c in range(3)])
    store = Store.open(path)
    first = sorted(store.read("images", ["key"]).column("key").to_pylist())[0]
    plan = ScorePlan(scorer="other.w", weights="w", n_classes=N, scale=1.0)
    store.write_bytes(f"{SCORES}/other.w/{SCORER_FILE}", b"{}")
    store.write_table(f"{SCORES}/other.w/part-0.parquet", scores_table([first], [0], [None], one_hot(0)[None], plan))
    generator = scorer_id("synthetic", "random-synthetic")
    note = (f"scorer other.w has outputs for only some images of {generator} (octave 1 of 3): its shares are of "
            f"those (`sweep score` with it scores the rest; an output that is not finite is left out, and scoring "
            f"again gives it again)")
    assert run_compare([path], str(tmp_path / "out"))[-1] == note
    assert note in analyze_store(path).lines()


def test_sweep_compare_refuses_stores_whose_class_names_differ(tmp_path):
    """A store of another label set with the same class count (another 6-class model, or the same names in
    another order): `sweep compare` set it beside the first as if class i meant one thing in both (no scorer can
    score both: a matrix of two blocks). Refused in one line naming the stores and the first differing class;
    stores of unknown names (the stand-ins `class 0`, ...) are still compared."""
    from analysis.transfer import run_compare
    from sweep.store import StoreError
    animals = ["apple", "bear", "cat", "dog", "eel", "fox"]
    octaves = [Image("octave", c, one_hot(c)) for c in range(3)]
    first = write_store(str(tmp_path / "animals"), animals, octaves)
    reordered = write_store(str(tmp_path / "reordered"), animals[1::-1] + animals[2:], octaves, model="other")
    unnamed = write_store(str(tmp_path / "unnamed"), NAMES, octaves, model="unnamed")
    with pytest.raises(StoreError, match=rf"^{first} and {reordered} name their classes otherwise \(class 0 is "
                                         rf"'apple' in the first, 'bear' in the second; 2 of 6 classes differ\): a "
                                         rf"transfer matrix needs one label set, nothing to compare$"):
        run_compare([first, unnamed, reordered], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert "2 generating stores" in run_compare([first, unnamed], str(tmp_path / "out"))[0]


def test_the_transfer_table_reads_the_score_of_the_image_stored_now(tmp_path):
    """An octave image written again with other pixels (other stored logits) after a scorer scored it: the transfer
    table read the scorer's old row, the first part's. It now takes a row that recorded the image stored now, else
    one that recorded no image (a part written before scores recorded it), and leaves out a row of another image:
    with that row alone the scorer has no output for the image, and the note says so."""
    from analysis.synthetic import write_batch
    from analysis.transfer import partly_scored
    from sweep.score import image_digests, logits_matrix
    path = write_store(str(tmp_path / "store"), NAMES, [Image("octave", c, one_hot(c)) for c in range(3)])
    store = Store.open(path)
    images = store.read("images", ["key", "logits"])
    keys, digests = images.column("key").to_pylist(), image_digests(logits_matrix(images.column("logits")))
    plan = ScorePlan(scorer="other.w", weights="w", n_classes=N, scale=1.0)
    hits = np.stack([one_hot(c) for c in range(3)])                   # the scorer reads every image as its class
    store.write_bytes(f"{SCORES}/other.w/{SCORER_FILE}", b"{}")
    store.write_table(f"{SCORES}/other.w/part-0.parquet",
                      scores_table(keys, [0, 1, 2], [None] * 3, hits, plan, digests))
    write_batch(store, "part-000000", [Image("octave", 0, one_hot(0, second=1))] +
                [Image("octave", c, one_hot(c)) for c in (1, 2)], NAMES)   # class 0's image written again
    octave = lambda: store_transfer(path).set_index("scorer").loc["other.w"]   # noqa: E731
    assert (octave()["images"], octave()["top1_share"]) == (2, 1.0)          # its old score left out
    assert partly_scored(store_transfer(path)) == [
        f"scorer other.w has outputs for only some images of {scorer_id('synthetic', 'random-synthetic')} (octave 2 "
        f"of 3): its shares are of those (`sweep score` with it scores the rest; an output that is not finite is "
        f"left out, and scoring again gives it again)"]
    fresh = image_digests(logits_matrix(store.read("images", ["key", "logits"]).column("logits")))[0]
    store.write_table(f"{SCORES}/other.w/part-05.parquet", scores_table([keys[0]], [0], [None], hits[:1], plan))
    store.write_table(f"{SCORES}/other.w/part-1.parquet",
                      scores_table([keys[0]], [0], [None], one_hot(3)[None], plan, [fresh]))   # a miss, this image
    assert (octave()["images"], octave()["top1_share"]) == (3, pytest.approx(2 / 3))


def test_a_scorers_outputs_that_are_not_finite_are_left_out(tmp_path):
    """A scorer whose output on an image is not finite (NaN: a model overflowing in low precision): the image is
    left out of its rows, as the analysis leaves out an image whose stored outputs are not finite; the transfer
    table counted it, and its NaN made the job's mean target probability NaN."""
    from analysis.transfer import partly_scored
    from sweep.score import image_digests, logits_matrix
    path = write_store(str(tmp_path / "store"), NAMES, [Image("octave", c, one_hot(c)) for c in range(3)])
    store = Store.open(path)
    images = store.read("images", ["key", "logits"])
    keys, digests = images.column("key").to_pylist(), image_digests(logits_matrix(images.column("logits")))
    hits = np.stack([one_hot(c) for c in range(3)])                   # the scorer reads every image as its class
    hits[1] = np.nan
    store.write_bytes(f"{SCORES}/other.w/{SCORER_FILE}", b"{}")
    store.write_table(f"{SCORES}/other.w/part-0.parquet", scores_table(
        keys, [0, 1, 2], [None] * 3, hits, ScorePlan(scorer="other.w", weights="w", n_classes=N, scale=1.0), digests))
    octave = store_transfer(path).set_index("scorer").loc["other.w"]
    assert (octave["images"], octave["top1_share"]) == (2, 1.0) and np.isfinite(octave["mean_target_prob"])
    note = partly_scored(store_transfer(path))
    assert len(note) == 1 and "octave 2 of 3" in note[0] and "an output that is not finite is left out" in note[0]
