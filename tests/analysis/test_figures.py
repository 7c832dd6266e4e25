"""Figure builders: tables (and thumbnails) in, matplotlib Figures out; checked by their axes, titles, labels and
counts of plotted elements, not by pixels."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from PIL import Image

from analysis import drawing
from analysis import figures as fig


def _texts(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.texts] + [t.get_text() for ax in figure.axes for t in ax.texts]


def _annotations(ax) -> list[Annotation]:
    return [c for c in ax.get_children() if isinstance(c, Annotation)]


def test_scatter_has_axes_labels_one_point_each_and_labels_that_do_not_overlap():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 500))
    names = [f"class {i}" for i in range(500)]
    figure = fig.labelled_scatter(x, y, names, title="t", xlabel="the x", ylabel="the y", size=(800, 600))
    ax, = figure.axes
    assert ax.get_xlabel() == "the x" and ax.get_ylabel() == "the y" and ax.get_title() == "t"
    points, = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points.get_offsets()) == 500
    notes = _annotations(ax)
    assert 20 < len(notes) < 500   # crowded: only a subset is labelled
    assert {n.get_text() for n in notes} <= set(names)
    renderer = figure.canvas.get_renderer()
    boxes = [n.get_window_extent(renderer) for n in notes]
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:])


def test_sparse_scatter_labels_every_point():
    figure = fig.labelled_scatter([0, 10, 20], [0, 10, 0], ["a", "b", "c"], title="t", xlabel="x", ylabel="y")
    assert sorted(n.get_text() for n in _annotations(figure.axes[0])) == ["a", "b", "c"]


def test_a_label_that_does_not_fit_right_of_its_point_goes_left_on_a_white_box_above_the_points():
    """Audit: the rightmost nodes of every small graph panel lost their names (a label was only tried on the right),
    and the hub's name lay under nodes and arrows."""
    figure = fig.labelled_scatter([0, 5, 10], [0, 5, 10], ["left", "middle", "rightmost"], title="t", xlabel="x",
                                  ylabel="y", size=(400, 300))
    ax = figure.axes[0]
    notes = {n.get_text(): n for n in _annotations(ax)}
    assert set(notes) == {"left", "middle", "rightmost"}
    assert notes["rightmost"].get_ha() == "right" and notes["left"].get_ha() == "left"
    points = ax.collections[0]
    for note in notes.values():
        assert note.get_zorder() > points.get_zorder()
        box = note.get_bbox_patch()
        assert box is not None and box.get_facecolor()[:3] == (1.0, 1.0, 1.0)


def test_output_pca_titles_axes_with_the_variance_and_colours_by_component():
    pca = pd.DataFrame({"target": [0, 1, 2], "name": ["a", "b", "c"], "pc1": [0.0, 1, 2], "pc2": [1.0, 0, 1]})
    variance = pd.DataFrame({"explained_variance_ratio": [0.6, 0.25]})
    nodes = pd.DataFrame({"node": [0, 1, 2], "component": [0, 0, 11]})
    ax, = fig.output_pca(pca, variance, nodes).axes
    assert ax.get_xlabel() == "PC1 (60.0%)" and ax.get_ylabel() == "PC2 (25.0%)"
    colours = ax.collections[0].get_facecolors()
    assert (colours[0] == colours[1]).all() and not (colours[0] == colours[2]).all()


def test_feature_scatter_uses_the_first_two_maps():
    features = pd.DataFrame({"target": [0, 1, 2], "target_name": ["a", "b", "c"], "layer": "block2",
                             "map_4": [0.0, 1, 2], "map_10": [2.0, 1, 0]})
    ax, = fig.feature_scatter(features, "block2").axes
    assert ax.get_xlabel().endswith("block2 map 4") and ax.get_ylabel().endswith("block2 map 10")
    assert "block2" in ax.get_title()


def test_feature_scatter_colours_by_component_and_names_the_two_maps_it_shows():
    """Audit: the feature scatter was not coloured by graph component as the PCA is, and with LAYER:0,4,7 the
    third map was dropped silently."""
    from matplotlib.colors import to_hex
    features = pd.DataFrame({"target": [0, 1, 2], "target_name": ["a", "b", "c"], "layer": "block2",
                             "map_0": [0.0, 1, 2], "map_4": [2.0, 1, 0], "map_7": [1.0, 1, 1]})
    nodes = pd.DataFrame({"node": [0, 1, 2], "component": [1, 1, 12]})
    ax, = fig.feature_scatter(features, "block2", nodes).axes
    assert [to_hex(c) for c in ax.collections[0].get_facecolors()] == [drawing.PALETTE[1]] * 2 + [drawing.OTHER]
    assert "maps 0 and 4 shown of 0, 4, 7" in ax.get_title()
    assert ax.get_xlabel().endswith("map 0") and ax.get_ylabel().endswith("map 4")
    two = fig.feature_scatter(features.drop(columns="map_7"), "block2").axes[0]
    assert "shown of" not in two.get_title()


def test_feature_scatter_says_the_size_the_model_saw_the_images_at():
    features = pd.DataFrame({"target": [0, 1], "target_name": ["a", "b"], "layer": "block2", "map_0": [0.0, 1],
                             "map_4": [1.0, 0]})
    before = fig.feature_scatter(features, "block2").axes[0].get_title()              # a table from before the size
    assert "at the stored size (computed before --feature-size)" in before and "px" not in before
    resized = features.assign(feature_size="input", side=299)
    assert "image at 299 px (resized, --feature-size input)" in \
        fig.feature_scatter(resized, "block2").axes[0].get_title()
    stored = features.assign(feature_size="stored", side=490)
    assert "image at the stored size (490 px)" in fig.feature_scatter(stored, "block2").axes[0].get_title()
    mixed = features.assign(feature_size="stored", side=[490, 380])
    assert fig.feature_scatter(mixed, "block2").axes[0].get_title().endswith(
        "on each class image at the stored sizes (380-490 px)")


def test_a_long_scatter_subtitle_takes_lines_within_the_figure():
    """Audit at 1000 classes: the feature scatter's subtitle (its maps, the size, the colours) was one line of 1500 px
    on a 1400 px figure, cut at both edges."""
    n = 50
    features = pd.DataFrame({"target": range(n), "target_name": [f"c{i}" for i in range(n)], "layer": "inception4a",
                             "map_0": np.arange(n, dtype=float), "map_4": np.ones(n), "map_7": np.zeros(n),
                             "feature_size": "input", "side": 224})
    nodes = pd.DataFrame({"node": range(n), "component": 0})
    figure = fig.feature_scatter(features, "inception4a", nodes)
    ax, = figure.axes
    title = ax.title.get_window_extent(figure.canvas.get_renderer())
    assert 0 <= title.x0 and title.x1 <= figure.bbox.width and title.y1 <= figure.bbox.height
    assert ax.get_title().count("\n") >= 2 and "nearest-neighbour components" in ax.get_title().replace("\n", " ")


