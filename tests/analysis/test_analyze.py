"""The analysis stage end to end on the hand-made store: tables written, summary, errors, determinism."""
import json
import os

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import StoreError, analyze_store
from analysis.analyze import NO_CLASS_IMAGES, AnalysisSummary
from analysis.synthetic import Image, write_store
from handmade import NAMES, OCTAVE, OPTIONS, corrupt_png_column, make_small_store, small_images
from jobs.catalog import key_of

TABLES = ("classes", "opposites", "opposites_summary", "additions", "additions_summary", "pca", "pca_variance",
          "graph_nodes", "graph_components", "graph_cliques")


def _read(store, name):
    return pd.read_parquet(os.path.join(store, "analysis", f"{name}.parquet"))


def test_writes_every_table_readable_with_pandas(small_store):
    summary = analyze_store(small_store)
    for name in TABLES:
        assert len(_read(small_store, name)) > 0, name
    assert _read(small_store, "classes").set_index("target")["nn_article"][5] == 4
    assert _read(small_store, "opposites")["mutual"].sum() == 4
    graph = nx.read_graphml(os.path.join(small_store, "analysis", "graph.graphml"), node_type=int)
    assert graph.number_of_edges() == 6
    assert not [f for f in os.listdir(os.path.join(small_store, "analysis")) if f.startswith(("_", "."))]
    lines = summary.lines()
    text = "\n".join(lines)
    assert "store complete" in lines
    assert "opposites by argmax: 4 distinct among 6 classes; mutual pairs 2" in text
    assert "2 components" in text and "cliques of more than two classes: 1" in text
    assert f"PC1 {summary.pca_ratio[0]:.1%}" in text
    assert "additions (merge): both classes in the top two for 1 of 2" in text


def test_incomplete_store_is_analysed_with_a_statement(tmp_path):
    drop = (key_of("octave", "", 5, -1, 0), key_of("opposite", "", 2, -1, 0),
            *(key_of("addition", v, 2, 3, 0) for v in ("merge", "juxtapose")))
    store = make_small_store(tmp_path / "s", drop=drop)
    summary = analyze_store(store)
    text = "\n".join(summary.lines())
    assert not summary.complete and "INCOMPLETE" in text
    assert "octave: 5 of 6 images; missing 1: octave:-:5:-1:0" in text
    assert "opposite: 5 of 6 images; missing 1: opposite:-:2:-1:0" in text
    assert "addition: 2 of 4 images; missing 2" in text and "left out of the class tables: 5 fox" in text
    assert list(_read(store, "classes")["target"]) == [0, 1, 2, 3, 4]
    assert _read(store, "graph_components")["members"].map(list).tolist() == [[2, 3, 4], [0, 1]]


def analysed_then_only_octaves(path, octaves: dict) -> tuple[str, AnalysisSummary]:
    """A small store analysed once (every table written), then its images replaced by one octave image per class
    with output vectors `octaves[class]`, and analysed again: (store, the second summary)."""
    store = make_small_store(path)
    analyze_store(store)
    assert all(os.path.exists(os.path.join(store, "analysis", f"{table}.parquet"))
               for table in ("additions", "opposites", "pca"))
    for name in os.listdir(os.path.join(store, "images")):
        os.remove(os.path.join(store, "images", name))
    write_store(store, NAMES, [Image("octave", c, octaves[c]) for c in range(6)],
                options={**OPTIONS, "jobs": ["octave"]})
    return store, analyze_store(store)


def test_tables_a_store_cannot_have_are_skipped_and_stale_ones_removed(tmp_path):
    store, summary = analysed_then_only_octaves(tmp_path / "s", OCTAVE)
    assert not os.path.exists(os.path.join(store, "analysis", "additions.parquet"))
    assert not os.path.exists(os.path.join(store, "analysis", "opposites.parquet"))
    assert "no opposite images: opposites tables skipped" in summary.lines()


def test_a_pca_skipped_for_constant_outputs_leaves_no_earlier_pca_table(tmp_path):
    store, summary = analysed_then_only_octaves(tmp_path / "s", {c: [1] * 6 for c in range(6)})  # random weights' look
    assert any("PCA skipped" in note for note in summary.notes)
    assert not os.path.exists(os.path.join(store, "analysis", "pca.parquet"))
    assert not os.path.exists(os.path.join(store, "analysis", "pca_variance.parquet"))


