"""Every figure of `sweep figures` and `sweep directions`, as a public function: tables (and thumbnails) in, a
matplotlib `Figure` out (for paginated figures a `Pages` sequence of Figures, each built when indexed), so that a
notebook can call one, restyle it and save it as PNG, SVG or PDF:

    contact_sheets, opposites_grid, additions_grid, source_grid      paginated image grids (100 / 50 cells a page)
    interpolation_strip (+ interpolation_gif, Pillow)                 one interpolation's frames with two logits
    output_pca, feature_scatter                                       labelled scatter plots
    graph_pages                                                       the nearest-neighbour graph (or a class
                                                                      range's), per component
    direction_distribution, direction_strip                           `sweep directions`
    trajectory_frames (+ trajectory_gif), stability_figure            generation trajectories (`--trajectory`)

Thumbnails are `dict[key, PIL.Image]` (see `drawing.thumbnail`); a key without one is drawn as missing. Writing files
is `report.py`'s job.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.drawing import (BAD, GOOD, INK, MUTED, OTHER, PALETTE, PARTNER, Cell, Pages, caption_px, declutter,
                              fit_text, gif_bytes, grid_figure, grid_pages, isolation_order, literal_text,
                              marker_radius, new_figure, text_px, wrap_lines)
from analysis.graph import ClassRange, component_hubs, graph_from_tables, range_graph
from analysis.load import OUTPUTS_FINITE
from jobs.catalog import job_of_key, job_variant_name
from jobs.outputs import NOT_FINITE, finite_rows, label_probs
from jobs.text import class_label, named_class, size_note

GRID_THUMB = 96          # px, images in the grids
CONTACT = (10, 10)       # columns x rows per contact-sheet page
PAIRS = (5, 10)          # columns x rows per opposites / additions / source-image page
VARIANT_ORDER = ("merge", "juxtapose")
SCATTER_TITLE_SLACK = 60  # px of a scatter plot's width its title's lines keep clear of (30 px each side)
GRAPH_PANELS = (4, 4)    # columns x rows of small components per graph page
GRAPH_PANEL_PX = 420     # px, the side of a small component's panel
GRAPH_BIG = 40           # a component of at least this many classes gets a page of its own
GRAPH_BIG_PX = (900, 1700)   # px, the side of a big component's page: 180 px per sqrt(class), within these
GRAPH_CROWDED = 300      # classes above which a component's page grows on past GRAPH_BIG_PX[1], with sqrt(classes)
GRAPH_CROWDED_PX = 2600  #   up to this side (a 694-class component had a dense centre of unlabelled nodes at 1700)
GRAPH_TINY = 3           # a component of at most this many classes (a pair, mostly) gets a panel of a quarter's area:
GRAPH_TINY_PANELS = (8, 8)   # columns x rows of them per page (a 1000-class graph has dozens; at 420 px 16 pairs
GRAPH_TINY_PX = 210          #   took a 1680 x 1740 page of empty panels), and their panels' side in px
GRAPH_HEAD = 60          # px above a graph page's panels: the page title, then the first row's panel titles
GRAPH_TITLE_PX = 24      # px between rows of graph panels, for the panel titles
GRAPH_TITLE_FONT = 11    # pt, a graph panel's title
GRAPH_PAGE_FONT = 14     # pt, a graph page's title
GRAPH_LABEL_FONT = 8.5   # pt, the class names on a graph panel
GRAPH_PAD_PX = 16        # px between a graph panel's outermost nodes and its edges (room for a hub's marker and a
                         #   mutual pair's bent arrows; a name that does not fit beside a node goes to its other side)


def _flag(value) -> bool | None:
    """A nullable boolean cell as True, False or None."""
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) \
        else bool(value)


# --- image grids -------------------------------------------------------------------------------------------------

def contact_sheets(classes: pd.DataFrame, thumbs: Mapping, *, thumb: int = GRID_THUMB) -> Pages:
    """Every class image (`classes` table) with its class's probability; red: labelled as another class, named
    with its own probability (the first of `top5_probs`), so that a wrong label is not read with the class's p.
    A long class name takes a second line."""
    cells = []
    for r in classes.itertuples():
        lines = [(named_class(r.target, r.name), INK), (f"p = {r.target_prob:.3f}", GOOD if r.correct else BAD)]
        if not r.correct:   # the p kept whole: a long name is cut before it
            lines.append((fit_text(f"-> {r.label_name}", caption_px(1, thumb), tail=f" {r.top5_probs[0]:.2f}"),
                          BAD))
        cells.append(Cell((thumbs.get(r.key),), tuple(lines), wrap=0))
    return grid_pages(cells, title="Class images: octave, lowest seed", columns=CONTACT[0], rows=CONTACT[1],
                      thumb=thumb)


def opposites_grid(classes: pd.DataFrame | None, opposites: pd.DataFrame, thumbs: Mapping, *,
                   thumb: int = GRID_THUMB) -> Pages:
    """Each class image beside the image minimising its logit, with the opposite by argmax and its probability on
    that image ("mutual" when the opposite's own opposite is the class: a relation, in ink, not green's success),
    and by the article's margin criterion on the class image (or, without a class image, the project's standout
    statistic on the opposite image). `classes` None (a store without class images): the opposite images alone,
    a long class name on two lines."""
    class_key = None if classes is None else dict(zip(classes["target"], classes["key"]))
    cells = []
    for r in opposites.itertuples():
        mutual = ", mutual" if _flag(r.mutual) else ""
        images = (thumbs.get(r.key),) if class_key is None else (thumbs.get(class_key.get(r.target, "")),
                                                                 thumbs.get(r.key))
        cells.append(Cell(images,
                          ((named_class(r.target, r.name), INK),
                           (f"opposite: {r.opposite_name}", INK),
                           (f"p = {r.opposite_prob:.3f}{mutual}", INK),
                           (f"article's margin: {r.margin_opposite_name}" if getattr(r, "margin_opposite", -1) >= 0
                            else f"standout: {r.standout_opposite_name}", MUTED)),
                          wrap=0 if class_key is None else -1))
    title = "Opposites: " + ("" if class_key is None else "class image | ") + "image minimising the class"
    return grid_pages(cells, title=title, columns=PAIRS[0], rows=PAIRS[1], thumb=thumb)


def addition_variants(additions: pd.DataFrame) -> list[str]:
    variants = [v for v in VARIANT_ORDER if v in set(additions["variant"])]
    return variants + sorted(set(additions["variant"]) - set(variants))


def additions_grid(additions: pd.DataFrame, thumbs: Mapping, *, thumb: int = GRID_THUMB) -> Pages:
    """Per pair and seed, each variant's image with both classes' ranks (green: the two are the top two; red:
    named with the class that got in: `additions_table`'s intruder, the strongest class outside the pair), and its
    seed when the table holds another than seed 0 (`seed_named`)."""
    variants = addition_variants(additions)
    width = caption_px(len(variants), thumb)
    seeded = seed_named(additions)
    cells = []
    for _, group in additions.groupby(["target", "partner", "seed"], sort=True):
        by_variant = {r.variant: r for r in group.itertuples()}
        first = group.iloc[0]
        lines = [(f"{first.target_name} + {first.partner_name}", INK)]
        for v in variants:
            r = by_variant.get(v)
            if r is not None:
                ranks = f"{v}: #{r.target_rank}/#{r.partner_rank}"
                if r.top_two:
                    lines.append((f"{ranks} both top-2", GOOD))
                    continue
                lines += [(ranks, BAD), (fit_text(f"in: {r.intruder_name}", width, tail=f" #{r.intruder_rank}"), BAD)]
        if seeded:   # else a pair's cells of two seeds read the same
            lines.append((f"seed {first.seed}", MUTED))
        cells.append(Cell(tuple(thumbs.get(by_variant[v].key) if v in by_variant else None for v in variants),
                          tuple(lines)))
    return grid_pages(cells, title=f"Additions: {' | '.join(variants)}", columns=PAIRS[0], rows=PAIRS[1],
                      thumb=thumb)


def seed_named(additions: pd.DataFrame) -> bool:
    """Whether the additions' captions name each image's seed: when any is not seed 0 (a store of several seeds,
    or `--seeds` choosing another), where a pair's images of two seeds were captioned alike."""
    return bool((additions["seed"] != 0).any())


SOURCE_GRIDS = {
    "transfigure": ("Transfiguration", "source image | pushed toward the class",
                    "Each source image beside the image it became when pushed toward a class, with the "
                    "class's probability (red: labelled as another class)."),
    "dream": ("Deep dream", "source image | dream",
              "Each source image beside its dream: the layer's activation raised through the octaves "
              "(whole layers without blur, chosen feature maps blurred each step); labelled by the layer and the "
              "class the model now sees, with its probability."),
    "directed-dream": ("Directed dream", "source image | directed dream",
                       "Each source image beside its directed dream: the layer objective plus a class "
                       "objective, blurred every few steps; with the class's probability."),
}


def source_grid(job: str, rows: pd.DataFrame, sources: Mapping, thumbs: Mapping, names: Sequence[str], *,
                logits: np.ndarray | None = None, thumb: int = GRID_THUMB) -> Pages:
    """Images of one job from real images (`rows`: store rows of that job) beside their source photograph
    (`sources`: source name -> thumbnail). A dream has no target: it is labelled with the class the model sees and,
    given the rows' `logits` (N x n_classes, in `rows`' order) or a `label_prob` column, that class's probability.
    An image whose outputs are not finite (the logits', or an OUTPUTS_FINITE column's, word; `sweep analyze` leaves
    it out) is captioned NOT_FINITE instead of a probability or a label read from NaN."""
    title, legend, _ = SOURCE_GRIDS[job]
    if logits is not None:
        rows = rows.assign(label_prob=label_probs(logits, rows["label"].to_numpy()),
                           **{OUTPUTS_FINITE: finite_rows(logits)})
    cells = []
    for r in rows.sort_values(["variant", "source", "target", "seed"], kind="mergesort").itertuples():
        seen = names[r.label] if 0 <= r.label < len(names) else str(r.label)
        head = f"layer {r.variant}" if job == "dream" else \
            class_label(r.target, names) + (f" ({r.variant})" if r.variant else "")
        if not getattr(r, OUTPUTS_FINITE, True):
            lines = ((head, INK), (NOT_FINITE, BAD))
        elif job == "dream":
            p = getattr(r, "label_prob", np.nan)
            lines = ((head, INK),
                     (fit_text(f"-> {seen}", caption_px(2, thumb), tail="" if np.isnan(p) else f", p = {p:.3f}"),
                      MUTED))
        else:
            good = r.label == r.target
            lines = ((head, INK), (f"p = {r.target_prob:.3f}" + ("" if good else f"  -> {seen}"),
                                   GOOD if good else BAD))
        cells.append(Cell((sources.get(r.source), thumbs.get(r.key)), (*lines, (f"{r.source}, seed {r.seed}", MUTED))))
    return grid_pages(cells, title=f"{title}: {legend}", columns=PAIRS[0], rows=PAIRS[1], thumb=thumb)


def one_decimal(value: float) -> str:
    """`value` with one decimal, without the "-0.0" of a small negative number."""
    return f"{round(float(value), 1) + 0.0:.1f}"   # -0.0 + 0.0 is 0.0


def interpolation_strip(frames: pd.DataFrame, values: np.ndarray, source_thumb, thumbs: Mapping,
                        names: Sequence[str], *, thumb: int = GRID_THUMB) -> Figure:
    """One interpolation from class a to b (`frames`: its rows in order, with target, partner, source, seed, step,
    key; `values`: N x 2, class a's and class b's logit on each): the source photograph, then each frame with
    a's and b's logits, or NOT_FINITE where they (or an OUTPUTS_FINITE column) say its outputs are not finite."""
    first = frames.iloc[0]
    a, b, source, seed = int(first.target), int(first.partner), first.source, first.seed
    # the pair is named in full in the title: under one image "tench -> box turtle" was cut to "tench -> box tu…"
    cells = [Cell((source_thumb,), (("source image", INK), (str(source), MUTED), (f"seed {seed}", MUTED)))]
    width = caption_px(1, thumb)

    def logit(c: int, value: float) -> str:   # a long class name cut before its logit, which is kept whole
        return fit_text(f"{names[c]}:", width, tail=f" {one_decimal(value)}")
    for (value_a, value_b), finite, r in zip(values, shown_finite(frames, values), frames.itertuples()):
        logits = (((logit(a, value_a), PALETTE[0]), (logit(b, value_b), PALETTE[1])) if finite
                  else ((NOT_FINITE, BAD),))
        cells.append(Cell((thumbs.get(r.key),), ((f"step {r.step}", MUTED), *logits)))
    return grid_figure(cells, title=f"Interpolation from {names[a]} to {names[b]}, from {source}",
                       columns=len(cells), thumb=thumb)


def shown_finite(rows: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """Whether each shown image's outputs are finite: the numbers shown of it (`values`, N x k) and, where the rows
    have it, their OUTPUTS_FINITE column. N."""
    finite = finite_rows(np.asarray(values, dtype=float))
    return finite & rows[OUTPUTS_FINITE].to_numpy(dtype=bool) if OUTPUTS_FINITE in rows else finite


def interpolation_gif(frames: Sequence, size: tuple[int, int], duration: int = 250, hold: int = 1200) -> bytes:
    """The frames (PIL images) as a looping GIF at `size`, the last one held (Pillow; not a matplotlib figure)."""
    return gif_bytes(frames, size, duration, hold)


# --- scatter plots -----------------------------------------------------------------------------------------------

@literal_text
def labelled_scatter(x, y, labels: Sequence[str], *, title: str, xlabel: str, ylabel: str,
                     colors: Sequence[str] | None = None, subtitle: str = "",
                     size: tuple[int, int] = (1400, 1100)) -> Figure:
    """Points with as many labels as fit without overlapping, the most isolated points labelled first."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    figure = new_figure(*size)
    ax = figure.add_subplot()
    ax.scatter(x, y, s=14, c=list(colors) if colors is not None else PALETTE[0], linewidths=0, zorder=2)
    # a long subtitle (the feature scatter's names its maps, the size and the colours) on as many lines as it takes
    ax.set_title("\n".join([title, *wrap_lines(subtitle, size[0] - SCATTER_TITLE_SLACK, fontsize=12)]) if subtitle
                 else title, fontsize=12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#e4e4e4", zorder=0)
    ax.margins(0.05)
    figure.tight_layout()
    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())   # freeze the limits: the labels are measured in display space
    ax.set_ylim(ax.get_ylim())
    points = ax.transData.transform(np.column_stack([x, y])) if len(x) else np.zeros((0, 2))
    declutter(ax, x, y, labels, isolation_order(points))
    return figure


def component_colours(nodes: pd.DataFrame, targets: np.ndarray) -> list[str]:
    """The colour of each target's graph component (the ten largest get a colour, the rest grey)."""
    component = dict(zip(nodes["node"], nodes["component"]))
    return [component_colour(component.get(t, -1)) for t in targets]


def output_pca(pca: pd.DataFrame, variance: pd.DataFrame, nodes: pd.DataFrame) -> Figure:
    """The class images' outputs on their first two principal components, coloured by graph component."""
    ratio = variance["explained_variance_ratio"].to_numpy()
    r2 = ratio[1] if len(ratio) > 1 else 0.0
    return labelled_scatter(pca["pc1"], pca["pc2"], list(pca["name"]),
                            title="Output space: PCA of the class images' outputs",
                            subtitle=f"PC1 {ratio[0]:.1%} and PC2 {r2:.1%} of the variance; colours: the ten "
                                     f"largest nearest-neighbour components",
                            xlabel=f"PC1 ({ratio[0]:.1%})", ylabel=f"PC2 ({r2:.1%})",
                            colors=component_colours(nodes, pca["target"].to_numpy()))


def feature_maps(features: pd.DataFrame) -> list[str]:
    return sorted((c for c in features.columns if c.startswith("map_")), key=lambda c: int(c[4:]))


def feature_size_note(features: pd.DataFrame) -> str:
    """The size the model saw the images at, for a subtitle: `jobs.text.size_note` (the wording of the line
    `sweep analyze --features` prints) after a space, e.g. " at 299 px (resized, --feature-size input)"; "" for no
    rows."""
    if features.empty:
        return ""
    if "feature_size" not in features:
        return " " + size_note(None, ())
    return " " + size_note("input" if set(features["feature_size"]) == {"input"} else "stored", features["side"])


def class_image_features(features: pd.DataFrame, classes: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of the features table of each class's image as the analysis represents the class: its
    representative, the classes table's `key` (the lowest seed, `analysis.load.representatives`), the image the PCA
    and the graph place. The article places one generated image per class (Latent space, "Feature latent space":
    "the average activation of the two features for each generated output", one output per class); the table keeps
    every seed's. As given without a classes table or keys, or when no key is a representative's (features of
    another job's images)."""
    if classes is None or "key" not in features or "key" not in classes:
        return features
    kept = features["key"].isin(set(classes["key"])).to_numpy()
    return features[kept].reset_index(drop=True) if kept.any() else features


def feature_scatter(features: pd.DataFrame, layer: str, nodes: pd.DataFrame | None = None) -> Figure:
    """The class images of one layer of the features table by the mean activation of its first two maps (the
    article's feature latent space; the subtitle says which two when there are more); with one map, against the
    class index. With `nodes` (the graph_nodes table), coloured by graph component as the PCA is."""
    maps = feature_maps(features)
    part = features[features["layer"] == layer].sort_values("target", kind="mergesort")
    x = part[maps[0]].to_numpy(dtype=float)
    if len(maps) > 1:
        y, ylabel = part[maps[1]].to_numpy(dtype=float), f"mean activation, {layer} map {maps[1][4:]}"
    else:
        y, ylabel = part["target"].to_numpy(dtype=float), "class index"
    numbers = [m[4:] for m in maps]
    subtitle = "mean activation of chosen feature maps on each class image" + feature_size_note(part)
    if len(maps) > 2:
        subtitle += f"; maps {numbers[0]} and {numbers[1]} shown of {', '.join(numbers)}"
    if nodes is not None:
        subtitle += "; colours: the ten largest nearest-neighbour components"
    colours = None if nodes is None else component_colours(nodes, part["target"].to_numpy())
    return labelled_scatter(x, y, list(part["target_name"]), title=f"Feature latent space: {layer}",
                            subtitle=subtitle, xlabel=f"mean activation, {layer} map {numbers[0]}", ylabel=ylabel,
                            colors=colours)


# --- nearest-neighbour graph -------------------------------------------------------------------------------------

def _page_groups(sizes: Sequence[int]) -> list[list[int]]:
    """Component indices per page: a big component alone, then small ones GRAPH_PANELS at a time, then tiny ones
    (GRAPH_TINY) GRAPH_TINY_PANELS at a time (`sizes` come largest first, as the components table lists them)."""
    big = [[i] for i, n in enumerate(sizes) if n >= GRAPH_BIG]
    small = [i for i, n in enumerate(sizes) if GRAPH_TINY < n < GRAPH_BIG]
    tiny = [i for i, n in enumerate(sizes) if n <= GRAPH_TINY]
    per_small, per_tiny = GRAPH_PANELS[0] * GRAPH_PANELS[1], GRAPH_TINY_PANELS[0] * GRAPH_TINY_PANELS[1]
    return (big + [small[k:k + per_small] for k in range(0, len(small), per_small)]
            + [tiny[k:k + per_tiny] for k in range(0, len(tiny), per_tiny)])


def graph_page_numbers(sizes: Sequence[int]) -> list[int]:
    """The page of `graph_pages` (from 0) that draws each component (`sizes`: the components' sizes, as their
    table lists them)."""
    pages = [0] * len(sizes)
    for page, group in enumerate(_page_groups(sizes)):
        for i in group:
            pages[i] = page
    return pages


def _page_grid(sizes: Sequence[int]) -> tuple[int, int, float]:
    """(columns, rows, panel side in px) of a graph page showing components of `sizes` (`_page_groups`' pages)."""
    if len(sizes) == 1 and sizes[0] >= GRAPH_BIG:
        return 1, 1, big_page_side(sizes[0])
    most, side = (GRAPH_TINY_PANELS[0], GRAPH_TINY_PX) if max(sizes) <= GRAPH_TINY else (GRAPH_PANELS[0],
                                                                                       GRAPH_PANEL_PX)
    columns = min(most, len(sizes))
    return columns, math.ceil(len(sizes) / columns), side


def big_page_side(classes: int) -> float:
    """The side in px of the page of a component of `classes` (at least GRAPH_BIG) classes: 180 px per sqrt(class)
    within GRAPH_BIG_PX, and above GRAPH_CROWDED classes growing on with sqrt(classes) up to GRAPH_CROWDED_PX, so
    that more of a crowded component's names fit (the names keep their size; a page of up to GRAPH_CROWDED classes
    keeps its side)."""
    low, high = GRAPH_BIG_PX
    side = min(high, max(low, 180 * math.sqrt(classes)))
    return side if classes <= GRAPH_CROWDED else min(GRAPH_CROWDED_PX, high * math.sqrt(classes / GRAPH_CROWDED))


def graph_pages(nodes: pd.DataFrame, components: pd.DataFrame, *, seed: int = 0, span: ClassRange | None = None
                ) -> Pages:
    """The nearest-neighbour graph (`graph_nodes` and `graph_components` tables) component by component, one
    Axes each (spring layout with a fixed seed, networkx's matplotlib drawing): an arrow from each class to the
    class most activated by its image, in the component's colour as in the PCA (`draw_component`). With `span`,
    the graph of that class range (`graph.range_graph`; `components`: its rows of the graph_ranges table), titled
    with it, as the article draws each half of ImageNet's classes; a node keeps its whole-graph component's colour."""
    g = graph_from_tables(nodes)
    if span is not None:
        g = range_graph(g, span)
    members = [list(m) for m in components["members"]]
    groups = _page_groups([len(m) for m in members])

    @literal_text
    def page(p: int) -> Figure:
        group = groups[p]
        columns, rows, side = _page_grid([len(members[i]) for i in group])
        height = rows * side + GRAPH_HEAD
        figure = new_figure(columns * side, height)
        figure.suptitle(graph_page_title(span, p, len(groups), columns * side), fontsize=GRAPH_PAGE_FONT,
                        y=1 - 8 / height, va="top")
        # the panels fill the page (matplotlib's default margins left the drawing ~55% of it), a title's room apart
        figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - GRAPH_HEAD / height, wspace=0.04,
                               hspace=GRAPH_TITLE_PX / (side - GRAPH_TITLE_PX))
        for k, index in enumerate(group):
            ax = figure.add_subplot(rows, columns, k + 1)
            draw_component(ax, g, index, members[index], seed=seed,
                           colour=component_colour(g.nodes[members[index][0]]["component"]), span=span)
        return figure
    return Pages(len(groups), page)


def graph_page_title(span: ClassRange | None, page: int, pages: int, width_px: float) -> str:
    """A graph page's title within `width_px` (a page of two tiny panels is 420 px wide: the title ran off it): the
    graph (a class range's named), "by component" when it fits; on a page of one tiny panel (210 px) the range and
    the page number, tersely (cut, "Graph of classes 5…" named neither)."""
    of = "" if span is None else f" of classes {span.name}"
    number = f" (page {page + 1} of {pages})"
    key = "" if span is None else "; squares: neighbours outside the range"
    terse = [f"Graph{number}", f"Graph, {page + 1}/{pages}"] if span is None else [
        f"Classes {span.name}, {page + 1}/{pages}", f"{span.name}, {page + 1}/{pages}"]
    titles = [f"Nearest-neighbour graph{of}, by component{number}{key}",
              *([f"Nearest-neighbour graph{of}, by component{number}"] if span else []),
              f"Nearest-neighbour graph{of}{number}", *([f"Graph{of}{number}"] if span else []), *terse]
    fitting = [t for t in titles if text_px(t, GRAPH_PAGE_FONT) <= width_px]
    return fitting[0] if fitting else fit_text(titles[-1], width_px, fontsize=GRAPH_PAGE_FONT)


def _hub_title(g: nx.DiGraph, hubs: Sequence[int], shown: int = 3) -> str:
    names = [g.nodes[n]["name"] for n in hubs[:shown]] + ([f"+{len(hubs) - shown} more"] if len(hubs) > shown else [])
    return "" if not hubs else f", hub {names[0]}" if len(hubs) == 1 else f", hubs {', '.join(names)} (tie)"


def component_title(g: nx.DiGraph, index: int, members: Sequence[int], hubs: Sequence[int], width_px: float) -> str:
    """A graph panel's title within `width_px` (a small panel is 420 px: three long hub names ran into the next
    panel's title): up to three hubs named, fewer when they do not fit, else only how many tie, else none (the
    panel marks them); cut with an ellipsis as a last resort."""
    head = f"component {index}: {len(members)} classes"
    titles = [head + _hub_title(g, hubs, shown) for shown in (3, 2, 1)]
    titles += ([f"{head}, {len(hubs)} hubs (tie)"] if len(hubs) > 1 else []) + [head]   # head: the hubs' black edges
    fitting = [t for t in titles if text_px(t, GRAPH_TITLE_FONT) <= width_px]
    return fitting[0] if fitting else fit_text(titles[-1], width_px, fontsize=GRAPH_TITLE_FONT)


def fit_view(ax, xy: np.ndarray, pad_px: float = GRAPH_PAD_PX) -> None:
    """Set `ax`'s limits to the points `xy` (n x 2) with `pad_px` pixels to spare on each side, so that the drawing
    fills the panel (networkx's drawing pads its limits by 5% of the extent, and matplotlib's margins added as much
    again: a big component's page was a fifth empty). A flat extent (one point, or points on a line) is centred
    in a square of the other side."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)   # 2, 2
    widest = max(float((hi - lo).max()), 1e-9)
    flat = (hi - lo) < 1e-6 * widest
    lo, hi = np.where(flat, lo - widest / 2, lo), np.where(flat, hi + widest / 2, hi)
    box = ax.get_window_extent()
    room = np.maximum(np.array([box.width, box.height]) - 2 * pad_px, 1.0)   # px for the points, x and y
    pad = (hi - lo) * pad_px / room
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])


def component_colour(index: int) -> str:
    """Component `index`'s colour, the same in the graph as in the PCA (`component_colours`)."""
    return PALETTE[index] if 0 <= index < len(PALETTE) else OTHER


def draw_component(ax, g: nx.DiGraph, index: int, members: Sequence[int], *, seed: int = 0,
                   colour: str | None = None, span: ClassRange | None = None) -> None:
    """One component on `ax`: nodes in the component's colour (`colour`, by default component `index`'s as in the
    PCA; hollow: a class without an image of its own; with `span`, a square: a class outside that range, there as
    the neighbour of one in it), its hubs larger with a black edge, arrows (a mutual pair's two arcs bent apart, so
    both show) and as many class names as fit, the most pointed-at first."""
    sub = g.subgraph(members)
    hubs = set(component_hubs(g, members))   # the components table's rule, ties and all
    pos = nx.spring_layout(nx.Graph(sub.to_undirected(as_view=True)), seed=seed)
    colour = colour or component_colour(index)
    size = 40 if len(members) < 200 else 15
    nodes = list(members)
    area = {n: 3 * size if n in hubs else size for n in nodes}          # points², a hub's three times
    edge = {n: 1.5 if n in hubs else 1.0 for n in nodes}                # points
    sizes = [area[n] for n in nodes]
    for shape, drawn in (("o", [n for n in nodes if span is None or n in span]),
                         ("s", [n for n in nodes if span is not None and n not in span])):   # s: outside the range
        if drawn:
            nx.draw_networkx_nodes(sub, pos, nodelist=drawn, node_shape=shape, ax=ax,
                                   node_size=[area[n] for n in drawn],
                                   node_color=[colour if g.nodes[n]["has_image"] else "white" for n in drawn],
                                   edgecolors=[INK if n in hubs else colour for n in drawn],
                                   linewidths=[edge[n] for n in drawn])
    edges = sorted(sub.edges)
    mutual = [(u, v) for u, v in edges if sub.has_edge(v, u)]
    single = [(u, v) for u, v in edges if not sub.has_edge(v, u)]
    for part, style in ((single, "arc3"), (mutual, "arc3,rad=0.2")):
        if part:
            nx.draw_networkx_edges(sub, pos, edgelist=part, nodelist=nodes, node_size=sizes, edge_color="#9aa5b1",
                                   width=1.0, arrows=True, arrowsize=8, connectionstyle=style, ax=ax)
    ax.set_title(component_title(g, index, members, sorted(hubs), ax.get_window_extent().width),
                 fontsize=GRAPH_TITLE_FONT, color=INK)
    ax.set_axis_off()
    xy = np.array([pos[n] for n in members], dtype=float)   # n x 2
    fit_view(ax, xy)   # before `declutter`, which measures the labels in display space
    order = sorted(range(len(members)), key=lambda i: (-g.in_degree(members[i]), members[i]))   # hubs first
    declutter(ax, xy[:, 0], xy[:, 1], [g.nodes[n]["name"] for n in members], order, fontsize=GRAPH_LABEL_FONT,
              max_chars=20, radii=[marker_radius(area[n], edge[n]) for n in members])


# --- sweep directions --------------------------------------------------------------------------------------------

@literal_text
def direction_distribution(positions: np.ndarray, groups: np.ndarray, order: Sequence[str], title: str) -> Figure:
    """One histogram per group (in `order`; '' is the images in no group, named "(no group)" above its panel) on a
    shared position axis, counting images."""
    rows = [g for g in order if (np.asarray(groups) == g).any()]
    figure = new_figure(1000, 120 + 100 * len(rows))
    axes = figure.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    lo, hi = float(positions.min()), float(positions.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    for r, (ax, group) in enumerate(zip(axes, rows)):
        ax.hist(positions[groups == group], bins=bins, color=PALETTE[r % len(PALETTE)])
        ax.set_title(group or "(no group)", loc="left", fontsize=10)
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))   # counts: a tick at 2.5 images read as a count
        ax.spines[["top", "right"]].set_visible(False)
    figure.suptitle(title)
    axes[-1].set_xlabel("position along the direction")
    figure.tight_layout()
    return figure


def image_label(name: str, job: str, seed: int, source: str = "") -> str:
    """A stored image in words: "digit 0 (octave, seed 0)", "digit 0 (transfigure of cat.jpg, seed 1)"."""
    return f"{name or 'no class'} ({job}{f' of {source}' if source else ''}, seed {seed})"


def direction_strip(images: pd.DataFrame, thumbs: Mapping, title: str, *, thumb: int = GRID_THUMB) -> Figure:
    """The start image and the stored images nearest to points along the line through it (`images`: key,
    target_name, position, group, and start, True on the start image's row; job, seed and source when known), left
    to right by position, each with its position, class (on two lines when long), the job that made it and its seed,
    its source photograph, and group; the start image's position is marked "start" in red. As in the
    latent-directions article's strips ("Starting with #3, other images are retrieved that are closest to the line"),
    the start image stands where its own position puts it."""
    ordered = images.sort_values("position", kind="mergesort")
    cells = []
    for r in ordered.itertuples():
        source = getattr(r, "source", "")
        made = [(str(r.job), MUTED)] if hasattr(r, "job") else []
        made += [(f"of {source}", MUTED)] if isinstance(source, str) and source else []
        made += [(f"seed {r.seed}", MUTED)] if hasattr(r, "seed") else []
        cells.append(Cell((thumbs.get(r.key),), ((f"start {r.position:+.2f}" if r.start else f"{r.position:+.2f}",
                                                  BAD if r.start else INK),
                                                 (str(r.target_name), INK), *made, (r.group or "-", MUTED)),
                          wrap=1))
    return grid_figure(cells, title=title, columns=len(cells), thumb=thumb)


# --- generation trajectories (`sweep run --trajectory`) ----------------------------------------------------------

TRAJECTORY_SIZE = (900, 420)   # px, one video frame: the image and the scatter of outputs side by side
MARKED_ROLES = {"interpolate": ("class a", "class b"),   # what a video's legend calls its red and blue classes, by
                "opposite": ("minimised class", "partner")}   # job: an interpolation goes from class a to class b,
                                                              #   an opposite minimises its class


def marked_roles(key: str) -> tuple[str, str]:
    """The names of the two classes a trajectory video marks (red, blue) for the image `key`: "target" and "partner"
    (an addition's), an interpolation's "class a" and "class b", an opposite's "minimised class"."""
    return MARKED_ROLES.get(job_of_key(str(key)), ("target", "partner"))


def snapshot_partner(row) -> int | None:
    """The second class of a recorded image (an addition's or interpolation's `partner`, which `report.read_snapshots`
    takes from the store's images/); None without one."""
    partner = row.get("partner")
    return int(partner) if partner is not None and pd.notna(partner) and partner >= 0 else None


def trajectory_frames(snapshots: pd.DataFrame, names: Sequence[str], *, size: tuple[int, int] = TRAJECTORY_SIZE
                      ) -> Pages:
    """Input generation article, "InceptionV3 and GoogleNet Compared": "each gradient descent iteration ... with a
    scatterplot of the activation values for each output class at that iteration on the right". One Figure per
    recorded snapshot of one image (`snapshots`: its trajectories/ rows with a png, in step order, with step,
    octave, target, label and logits; a row with `final` True is the stored final image, `report.with_final_image`):
    the image the step cropped from on the left, every class's output at that step on the right (x: class index),
    the target in red and a second class (`snapshot_partner`: an addition's partner) in blue, named in a legend
    above the panel as `marked_roles` calls them (an interpolation's class a and class b, an opposite's minimised
    class); the argmax in the panel's title, green when it is one of them (red when it is an opposite's minimised
    class), or NOT_FINITE on a step whose outputs are not finite. The y-axis spans all frames' finite outputs, so the
    video shows the outputs move."""
    snapshots = snapshots.sort_values("step").reset_index(drop=True)
    values = np.stack(snapshots["logits"].to_numpy()) if len(snapshots) else np.zeros((0, len(names)))  # F x C
    finite = values[np.isfinite(values)]   # a step whose outputs overflowed has no place on the axis
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)

    @literal_text
    def build(index: int) -> Figure:
        from analysis.drawing import decode
        r = snapshots.iloc[index]
        target = int(r.target) if pd.notna(r.target) and r.target >= 0 else None
        figure = new_figure(*size)
        left, right = figure.add_axes((0.02, 0.08, 0.40, 0.80)), figure.add_axes((0.52, 0.12, 0.45, 0.70))
        left.imshow(decode(r.png), interpolation="nearest")
        left.set_axis_off()
        final = "final image, " if bool(r.get("final", False)) else ""
        left.set_title(f"{final}step {int(r.step)} (octave {int(r.octave) + 1})", fontsize=10)
        v = values[index]
        others = np.ones(len(v), bool)
        partner = snapshot_partner(r)
        roles = marked_roles(r.get("key", ""))   # a table without keys: target and partner
        marked = {c: (colour, role) for c, colour, role in ((target, BAD, roles[0]), (partner, PARTNER, roles[1]))
                  if c is not None}
        for c in marked:
            others[c] = False
        right.scatter(np.flatnonzero(others), v[others], s=8, c=MUTED, linewidths=0)
        for c, (colour, role) in marked.items():
            right.scatter([c], [v[c]], s=40, c=colour, linewidths=0, zorder=3, label=f"{role}: {names[c]}")
        if marked:   # above the panel, where it covers no point
            figure.legend(loc="upper right", bbox_to_anchor=(0.98, 1.0), ncols=len(marked), fontsize=8,
                          frameon=False)
        right.set_ylim(low - pad, high + pad)
        right.set_xlabel("class")
        right.set_ylabel("output")
        label = int(r.label)
        if job_of_key(str(r.get("key", ""))) == "opposite":   # its class on top is the failure, not a success
            colour = BAD if label == target else INK
        else:
            colour = GOOD if label in marked else INK
        title = f"argmax: {names[label] if 0 <= label < len(names) else label}"
        if not np.isfinite(v).all():   # no argmax to read from NaN (its stored label says nothing)
            title, colour = f"{NOT_FINITE} (NaN or inf)", BAD
        right.set_title(title, fontsize=10, color=colour)
        return figure
    return Pages(len(snapshots), build)


def trajectory_gif(frames: Sequence[np.ndarray], duration: int = 200, hold: int = 1200) -> bytes:
    """The frames (`trajectory_frames`' Figures drawn: H x W x 3 `rgb_pixels`) joined into a looping GIF (Pillow).
    Pixels, not Figures: the MP4 is made from the same ones, so that each frame is drawn once."""
    from PIL import Image
    images = [Image.fromarray(f) for f in frames]
    return gif_bytes(images, images[0].size, duration, hold)


def stability_job(summary: pd.DataFrame) -> str:
    """The one job `stability_figure` draws: octave when there are octave rows, else the job with the most rows among
    those every model has (else among all); "" for an empty summary. Ties go to the first in name order."""
    if not len(summary):
        return ""
    if (summary["job"] == "octave").any():
        return "octave"
    return _most_shared(summary, "job")


def stability_variant(summary: pd.DataFrame, job: str) -> str:
    """The one variant of `job` that `stability_figure` draws (variants are not averaged together: an addition's
    juxtapose flips the argmax by design, its merge does not): the one with the most rows among those every model
    has (else among all), ties to the first in name order; "" for a job without variants, or a summary without a
    variant column (written before it had one)."""
    part = summary[summary["job"] == job]
    return _most_shared(part, "variant") if "variant" in part and len(part) else ""


def _most_shared(summary: pd.DataFrame, column: str) -> str:
    """The value of `column` with the most rows among those every model has (else among all), ties to the first."""
    per_model = summary.groupby(column)["model"].nunique()
    shared = per_model.index[per_model == summary["model"].nunique()]
    counts = summary[column].value_counts()
    counts = counts[counts.index.isin(shared)] if len(shared) else counts
    return str(counts.sort_index(kind="stable").idxmax())


def share_title(job: str, steps: str) -> str:
    """The title of the stability figure's share panel for `job`: whose top-1 it counts and how to read it
    (`analysis.stability.top1_subject`, as the printed table's notes: an opposite's minimised class, low is
    success; an addition's first class alone, it being judged by both classes in the top 2)."""
    from analysis.stability import MINIMISED, TARGET, top1_subject
    subject = top1_subject(job)
    if subject == TARGET:
        return f"share of {steps} with the target top-1"
    if subject == MINIMISED:
        return f"share of {steps} with the minimised class top-1 (low: success)"
    return f"share of {steps} with its first class top-1"   # the printed note says what it is judged by


@literal_text
def stability_figure(summary: pd.DataFrame, every: int | None = None) -> Figure:
    """Models side by side per octave (`analysis.stability.compare_stability`) for one job and variant
    (`stability_job`, `stability_variant`, named in the title as job/variant; jobs and variants are not averaged
    together): the argmax change rate between recorded steps and the share of recorded steps with the target top-1
    (the article's observation that InceptionV3's classification of its input jumps between iterations, particularly
    in the second octave). Each bar is labelled with its value, so that a 0 reads apart from a missing value ("n/a").
    `every`: the spacing the stores were aligned on (stores recorded at different every:N,
    `analysis.stability.common_every`), named in the titles."""
    job = stability_job(summary)
    variant = stability_variant(summary, job)
    part = summary[summary["job"] == job]
    part = part[part["variant"] == variant] if "variant" in part else part
    models = list(dict.fromkeys(part["model"]))
    octaves = sorted(part["octave"].unique())
    figure = new_figure(1100, 420)
    axes = figure.subplots(1, 2)
    width = 0.8 / max(1, len(models))
    steps = "recorded steps" if every is None else f"steps every store recorded (every {every})"
    for ax, column, title in ((axes[0], "change_rate", f"argmax changes between consecutive {steps}"),
                              (axes[1], "target_top1_share", share_title(job, steps))):
        for m, model in enumerate(models):
            values = part[part["model"] == model].groupby("octave")[column].mean().reindex(octaves).to_numpy(float)
            bars = ax.bar(np.arange(len(octaves)) + (m - (len(models) - 1) / 2) * width, np.nan_to_num(values),
                          width, color=PALETTE[m % len(PALETTE)], label=model)
            ax.bar_label(bars, ["n/a" if np.isnan(v) else f"{v:.2f}" for v in values], fontsize=7)
        ax.set_xticks(np.arange(len(octaves)), [f"octave {o}" for o in octaves])   # numbered from 1
        ax.set_title(title, fontsize=10)
        ax.set_axisbelow(True)   # the grid lines behind the bars
        ax.grid(True, axis="y", color="#e4e4e4")
    axes[1].set_ylim(0, 1.08)   # room for the labels of bars at 1
    axes[0].set_ylim(bottom=0)   # a rate: bars of n/a alone (one recorded step an octave) spanned -0.05 to 0.05
    axes[0].legend(fontsize=8, frameon=False)
    figure.suptitle(f"Classification stability during generation ({job_variant_name(job, variant)} images)",
                    fontsize=11)
    figure.tight_layout()
    return figure
