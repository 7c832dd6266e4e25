"""write_figures: figures, index.html and a page per class, all relative and offline."""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import StoreError, analyze_store, write_figures
from analysis.synthetic import Image, write_store
from handmade import NAMES, OPTIONS, Report, copied, corrupt_png_column, make_small_store, small_images
from jobs.catalog import key_of as item_key


def html_text(html: str) -> str:
    """What a browser shows of an HTML fragment: its text, tags dropped and entities decoded."""
    import html as entities
    return entities.unescape(re.sub(r"<[^>]+>", "", html))


def _links(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"#]+)"', html)


# A report costs about half a second (its matplotlib figures): the tests that only read the first report of the
# hand-made store share one (`small_report`), and those that write a report again over it start from a copy of it.
@pytest.fixture(scope="module")
def small_report(tmp_path_factory) -> Report:
    """The hand-made store after its first `write_figures` (which analysed it first: no tables yet), with what it
    wrote on its stream (a log, not a terminal). Read only."""
    store = make_small_store(tmp_path_factory.mktemp("small-report") / "store")
    log = io.StringIO()
    return Report(store, write_figures(store, stream=log), log.getvalue())


@pytest.fixture
def small_store_with_report(small_report, tmp_path) -> str:
    """The test's own copy of `small_report`'s store, report included (as `write_figures(small_store)` left it)."""
    return copied(small_report.store, tmp_path / "store")


@pytest.fixture(scope="module")
def video_report(tmp_path_factory) -> Report:
    """The hand-made store with test_stability's snapshots of A and B, after `write_figures(trajectories=[A])`: a
    report with A's video (drawing it costs more than the rest of the report). Read only."""
    from sweep.store import TRAJECTORIES, Store
    from test_stability import A, B, trajectory_rows
    store = make_small_store(tmp_path_factory.mktemp("video-report") / "store")
    Store.open(store).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A, B)))
    return Report(store, write_figures(store, trajectories=[A]))


@pytest.fixture
def small_store_with_video(video_report, tmp_path) -> str:
    """The test's own copy of `video_report`'s store: the GIF's modification time is the one it was drawn at."""
    return copied(video_report.store, tmp_path / "store")


def test_report_written_with_a_page_per_class(small_report):
    small_store, index = small_report.store, small_report.index   # analysed first: no tables yet
    assert index == Path(small_store) / "figures" / "index.html"
    out = index.parent
    files = set(os.listdir(out))
    for name in ("contact-01.png", "pca.png", "pca.svg", "graph-0-2-01.png", "graph-3-5-01.svg", "opposites-01.png",
                 "additions-01.png"):   # the graph by halves of the class list, the article's (`--graph-ranges`)
        assert name in files, name
    assert os.path.exists(os.path.join(small_store, "analysis", "classes.parquet"))
    html = index.read_text()
    assert "store complete" in html and "Feature embedding skipped" in html
    for c in range(6):
        page = out / "classes" / f"{c:04d}.html"
        assert page.exists()
    # every link and image of every page points at a file that exists (relative paths only, no server)
    for page in [index, *sorted((out / "classes").iterdir())]:
        for link in _links(page.read_text()):
            assert "://" not in link
            assert (page.parent / link).resolve().exists(), (page, link)


def test_class_page_shows_opposite_neighbours_and_top5(small_report):
    out = small_report.out
    page = (out / "classes" / "0002.html").read_text()
    assert "<h1>2 cat</h1>" in page and "img/octave_-_2_-1_0.png" in page and "img/opposite_-_2_-1_0.png" in page
    assert re.search(r"labelled <a [^>]*>5 fox</a>", page)           # cat's opposite
    assert re.search(r"most activated other class.*dog", page)       # nearest neighbour
    assert page.count("<tr><td>") == 5                                # top-5 outputs
    assert "6.000" in page                                            # dog's logit on the cat image


def test_custom_out_folder_and_feature_scatter(small_store, tmp_path):
    analyze_store(small_store)
    features = pd.DataFrame({"key": [item_key("octave", "", c, -1, 0) for c in range(6)],
                             "target": np.arange(6, dtype=np.int32), "target_name": list(NAMES),
                             "layer": "block2", "map_0": np.linspace(0, 1, 6, dtype=np.float32),
                             "map_4": np.linspace(1, 0, 6, dtype=np.float32)})
    features.to_parquet(os.path.join(small_store, "analysis", "features.parquet"))
    index = write_figures(small_store, str(tmp_path / "report"))
    assert index.parent == tmp_path / "report"
    assert (tmp_path / "report" / "features-block2.svg").exists()
    svg = (tmp_path / "report" / "features-block2.svg").read_text()
    assert "block2 map 4" in svg and "fox" in svg
    assert "coloured by nearest-neighbour graph component" in index.read_text()   # as the PCA (figures audit #22)


def test_figures_follow_the_store_when_images_are_added(tmp_path):
    store = make_small_store(tmp_path / "s", drop=(item_key("octave", "", 5, -1, 0),))
    write_figures(store)
    assert not (tmp_path / "s" / "figures" / "classes" / "0005.html").exists()
    octave5 = [im for im in small_images() if im.job == "octave" and im.target == 5]
    write_store(str(tmp_path / "extra"), NAMES, octave5, options=OPTIONS)
    os.rename(tmp_path / "extra" / "images" / "part-000000.parquet", tmp_path / "s" / "images" / "part-late.parquet")
    write_figures(store)
    assert (tmp_path / "s" / "figures" / "classes" / "0005.html").exists()


def test_a_broken_png_shows_as_missing(tmp_path):
    images = small_images()
    images[0] = Image(images[0].job, images[0].target, images[0].logits, png=b"not a png")
    store = write_store(str(tmp_path / "s"), NAMES, images, options=OPTIONS)
    index = write_figures(store)
    page = (index.parent / "classes" / "0000.html").read_text()
    assert "[image unreadable]" in page
    for link in _links(page):
        assert (index.parent / "classes" / link).resolve().exists()


def test_figures_on_a_store_with_unreadable_png_column_fail_clearly(small_store):
    analyze_store(small_store)
    corrupt_png_column(small_store)
    with pytest.raises(StoreError):
        write_figures(small_store)


def test_figures_of_a_store_whose_images_were_removed_say_that_alone(small_store):
    """An analysed store whose images/ was emptied: `write_figures` said "the store's images are newer than the
    analysis: running `sweep analyze` first" before the analysis refused the store for holding no images."""
    analyze_store(small_store)
    for path in Path(small_store, "images").iterdir():
        path.unlink()
    stream = io.StringIO()
    with pytest.raises(StoreError, match="holds no images yet: run `sweep run` first"):
        write_figures(small_store, stream=stream)
    assert stream.getvalue() == "" and not Path(small_store, "figures").exists()


@pytest.mark.parametrize("table, again", [("classes", ""), ("features", " --features LAYER:MAPS")])
def test_figures_refuse_a_damaged_analysis_table_naming_it_and_the_command_that_writes_it(small_store, table,
                                                                                          again):
    """A damaged analysis/ table was pyarrow's "Could not open Parquet input source '<Buffer>'": no file named."""
    analyze_store(small_store)
    Path(small_store, "analysis", f"{table}.parquet").write_bytes(b"not parquet")
    with pytest.raises(StoreError) as refused:
        write_figures(small_store, stream=io.StringIO())
    assert str(refused.value).startswith(f"unreadable file {small_store}/analysis/{table}.parquet: ")
    assert str(refused.value).endswith(f"(`sweep analyze --store {small_store}{again}` writes it again)")


def test_stores_given_as_uris(small_store, tmp_path):
    uri = "file://" + small_store
    summary = analyze_store(uri)
    assert summary.classes == 6
    index = write_figures(uri, "file://" + str(tmp_path / "uri-report"))
    assert index == tmp_path / "uri-report" / "index.html" and index.exists()
    assert write_figures(uri).exists()   # default out: {store}/figures under the same URI
    assert os.path.exists(os.path.join(small_store, "figures", "index.html"))


def test_figures_rerun_the_analysis_when_a_table_is_missing(small_store):
    analyze_store(small_store, metric="euclidean")
    os.remove(os.path.join(small_store, "analysis", "classes.parquet"))
    write_figures(small_store)
    assert os.path.exists(os.path.join(small_store, "analysis", "classes.parquet"))
    assert "(euclidean)" in (Path(small_store) / "figures" / "classes" / "0001.html").read_text()