def test_wrap_lines_breaks_between_words_within_the_width():
    text = "the quick brown fox jumps over the lazy dog " * 3
    lines = drawing.wrap_lines(text.strip(), 100)
    assert " ".join(lines) == text.strip() and len(lines) > 3
    assert all(drawing.text_px(line) <= 100 for line in lines)
    assert drawing.wrap_lines("unbreakable" * 5, 50) == ["unbreakable" * 5]


def _graph_tables(sizes):
    """graph_nodes / graph_components tables of cycles of the given sizes (node i points at the next one)."""
    rows, comps, start = [], [], 0
    for c, size in enumerate(sizes):
        members = list(range(start, start + size))
        for k, n in enumerate(members):
            rows.append({"node": n, "name": f"n{n}", "neighbour": members[(k + 1) % size], "neighbour_logit": 1.0,
                         "has_image": True, "component": c, "component_size": size})
        comps.append({"component": c, "size": size, "members": members})
        start += size
    return pd.DataFrame(rows), pd.DataFrame(comps)


def test_a_graph_label_leaves_its_nodes_marker_clear_a_hubs_black_edge_included():
    """Report hunt: a label's white box began 4 pt right of its node, inside a hub's marker (5.5 pt across its
    radius, its black edge beyond): the hub's edge showed as a "C", its right side under the label."""
    rows = [{"node": n, "name": f"class {n}", "neighbour": 0 if n else 1, "neighbour_logit": 1.0, "has_image": True,
             "component": 0, "component_size": 4} for n in range(4)]   # 1, 2 and 3 point at 0: the hub
    page, = fig.graph_pages(pd.DataFrame(rows), pd.DataFrame([{"component": 0, "size": 4, "members": [0, 1, 2, 3]}]))
    ax, = page.axes
    nodes, = [c for c in ax.collections if isinstance(c, PathCollection)]   # members in order: the hub first
    x, y = ax.transData.transform(nodes.get_offsets()[0])
    pixels = drawing.rgb_pixels(page).astype(int)   # H x W x 3
    assert any(note.get_position()[0] > 0 for note in _annotations(ax) if note.get_text() == "class 0")   # right
    edge = round(np.sqrt(3 * 40) / 2 * page.dpi / 72)   # px from the centre to the middle of the hub's black edge
    row = pixels.shape[0] - round(y)

    def darkest(columns) -> int:   # the darkest pixel where the edge crosses the row through the centre
        return int(pixels[row, columns].sum(axis=-1).min())
    left, right = darkest(range(round(x) - edge - 1, round(x) - edge + 2)), darkest(range(round(x) + edge - 1,
                                                                                          round(x) + edge + 2))
    assert right <= left + 60, (left, right)   # as dark on the label's side as on the other


def test_graph_pages_draw_every_component_on_its_own_axes():
    sizes = [45, 7, 5, 3] + [2] * 16
    nodes, comps = _graph_tables(sizes)
    from analysis.graph import graph_from_tables
    assert graph_from_tables(nodes).number_of_edges() == sum(sizes)
    pages = fig.graph_pages(nodes, comps)
    axes = [ax for page in pages for ax in page.axes]
    assert len(pages) == 1 + 2 and len(axes) == len(sizes)   # the big one alone, then 16 + 3 small ones
    assert all(isinstance(p, Figure) for p in pages)
    titles = [ax.get_title() for ax in axes]
    for i, size in enumerate(sizes):
        assert any(t.startswith(f"component {i}: {size} classes") for t in titles)
    for ax, size in zip(axes, sizes):
        nodes_drawn, = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(nodes_drawn.get_offsets()) == size
        assert len(ax.patches) == size                      # one arrow per edge
        assert 1 <= len(_annotations(ax)) <= size


def test_graph_panels_fill_their_page_with_readable_titles_and_names():
    """Audit: a graph page's drawing filled about its central 55% (default margins plus 15% axes margins), under an
    8-pt panel title and 6.5-pt class names."""
    nodes, comps = _graph_tables([45, 7, 5, 3, 3, 2])
    for page in fig.graph_pages(nodes, comps):
        panels = [ax.get_position() for ax in page.axes]
        left, right = min(b.x0 for b in panels), max(b.x1 for b in panels)
        bottom, top = min(b.y0 for b in panels), max(b.y1 for b in panels)
        head = fig.GRAPH_HEAD / (page.get_size_inches()[1] * drawing.DPI)   # the page title's share
        assert right - left >= 0.95 and top - bottom >= 0.97 - head
        renderer = page.canvas.get_renderer()
        titles = [ax.title.get_window_extent(renderer) for ax in page.axes]
        assert page._suptitle.get_window_extent(renderer).y0 >= max(t.y1 for t in titles)   # no overlap
        for ax in page.axes:
            assert ax.title.get_fontsize() >= 10
            assert all(n.get_fontsize() >= 8 for n in _annotations(ax))
        for upper, lower in zip(page.axes, page.axes[4:]):   # a panel's title clears the panel above it
            assert lower.title.get_window_extent(renderer).y1 <= upper.get_window_extent(renderer).y0


def _tree_tables(sizes, seed=0, name="a long class name"):
    """graph_nodes / graph_components tables of random trees of the given sizes, as a real graph's components look
    (each class points at an earlier member, the first two at each other), named `name` and the node."""
    rng = np.random.default_rng(seed)
    rows, comps, start = [], [], 0
    for c, size in enumerate(sizes):
        members = list(range(start, start + size))
        pointed = {members[0]: members[1], members[1]: members[0]}
        pointed.update({n: members[int(rng.integers(0, k))] for k, n in enumerate(members[2:], start=2)})
        rows += [{"node": n, "name": f"{name} {n}", "neighbour": pointed[n], "neighbour_logit": 1.0,
                  "has_image": True, "component": c, "component_size": size} for n in members]
        comps.append({"component": c, "size": size, "members": members})
        start += size
    return pd.DataFrame(rows), pd.DataFrame(comps)