def test_numeric_analysis_never_reads_png_bytes(small_store):
    corrupt_png_column(small_store)
    summary = analyze_store(small_store)
    assert summary.classes == 6


def test_results_are_deterministic(tmp_path):
    a, b = make_small_store(tmp_path / "a"), make_small_store(tmp_path / "b", rows_per_file=5)
    analyze_store(a)
    first = {name: _read(a, name) for name in TABLES}
    analyze_store(a)
    analyze_store(b)
    for name in TABLES:
        pd.testing.assert_frame_equal(first[name], _read(a, name))
        pd.testing.assert_frame_equal(first[name], _read(b, name))
        with open(os.path.join(a, "analysis", f"{name}.parquet"), "rb") as fa, \
                open(os.path.join(b, "analysis", f"{name}.parquet"), "rb") as fb:
            assert fa.read() == fb.read(), name
    graphs = [open(os.path.join(s, "analysis", "graph.graphml")).read() for s in (a, b)]
    assert graphs[0] == graphs[1]


def test_the_default_metric_is_the_output_spaces_plain_distance_and_cosine_an_option(small_store):
    """The article's output-space neighbour is "the second closest point ... in the output space", a true metric
    space (Latent space, "Output Latent Space"): euclidean by default; cosine is the project's named option."""
    summary = analyze_store(small_store)
    assert summary.metric == "euclidean"
    assert json.load(open(os.path.join(small_store, "analysis", "summary.json")))["metric"] == "euclidean"
    assert analyze_store(small_store, metric="cosine").metric == "cosine"


def test_a_store_without_octave_images_gets_every_table_that_needs_none(tmp_path):
    """Opposites (without the article's margin opposite, read from class images) and additions; no class tables."""
    store = make_small_store(tmp_path / "s", drop=tuple(key_of("octave", "", c, -1, 0) for c in range(6)))
    summary = analyze_store(store)
    assert NO_CLASS_IMAGES in summary.notes and summary.classes == 0
    assert summary.tables == ["additions.parquet", "additions_summary.parquet", "opposites.parquet",
                              "opposites_summary.parquet", "transfer.parquet", "transfer_top3.parquet"]
    assert sorted(os.listdir(os.path.join(store, "analysis"))) == sorted([*summary.tables, "summary.json"])
    assert "margin_opposite" not in _read(store, "opposites") and _read(store, "opposites")["mutual"].sum() == 4
    text = "\n".join(summary.lines())
    assert "opposites by argmax: 4 distinct among 6 classes" in text and "components, largest" not in text


@pytest.mark.parametrize("breakage, words", [
    ("empty", "holds no images yet"),
    ("foreign", "not a classweep images file"),
    ("no-manifest", "no manifest.json"),
    ("metric", "unknown metric"),
])
def test_user_errors_are_one_line(tmp_path, breakage, words):
    store = str(tmp_path / "s")
    metric = "cosine"
    if breakage == "empty":
        write_store(store, NAMES, [], options=OPTIONS)
    elif breakage == "foreign":
        make_small_store(store)
        pd.DataFrame({"x": [1.0]}).to_parquet(os.path.join(store, "images", "part-zzz.parquet"))
    elif breakage == "no-manifest":
        make_small_store(store)
        os.remove(os.path.join(store, "manifest.json"))
    else:
        make_small_store(store)
        metric = "manhattan"
    with pytest.raises(StoreError) as err:
        analyze_store(store, metric=metric)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not os.path.exists(os.path.join(store, "analysis", "summary.json"))


def test_public_names():
    for name in analysis.__all__:
        assert hasattr(analysis, name)
    assert {"analyze_store", "write_figures", "StoreError", "classes_table", "opposites_table",
            "additions_table", "pca_tables"} <= set(analysis.__all__)


def test_rows_without_a_usable_output_are_left_out_with_a_note_for_each_reason(tmp_path):
    broken = Image("opposite", 0, np.full(6, np.nan), seed=1)
    outside = Image("opposite", -2, np.zeros(6), seed=1)              # no class -2
    store = write_store(str(tmp_path / "s"), NAMES, [*small_images(), broken, outside], options=OPTIONS)
    summary = analyze_store(store)
    assert "1 image left out: outputs that are not finite (NaN or inf)" in summary.lines()
    assert "1 image left out: class indices outside the model's 6 classes" in summary.lines()
    assert summary.images["opposite"] == 6