def test_a_new_report_replaces_the_old_one(small_store_with_report):
    small_store = small_store_with_report
    out = Path(small_store) / "figures"                     # the first report's folder
    (out / "contact-09.png").write_bytes(b"old page")        # as if an earlier, larger report had nine pages
    (out / "notes.txt").write_text("the user's own file")
    write_figures(small_store)
    assert not (out / "contact-09.png").exists() and (out / "contact-01.png").exists()
    assert (out / "notes.txt").exists()


def test_a_new_report_leaves_alone_the_users_files_whose_names_only_start_like_its_own(small_store_with_report):
    """Report hunt: every file whose name started with one of the report's prefixes was deleted as stale, so
    `--out` into a folder of one's own lost index.html.bak, graph-notes.txt or pca.md."""
    small_store = small_store_with_report
    out = Path(small_store) / "figures"                     # the first report's folder
    mine = ["index.html.bak", "graph-notes.txt", "pca.md", "contact-list.csv", "classes/notes.txt", "img/README",
            "trajectory-notes.txt", "additions-draft.png"]
    for name in mine:
        (out / name).write_text("the user's own file")
    (out / "classes" / "0042.html").write_text("a page of an earlier, larger report")
    (out / "img" / "octave_-_42_-1_0.png").write_bytes(b"an image of it")
    write_figures(small_store)
    assert all((out / name).exists() for name in mine)
    assert not (out / "classes" / "0042.html").exists() and not (out / "img" / "octave_-_42_-1_0.png").exists()


def test_a_store_without_octave_images_gets_its_opposites_and_additions_drawn(tmp_path):
    from analysis.report import NO_CLASSES
    store = make_small_store(tmp_path / "s", drop=tuple(item_key("octave", "", c, -1, 0) for c in range(6)))
    index = write_figures(store)
    names = set(os.listdir(index.parent))
    assert {"opposites-01.png", "additions-01.png"} <= names and not {"contact-01.png", "classes"} & names
    html = index.read_text()
    assert NO_CLASSES in html and all((index.parent / link).exists() for link in _links(html))


SCRIPT = "<script>alert(1)</script>"