def _ink_share(figure: Figure) -> float:
    """The share of a drawn figure's area inside the bounding box of its non-white pixels."""
    pixels = drawing.rgb_pixels(figure)   # H x W x 3
    ink = ~(pixels == 255).all(axis=-1)
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return (rows[-1] - rows[0] + 1) * (columns[-1] - columns[0] + 1) / ink.size


def test_a_big_components_page_is_filled_by_its_drawing():
    """"A big graph page is about 10% white": networkx pads its limits by 5% of the extent and the axes' margins
    added 5% more, so a 694-class component left a 140 px white band above and below its drawing (the drawing's
    bounding box 79% of the page)."""
    nodes, comps = _tree_tables([300])
    page, = fig.graph_pages(nodes, comps)
    assert _ink_share(page) >= 0.92
    ax, = page.axes
    drawn, = [c for c in ax.collections if isinstance(c, PathCollection)]
    points = ax.transData.transform(drawn.get_offsets())   # n x 2, px
    box = ax.get_window_extent()
    assert np.ptp(points[:, 0]) >= 0.96 * box.width and np.ptp(points[:, 1]) >= 0.96 * box.height
    assert (points.min(axis=0) > [box.x0, box.y0]).all() and (points.max(axis=0) < [box.x1, box.y1]).all()


def test_a_crowded_components_page_side_grows_with_its_classes_and_the_others_keep_theirs():
    """Audit at 1000 classes: the 694-class component had the 1700 px page of an 89-class one. Pages of up to
    GRAPH_CROWDED classes keep their side; larger ones grow, up to GRAPH_CROWDED_PX."""
    assert [fig.big_page_side(n) for n in (40, 100, 300)] == [min(1700, max(900, 180 * n ** 0.5)) for n in
                                                              (40, 100, 300)]   # as before
    assert fig.big_page_side(400) < fig.big_page_side(694) < fig.big_page_side(5000) == fig.GRAPH_CROWDED_PX


@pytest.mark.slow   # a 700-node layout and drawing (about 5 s); the page side's rule runs in every run (above)
def test_a_crowded_components_page_is_larger_so_that_more_of_its_names_fit():
    """The 694-class component's dense centre left 42% of its nodes unlabelled (58% labelled; 73% on its 2585 px
    page now)."""
    nodes, comps = _tree_tables([700, 120], name="class")
    pages = fig.graph_pages(nodes, comps)
    sides = [page.get_size_inches()[0] * drawing.DPI for page in pages]
    assert 1700 < sides[0] <= fig.GRAPH_CROWDED_PX and sides[1] == 1700
    assert len(_annotations(pages[0].axes[0])) / 700 >= 0.7


def test_graph_panel_titles_fit_their_panel():
    """Audit at 1000 classes: "component 3: 12 classes, hubs bald eagle, black widow, lynx, +1 more (tie)" ran
    into the next panel's title and off the page."""
    nodes, comps = _tree_tables([12, 12, 9, 9, 3, 3, 2], name="soft-coated wheaten terrier")
    arrows = {0: 1, 1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 4, 8: 5, 9: 5, 10: 6, 11: 6}   # hubs 0, 1, 4, 5, 6 tie
    nodes.loc[nodes["node"] < 12, "neighbour"] = nodes["node"].map(arrows)
    for page in fig.graph_pages(nodes, comps):
        renderer = page.canvas.get_renderer()
        spans = []
        for ax in page.axes:
            title, panel = ax.title.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert panel.x0 - 1 <= title.x0 and title.x1 <= panel.x1 + 1, ax.get_title()
            spans.append((title.x0, title.x1, title.y0))
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]) if a[2] == b[2])   # a row's titles apart
    first = fig.graph_pages(nodes, comps)[0].axes[0].get_title()
    assert first.startswith("component 0: 12 classes, ") and first.endswith("(tie)")   # "5 hubs (tie)" here


def test_pairs_take_small_panels_many_to_a_page():
    """Audit at 1000 classes: a page of 16 mutual pairs was 1680 x 1740 px of 420 px panels, each one arc."""
    nodes, comps = _graph_tables([3] * 10 + [2] * 54)
    pages = fig.graph_pages(nodes, comps)
    assert len(pages) == 1
    page, = pages
    assert len(page.axes) == 64 and page.get_size_inches()[0] * drawing.DPI <= 1700
    assert all(ax.get_window_extent().width <= 210 for ax in page.axes)
    nodes, comps = _graph_tables([4, 3, 2])   # a page holds one kind: the 4-class component keeps its big panel
    assert [len(p.axes) for p in fig.graph_pages(nodes, comps)] == [1, 2]
    assert fig.graph_pages(nodes, comps)[0].axes[0].get_window_extent().width > 380


def _tied_graph():
    """Component 0: n0 and n4 both pointed at three times, and at each other (a mutual pair); n5 has no image of
    its own. Component 1: the mutual pair n6 <-> n7."""
    arrows = {1: 0, 2: 0, 3: 4, 5: 4, 0: 4, 4: 0, 6: 7, 7: 6}
    nodes = pd.DataFrame([{"node": n, "name": f"n{n}", "neighbour": m, "neighbour_logit": 1.0, "has_image": n != 5,
                           "component": int(n >= 6), "component_size": 2 if n >= 6 else 6}
                          for n, m in arrows.items()])
    comps = pd.DataFrame([{"component": 0, "size": 6, "members": [0, 1, 2, 3, 4, 5]},
                          {"component": 1, "size": 2, "members": [6, 7]}])
    return nodes, comps


def _node_styles(ax):
    """(fills, edge colours, sizes) of the nodes drawn on `ax`, collection after collection (a range's page draws
    the classes in it, then those outside)."""
    from matplotlib.colors import to_hex
    drawn = [c for c in ax.collections if isinstance(c, PathCollection)]
    return ([to_hex(c) for d in drawn for c in d.get_facecolors()],
            [to_hex(c) for d in drawn for c in d.get_edgecolors()], [s for d in drawn for s in d.get_sizes()])


