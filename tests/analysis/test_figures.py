"""Drawing helpers: ticks, label placement, scatter/graph drawings in PNG and SVG, paginated grids."""
import xml.etree.ElementTree as ET

import networkx as nx
import numpy as np
import pytest
from PIL import Image

from analysis import figures as fig


def test_nice_ticks_are_round_and_cover_the_range():
    ticks = fig.nice_ticks(-0.13, 0.92)
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0]) and steps[0] in (0.1, 0.2, 0.25, 0.5)
    assert ticks[0] >= -0.13 and ticks[-1] <= 0.92 and len(ticks) >= 4


def test_fit_shortens_text_to_a_width():
    long = "a very long class name that would not fit"
    short = fig.fit(long, 11, 80)
    assert short.endswith("...") and fig.text_width(short, 11) <= 80
    assert fig.fit("ok", 11, 80) == "ok"


def test_placed_labels_never_overlap():
    placer = fig.LabelPlacer((0, 0, 400, 300))
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, [400, 300], (300, 2)):
        placer.place(x, y, "label text", 10)
    b = placer.boxes
    assert 10 < len(b) < 300
    overlap = ((b[:, None, 0] < b[None, :, 2]) & (b[:, None, 2] > b[None, :, 0])
               & (b[:, None, 1] < b[None, :, 3]) & (b[:, None, 3] > b[None, :, 1]))
    np.fill_diagonal(overlap, False)
    assert not overlap.any()


def test_scatter_renders_to_png_and_valid_svg_with_a_tooltip_per_point():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 500))
    names = [f"class {i}" for i in range(500)]
    d = fig.scatter(x, y, names, title="t", xlabel="x", ylabel="y", size=(800, 600))
    png = fig.to_png(d)
    assert png.size == (800, 600) and len(png.getcolors(maxcolors=100000)) > 5
    root = ET.fromstring(fig.to_svg(d))
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert sorted(titles) == sorted(names)
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text in set(names)]
    assert 20 < len(labels) < 500   # crowded: only a subset is labelled


def test_graph_pages_draw_every_component():
    g = nx.DiGraph()
    comps = [list(range(i * 10, i * 10 + s)) for i, s in enumerate([7, 5, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])]
    for members in comps:
        for a, b in zip(members, members[1:] + members[:1]):
            g.add_node(a, name=f"n{a}", has_image=True)
            g.add_edge(a, b)
    pages = fig.graph_pages(g, comps, title="g")
    svg = "".join(fig.to_svg(p) for p in pages)
    for i in range(len(comps)):
        assert f"component {i}:" in svg
    assert all(p.width <= fig.PAGE_WIDTH and p.height <= fig.PAGE_MAX_HEIGHT + 100 for p in pages)
    small = fig.graph_pages(g, comps[-1:], title="g")
    assert len(small) == 1 and small[0].width < 700   # one small component: a small page


def test_grid_pages_paginate():
    tile = Image.new("RGB", (32, 32), "red")
    cells = [fig.Cell((tile, None), ((f"cell {i}", fig.INK),)) for i in range(23)]
    pages = fig.grid_pages(cells, title="grid", columns=3, rows=4, thumb=40)
    assert len(pages) == 2
    # first page: 3 columns of two 40-px images; red pixels where images are, grey where one is missing
    assert pages[0].getpixel((12 + 20, 44 + 20)) == (255, 0, 0)
    assert pages[0].getpixel((12 + 44 + 20, 44 + 20)) != (255, 0, 0)


@pytest.mark.parametrize("size, side, expected", [((64, 32), 96, (96, 48)), ((300, 300), 96, (96, 96)),
                                                  ((96, 10), 96, (96, 10))])
def test_fit_image(size, side, expected):
    assert fig.fit_image(Image.new("RGB", size), side).size == expected