def test_class_names_never_become_markup(tmp_path):
    names = (SCRIPT, *NAMES[1:])
    store = write_store(str(tmp_path / "s"), names, small_images(), options=OPTIONS)
    out = write_figures(store).parent
    pages = [out / "index.html", *sorted((out / "classes").iterdir())]
    for page in pages:
        assert SCRIPT not in page.read_text() and "<script" not in page.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (out / "classes" / "0000.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (out / "index.html").read_text()


def test_pages_are_offline_and_rendered_from_the_package_templates(small_report):
    from analysis.report import templates
    assert templates().autoescape("index.html")
    out = small_report.out
    for page in [out / "index.html", *(out / "classes").iterdir()]:
        text = page.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


@pytest.mark.parametrize("key", ["../../x", "/etc/passwd", "a/../../b", "..", "octave:-:2:-1:0/../../../y"])
def test_file_names_from_crafted_keys_stay_inside_the_figures_folder(tmp_path, key):
    from sweep.store import Store
    from analysis.report import _Writer
    writer = _Writer(Store.open(str(tmp_path / "figures")))
    name = writer.image_name(key)
    assert name.startswith("img/") and name.count("/") == 1 and ".." not in name.split("/")
    written = Path(writer.path(name))
    writer.bytes(name, b"x")
    writer.finish()
    assert written.exists() and (tmp_path / "figures") in written.resolve().parents
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [written]


@pytest.mark.parametrize("name", ["../x.png", "/tmp/x.png", "img/../../x.png"])
def test_the_writer_refuses_names_outside_its_folder(tmp_path, name):
    from sweep.store import Store
    from analysis.report import _Writer
    writer = _Writer(Store.open(str(tmp_path / "figures")))
    with pytest.raises(ValueError, match="outside"):
        writer.bytes(name, b"x")
    assert not list(tmp_path.rglob("*.png"))


def test_keys_with_the_same_safe_name_get_different_files(tmp_path):
    from sweep.store import Store
    from analysis.report import _Writer
    writer = _Writer(Store.open(str(tmp_path / "figures")))
    names = [writer.image_name(k) for k in ("a:b", "a_b", "a/b", "a:b", "A:b")]
    assert names[0] == "img/a_b.png" and names[3] == names[0]
    assert len({n.casefold() for n in names[:3] + names[4:]}) == 4   # A:b too: a Mac's disk folds case


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_figures_progress_is_plain_in_a_log_and_a_bar_on_a_terminal(small_report, small_store_with_report):
    log, terminal = small_report.log, _Terminal()                   # the first report's, written to a StringIO
    assert "\r" not in log and re.search(r"^\d+/\d+ steps \(100\.0%\)", log, re.M)
    write_figures(small_store_with_report, stream=terminal)
    last = terminal.getvalue().rstrip("\n").split("\r")[-1]
    assert "\r" in terminal.getvalue() and "100%|" in last and "ETA" in last
    assert "failed" not in log + terminal.getvalue()        # drawing has no items that fail: no "0 failed" shown


def test_stems_that_collide_after_sanitising_stay_distinct(tmp_path):
    from sweep.store import Store
    from analysis.report import _Writer, safe_name
    writer = _Writer(Store.open(str(tmp_path / "figures")))
    stems = [writer.unique_stem(f"features-{safe_name(layer)}", layer)
             for layer in ("a.b", "a/b", "a b", "../c", "A.b")]
    assert stems[0] == "features-a.b" and len({s.casefold() for s in stems}) == 5 and "/" not in "".join(stems)


def test_an_error_on_the_writing_thread_comes_out_of_finish(tmp_path):
    from sweep.store import Store
    from analysis.report import _Writer

    def broken() -> bytes:
        raise OSError("disk full")
    with _Writer(Store.open(str(tmp_path / "figures"))) as writer:
        writer.later("a.png", broken)
        with pytest.raises(OSError, match="disk full"):
            writer.finish()


def test_index_lists_the_classes_first_shows_grids_full_width_and_links_directions(small_store):
    """Issue 10 ("Smaller"): the class list before the grids, grid previews at the page's width (not 360 px), the
    figures of `sweep directions` linked; the figures folder keeps no temporary folder of the writes."""
    from analysis.directions import run_directions
    groups = Path(small_store) / "groups.csv"
    groups.write_text("class,group\n0,a\n1,a\n2,b\n3,b\n4,b\n")
    run_directions(small_store, str(groups), n_components=3, n_points=3)
    index = write_figures(small_store)
    html = index.read_text()
    assert html.index('id="classes"') < html.index('id="figures"') < html.index("contact-01.png")
    assert 'width="360"' not in html and re.search(r'<img class="fig" src="contact-01.png"', html)
    for name in ("directions-distribution.png", "directions-strip.png"):   # each previewed, as the other figures
        assert f'href="{name}"' in html and (index.parent / name).is_file()
        assert re.search(rf'<a href="{name}"><img class="fig" src="{name}"', html), name
    assert "Latent direction" in html
    assert not (index.parent / ".tmp").exists()
    write_figures(small_store)                                      # a new report keeps the directions' files
    assert (index.parent / "directions-strip.png").is_file()


def test_figures_analyse_again_a_store_analysed_by_an_older_classweep(small_store):
    """A summary without the current ANALYSIS_VERSION (here: one whose transfer numbers were top-1 shares for every
    job) is not shown as it is: the analysis runs again."""
    analyze_store(small_store)
    path = Path(small_store) / "analysis" / "summary.json"
    old = json.loads(path.read_text())
    del old["version"]
    old["transfer"] = {scorer: {"addition/merge": 0.4, "opposite percentile": 4.0} for scorer in old["transfer"]}
    path.write_text(json.dumps(old))
    html = write_figures(small_store).read_text()
    assert json.loads(path.read_text())["version"] >= 2 and "each job by its own measure" in html
    assert "opposite percentile" not in html


def test_figures_analyse_again_when_scores_are_newer_than_the_analysis_and_say_so(small_store):
    """Audit #6: after `sweep score`, `sweep figures` used the stale analysis (no transfer figure, no word)."""
    from handmade import write_scorer
    analyze_store(small_store)
    out = Path(small_store) / "figures"
    log = io.StringIO()
    write_figures(small_store, stream=log)
    assert "newer than the analysis" not in log.getvalue() and not (out / "transfer.png").exists()
    write_scorer(small_store)
    log = io.StringIO()
    html = write_figures(small_store, stream=log).read_text()
    first = log.getvalue().splitlines()[0]
    assert first == "the store's scores (`sweep score`) are newer than the analysis: running `sweep analyze " \
                    "--metric euclidean` first"
    assert (out / "transfer.png").exists() and "scorer other.w" in html
    log = io.StringIO()
    write_figures(small_store, stream=log)                     # current now: no second analysis
    assert "first" not in log.getvalue()
    write_scorer(small_store, part=1)                          # a resumed `sweep score` adds a part
    log = io.StringIO()
    write_figures(small_store, stream=log)
    assert "scores (`sweep score`) are newer" in log.getvalue()



def test_the_transfer_caption_says_an_interpolation_is_judged_by_class_b(tmp_path):
    """Report hunt: the caption said every job from photographs was judged by "the share with the target top-1", its
    figure's row "interpolate: top-1 = class b" (the interpolation ends at class b), and a dream has no target."""
    from handmade import write_scorer
    from test_image_figures import make_image_store
    store = make_image_store(tmp_path / "s")
    write_scorer(store)
    html = write_figures(store).read_text()
    caption = html_text(html[html.index("<h3>Transfer to other models</h3>"):].split("</p>")[0])
    assert "(an interpolation's final image: class b top-1)" in caption and "dreams, which have no target" in caption


def test_a_gallery_caption_shows_a_photographs_backticks_as_written(tmp_path):
    """Report hunt: an interpolation's caption names its classes and photograph, and went through the filter that
    shows a terminal line's `backticked` commands as code: a photograph named "my `best` shot.png" was captioned
    "my <code>best</code> shot.png"."""
    from test_image_figures import IMAGE_OPTIONS
    source = "my `best` shot.png"
    rows = [Image("interpolate", 0, np.array([9.0, 0, 0, 0, 0, 0]), partner=1, source=source, frame=0),
            Image("interpolate", 0, np.array([0, 9.0, 0, 0, 0, 0]), partner=1, source=source)]
    store = write_store(str(tmp_path / "s"), NAMES, rows, rows_per_file=5, options={
        **IMAGE_OPTIONS, "jobs": ["interpolate"], "sources": [source], "interpolate_pairs": [[0, 1]]})
    html = write_figures(store).read_text()
    assert "apple -&gt; bear from my `best` shot.png (seed 0)" in html and "<code>best</code>" not in html


def test_a_store_of_dreams_scored_by_another_model_draws_no_empty_transfer_figure(tmp_path):
    """Report hunt: dreams have no target, so no measure of success: the transfer figure of a store of dreams alone,
    scored by a second model, read "no scored images" (they were scored) under "Transfer to other models"."""
    from handmade import write_scorer
    from test_image_figures import make_image_store
    store = make_image_store(tmp_path / "s", jobs=("dream",))
    write_scorer(store)
    index = write_figures(store)
    assert "Transfer to other models" not in index.read_text() and not (index.parent / "transfer.png").exists()
    assert (index.parent / "dream-01.png").exists()


def test_analysing_again_keeps_the_earlier_margin_share(small_store):
    """`sweep analyze --metric cosine --margin-share 1` then, scores being newer, `sweep figures` analyses again with
    the same metric and share (not the defaults)."""
    from handmade import write_scorer
    summary = analyze_store(small_store, metric="cosine", margin_share=1.0)
    assert any(line.startswith("opposites by margin (among the lowest 100% of outputs)") for line in summary.lines())
    write_scorer(small_store)
    log = io.StringIO()
    write_figures(small_store, stream=log)
    assert "running `sweep analyze --metric cosine --margin-share 1` first" in log.getvalue()
    path = Path(small_store) / "analysis" / "summary.json"
    assert json.loads(path.read_text())["margin_share"] == 1.0
    with pytest.raises(StoreError, match="margin share must be in"):
        analyze_store(small_store, margin_share=0.0)


def test_analysing_again_keeps_the_earlier_graph_ranges_and_draws_a_figure_per_range(small_store_with_report):
    """`sweep analyze --graph-ranges 2-5,0-1` then, scores being newer, `sweep figures` analyses again with the same
    ranges (not the default halves) and draws a graph figure per range, titled with it, as the article draws one per
    half of ImageNet's classes; the earlier report's pages of the halves go, `all` draws the whole graph's again."""
    from handmade import write_scorer
    small_store = small_store_with_report
    out = Path(small_store) / "figures"
    assert {"graph-0-2-01.png", "graph-3-5-01.svg"} <= set(os.listdir(out))   # the default's, the halves
    analyze_store(small_store, graph_ranges="2-5,0-1")
    write_scorer(small_store)
    log = io.StringIO()
    html = write_figures(small_store, stream=log).read_text()
    assert "running `sweep analyze --metric euclidean --graph-ranges 0-1,2-5` first" in log.getvalue()
    assert json.loads((Path(small_store) / "analysis" / "summary.json").read_text())["graph_ranges"] == "0-1,2-5"
    graphs = sorted(name for name in os.listdir(out) if name.startswith("graph"))
    assert graphs == ["graph-0-1-01.png", "graph-0-1-01.svg", "graph-2-5-01.png", "graph-2-5-01.svg"]
    assert "<h3>Nearest-neighbour graph of classes 0-1</h3>" in html and 'src="graph-2-5-01.png"' in html
    assert "which may lie outside the range, drawn as a square" in html   # the key a narrow page's title leaves out
    assert "nearest-neighbour graph of classes 2-5: 4 classes with an image, 1 component" in html
    svg = (out / "graph-2-5-01.svg").read_text()
    assert "classes 2-5" in svg
    analyze_store(small_store, graph_ranges="all")
    write_figures(small_store)
    assert sorted(name for name in os.listdir(out) if name.startswith("graph")) == [
        "graph-01.png", "graph-01.svg", "graph-02.png", "graph-02.svg"]   # today's pages, of the whole graph


def test_ranges_none_of_whose_classes_has_an_image_leave_the_whole_graphs_pages(small_store_with_report):
    """A range's graph holds its classes' edges only: ranges in which no class has an image drew no graph figure at
    all (the review's `--graph-ranges 4-5` on a store of classes 0-2). The report then draws the whole graph."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    small_store = small_store_with_report
    table = Path(small_store) / "analysis" / "graph_ranges.parquet"
    pq.write_table(pa.Table.from_pandas(pd.read_parquet(table).iloc[:0], preserve_index=False), table)
    html = write_figures(small_store).read_text()
    graphs = sorted(name for name in os.listdir(Path(small_store) / "figures") if name.startswith("graph"))
    assert graphs == ["graph-01.png", "graph-01.svg", "graph-02.png", "graph-02.svg"]
    assert "<h3>Nearest-neighbour graph</h3>" in html


def test_a_feature_scatter_computed_before_some_class_images_says_how_many_it_lacks(small_store, tmp_path):
    """Report hunt: features.parquet is written by `sweep analyze --features` alone and kept when the store gains
    images; the scatter then left out the newer class images while its caption said "Each class image placed"."""
    analyze_store(small_store)
    keys = [item_key("octave", "", c, -1, 0) for c in range(4)]   # classes 4 and 5 came later
    pd.DataFrame({"key": keys, "target": np.arange(4, dtype=np.int32), "target_name": list(NAMES[:4]),
                  "layer": "block2", "map_0": np.linspace(0, 1, 4, dtype=np.float32),
                  "map_4": np.linspace(1, 0, 4, dtype=np.float32)}).to_parquet(
        os.path.join(small_store, "analysis", "features.parquet"))
    text = html_text(write_figures(small_store, str(tmp_path / "report")).read_text())
    assert ("2 of the 6 class images are not in analysis/features.parquet (computed before them) and not drawn: "
            "sweep analyze --features block2:MAPS computes it again.") in text


def _graph_line(page: Path) -> str:
    return " ".join(re.search(r"<li>graph component.*?</li>", page.read_text(), re.S)[0].split())


def test_a_class_page_names_its_component_as_the_graph_figure_drawing_it_does_and_links_its_page(
        small_report, small_store_with_report):
    """Report hunt: the graph figures of the default halves number each range's components apart (graph-0-2-01.png:
    component 0 is {0, 1}, component 1 is {2, 3}), but class 2's page said only "graph component 0 (4 classes)", the
    whole graph's number, which no figure drew: a reader looking for component 0 found classes 0 and 1."""
    pages = small_report.out / "classes"
    assert _graph_line(pages / "0002.html") == (
        '<li>graph component 0 (4 classes) of the whole graph; in the graph of classes 0-2: component 1 (2 classes), '
        'drawn on <a href="../graph-0-2-01.png">graph-0-2-01.png</a></li>')
    assert "in the graph of classes 0-2: component 0 (2 classes)" in _graph_line(pages / "0000.html")
    assert 'classes 3-5: component 0 (4 classes), drawn on <a href="../graph-3-5-01.png">' in _graph_line(
        pages / "0005.html")
    analyze_store(small_store_with_report, graph_ranges="all")   # the whole graph's pages: its own numbers
    pages = write_figures(small_store_with_report).parent / "classes"
    assert _graph_line(pages / "0002.html") == (
        '<li>graph component 0 (4 classes), drawn on <a href="../graph-01.png">graph-01.png</a></li>')
    assert _graph_line(pages / "0000.html") == (
        '<li>graph component 1 (2 classes), drawn on <a href="../graph-02.png">graph-02.png</a></li>')