def test_graph_nodes_take_their_components_colour_and_the_hubs_a_black_edge():
    """Audit: orange meant component 1 in the PCA but "hub" in the graph; a tie for hub picked the lower index."""
    nodes, comps = _tied_graph()
    big, pair = [ax for page in fig.graph_pages(nodes, comps) for ax in page.axes]   # a 6-class panel, a pair's
    faces, edges, sizes = _node_styles(big)                      # members 0..5 in order
    blue, ink = drawing.PALETTE[0], drawing.INK
    assert faces == [blue] * 5 + ["#ffffff"]                      # n5: hollow, no image of its own
    assert [e == ink for e in edges] == [True, False, False, False, True, False]
    assert sizes[0] == sizes[4] > sizes[1]
    assert big.get_title() == "component 0: 6 classes, hubs n0, n4 (tie)"
    faces, edges, sizes = _node_styles(pair)
    assert faces == [drawing.PALETTE[1]] * 2 and ink not in edges and sizes[0] == sizes[1]
    assert pair.get_title() == "component 1: 2 classes"          # a mutual pair has no hub
    pca = pd.DataFrame({"target": [0, 6], "name": ["n0", "n6"], "pc1": [0.0, 1], "pc2": [1.0, 0]})
    from matplotlib.colors import to_hex
    points = fig.output_pca(pca, pd.DataFrame({"explained_variance_ratio": [0.6, 0.3]}), nodes).axes[0]
    assert [to_hex(c) for c in points.collections[0].get_facecolors()] == [blue, drawing.PALETTE[1]]


def test_graph_bends_the_two_arrows_of_a_mutual_pair_apart():
    """Audit: 9 <-> 3 was drawn as one line with an arrowhead at each end."""
    nodes, comps = _tied_graph()
    big, pair = [ax for page in fig.graph_pages(nodes, comps) for ax in page.axes]
    bends = sorted(round(p.get_connectionstyle().rad, 2) for p in big.patches)
    assert bends == [0.0] * 4 + [0.2] * 2                          # 0 <-> 4 bent, the four others straight
    assert [round(p.get_connectionstyle().rad, 2) for p in pair.patches] == [0.2, 0.2]


def test_a_class_ranges_graph_pages_draw_only_the_edges_of_its_classes():
    """The article draws the graph of each half of ImageNet's classes: classes 0-3 of `_tied_graph` point 1 -> 0,
    2 -> 0, 3 -> 4 and 0 -> 4 (4, outside the range, is drawn as their neighbour; its own arrow 4 -> 0 is not), one
    component whose hubs are 0 and 4 (pointed at twice each within the range), in its whole-graph colour."""
    from analysis.graph import ClassRange, graph_from_tables, range_graph, ranges_table
    nodes, _ = _tied_graph()
    span = ClassRange(0, 3)
    rows = ranges_table([(span, range_graph(graph_from_tables(nodes), span))])
    page, = fig.graph_pages(nodes, rows, span=span)
    assert page._suptitle.get_text() == "Graph of classes 0-3 (page 1 of 1)"   # a one-panel page is 420 px wide
    ax, = page.axes
    assert ax.get_title() == "component 0: 5 classes, hubs n0, n4 (tie)"
    assert len(ax.patches) == 4 and all(round(p.get_connectionstyle().rad, 2) == 0 for p in ax.patches)
    inside, outside = [c for c in ax.collections if isinstance(c, PathCollection)]   # circles 0-3, a square 4
    assert len(inside.get_offsets()) == 4 and len(outside.get_offsets()) == 1
    assert inside.get_paths()[0] != outside.get_paths()[0]
    faces, edges, _ = _node_styles(ax)
    assert faces == [drawing.PALETTE[0]] * 5 and [e == drawing.INK for e in edges] == [True, False, False, False,
                                                                                       True]


def test_a_graph_pages_title_fits_its_page():
    """A page of two pairs is 420 px wide: its title "Nearest-neighbour graph, by component (page 1 of 1)" ran off
    both sides."""
    from analysis.graph import ClassRange
    nodes, comps = _graph_tables([2, 2])
    for span in (None, ClassRange(0, 499)):
        page, = fig.graph_pages(nodes, comps, span=span) if span else fig.graph_pages(nodes, comps)
        title = page._suptitle.get_text()
        assert drawing.text_px(title, fig.GRAPH_PAGE_FONT) <= page.get_figwidth() * page.dpi
        assert "(page 1 of 1)" in title and (span is None or "classes 0-499" in title)
    wide, = fig.graph_pages(*_graph_tables([60]), span=ClassRange(0, 499))   # a page of its own: room for the key
    assert wide._suptitle.get_text() == ("Nearest-neighbour graph of classes 0-499, by component (page 1 of 1); "
                                         "squares: neighbours outside the range")


def test_a_narrow_graph_pages_title_keeps_its_range_and_page_number():
    """Report hunt: the last page of a range's graph, one pair on a 210 px page, was titled "Graph of classes 0-…",
    cut before the range and its page number (the demo's graph-0-4-02.png)."""
    from analysis.graph import ClassRange
    assert fig.graph_page_title(ClassRange(500, 999), 11, 12, 210) == "500-999, 12/12"
    assert fig.graph_page_title(ClassRange(0, 4), 1, 2, 210) == "Classes 0-4, 2/2"
    assert fig.graph_page_title(None, 2, 3, 210) == "Graph (page 3 of 3)"


def test_palette_has_no_grey_and_other_is_lighter_than_every_colour():
    from matplotlib.colors import to_rgb
    greys = [c for c in drawing.PALETTE if np.ptp(to_rgb(c)) < 0.1]
    assert not greys and len(set(drawing.PALETTE)) == 10 and "#d62728" not in drawing.PALETTE   # red: "wrong"
    assert all(sum(to_rgb(drawing.OTHER)) > sum(to_rgb(c)) + 0.3 for c in drawing.PALETTE)


def test_grid_pages_paginate_with_one_image_per_page_and_every_line():
    tile = Image.new("RGB", (32, 32), "red")
    cells = [drawing.Cell((tile, None), ((f"cell {i}", drawing.INK),)) for i in range(23)]
    pages = drawing.grid_pages(cells, title="grid", columns=3, rows=4, thumb=40)
    assert len(pages) == 2
    assert pages[0]._suptitle.get_text() == "grid (page 1 of 2)"
    assert [len(p.images) for p in pages] == [1, 1] and [len(p.axes) for p in pages] == [0, 0]   # one mosaic
    first = _texts(pages[0])
    assert [t for t in first if t.startswith("cell")] == [f"cell {i}" for i in range(12)]
    assert first.count("missing") == 12                      # every second image is missing
    mosaic = pages[0].images[0].get_array()
    assert tuple(mosaic[12 + 20, 12 + 20, :3]) == (255, 0, 0)
    assert tuple(mosaic[12 + 20, 12 + 44 + 20, :3]) != (255, 0, 0)