def test_the_summary_reads_the_same_after_summary_json_and_names_the_generating_model(small_store):
    """Figures audit #14: summary.json was written with sorted keys, so the report (which reads it) listed the
    scorers alphabetically (another scorer before the generating model) and the opposites' criteria in another
    order than the terminal; the generating model's scorer was not marked."""
    from handmade import write_scorer
    write_scorer(small_store)                     # "other.w" sorts before the generating "synthetic..." scorer
    summary = analyze_store(small_store)
    stored = AnalysisSummary.from_json(open(os.path.join(small_store, "analysis", "summary.json")).read())
    assert stored.lines() == summary.lines()
    scorers = [line for line in stored.lines() if line.startswith("scorer ")]
    assert len(scorers) == 2 and scorers[0].startswith(f"scorer {summary.generator} (the generating model), ")
    assert summary.generator.startswith("synthetic") and scorers[1].startswith("scorer other.w, ")


def test_stability_lines_judge_each_job_by_its_own_measure():
    """Figures audit #5: "stability (opposite, ...): target top-1 on 0.6%; settled as top-1: 0.0%" read as a
    failure, when an opposite minimises its class; an addition's top-1 = class a says little of it."""
    def row(job, top1, settled):
        return {"model": "m", "job": job, "octave": 1, "images": 4, "argmax_changes": 1.0, "change_rate": 0.25,
                "target_top1_share": top1, "settled_share": settled, "settled_step_median": None}
    summary = AnalysisSummary(store="s", metric="cosine", model="m", n_classes=6, fingerprint="f", images={},
                              coverage=[], complete=True, stability=[row("octave", 0.5, 0.75),
                                                                    row("opposite", 0.006, 0.0),
                                                                    row("addition", 0.43, 0.25)])
    octave, opposite, addition = [line for line in summary.lines() if line.startswith("stability")]
    assert octave == ("stability (octave, octave 1, 4 images): argmax changed between 25.0% of recorded steps; "
                      "target top-1 on 50.0%; settled as top-1: 75.0%")
    assert "the minimised class not top-1 on 99.4%" in opposite and "target top-1" not in opposite
    assert "settled" not in opposite
    assert "target top-1" not in addition and "43" not in addition and "both classes in the top 2" in addition


def test_a_pair_stored_in_both_orders_is_noted(tmp_path):
    """Regression audit: a store made before a pair was rendered once holds 1+2 and 2+1, the same image, which the
    additions tables count twice; the summary says so."""
    logits = np.array([0.0, 5.0, 4.0, 1.0])
    images = [Image("addition", a, logits, variant=v, partner=b) for a, b in ((1, 2), (2, 1), (1, 3))
              for v in ("merge", "juxtapose")]
    store = write_store(str(tmp_path / "s"), [f"c{i}" for i in range(4)], images)
    notes = [line for line in analyze_store(store).lines() if "other order" in line]
    assert notes == ["2 addition images repeat a pair given in the other order (B+A beside A+B, the same image; "
                     "stores made before a pair was rendered once): they count twice in the additions tables"]
    single = write_store(str(tmp_path / "t"), [f"c{i}" for i in range(4)], images[:2] + images[4:])
    assert not [line for line in analyze_store(single).lines() if "other order" in line]


def test_the_summary_says_one_component_in_the_singular():
    from analysis.analyze import AnalysisSummary
    summary = AnalysisSummary("s", "cosine", "digits", 10, "f", {"octave": 3}, [], True, classes=3, components=1,
                              largest_components=[4])
    assert "1 component, largest 4 classes; " in "\n".join(summary.lines())
    summary.components, summary.largest_components = 2, [4, 2]
    assert "2 components, largest 4, 2 classes; " in "\n".join(summary.lines())


def test_the_summary_counts_the_graph_classes_that_have_no_image(tmp_path):
    """Three classes with an image whose neighbours include a fourth class without one: the one component has four
    classes, and the summary says why."""
    images = [Image("octave", target, np.eye(4)[3 if target < 2 else 0] * 5) for target in range(3)]
    summary = analyze_store(write_store(str(tmp_path / "s"), [f"c{i}" for i in range(4)], images))
    assert summary.largest_components == [4] and summary.neighbours_only == 1
    assert ("largest 4 classes (counting 1 class with no octave image, there as another's neighbour); "
            in "\n".join(summary.lines()))