def test_trajectory_videos_stay_until_dropped(small_store_with_video):
    """Audit #9: a plain `sweep figures` after `--trajectories KEY` removed the GIF and the class page's Generation
    section. Earlier videos stay linked; a key given again is drawn anew; keep_trajectories=False removes them."""
    from test_stability import A, B
    small_store = small_store_with_video                               # snapshots of A and B; A's video drawn
    out = Path(small_store) / "figures"
    gif_a, gif_b = (out / f"trajectory-{key.replace(':', '_')}.gif" for key in (A, B))
    page_a, page_b = out / "classes" / "0003.html", out / "classes" / "0005.html"

    drawn = gif_a.stat().st_mtime_ns
    assert "<h2>Generation</h2>" in page_a.read_text() and f"../{gif_a.name}" in page_a.read_text()
    write_figures(small_store)                                         # e.g. after `sweep analyze`
    assert gif_a.stat().st_mtime_ns == drawn                           # kept, not drawn again
    assert "<h2>Generation</h2>" in page_a.read_text() and f"../{gif_a.name}" in page_a.read_text()
    write_figures(small_store, trajectories=[B])                       # another key: both stay
    assert gif_a.exists() and f"../{gif_b.name}" in page_b.read_text() and f"../{gif_a.name}" in page_a.read_text()
    write_figures(small_store, keep_trajectories=False)
    assert not gif_a.exists() and not gif_b.exists() and "Generation" not in page_a.read_text()
    assert not (out / "trajectory-videos.json").exists()


def test_videos_of_a_report_made_before_the_video_list_are_drawn_again_not_dropped(small_store_with_video):
    """A regression walk-through: the first `sweep figures` of this version deleted the trajectory GIFs an older one
    had made (their folder has no trajectory-videos.json). They are recognised by name and drawn again."""
    from test_stability import A, B
    small_store = small_store_with_video                               # snapshots of A and B; A's video drawn
    out = Path(small_store) / "figures"
    gif_a, gif_b = (out / f"trajectory-{key.replace(':', '_')}.gif" for key in (A, B))
    (out / "trajectory-videos.json").unlink()                          # as an older report left the folder
    gif_a.write_bytes(b"GIF89a from an older report")
    write_figures(small_store)
    assert gif_a.read_bytes()[:6] == b"GIF89a" and gif_a.read_bytes() != b"GIF89a from an older report"   # redrawn
    assert f"../{gif_a.name}" in (out / "classes" / "0003.html").read_text() and not gif_b.exists()
    assert (out / "trajectory-videos.json").exists()


def test_a_kept_video_list_that_is_broken_or_points_outside_is_ignored(small_store_with_report):
    small_store = small_store_with_report
    out = Path(small_store) / "figures"                     # the first report's folder
    outside = out.parent / "outside.gif"
    outside.write_bytes(b"GIF89a")
    (out / "trajectory-videos.json").write_text(
        '[{"key": "k", "target": 0, "gif": "../outside.gif", "mp4": null, "steps": "steps 0-1"}]')
    html = write_figures(small_store).read_text() + (out / "classes" / "0000.html").read_text()
    assert "outside.gif" not in html and outside.exists()
    (out / "trajectory-videos.json").write_text("not json")
    assert write_figures(small_store).exists()


def test_a_key_without_snapshots_is_answered_with_keys_that_have_some(small_store, monkeypatch, capsys):
    """Audit #7: the error pointed to `sweep status`, which lists no keys. It names keys with snapshots now, and
    past SHOWN_KEYS of them, a command that lists them all (which works: run here)."""
    import pyarrow as pa
    from analysis import report
    from sweep.store import TRAJECTORIES, Store
    from test_stability import A, B, trajectory_rows
    st = Store.open(small_store)
    with pytest.raises(StoreError, match=r"no snapshots of octave:-:9:-1:0: .* recorded no trajectories"):
        write_figures(small_store, trajectories=["octave:-:9:-1:0"])
    steps = trajectory_rows(keys=(A, B))
    st.write_table(f"{TRAJECTORIES}/part-1.parquet", steps.set_column(
        steps.schema.get_field_index("png"), "png", pa.nulls(len(steps), pa.binary())))   # every:N alone
    with pytest.raises(StoreError, match="holds no snapshots, only steps"):
        write_figures(small_store, trajectories=["octave:-:9:-1:0"])
    st.write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A, B)))
    with pytest.raises(StoreError) as error:
        write_figures(small_store, trajectories=["octave:-:9:-1:0"])
    assert str(error.value).endswith(f"keys with snapshots: {A}, {B}") and "\n" not in str(error.value)
    assert not (Path(small_store) / "figures").exists()
    monkeypatch.setattr(report, "SHOWN_KEYS", 1)
    with pytest.raises(StoreError) as error:
        write_figures(small_store, trajectories=["octave:-:9:-1:0"])
    message = str(error.value)
    assert f"keys with snapshots: {A}, ... (2 in all; list them with python -c" in message
    exec(re.search(r'python -c "([^"]+)"', message).group(1), {})       # the command it gives lists both
    assert capsys.readouterr().out.split() == [A, B]


def test_commands_in_backticks_show_as_code_in_the_pages(small_store):
    """Audit nit: the HTML showed Markdown backticks literally ("run `sweep analyze --features LAYER:0,4`")."""
    from analysis.directions import run_directions
    from analysis.report import inline_code
    from handmade import write_scorer
    write_scorer(small_store)                                          # the transfer caption names `sweep score`
    groups = Path(small_store) / "groups.csv"
    groups.write_text("class,group\n0,a\n1,a\n2,b\n3,b\n4,b\n")
    run_directions(small_store, str(groups), n_components=3, n_points=3)   # its caption names `sweep directions`
    out = write_figures(small_store).parent
    html = (out / "index.html").read_text()
    assert "<code>sweep analyze --features LAYER:0,4</code>" in html and "<code>sweep score</code>" in html
    assert "<code>sweep directions</code>" in html
    for page in [out / "index.html", *(out / "classes").iterdir()]:
        assert "`" not in page.read_text(), page
    assert str(inline_code("run `<b>` & `x`")) == "run <code>&lt;b&gt;</code> &amp; <code>x</code>"
    assert str(inline_code("an odd ` <i>")) == "an odd ` &lt;i&gt;"


def test_keys_with_snapshots_are_named_octave_first_then_by_class():
    import pyarrow as pa
    from analysis.report import snapshot_keys
    table = pa.table({"key": ["addition:merge:0:1:0", "octave:-:10:-1:0", "octave:-:2:-1:0", "octave:-:2:-1:0",
                              "dream:x:-1:-1:0", "opposite:-:1:-1:0", "octave:-:4:-1:0"],
                      "job": ["addition", "octave", "octave", "octave", "dream", "opposite", "octave"],
                      "target": pa.array([0, 10, 2, 2, None, 1, 4], pa.int32()),
                      "png": [b"p", b"p", None, b"p", b"p", b"p", None]})   # octave 4: steps only
    assert snapshot_keys(table) == ["octave:-:2:-1:0", "octave:-:10:-1:0", "opposite:-:1:-1:0",
                                    "addition:merge:0:1:0", "dream:x:-1:-1:0"]


# ---- trajectory videos: the MP4 beside the GIF (matplotlib's ffmpeg writer) -------------------------------------