def test_contact_sheets_of_1000_classes_are_ten_pages():
    classes = pd.DataFrame({"key": [f"k{i}" for i in range(1000)], "target": range(1000),
                            "name": [f"c{i}" for i in range(1000)], "correct": [i % 3 > 0 for i in range(1000)],
                            "label_name": "x", "target_prob": 0.5, "top5_probs": [[0.5, 0.3]] * 1000})
    pages = fig.contact_sheets(classes, {})
    assert len(pages) == 10 and all(isinstance(p, Figure) for p in pages)
    assert _texts(pages[9]).count("missing") == 100
    assert "c999" in " ".join(_texts(pages[9]))


def _colour_of(figure: Figure, text: str) -> str:
    from matplotlib.colors import to_hex
    found, = [t for t in figure.texts if t.get_text() == text]
    return to_hex(found.get_color())


@pytest.mark.filterwarnings("ignore:Glyph")   # matplotlib's "Glyph ... missing from font(s) DejaVu Sans"
def test_names_with_characters_the_font_lacks_are_measured_as_drawn_not_refused():
    """Report hunt: a class named "鲤鱼 carp" (or a photograph "猫.jpg", a name holding a tab) failed the whole
    report with FreeType's "RuntimeError: No glyphs have been loaded" while its caption was measured; matplotlib
    draws such a character from a fallback font (its last resort a box), as wide as measured here."""
    figure = drawing.new_figure(400, 100)
    drawn = figure.text(0, 0, "鲤鱼\t", fontsize=drawing.LINE_FONT).get_window_extent(figure.canvas.get_renderer())
    assert abs(drawing.text_px("鲤鱼\t") - drawn.width) <= 2
    classes = pd.DataFrame({"key": ["a"], "target": [5], "name": ["鲤鱼 carp with a long name"], "correct": [True],
                            "label_name": ["鲤鱼 carp"], "target_prob": [0.9], "top5_probs": [[0.9]]})
    page, = fig.contact_sheets(classes, {})
    assert "p = 0.900" in _texts(page)


def test_contact_sheet_gives_a_wrong_label_its_own_probability_beside_the_class_one():
    """Audit: "5 electric ray / -> stingray 0.00" read as stingray with p 0, when P(stingray) was about 1."""
    classes = pd.DataFrame({"key": ["a", "b"], "target": [5, 6], "name": ["electric ray", "cock"],
                            "correct": [False, True], "label_name": ["stingray and a much longer name", "cock"],
                            "target_prob": [0.001, 0.97], "top5_probs": [[0.99, 0.001], [0.97, 0.01]]})
    page, = fig.contact_sheets(classes, {})
    texts = _texts(page)
    assert "p = 0.001" in texts and "p = 0.970" in texts
    wrong, = [t for t in texts if t.startswith("->")]
    assert wrong.startswith("-> sting") and wrong.endswith("… 0.99")   # the long name is cut, not its p
    assert drawing.text_px(wrong) <= fig.GRID_THUMB
    assert _colour_of(page, wrong) == drawing.BAD and _colour_of(page, "p = 0.970") == drawing.GOOD


IMAGENET_NAMES = ["spotted salamander", "axolotl", "golden retriever", "Chesapeake Bay retriever",
                  "WWWWWWWWWWWWWWWWWWWWWWWW", "tench"]


def _caption_widths(page: Figure) -> dict[str, float]:
    """Each caption line under a cell (not the title, not 'missing') and its drawn width in pixels."""
    renderer = page.canvas.get_renderer()
    return {t.get_text(): t.get_window_extent(renderer).width for t in page.texts
            if t.get_text() != "missing" and t.get_ha() == "left"}


def test_grid_captions_stay_inside_their_cell_and_a_long_name_takes_a_second_line():
    """Audit: "28 spotted salama…29 axolotl" read as one string: names were cut to 18 characters, wider than a
    cell; ImageNet names are long, so under one image a name may take a second line, broken between words."""
    n = len(IMAGENET_NAMES)
    classes = pd.DataFrame({"key": [f"k{i}" for i in range(n)], "target": range(28, 28 + n), "name": IMAGENET_NAMES,
                            "correct": [False] * n, "label_name": ["Chesapeake Bay retriever WWWWWWW"] * n,
                            "target_prob": 0.001, "top5_probs": [[0.99, 0.001]] * n})
    page, = fig.contact_sheets(classes, {})
    widths = _caption_widths(page)
    assert max(widths.values()) <= fig.GRID_THUMB   # the 12-px gutter to the next cell stays clear
    texts = [t.get_text() for t in page.texts]
    assert texts[texts.index("28 spotted") + 1] == "salamander"          # broken at the space
    assert texts[texts.index("31 Chesapeake") + 1] == "Bay retriever"
    assert "29 axolotl" in texts and "33 tench" in texts                 # short names keep one line
    assert texts[texts.index("32 WWWWWWW-") + 1].endswith("…")           # a second line still too long: cut
    assert all(t.endswith(" 0.99") for t in texts if t.startswith("->"))


def test_two_image_cells_cut_a_long_name_to_their_width_without_wrapping():
    tile = Image.new("RGB", (8, 8))
    cells = [drawing.Cell((tile, tile), (("Chesapeake Bay retriever and a great many more words", drawing.INK),))]
    page = drawing.grid_figure(cells, title="t", columns=1, thumb=40)
    (text, width), = _caption_widths(page).items()
    assert text.startswith("Chesapeake") and text.endswith("…") and width <= 2 * 40 + drawing.IMAGE_GAP


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
def test_a_caption_of_characters_the_font_lacks_is_drawn_and_cut_to_its_cell():
    """Hunt: a source photograph named in Chinese (`猫的照片.jpg`) made `sweep figures` die in `text_px` (matplotlib
    3.10+ raises on a glyph its font lacks); it draws them as its missing-glyph box, so they are measured as that."""
    tile = Image.new("RGB", (8, 8))
    name = "猫的照片很长很长很长很长很长很长很长很长.jpg"
    page = drawing.grid_figure([drawing.Cell((tile,), ((name, drawing.INK),))], title="t", columns=1, thumb=40)
    (text, width), = _caption_widths(page).items()
    assert text.startswith("猫") and text.endswith("…") and width <= 40
    assert drawing.text_px("猫") == drawing.text_px("\t") > 0   # both the missing-glyph box