def test_the_summary_names_the_articles_first_opposite_criterion(small_store):
    """Faithfulness audit: the least activated output of each class image (the article's first, rejected opposite:
    "the opposites of many ImageNet categories tend to be only a few classes") is counted and said in words."""
    summary = analyze_store(small_store)
    assert summary.opposites["least"]["distinct"] == 3 and summary.opposites["least"]["classes"] == 6
    line, = [line for line in summary.lines() if line.startswith("opposites by least")]
    assert line.startswith("opposites by least (the class image's least activated output, the article's first "
                           "criterion): 3 distinct among 6 classes; mutual pairs 1"), line


def test_the_graph_is_taken_apart_by_halves_by_default(small_store):
    """The article graphs the two halves of ImageNet's classes apart and compares their components ("For the
    non-animal half of ImageNet, graphing nearest neighbors yields a component with more members than was observed
    for any animal component"): by default the analysis writes each half's components and says them in a line."""
    summary = analyze_store(small_store)
    assert summary.graph_ranges == "halves"
    assert json.load(open(os.path.join(small_store, "analysis", "summary.json")))["graph_ranges"] == "halves"
    ranges = _read(small_store, "graph_ranges")
    assert ranges.groupby("range", sort=False)["size"].max().to_dict() == {"0-2": 2, "3-5": 4}
    text = "\n".join(summary.lines())
    assert ("nearest-neighbour graph of classes 0-2: 3 classes with an image, 2 components, the largest has 2 "
            "members (next 2); counting 1 class outside the range, there as a neighbour; cliques of more than two "
            "classes: 0") in text
    assert ("nearest-neighbour graph of classes 3-5: 3 classes with an image, 1 component, the largest has 4 "
            "members; counting 1 class outside the range") in text
    assert _read(small_store, "graph_components")["members"].map(list).tolist() == [[2, 3, 4, 5], [0, 1]]  # kept


def test_graph_ranges_all_is_the_whole_graph_only_and_explicit_ranges_are_checked(small_store):
    analyze_store(small_store)
    summary = analyze_store(small_store, graph_ranges="all")
    assert summary.ranges == [] and not os.path.exists(os.path.join(small_store, "analysis", "graph_ranges.parquet"))
    assert not [line for line in summary.lines() if "graph of classes" in line]
    summary = analyze_store(small_store, graph_ranges="4-5, 0-0")
    assert summary.graph_ranges == "0-0,4-5" and _read(small_store, "graph_ranges")["range"].tolist() == [
        "0-0", "4-5"]
    assert "nearest-neighbour graph of classes 0-0: 1 class with an image, 1 component, the largest has 2 " \
           "members" in "\n".join(summary.lines())
    with pytest.raises(StoreError, match=r"^--graph-ranges '0-6': 0-6 goes past the last class, 5 \(the model has 6 "
                                         r"classes\)$"):
        analyze_store(small_store, graph_ranges="0-6")
    with pytest.raises(StoreError, match="0-3 and 3-5 overlap"):
        analyze_store(small_store, graph_ranges="0-3,3-5")
    assert _read(small_store, "graph_ranges")["range"].tolist() == ["0-0", "4-5"]   # refused before anything ran


def test_a_range_without_class_images_is_said_and_adds_no_row(tmp_path):
    store = make_small_store(tmp_path / "s", drop=tuple(key_of("octave", "", c, -1, 0) for c in (3, 4, 5)))
    summary = analyze_store(store)
    assert "nearest-neighbour graph of classes 3-5: no class with an octave image" in summary.lines()
    assert set(_read(store, "graph_ranges")["range"]) == {"0-2"}
    summary = analyze_store(store, graph_ranges="4-5")
    assert len(_read(store, "graph_ranges")) == 0 and summary.ranges[0]["classes"] == 0


def test_the_summarys_first_line_counts_one_image_as_one():
    from analysis.analyze import AnalysisSummary
    one = AnalysisSummary(store="s", metric="euclidean", model="digits", n_classes=10, fingerprint="f",
                          images={"octave": 1}, coverage=[], complete=False)
    assert one.lines()[0] == "store s: model digits, 10 classes; 1 octave image"
    two = AnalysisSummary(**{**one.__dict__, "images": {"octave": 1, "opposite": 1}})
    assert two.lines()[0].endswith("; 1 octave, 1 opposite images")