def _frames(count: int = 3) -> list[np.ndarray]:
    """`count` frames of 64 x 48 px (48 x 64 x 3 pixels), each a different grey."""
    return [np.full((48, 64, 3), round(255 * (0.2 + 0.3 * k)), np.uint8) for k in range(count)]


def _top_level_boxes(data: bytes) -> list[bytes]:
    """The types of an ISO media file's top-level boxes, in order (each box: a 4-byte big-endian size, the type;
    size 1: a 64-bit size follows)."""
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        assert size >= 8 and at + size <= len(data), (kind, size, at, len(data))
        boxes.append(kind)
        at += size
    assert at == len(data)
    return boxes


def test_no_mp4_without_an_ffmpeg_encoder_or_without_frames(monkeypatch):
    from matplotlib import animation
    from analysis.report import mp4_bytes
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    assert mp4_bytes(_frames(1)) is None
    monkeypatch.setattr(animation.writers, "is_available", lambda name: True)
    assert mp4_bytes([]) is None


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="MP4 trajectory videos need ffmpeg on PATH")
def test_trajectory_frames_become_an_mp4_of_as_many_frames(tmp_path):
    from analysis.report import mp4_bytes
    video = mp4_bytes(_frames(3))
    assert video[4:8] == b"ftyp" and video[8:12] in (b"isom", b"mp42", b"iso5", b"iso6")   # major brand
    assert {b"ftyp", b"moov", b"mdat"} <= set(_top_level_boxes(video))
    path = tmp_path / "video.mp4"
    path.write_bytes(video)
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "framemd5", "-"], capture_output=True,
                             text=True, timeout=120)
    assert decoded.returncode == 0, decoded.stderr
    assert len([line for line in decoded.stdout.splitlines() if line and not line.startswith("#")]) == 3


class _NoEncoder:
    """Stands for matplotlib's FFMpegWriter where no ffmpeg is needed: grabs nothing, writes a placeholder file."""

    def __init__(self, fps: float) -> None:
        pass

    @contextlib.contextmanager
    def saving(self, figure, path: str, dpi: float):
        yield self
        Path(path).write_bytes(b"mp4")

    def grab_frame(self) -> None:
        pass


def test_each_trajectory_frame_is_drawn_once_for_the_gif_and_the_mp4(small_store, monkeypatch):
    """Profiling audit: with an ffmpeg encoder each frame was drawn on the Agg canvas twice, for the GIF and again for
    the MP4. It is drawn once; both videos are made from its pixels."""
    from matplotlib import animation
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import analysis.figures as fig
    from sweep.store import TRAJECTORIES, Store
    from test_stability import A, B, trajectory_rows
    Store.open(small_store).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A, B)))
    monkeypatch.setattr(animation.writers, "is_available", lambda name: True)
    monkeypatch.setattr(animation, "FFMpegWriter", _NoEncoder)
    frames, drawn = [], []   # the Figures drawn, kept (an id is reused once its Figure is gone)
    trajectory_frames, draw = fig.trajectory_frames, FigureCanvasAgg.draw
    monkeypatch.setattr(fig, "trajectory_frames", lambda *a, **k: (
        made := list(trajectory_frames(*a, **k)), frames.extend(made))[0])
    monkeypatch.setattr(FigureCanvasAgg, "draw", lambda canvas, *a, **k: (
        drawn.append(canvas.figure), draw(canvas, *a, **k))[1])
    out = write_figures(small_store, trajectories=[A, B]).parent
    assert len(frames) >= 2 and (out / f"trajectory-{A.replace(':', '_')}.mp4").read_bytes() == b"mp4"
    assert [sum(figure is frame for figure in drawn) for frame in frames] == [1] * len(frames)


def test_a_mislabelled_class_image_shows_its_class_probability_and_the_labels_own(tmp_path):
    """Figures audit #1: "labelled dog, p = 0.000" read as "dog with p 0", when p was the class's (cat's) and the
    label's own probability was near 1. Audit #18: the spaces before "(mutual)" and "(distance" were eaten."""
    import scipy.special
    images = small_images()
    wrong = [0, 0, -3, 12, 2, 0]                        # cat's class image, read as a dog
    images[2] = Image("octave", 2, np.array(wrong, float), png=images[2].png)
    store = write_store(str(tmp_path / "s"), NAMES, images, options=OPTIONS)
    out = write_figures(store).parent
    p_cat, p_dog = scipy.special.softmax(wrong)[[2, 3]]
    page = (out / "classes" / "0002.html").read_text()
    assert re.search(rf"p\(class\) = {p_cat:.3f};\s*labelled <span class=\"bad\">dog</span> \(p = {p_dog:.3f}\)",
                     page)
    index = (out / "index.html").read_text()
    assert "<th>p(class)</th><th>label</th>" in index
    assert re.search(rf"<td>{p_cat:.3f}</td>\s*<td class=\"bad\">dog \(p = {p_dog:.3f}\)</td>", index)
    right = (out / "classes" / "0000.html").read_text()        # a correct label: no second probability
    assert re.search(r'labelled <span class="good">apple</span></figcaption>', right)
    assert re.search(r"</a> \((not )?mutual\)</figcaption>", right) and re.search(r"</a> \(distance", right)


def test_index_figures_are_never_enlarged_and_strips_keep_their_width(small_report):
    """Figures audit #13: `img.fig{width:100%}` stretched a 697-px figure to the page; the strips were fixed at
    720 px, shrinking their numbers."""
    html = small_report.index.read_text()
    assert "img.fig{max-width:100%;height:auto}" in html and "width:100%" not in html.replace("max-width:100%", "")
    assert 'width="720"' not in html


def test_tables_name_the_real_store_and_link_every_file_under_analysis(small_store, tmp_path):
    """Figures audit #17: the Tables list printed a literal `{store}`, called graph.graphml a Parquet file, and
    left out features.parquet (written by `sweep analyze --features`, not in the summary's list)."""
    analyze_store(small_store)
    pd.DataFrame({"key": ["x"]}).to_parquet(os.path.join(small_store, "analysis", "features.parquet"))
    html = write_figures(small_store).read_text()
    tables = html[html.index('id="tables"'):]
    assert "{store}" not in tables and f"<code>{small_store}/analysis/</code>" in tables
    parquet, other = tables.split("other files")
    assert "graph.graphml" not in parquet and "graph.graphml" in other and "summary.json" in other
    for name in ("classes.parquet", "features.parquet", "graph.graphml"):
        assert f'href="../analysis/{name}"' in tables                 # {store}/figures: linked (the links resolve:
    html = write_figures(small_store, str(tmp_path / "elsewhere")).read_text()   # see the first test)
    assert "features.parquet" in html and 'href="../analysis/' not in html   # elsewhere: named, not linked


def test_a_file_of_the_analysis_folder_with_a_url_character_in_its_name_is_linked_by_its_encoded_name(small_store):
    """The Tables list links every file under {store}/analysis/ by name: `notes #1.txt` was linked as written, and
    a browser took `#1.txt` for a fragment (a broken link)."""
    analyze_store(small_store)
    with open(os.path.join(small_store, "analysis", "notes #1.txt"), "w") as handle:
        handle.write("mine")
    tables = write_figures(small_store).read_text().split('id="tables"')[1]
    assert 'href="../analysis/notes%20%231.txt">notes #1.txt</a>' in tables