def test_wrap_text_breaks_at_the_last_word_that_fits():
    assert drawing.wrap_text("short", 100) == ["short"]
    width = drawing.text_px("one two three")
    assert drawing.wrap_text("one two three four", width) == ["one two three", "four"]
    first, second = drawing.wrap_text("Wwwwwwwwwwwwwwwwwwwwwwwwwwwww", width)   # one word too long: broken inside it
    assert first.endswith("-") and "Wwwwwwwwwwwwwwwwwwwwwwwwwwwww".startswith(first[:-1] + second.rstrip("…"))
    assert drawing.text_px(first) <= width and drawing.text_px(second) <= width


def test_a_number_stays_with_the_word_it_names_when_a_class_name_takes_two_lines():
    """Audit at 1000 classes: under a contact-sheet image "89 sulphur-crested cockatoo" read "89" on one line and
    "sulphur-crested…" on the next. Now the break comes after a later word, else after a hyphen, else inside the
    first word (with a hyphen), so that no line is a number alone, and every line stays inside its cell."""
    from torchvision.models import get_model_weights
    names = list(get_model_weights("googlenet").DEFAULT.meta["categories"])   # ImageNet's, with the weights' metadata
    n = len(names)
    classes = pd.DataFrame({"key": [f"k{i}" for i in range(n)], "target": range(n), "name": names, "correct": True,
                            "label_name": names, "target_prob": 0.5, "top5_probs": [[0.5]] * n})
    sheets = fig.contact_sheets(classes, {})
    for page in sheets:   # 12 names broke after their number: 89, 143, 165, 252, 256, 344, 444, 509, 548, 607, ...
        texts = [t.get_text() for t in page.texts if t.get_ha() == "left"]
        assert not [t for t in texts if t.strip().isdigit()]
        assert max(_caption_widths(page).values()) <= fig.GRID_THUMB
    first_lines = [t.get_text() for t in sheets[0].texts]
    assert first_lines[first_lines.index("89 sulphur-") + 1] == "crested cockatoo"   # after the hyphen
    assert drawing.wrap_text("143 oystercatcher", 60) == ["143 oyster-", "catcher"]           # inside the word
    assert drawing.wrap_text("143 oystercatcher", drawing.text_px("143 oystercatche-"))[1] == "her"   # 3 letters on
    assert drawing.wrap_text("28 spotted salamander", 70) == ["28 spotted", "salamander"]      # as before


def test_an_interpolation_strip_names_its_pair_in_its_title_and_keeps_every_logit_whole():
    """Audit at 1000 classes: the strip's first cell read "tench -> box tu…" (the pair, cut to the cell); the title
    names the pair in full, so the cell names what it shows. A long class name is cut before its logit, not the logit
    off its end. Every caption line stays inside its cell (drawn widths from the Agg renderer)."""
    frames = pd.DataFrame({"target": 0, "partner": 1, "source": "photo.jpg", "seed": 0, "step": [10, 20],
                           "key": ["f0", "f1"]})
    for names in (["tench", "box turtle"], ["sulphur-crested cockatoo", "German short-haired pointer"]):
        page = fig.interpolation_strip(frames, np.array([[12.34, -3.0], [-0.5, 17.31]]), None, {}, names)
        assert page.texts[0].get_text() == f"Interpolation from {names[0]} to {names[1]}, from photo.jpg"
        widths = _caption_widths(page)
        assert max(widths.values()) <= fig.GRID_THUMB
        logits = [t for t in widths if t.startswith((names[0][:5], names[1][:5]))]
        assert sorted(t.rsplit(" ", 1)[1] for t in logits) == ["-0.5", "-3.0", "12.3", "17.3"]   # each whole
        cut = [t for t in widths if "…" in t]
        assert cut == [] if names[0] == "tench" else set(cut) <= set(logits)   # only a long name, before its logit
    assert "source image" in widths and "photo.jpg" in widths


def _opposites(**more):
    return pd.DataFrame({"target": [0, 1], "name": ["digit 0", "Chesapeake Bay retriever"], "key": ["o0", "o1"],
                         "opposite": [1, 0], "opposite_name": ["Chesapeake Bay retriever", "digit 0"],
                         "opposite_prob": [0.8312, 0.25], "mutual": [True, None], "standout_opposite": [1, 0],
                         "standout_opposite_name": ["s1", "s0"], **more})


def test_opposites_grid_gives_the_opposites_probability_and_mutual_in_ink_not_greens_success():
    """Audit: no p for the opposite class, and "mutual" in the green that means success everywhere else."""
    classes = pd.DataFrame({"target": [0, 1], "key": ["c0", "c1"]})
    page, = fig.opposites_grid(classes, _opposites(margin_opposite=[1, 0], margin_opposite_name=["m1", "m0"]), {})
    texts = [t.get_text() for t in page.texts]
    assert texts[texts.index("opposite: Chesapeake Bay retriever") + 1] == "p = 0.831, mutual"
    assert texts[texts.index("opposite: digit 0") + 1] == "p = 0.250"
    assert {_colour_of(page, t) for t in texts if t.startswith(("opposite:", "p = "))} == {drawing.INK}


def test_contact_sheet_and_opposites_name_a_class_once_as_every_page_does():
    """Walk: the contact sheet and the opposites grid read "0 digit 0" where every other page says "digit 0"
    (`class_label`); a name without its number keeps it ("1 Chesapeake Bay retriever")."""
    classes = pd.DataFrame({"key": ["c0", "c1"], "target": [0, 1], "name": ["digit 0", "goldfish"],
                            "correct": True, "label_name": ["digit 0", "goldfish"], "target_prob": 0.9,
                            "top5_probs": [[0.9, 0.1]] * 2})
    contact, = fig.contact_sheets(classes, {})
    assert {"digit 0", "1 goldfish"} <= set(_texts(contact)) and "0 digit 0" not in _texts(contact)
    opposites, = fig.opposites_grid(classes, _opposites(), {})
    assert "digit 0" in _texts(opposites) and "0 digit 0" not in _texts(opposites)
    assert "1 Chesapeake Bay retriever" in _texts(opposites)


def test_opposites_alone_under_one_image_give_a_long_class_name_a_second_line():
    page, = fig.opposites_grid(None, _opposites(), {})
    texts = [t.get_text() for t in page.texts]
    assert texts[texts.index("1 Chesapeake") + 1] == "Bay retriever"
    assert max(_caption_widths(page).values()) <= fig.GRID_THUMB