def test_source_photographs_are_shown_as_each_job_fitted_them(tmp_path, monkeypatch):
    """Figures audit #12: a crop schedule's network saw the photograph's central square, but the grids showed the
    whole wide photograph. Each job's thumbnail follows its schedule's `source_fit` (the manifest's record)."""
    from PIL import Image as PILImage

    from analysis import figures
    from sweep.store import Store
    from test_image_figures import SOURCE, make_image_store
    from analysis.synthetic import png_bytes
    store = make_image_store(tmp_path / "s")
    photo = np.zeros((30, 60, 3), np.uint8)
    photo[:, :15] = (255, 0, 0)                     # a red strip on the left: outside the central square
    (tmp_path / "s" / "sources" / f"{SOURCE}.png").write_bytes(png_bytes(photo))
    st = Store.open(store)
    manifest = st.read_manifest()
    manifest["job_schedules"] = {"transfigure": {"schedule": "c", "schedule_id": "C", "input": "raw"},
                                 "interpolate": {"schedule": "q", "schedule_id": "Q", "input": "raw"}}
    manifest["schedule_contents"] = {"C": {"name": "c", "source_fit": "crop"},
                                     "Q": {"name": "q", "source_fit": "squash"}}
    st.write_manifest(manifest)
    shown = {}
    grid, strip = figures.source_grid, figures.interpolation_strip
    monkeypatch.setattr(figures, "source_grid", lambda job, part, sources, *a, **k: (
        shown.setdefault(job, sources[SOURCE]), grid(job, part, sources, *a, **k))[1])
    monkeypatch.setattr(figures, "interpolation_strip", lambda rows, values, source, *a: (
        shown.setdefault("interpolate", source), strip(rows, values, source, *a))[1])
    write_figures(store)

    def red_share(image) -> float:
        pixels = np.asarray(image.convert("RGB"), float)
        return float(((pixels[..., 0] > 128) & (pixels[..., 1] < 100)).mean())
    crop, squash, plain = shown["transfigure"], shown["interpolate"], shown["dream"]
    assert crop.width == crop.height and red_share(crop) == 0                  # the central square only
    assert squash.width == squash.height and 0.2 < red_share(squash) < 0.3    # the whole photograph, squashed
    assert plain.width == 2 * plain.height                                     # not recorded: as it is
    out = Path(store) / "figures"                 # the class page shows the photograph as each job fitted it too
    page = (out / "classes" / "0002.html").read_text()
    beside = {job: PILImage.open(out / re.search(rf'src="../(img/source_[^"]+)"[^>]*>\s*<img class="px" '
                                                 rf'src="../img/{job}_', page).group(1)) for job in ("transfigure",
                                                                                                  "directed-dream")}
    assert beside["transfigure"].size == (30, 30) and red_share(beside["transfigure"]) == 0
    assert beside["directed-dream"].size == (60, 30)                          # not recorded: as it is


def test_the_tables_section_describes_only_the_files_there(small_report, tmp_path):
    """Regression audit: it described graph.graphml for a store whose analysis has none (no class images)."""
    html = small_report.index.read_text()
    assert "graph.graphml: the nearest-neighbour graph as GraphML" in html
    store = make_small_store(tmp_path / "s", drop=tuple(item_key("octave", "", c, -1, 0) for c in range(6)))
    html = write_figures(store).read_text()
    assert "graph.graphml" not in html and "summary.json: the Summary" in html


def test_a_video_drawn_by_an_older_version_is_drawn_again(small_store_with_video):
    """Videos are kept as drawn; one an older classweep drew (before an addition's partner was marked) is redrawn."""
    from analysis.report import VIDEO_VERSION, VIDEOS_FILE
    small_store = small_store_with_video                               # A's video drawn by this version
    out = Path(small_store) / "figures"
    listed = json.loads((out / VIDEOS_FILE).read_text())
    assert [v["version"] for v in listed] == [VIDEO_VERSION]
    gif = out / listed[0]["gif"]
    drawn = gif.stat().st_mtime_ns
    write_figures(small_store)
    assert gif.stat().st_mtime_ns == drawn                              # current: kept as it is
    (out / VIDEOS_FILE).write_text(json.dumps([{k: v for k, v in listed[0].items() if k != "version"}]))
    os.utime(gif, ns=(drawn - 10**9, drawn - 10**9))
    write_figures(small_store)
    assert gif.stat().st_mtime_ns > drawn - 10**9 and gif.exists()      # drawn again
    assert [v["version"] for v in json.loads((out / VIDEOS_FILE).read_text())] == [VIDEO_VERSION]


def test_a_class_page_without_another_class_image_says_so_not_distance_nan(tmp_path):
    """Report hunt: a store with one class image said "nearest in output space (euclidean): none (distance nan)",
    and a component of one class "(1 classes)"."""
    store = write_store(str(tmp_path / "s"), ("solo",), [Image("octave", 0, np.array([3.0]))],
                        options={**OPTIONS, "jobs": ["octave"], "classes": [0], "pairs": []})
    page = (write_figures(store).parent / "classes" / "0000.html").read_text()
    assert "nan" not in page
    assert "nearest in output space (euclidean): none (no other class image)</li>" in page
    assert "graph component 0 (1 class)" in page and "classes)" not in page


def test_a_class_page_names_the_class_that_got_into_a_failed_addition(small_report):
    """Figures audit #2 on the class pages: a failed addition said "labelled <one of the pair>"."""
    page = (small_report.out / "classes" / "0002.html").read_text()
    assert f"{NAMES[4]}</a> got in at #1" in page   # 2+3 merge: class 4 stands first, 3 second, 2 third
    assert "labelled" not in page.split("Additions with this class")[1]


def test_an_addition_video_is_linked_from_both_classes_pages(small_store):
    """A merge's trajectory video was linked from class a's page only: class b's page links it too, each page naming
    the other class; a video list from before partners were recorded gets them from the store."""
    from analysis.report import VIDEOS_FILE
    from sweep.store import TRAJECTORIES, Store
    from test_image_figures import _recorded
    key = item_key("addition", "merge", 0, 1, 0)
    Store.open(small_store).write_table(f"{TRAJECTORIES}/part-1.parquet", _recorded(key, [0], job="addition",
                                                                                    target=0))
    out = Path(small_store) / "figures"
    gif = f"trajectory-{key.replace(':', '_')}.gif"
    pages = [out / "classes" / f"{c:04d}.html" for c in range(len(NAMES))]

    def linking() -> list[int]:
        return [c for c, page in enumerate(pages) if f'src="../{gif}"' in page.read_text()]
    write_figures(small_store, trajectories=[key])
    assert linking() == [0, 1] and gif not in (out / "index.html").read_text()
    assert f'{key} (with <a href="../classes/0001.html">1 bear</a>)' in pages[0].read_text()
    assert f'{key} (with <a href="../classes/0000.html">0 apple</a>)' in pages[1].read_text()
    listed = json.loads((out / VIDEOS_FILE).read_text())
    assert [(v["target"], v["partner"]) for v in listed] == [(0, 1)]
    (out / VIDEOS_FILE).write_text(json.dumps([{k: v for k, v in listed[0].items() if k != "partner"}]))
    write_figures(small_store)                                          # kept, its partner read from the store
    assert linking() == [0, 1] and json.loads((out / VIDEOS_FILE).read_text())[0]["partner"] == 1


def test_a_videos_caption_names_the_classes_it_marks_as_its_job_has_them(tmp_path):
    """Report hunt: every class page's video said "(target in red, an addition's partner in blue)", an
    interpolation's too, which marks its class a and class b (its legend said "target" and "partner"); the index's
    said "(target in red)" whatever it marked."""
    from sweep.store import TRAJECTORIES, Store
    from test_image_figures import SOURCE, _recorded, make_image_store
    store = make_image_store(tmp_path / "s", jobs=("octave", "interpolate"),
                             drop=tuple(item_key("octave", "", c, -1, 0) for c in range(1, 6)))   # 0's page alone
    octave, interpolation = item_key("octave", "", 0, -1, 0), item_key("interpolate", "", 0, 1, 0, SOURCE)
    Store.open(store).write_table(f"{TRAJECTORIES}/part-1.parquet", _recorded(octave, [0], target=0))
    Store.open(store).write_table(f"{TRAJECTORIES}/part-2.parquet", _recorded(interpolation, [0], job="interpolate",
                                                                              target=0))
    page = html_text((write_figures(store, trajectories=[octave, interpolation]).parent / "classes" / "0000.html"
                      ).read_text())
    assert "every class's output (target in red), steps 0-" in page
    assert "every class's output (class a in red, class b in blue), steps 0-" in page
    assert "partner" not in page


def test_an_interpolation_videos_legend_and_index_caption_name_class_a_and_class_b():
    from analysis import figures as fig
    from test_figures import _snapshots
    frame, = fig.trajectory_frames(_snapshots("interpolate:-:2:9:0:photo.png", 9, np.arange(10.0), partner=9),
                                   [f"digit {i}" for i in range(10)])
    legend, = frame.legends
    assert [t.get_text() for t in legend.get_texts()] == ["class a: digit 2", "class b: digit 9"]
    from analysis.report import _video_figure   # on the index, when neither class has a page
    video = {"key": "interpolate:-:2:9:0:photo.png", "partner": 9, "gif": "t.gif", "mp4": None, "steps": "steps 0-4"}
    assert "(class a in red, class b in blue), steps 0-4." in _video_figure(video).caption


def test_an_opposites_video_marks_its_minimised_class_and_its_argmax_on_it_as_a_failure():
    """Report hunt: an opposite's video called its minimised class "target" and drew "argmax: <that class>" in
    green, the colour of success, when the opposite had failed to push it down."""
    from matplotlib.colors import to_hex

    from analysis import drawing
    from analysis import figures as fig
    from analysis.report import video_colours
    from test_figures import _snapshots
    names = [f"digit {i}" for i in range(10)]
    failed, = fig.trajectory_frames(_snapshots("opposite:-:2:-1:0", 2, np.arange(10.0)), names)
    legend, = failed.legends
    assert [t.get_text() for t in legend.get_texts()] == ["minimised class: digit 2"]
    assert to_hex(failed.axes[1].title.get_color()) == drawing.BAD
    pushed_down, = fig.trajectory_frames(_snapshots("opposite:-:2:-1:0", 7, np.arange(10.0)), names)
    assert to_hex(pushed_down.axes[1].title.get_color()) == drawing.INK
    assert video_colours({"key": "opposite:-:2:-1:0", "partner": None}) == " (minimised class in red)"


def test_a_dreams_video_caption_marks_no_class():
    """Report hunt: a dream's video (on the index: a dream has no class page) was captioned "(target in red)"; a
    dream has no target and its video marks no class."""
    from analysis.report import _video_figure
    video = {"key": "dream:block2:-1:-1:0:photo.png", "partner": None, "gif": "t.gif", "mp4": None,
             "steps": "steps 0-4"}
    assert _video_figure(video).caption == ("The image at each recorded snapshot beside every class's output, "
                                            "steps 0-4.")


def test_a_report_reads_the_video_list_once(small_store_with_video, monkeypatch):
    """The list was read twice per report (for the videos to draw again, then for the ones to keep)."""
    from analysis.report import VIDEOS_FILE
    from sweep.store import Store
    from test_stability import A
    small_store = small_store_with_video                               # A's video drawn and listed
    reads = []
    read_bytes = Store.read_bytes
    monkeypatch.setattr(Store, "read_bytes", lambda self, name, *a, **k: (
        reads.append(name) if name == VIDEOS_FILE else None, read_bytes(self, name, *a, **k))[1])
    write_figures(small_store)
    assert reads == [VIDEOS_FILE]
    page = (Path(small_store) / "figures" / "classes" / "0003.html").read_text()
    assert f"trajectory-{A.replace(':', '_')}.gif" in page                       # the kept video, linked as before


def test_the_video_list_writes_no_partner_as_the_store_does_and_reads_older_lists(small_store):
    """The list wrote `partner: -1` where the store's column holds null. It writes null now; a list of an older
    classweep, with -1 for none or without partners at all (taken from the store then), is read as before."""
    from analysis.report import VIDEOS_FILE
    from sweep.store import TRAJECTORIES, Store
    from test_image_figures import _recorded
    from test_stability import A, trajectory_rows
    added = item_key("addition", "merge", 0, 1, 0)
    st = Store.open(small_store)
    st.write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A,)))
    st.write_table(f"{TRAJECTORIES}/part-2.parquet", _recorded(added, [0], job="addition", target=0))
    out = Path(small_store) / "figures"
    write_figures(small_store, trajectories=[A, added])
    listed = {v["key"]: v for v in json.loads((out / VIDEOS_FILE).read_text())}
    assert listed[A]["partner"] is None and listed[added]["partner"] == 1
    older = [{**listed[A], "partner": -1}, {k: v for k, v in listed[added].items() if k != "partner"}]
    (out / VIDEOS_FILE).write_text(json.dumps(older))
    write_figures(small_store)                                   # kept: -1 read as none, the missing one from the store
    assert {v["key"]: v["partner"] for v in json.loads((out / VIDEOS_FILE).read_text())} == {A: None, added: 1}
    page_3, page_1 = (out / "classes" / f"{c:04d}.html" for c in (3, 1))
    assert f"{A}: the image" in page_3.read_text() and f"{A} (with" not in page_3.read_text()
    assert f'{added} (with <a href="../classes/0000.html">0 apple</a>)' in page_1.read_text()


def test_an_addition_video_names_a_digit_partner_once(tmp_path):
    """On the demo model a video caption read "(with 2 digit 2)": the partner's number and its name, which says it."""
    from sweep.store import TRAJECTORIES, Store
    from test_image_figures import _recorded
    digits = tuple(f"digit {d}" for d in range(len(NAMES)))
    store = write_store(str(tmp_path / "s"), digits, small_images(), options=OPTIONS)
    key = item_key("addition", "merge", 0, 1, 0)
    Store.open(store).write_table(f"{TRAJECTORIES}/part-1.parquet", _recorded(key, [0], job="addition", target=0))
    write_figures(store, trajectories=[key])
    pages = [(Path(store) / "figures" / "classes" / f"{c:04d}.html").read_text() for c in (0, 1)]
    assert f'{key} (with <a href="../classes/0001.html">digit 1</a>)' in pages[0]
    assert f'{key} (with <a href="../classes/0000.html">digit 0</a>)' in pages[1]
    index = (Path(store) / "figures" / "index.html").read_text()
    assert not re.search(r"\b(\d) digit \1\b", index + "".join(pages))   # nowhere "1 digit 1"
    assert "<title>digit 0" in pages[0] and ">digit 3</a></td>" in index
    assert "<h1>digit 0</h1>" in pages[0]                               # not "0 · digit 0"


@pytest.mark.parametrize("shape", [(7, 12), (12, 7), (9, 14)])
@pytest.mark.parametrize("fit", ["squash", "crop"])
def test_the_fitted_source_is_what_the_job_fitted(fit, shape):
    """The report redid `jobs.transforms.fit` in Pillow (ImageOps.fit's crop lies half a pixel off torchvision's
    CenterCrop, whose offset it rounds; Pillow's bilinear is not torch's). It shows what `fit` gives now."""
    from PIL import Image as PILImage

    from analysis.report import fitted_source
    from jobs.kinds import from_uint8, to_uint8
    from jobs.transforms import fit as fit_to
    pixels = np.random.default_rng(1).integers(0, 256, (*shape, 3), np.uint8)
    side = max(shape) if fit == "squash" else min(shape)
    expected = to_uint8(fit_to(side, fit)(from_uint8(pixels[None])))[0]
    shown = np.asarray(fitted_source(PILImage.fromarray(pixels), fit))
    assert shown.shape == (side, side, 3) and np.array_equal(shown, expected)
    if fit == "crop":   # the central square itself, where CenterCrop puts it
        top, left = round((shape[0] - side) / 2), round((shape[1] - side) / 2)
        assert np.array_equal(shown, pixels[top:top + side, left:left + side])
    assert fitted_source(PILImage.fromarray(pixels), None).size == (shape[1], shape[0])


def test_a_large_photograph_is_fitted_at_the_reports_largest_side(monkeypatch):
    from PIL import Image as PILImage

    from analysis import report
    from jobs.kinds import from_uint8, to_uint8
    from jobs.transforms import fit as fit_to
    monkeypatch.setattr(report, "SOURCE_SIDE", 8)
    pixels = np.random.default_rng(2).integers(0, 256, (13, 21, 3), np.uint8)
    for fit in ("squash", "crop"):
        shown = np.asarray(report.fitted_source(PILImage.fromarray(pixels), fit))
        assert np.array_equal(shown, to_uint8(fit_to(8, fit)(from_uint8(pixels[None])))[0])


@pytest.mark.parametrize("analysed, video", [(False, False), (True, True), (False, True)])
def test_figures_of_a_store_without_image_jobs_read_each_file_s_keys_once(small_store, monkeypatch, analysed, video):
    """`sweep figures` on a store without image jobs read every images/ file's key column for the key index even
    when the analysis it ran had just read every file's numbers, keys included; with `--trajectories` it read them
    once more for the videos' final images. Now the index comes with the analysis' numbers when it ran, else from
    one pass over the key columns, and every reader of pictures shares it: each file is opened once for its keys
    (or numbers), and again only to read pictures it holds."""
    from sweep.store import TRAJECTORIES, Store
    from test_image_figures import counted_reads
    from test_stability import A, trajectory_rows
    Store.open(small_store).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A,)))
    if analysed:
        analyze_store(small_store)
    with monkeypatch.context() as patch:
        opened, read = counted_reads(patch, small_store)
        index = write_figures(small_store, trajectories=[A] if video else ())
    files = [f"images/{name}" for name in sorted(os.listdir(os.path.join(small_store, "images")))]
    assert [opened[path] - read[path].count("png") for path in files] == [1] * len(files), (opened, read)
    assert (index.parent / f"trajectory-{A.replace(':', '_')}.gif").exists() == video