def test_dream_cells_give_the_seen_classes_probability():
    """Audit: a dream cell said "-> digit 9" with no probability."""
    rows = pd.DataFrame({"key": ["d0", "d1"], "variant": "block2", "source": "photo.png", "target": -1, "seed": 0,
                         "label": [2, 0]})
    logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]))
    page, = fig.source_grid("dream", rows, {}, {}, ["a", "b", "c"], logits=logits)
    texts = [t.get_text() for t in page.texts]
    assert "-> c, p = 0.700" in texts and "-> a, p = 0.500" in texts
    page, = fig.source_grid("dream", rows, {}, {}, ["a", "b", "c"])   # without logits: the class alone
    assert "-> c" in [t.get_text() for t in page.texts]


def test_transfiguration_cells_name_the_target_as_every_page_does():
    """The transfiguration grid's head read "2 digit 2" where every other page says "digit 2" (`class_label`)."""
    rows = pd.DataFrame({"key": ["t0", "t1"], "variant": "", "source": "photo.png", "target": [2, 1], "seed": 0,
                         "label": [2, 0], "target_prob": [0.9, 0.1]})
    page, = fig.source_grid("transfigure", rows, {}, {}, ["digit 0", "goldfish", "digit 2"])
    texts = _texts(page)
    assert "digit 2" in texts and "1 goldfish" in texts and "2 digit 2" not in texts


def _addition(variant, ranks, label, **more):
    a, b = 0, 3
    return {"key": f"addition:{variant}:{a}:{b}:0", "variant": variant, "seed": 0, "target": a,
            "target_name": "digit 0", "partner": b, "partner_name": "digit 3", "target_rank": ranks[0],
            "partner_rank": ranks[1], "label": label, "label_name": f"digit {label}",
            "top_two": max(ranks) <= 2, **more}


def test_additions_grid_names_the_class_that_got_in_not_a_member_of_the_pair():
    """Audit: 0+3 merge showed "#3/#1 -> digit 3", the partner, when digit 9 had pushed digit 0 out."""
    rows = [_addition("merge", (3, 1), 3, intruder=9, intruder_name="digit 9", intruder_rank=2),
            _addition("juxtapose", (2, 3), 7, intruder=7, intruder_name="digit 7", intruder_rank=1)]
    texts = _texts(fig.additions_grid(pd.DataFrame(rows), {})[0])
    assert texts[texts.index("merge: #3/#1") + 1] == "in: digit 9 #2"
    assert texts[texts.index("juxtapose: #2/#3") + 1] == "in: digit 7 #1"
    assert not any("digit 3" in t for t in texts if t != "digit 0 + digit 3")


def test_additions_grid_names_each_images_seed_when_a_seed_is_not_0():
    """Report hunt: a store of two seeds drew each pair twice under the same caption ("apple + bear", the same
    ranks), with nothing saying which image was which seed's."""
    rows = [_addition("merge", (1, 2), 0), {**_addition("merge", (2, 1), 0), "seed": 1,
                                             "key": "addition:merge:0:3:1"}]
    texts = _texts(fig.additions_grid(pd.DataFrame(rows), {})[0])
    assert texts.index("seed 0") < texts.index("seed 1")
    assert "seed 0" not in _texts(fig.additions_grid(pd.DataFrame(rows[:1]), {})[0])   # a store of one seed: as before


def _stability(rows):
    return pd.DataFrame(rows, columns=["model", "job", "octave", "change_rate", "target_top1_share"])


def test_stability_figures_change_rate_axis_starts_at_0_when_every_value_is_missing():
    """Report hunt: with one recorded step an octave every change rate is n/a, and the panel's axis ran from -0.05
    to 0.05, negative changes for a rate."""
    figure = fig.stability_figure(_stability([("digits", "octave", 1, np.nan, 0.0), ("digits", "octave", 2, np.nan,
                                                                                  0.0)]))
    assert figure.axes[0].get_ylim()[0] == 0


def test_stability_figure_draws_one_job_the_models_share_and_names_it():
    """Audit: without octave rows, addition and opposite rows were averaged per model under the title "(addition
    images)": 0.209 = (0.311 + 0.107) / 2."""
    summary = _stability([("resnet", "addition", 1, 0.311, 0.4), ("resnet", "addition", 2, 0.311, 0.4),
                          ("resnet", "addition", 3, 0.311, 0.4), ("resnet", "opposite", 1, 0.107, 0.0),
                          ("digits", "opposite", 1, 0.2, 0.0)])
    assert fig.stability_job(summary) == "opposite"              # the one both models have, though fewer rows
    figure = fig.stability_figure(summary)
    assert "(opposite images)" in figure._suptitle.get_text()
    assert figure.axes[1].get_title() == "share of recorded steps with the minimised class top-1 (low: success)"
    assert fig.share_title("octave", "recorded steps") == "share of recorded steps with the target top-1"
    assert fig.share_title("addition", "recorded steps").startswith("share of recorded steps with its first class")
    assert [round(p.get_height(), 3) for p in figure.axes[0].patches] == [0.107, 0.2]
    assert fig.stability_job(_stability([("a", "opposite", 1, 0, 0), ("a", "octave", 1, 0, 0)])) == "octave"


def test_stability_bars_of_zero_and_missing_values_are_labelled():
    """Audit: a change rate of 0 drew nothing, the same as a missing value."""
    summary = _stability([("a", "octave", 1, 0.5, 1.0), ("a", "octave", 2, 0.0, np.nan)])
    figure = fig.stability_figure(summary)
    assert [t.get_text() for t in figure.axes[0].texts] == ["0.50", "0.00"]
    assert [t.get_text() for t in figure.axes[1].texts] == ["1.00", "n/a"]


def test_stability_grid_lines_are_drawn_behind_the_bars():
    figure = fig.stability_figure(_stability([("a", "octave", 1, 0.5, 1.0), ("b", "octave", 1, 0.2, 0.7)]))
    for ax in figure.axes:
        bars = [patch.get_zorder() for patch in ax.patches]
        assert bars and ax.yaxis.get_zorder() < min(bars)     # the axis draws its grid lines


def test_interpolation_strip_writes_no_negative_zero():
    """Audit: a class interpolation strip printed "-0.0"."""
    frames = pd.DataFrame({"target": [0, 0], "partner": [1, 1], "source": "photo", "seed": 0, "step": [1, 2],
                           "key": ["f0", "f1"]})
    texts = _texts(fig.interpolation_strip(frames, np.array([[-0.04, 2.0], [3.0, -0.0]]), None, {}, ["a", "b"]))
    assert "a: 0.0" in texts and "b: 0.0" in texts and not any("-0.0" in t for t in texts)
    assert fig.one_decimal(-0.06) == "-0.1"


def _snapshots(key, label, logits, partner=-1):
    from sweep.store import encode_png
    return pd.DataFrame({"key": [key], "step": [0], "octave": [0], "target": [2], "label": [label], "partner": partner,
                         "logits": [np.asarray(logits, float)], "png": [encode_png(np.zeros((8, 8, 3), np.uint8))]})


def test_trajectory_frame_marks_an_additions_partner_and_keeps_the_legend_off_the_points():
    """Audit: the legend covered a point low on the right; in addition:merge:2:9:0 only digit 2 was marked, and the
    title "argmax: digit 9" was black as if 9 were a failure."""
    from matplotlib.colors import to_hex
    names = [f"digit {i}" for i in range(10)]
    logits = [3, 2, 8, 0, 1, 0, 0, 0, 0, 9.0]
    logits[9] = -4.7 + 14   # the partner on top; a low point at the right edge, where the legend sat
    low = list(logits)
    low[8] = -4.7
    frame, = fig.trajectory_frames(_snapshots("addition:merge:2:9:0", 9, low, partner=9), names)
    image_ax, right = frame.axes
    marked = {to_hex(c.get_facecolors()[0]): c.get_offsets().tolist() for c in right.collections[1:]}
    assert marked == {drawing.BAD: [[2, 8.0]], drawing.PARTNER: [[9, 9.3]]}
    assert to_hex(right.title.get_color()) == drawing.GOOD and right.get_title() == "argmax: digit 9"
    legend, = frame.legends
    assert [t.get_text() for t in legend.get_texts()] == ["target: digit 2", "partner: digit 9"]
    renderer = frame.canvas.get_renderer()
    for covered in (right, right.title):
        assert not legend.get_window_extent(renderer).overlaps(covered.get_window_extent(renderer))
    octave, = fig.trajectory_frames(_snapshots("octave:-:2:-1:0", 9, low), names)
    assert len(octave.axes[1].collections) == 2 and to_hex(octave.axes[1].title.get_color()) == drawing.INK


def test_a_trajectory_step_whose_outputs_are_not_finite_is_said_so_and_the_rest_drawn():
    """Report hunt: a recorded step whose outputs overflowed (NaN) failed `sweep figures --trajectories KEY` with
    matplotlib's "Axis limits cannot be NaN or Inf"; its frame read "argmax" of a label taken from NaN."""
    from matplotlib.colors import to_hex
    shots = pd.concat([_snapshots("octave:-:2:-1:0", 2, np.arange(10.0)),
                       _snapshots("octave:-:2:-1:0", 0, np.full(10, np.nan)).assign(step=4)], ignore_index=True)
    drawn, overflowed = fig.trajectory_frames(shots, [f"digit {i}" for i in range(10)])
    assert drawn.axes[1].get_ylim() == overflowed.axes[1].get_ylim() and np.isfinite(drawn.axes[1].get_ylim()).all()
    assert drawn.axes[1].get_title() == "argmax: digit 2"
    assert overflowed.axes[1].get_title() == "outputs not finite (NaN or inf)"
    assert to_hex(overflowed.axes[1].title.get_color()) == drawing.BAD


def test_direction_distribution_counts_images_in_whole_numbers():
    """Report hunt: a group of four images had a tick at "2.5" images."""
    positions = np.array([-5.0, -5.0, -5.0, -5.0, -3.0, 4.0, 5.0])
    groups = np.array(["round"] * 5 + ["straight"] * 2)
    figure = fig.direction_distribution(positions, groups, ["round", "straight"], "dir")
    figure.canvas.draw()
    ticks = [t for ax in figure.axes for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_direction_distribution_has_one_histogram_per_group():
    positions = np.array([-1.0, -0.5, 0.2, 0.9, 1.0, 0.0])
    groups = np.array(["a", "a", "b", "b", "b", ""])
    figure = fig.direction_distribution(positions, groups, ["a", "b", ""], "dir")
    assert [ax.get_title(loc="left") for ax in figure.axes] == ["a", "b", "(no group)"]
    assert [ax.get_ylabel() for ax in figure.axes] == ["images"] * 3   # audit: the counts had no label
    assert figure.axes[-1].get_xlabel() == "position along the direction" and figure._suptitle.get_text() == "dir"
    assert [sum(p.get_height() for p in ax.patches) for ax in figure.axes] == [2, 3, 1]


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_a_figure_saves_as_png_svg_and_pdf(fmt, magic):
    figure = fig.labelled_scatter([0, 1], [0, 1], ["a", "b"], title="t", xlabel="x", ylabel="y", size=(300, 200))
    data = drawing.save(figure, fmt)
    assert data.startswith(magic)
    if fmt == "png":
        import io
        assert Image.open(io.BytesIO(data)).size == (300, 200)
    if fmt == "svg":
        assert b">t</text>" in data   # text stays text


@pytest.mark.parametrize("size, side, expected", [((64, 32), 96, (96, 48)), ((300, 300), 96, (96, 96)),
                                                  ((96, 10), 96, (96, 10))])
def test_fit_image(size, side, expected):
    assert drawing.fit_image(Image.new("RGB", size), side).size == expected


DOLLARS = ("sale_$5_$10", "$5 or $10", "x$^$y")   # two '$' each: mathtext to matplotlib, and no valid TeX in two


def test_names_with_dollar_signs_are_drawn_as_written_not_parsed_as_mathtext():
    """Report hunt: a photograph named sale_$5_$10.jpg made matplotlib parse "5_" as TeX, and the report failed."""
    import matplotlib
    cells = [drawing.Cell((None,), ((name, drawing.INK),)) for name in DOLLARS]
    grid = drawing.grid_pages(cells, title=f"from {DOLLARS[0]}", columns=3, rows=1, thumb=96)[0]
    scatter = fig.labelled_scatter([0, 1, 2], [2, 0, 1], DOLLARS, title=DOLLARS[1], xlabel=DOLLARS[2], ylabel="y")
    for figure in (grid, scatter):
        drawing.rgb_pixels(figure)   # draws: raised ValueError (ParseSyntaxException)
        drawing.save(figure, "svg")
    assert set(DOLLARS) <= set(_texts(grid)) and {a.get_text() for a in _annotations(scatter.axes[0])} == set(DOLLARS)
    assert matplotlib.rcParams["text.parse_math"]   # the caller's setting is left as it was