NASTY = ("Granny Smith", "jack-o'-lantern", "carpenter's kit", "ping-pong ball", "<b>bold</b>", "../x",
         "A & B, C/D", "sale_$5_$10")
NASTY_SOURCES = ("my photo#1", "../evil", "x?y%20")


def test_a_report_of_nasty_names_links_only_files_it_wrote_and_escapes_every_name(tmp_path):
    """Report hunt: ImageNet-like class names (apostrophes, '&', ',', '/'), markup, '../' and '$' in class and
    photograph names: every href and src of every page is a file of the folder, names are text, and a class has a
    page exactly when it has a class image (class 7's has no finite output)."""
    from html.parser import HTMLParser
    from test_image_figures import IMAGE_OPTIONS
    rng = np.random.default_rng(0)

    def logits(*classes):
        v = rng.normal(0, 1, len(NASTY))
        v[list(classes)] += 9
        return v
    rows = [Image("octave", c, logits(c) if c < 7 else np.full(len(NASTY), np.nan)) for c in range(8)]
    rows += [Image("opposite", c, -logits(c)) for c in range(8)]
    rows += [Image("addition", a, logits(a, b), variant="merge", partner=b) for a, b in ((0, 1), (4, 5), (6, 7))]
    for source in NASTY_SOURCES:
        rows += [Image("transfigure", c, logits(c), source=source) for c in (1, 5, 7)]
        rows += [Image("interpolate", 4, logits(4, 5), partner=5, source=source, frame=k) for k in range(2)]
        rows.append(Image("interpolate", 4, logits(5), partner=5, source=source))
    options = {**IMAGE_OPTIONS, "classes": list(range(8)), "pairs": [[0, 1], [4, 5], [6, 7]],
               "sources": list(NASTY_SOURCES), "interpolate_pairs": [[4, 5]]}
    store = write_store(str(tmp_path / "s"), NASTY, rows, options=options, rows_per_file=5)
    out = write_figures(store).parent
    assert sorted(p.name for p in (out / "classes").iterdir()) == [f"{c:04d}.html" for c in range(7)]

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.links = []

        def handle_starttag(self, tag, attrs):
            assert tag != "b"   # "<b>bold</b>" stays text
            self.links += [value for name, value in attrs if name in ("href", "src")]
    pages = [out / "index.html", *sorted((out / "classes").iterdir())]
    for page in pages:
        parser = Links()
        parser.feed(page.read_text())
        for link in (link.split("#")[0] for link in parser.links):
            target = (page.parent / link).resolve()
            inside = out if not link.startswith("../analysis/") else out.parent   # the Tables section's links
            assert not link or (target.is_file() and inside.resolve() in target.parents), (page.name, link)
    assert "&lt;b&gt;bold&lt;/b&gt;" in (out / "classes" / "0004.html").read_text()
    assert "jack-o&#39;-lantern" in (out / "classes" / "0001.html").read_text()
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == [
        "analysis", "figures", "frames", "images", "manifest.json"]   # nothing written beside the report
    assert len([p for p in out.iterdir() if p.name.startswith("interpolation-") and p.suffix == ".gif"]) == 3


def referenced_files(folder: Path) -> set[str]:
    """The files of a report the pages link or show (every src and href of its HTML pages, as a path within the
    report)."""
    import posixpath
    out = set()
    for page in folder.rglob("*.html"):
        here = page.parent.relative_to(folder).as_posix()
        out |= {posixpath.normpath(posixpath.join(here, link)) for link in _links(page.read_text())
                if "://" not in link}
    return out


OCTAVES = tuple(item_key("octave", "", c, -1, 0) for c in range(6))


@pytest.mark.parametrize("shape", ["whole", "no octave images", "octave images of two classes", "only image jobs",
                                   "image jobs and octave images of two classes"])
def test_every_page_image_written_is_shown_on_a_page(tmp_path, shape):
    """Audit: a store without class images got an img/ file for every opposite and addition, and a store with class
    images of some classes one for the opposites and additions of the others, which no page shows."""
    from test_image_figures import make_image_store
    image_jobs = ("transfigure", "interpolate", "dream", "directed-dream")
    store = {"whole": lambda: make_image_store(tmp_path / "s"),
             "no octave images": lambda: make_small_store(tmp_path / "s", drop=OCTAVES),
             "octave images of two classes": lambda: make_small_store(tmp_path / "s", drop=OCTAVES[2:]),
             "only image jobs": lambda: make_image_store(tmp_path / "s", jobs=image_jobs),
             "image jobs and octave images of two classes": lambda: make_image_store(
                 tmp_path / "s", jobs=("octave", *image_jobs), drop=OCTAVES[2:])}[shape]()
    folder = write_figures(store).parent
    written = {p.relative_to(folder).as_posix() for p in (folder / "img").rglob("*") if p.is_file()}
    assert written == {name for name in referenced_files(folder) if name.startswith("img/")}
    assert referenced_files(folder) - {f"../analysis/{n}" for n in os.listdir(Path(store) / "analysis")} <= {
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}   # no broken link either



def test_every_picture_of_every_page_loads_when_scrolled_to(video_report, tmp_path):
    """Audit at 1000 classes: the index showed the 3,000 interpolations' strips and GIFs (6,000 pictures) without
    `loading="lazy"`, so a browser fetched them all on opening it."""
    from test_image_figures import make_image_store
    for index in (write_figures(make_image_store(tmp_path / "s")), video_report.index):
        pages = [index, *sorted((index.parent / "classes").glob("*.html"))]
        tags = [tag for page in pages for tag in re.findall(r"<img [^>]*>", page.read_text())]
        assert any("interpolation-" in tag or "trajectory-" in tag for tag in tags)
        assert [tag for tag in tags if 'loading="lazy"' not in tag] == []


def test_feature_scatter_places_each_class_by_its_class_image_only(small_store, tmp_path, monkeypatch):
    """Faithfulness audit: the article's feature latent space places one generated image per class (Latent space,
    "Feature latent space": "the average activation of the two features for each generated output"), as the PCA
    and the graph take each class's representative. features.parquet holds every seed's octave image, and the
    scatter drew them all: at --seeds 2 two points per class, each named by the class."""
    from analysis import figures as fig
    analyze_store(small_store)
    keys = [item_key("octave", "", c, -1, seed) for seed in (1, 0) for c in range(6)]   # seed 1's rows first
    features = pd.DataFrame({"key": keys, "target": np.tile(np.arange(6, dtype=np.int32), 2),
                             "target_name": list(NAMES) * 2, "layer": "block2",
                             "map_0": np.linspace(0, 1, 12, dtype=np.float32),
                             "map_4": np.linspace(1, 0, 12, dtype=np.float32)})
    features.to_parquet(os.path.join(small_store, "analysis", "features.parquet"))
    drawn = []
    scatter = fig.feature_scatter
    monkeypatch.setattr(fig, "feature_scatter", lambda table, *args: drawn.append(table) or scatter(table, *args))
    write_figures(small_store, str(tmp_path / "report"))
    shown, = drawn
    assert sorted(shown["key"]) == sorted(item_key("octave", "", c, -1, 0) for c in range(6))   # seed 0, the classes'


def test_a_class_outside_every_graph_range_says_no_graph_figure_draws_it(small_store_with_report):
    """`--graph-ranges 0-1,2-3` on a store of classes 0-5: classes 4 and 5 lie in no range's figure. Their pages gave
    the whole graph's component with no figure and no word why; they now say so, and name the ranges."""
    analyze_store(small_store_with_report, graph_ranges="0-1,2-3")
    write_figures(small_store_with_report)
    classes = Path(small_store_with_report) / "figures" / "classes"
    outside = " ".join((classes / "0004.html").read_text().split())
    assert "drawn in no figure: the graphs are drawn by class ranges (0-1, 2-3) and this class lies outside them" \
        in outside and "graph-" not in outside
    inside = " ".join((classes / "0002.html").read_text().split())
    assert "in the graph of classes 2-3" in inside and 'href="../graph-2-3-01.png"' in inside
    assert "drawn in no figure" not in inside
