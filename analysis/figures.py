"""Figures with Pillow only: image grids (contact sheets, opposites, additions, the image jobs), animated GIFs
(interpolations) and vector drawings (scatter plots, graphs) rendered both to PNG and to SVG text.

Pure: functions take tables, thumbnails and graphs and return PIL images, `Drawing`s or SVG strings; writing files
is `report.py`'s job. Built to stay readable at 1000 classes: grids are paginated, scatter and graph labels are
placed greedily where they do not overlap (every point keeps its name as an SVG tooltip), and graph components are
packed onto pages.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field
from html import escape
from typing import Callable, Sequence

import networkx as nx
import numpy as np
from PIL import Image, ImageDraw, ImageFont

INK = "#222222"
MUTED = "#777777"
GOOD = "#1a7f37"
BAD = "#c0392b"
GRID = "#e4e4e4"
# Colours of the largest graph components in scatter plots (the rest are grey).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
OTHER = "#b0b0b0"


# --- text --------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system fonts needed)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


@functools.lru_cache(maxsize=65536)
def text_width(text: str, size: int) -> float:
    return float(font(size).getlength(text))


def fit(text: str, size: int, width: float) -> str:
    """`text` shortened with '...' to at most `width` pixels."""
    if text_width(text, size) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(text[:mid] + "...", size) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "..."


# --- vector drawings ---------------------------------------------------------------------------------------------

@dataclass
class Drawing:
    """A list of drawing operations in pixel coordinates, rendered by `to_png` or `to_svg`."""
    width: int
    height: int
    ops: list[tuple] = field(default_factory=list)

    def line(self, p0, p1, color=MUTED, width: float = 1.0) -> None:
        self.ops.append(("line", tuple(p0), tuple(p1), color, width))

    def circle(self, center, r: float, fill: str, outline: str | None = None, title: str = "") -> None:
        self.ops.append(("circle", tuple(center), r, fill, outline, title))

    def polygon(self, points, fill: str) -> None:
        self.ops.append(("polygon", tuple(tuple(p) for p in points), fill))

    def rect(self, box, outline: str | None = None, fill: str | None = None) -> None:
        self.ops.append(("rect", tuple(box), outline, fill))

    def text(self, xy, text: str, size: int = 11, color: str = INK, anchor: str = "la", halo: bool = False) -> None:
        """anchor: two letters as Pillow's, horizontal l/m/r then vertical t/m/b; halo: a white outline that keeps
        the text readable over lines."""
        self.ops.append(("text", tuple(xy), text, size, color, anchor, halo))


def to_png(d: Drawing) -> Image.Image:
    image = Image.new("RGB", (d.width, d.height), "white")
    draw = ImageDraw.Draw(image)
    for op in d.ops:
        kind = op[0]
        if kind == "line":
            _, p0, p1, color, width = op
            draw.line([p0, p1], fill=color, width=max(1, round(width)))
        elif kind == "circle":
            _, (x, y), r, fill, outline, _title = op
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline)
        elif kind == "polygon":
            draw.polygon(list(op[1]), fill=op[2])
        elif kind == "rect":
            _, box, outline, fill = op
            draw.rectangle(box, outline=outline, fill=fill)
        elif kind == "text":
            _, xy, text, size, color, anchor, halo = op
            draw.text(xy, text, fill=color, font=font(size), anchor=anchor, stroke_width=2 if halo else 0,
                      stroke_fill="white")
    return image


_SVG_ANCHOR = {"l": "start", "m": "middle", "r": "end"}
_SVG_BASELINE = {"t": "hanging", "m": "central", "b": "text-after-edge", "s": "alphabetic", "a": "hanging"}


def to_svg(d: Drawing) -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{d.width}" height="{d.height}" '
           f'viewBox="0 0 {d.width} {d.height}" font-family="DejaVu Sans, Arial, sans-serif">',
           f'<rect width="{d.width}" height="{d.height}" fill="white"/>']
    for op in d.ops:
        kind = op[0]
        if kind == "line":
            _, (x0, y0), (x1, y1), color, width = op
            out.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{color}" '
                       f'stroke-width="{width:g}"/>')
        elif kind == "circle":
            _, (x, y), r, fill, outline, title = op
            stroke = f' stroke="{outline}"' if outline else ""
            tip = f"<title>{escape(title)}</title>" if title else ""
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:g}" fill="{fill}"{stroke}>{tip}</circle>')
        elif kind == "polygon":
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in op[1])
            out.append(f'<polygon points="{pts}" fill="{op[2]}"/>')
        elif kind == "rect":
            _, (x0, y0, x1, y1), outline, fill = op
            out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
                       f'fill="{fill or "none"}" stroke="{outline or "none"}"/>')
        elif kind == "text":
            _, (x, y), text, size, color, anchor, halo = op
            outline = ' stroke="white" stroke-width="3" paint-order="stroke"' if halo else ""
            out.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{color}"{outline} '
                       f'text-anchor="{_SVG_ANCHOR[anchor[0]]}" dominant-baseline="{_SVG_BASELINE[anchor[1]]}">'
                       f'{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)   # fast; photo-like grids barely compress more at 9
    return buf.getvalue()


def gif_bytes(frames: Sequence[Image.Image], size: tuple[int, int], duration: int = 250,
              hold: int = 1000) -> bytes:
    """A looping animated GIF of `frames`, each resized (bilinear, as the octaves resize) to `size` (width,
    height); every frame shows for `duration` ms, the last one for `hold` ms."""
    images = [f.convert("RGB") if f.size == tuple(size) else f.convert("RGB").resize(size, Image.Resampling.BILINEAR)
              for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=[duration] * (len(images) - 1) + [hold], loop=0)
    return buf.getvalue()


# --- label placement ---------------------------------------------------------------------------------------------

class LabelPlacer:
    """Greedy placement of label boxes that must not overlap each other (nor leave `bounds`)."""

    def __init__(self, bounds: tuple[float, float, float, float]) -> None:
        self.bounds = bounds
        self.boxes = np.zeros((0, 4))

    def free(self, box) -> bool:
        x0, y0, x1, y1 = box
        bx0, by0, bx1, by1 = self.bounds
        if x0 < bx0 or y0 < by0 or x1 > bx1 or y1 > by1:
            return False
        b = self.boxes
        return not np.any((b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0))

    def take(self, box) -> None:
        self.boxes = np.vstack([self.boxes, np.asarray(box, dtype=float)[None]])

    def place(self, x: float, y: float, text: str, size: int, gap: float = 4.0) -> tuple[float, float, str] | None:
        """Try right, left, above and below the point; returns (x, y, anchor) of the first free spot."""
        w, h = text_width(text, size), size * 1.2
        candidates = [((x + gap, y - h / 2, x + gap + w, y + h / 2), (x + gap, y), "lm"),
                      ((x - gap - w, y - h / 2, x - gap, y + h / 2), (x - gap, y), "rm"),
                      ((x - w / 2, y - gap - h, x + w / 2, y - gap), (x, y - gap), "mb"),
                      ((x - w / 2, y + gap, x + w / 2, y + gap + h), (x, y + gap), "mt")]
        for box, (tx, ty), anchor in candidates:
            if self.free(box):
                self.take(box)
                return tx, ty, anchor
        return None


def isolation_order(points: np.ndarray) -> np.ndarray:
    """Point indices, most isolated first (distance to the nearest other point, descending; ties by index)."""
    n = len(points)
    if n < 2:
        return np.arange(n)
    from sklearn.neighbors import NearestNeighbors
    dist, _ = NearestNeighbors(n_neighbors=2).fit(points).kneighbors(points)
    return np.lexsort((np.arange(n), -dist[:, 1]))


# --- axes and scatter plots --------------------------------------------------------------------------------------

def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not np.isfinite([lo, hi]).all() or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if (hi - lo) / (m * mag) <= n)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) + 0.0 for i in range(int((hi - start) / step + 1e-9) + 1)]


def _tick_label(v: float) -> str:
    return f"{v:.3g}"


def scatter(x: np.ndarray, y: np.ndarray, labels: Sequence[str], *, title: str, xlabel: str, ylabel: str,
            colors: Sequence[str] | None = None, tooltips: Sequence[str] | None = None,
            size: tuple[int, int] = (1400, 1100), label_size: int = 10, subtitle: str = "") -> Drawing:
    """A labelled scatter plot: axes with round ticks, points, and as many non-overlapping labels as fit."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w, h = size
    d = Drawing(w, h)
    left, top, right, bottom = 80, 70, w - 30, h - 70
    d.text((w / 2, 18), title, size=18, anchor="mt")
    if subtitle:
        d.text((w / 2, 42), subtitle, size=12, color=MUTED, anchor="mt")
    sx, sy = _axes(d, (left, top, right, bottom), x, y, xlabel, ylabel)
    px, py = sx(x), sy(y)
    colors = list(colors) if colors is not None else [PALETTE[0]] * len(x)
    tooltips = list(tooltips) if tooltips is not None else list(labels)
    for i in range(len(x)):
        d.circle((px[i], py[i]), 3.5, colors[i], title=tooltips[i])
    placer = LabelPlacer((left + 2, top + 2, right - 2, bottom - 2))
    for i in range(len(x)):  # dots block labels
        placer.take((px[i] - 3, py[i] - 3, px[i] + 3, py[i] + 3))
    for i in isolation_order(np.column_stack([px, py])):
        text = fit(str(labels[i]), label_size, 150)
        spot = placer.place(px[i], py[i], text, label_size)
        if spot:
            d.text(spot[:2], text, size=label_size, color=INK, anchor=spot[2], halo=True)
    return d


def _axes(d: Drawing, box, x, y, xlabel: str, ylabel: str) -> tuple[Callable, Callable]:
    left, top, right, bottom = box
    def padded(v):
        lo, hi = (float(np.min(v)), float(np.max(v))) if len(v) else (0.0, 1.0)
        pad = (hi - lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    (x0, x1), (y0, y1) = padded(x), padded(y)
    sx = lambda v: left + (np.asarray(v) - x0) / (x1 - x0) * (right - left)
    sy = lambda v: bottom - (np.asarray(v) - y0) / (y1 - y0) * (bottom - top)
    for t in nice_ticks(x0, x1):
        xt = float(sx(t))
        d.line((xt, top), (xt, bottom), GRID)
        d.text((xt, bottom + 6), _tick_label(t), size=11, color=MUTED, anchor="mt")
    for t in nice_ticks(y0, y1):
        yt = float(sy(t))
        d.line((left, yt), (right, yt), GRID)
        d.text((left - 6, yt), _tick_label(t), size=11, color=MUTED, anchor="rm")
    d.rect((left, top, right, bottom), outline=MUTED)
    d.text(((left + right) / 2, bottom + 28), xlabel, size=13, anchor="mt")
    d.text((12, top - 22), ylabel, size=13, anchor="lt")
    return sx, sy


# --- nearest-neighbour graph, drawn per component ----------------------------------------------------------------

PAGE_WIDTH = 1800      # px, graph pages
PAGE_MAX_HEIGHT = 2400


def panel_side(n_nodes: int) -> int:
    """Panel side for a component: grows with the square root of its size, within [260, 1740] px."""
    return int(min(PAGE_WIDTH - 60, max(260, 115 * math.sqrt(n_nodes))))


def graph_pages(g: nx.DiGraph, comps: Sequence[Sequence[int]], title: str, seed: int = 0) -> list[Drawing]:
    """The graph drawn component by component (spring layout, fixed seed), panels packed onto pages."""
    pages, panels = [], [(i, list(c), panel_side(len(c))) for i, c in enumerate(comps)]
    x = y = row_h = 0
    placed: list[tuple[int, list[int], int, float, float]] = []
    margin, top0 = 20, 50

    def flush():
        height = int(top0 + y + row_h + margin)
        width = int(max(600, max(px + side for _, _, side, px, _ in placed) + margin))  # no wider than used
        d = Drawing(width, height)
        d.text((width / 2, 16), f"{title} (page {len(pages) + 1})", size=18, anchor="mt")
        for i, members, side, px, py in placed:
            _draw_component(d, g, i, members, (px, py, px + side, py + side), seed)
        pages.append(d)

    for i, members, side in panels:
        if x + side > PAGE_WIDTH - 2 * margin:
            x, y, row_h = 0, y + row_h + margin, 0
        if placed and top0 + y + side > PAGE_MAX_HEIGHT:
            flush()
            placed, x, y, row_h = [], 0, 0, 0
        placed.append((i, members, side, margin + x, top0 + y))
        x += side + margin
        row_h = max(row_h, side)
    if placed:
        flush()
    return pages


def _draw_component(d: Drawing, g: nx.DiGraph, index: int, members: list[int], box, seed: int) -> None:
    x0, y0, x1, y1 = box
    d.rect(box, outline="#cccccc")
    hub = min(members, key=lambda n: (-g.in_degree(n), n))
    header = fit(f"component {index}: {len(members)} classes, hub {g.nodes[hub]['name']}", 11, x1 - x0 - 12)
    d.text((x0 + 6, y0 + 6), header, size=11, color=MUTED, anchor="lt")
    sub = g.subgraph(members)
    pos = nx.spring_layout(nx.Graph(sub.to_undirected(as_view=True)), seed=seed)
    xy = np.array([pos[n] for n in members], dtype=float)  # n x 2
    inner = (x0 + 20, y0 + 32, x1 - 20, y1 - 20)
    span = np.ptp(xy, axis=0)
    span[span == 0] = 1.0
    uv = (xy - xy.min(axis=0)) / span
    uv = np.where(np.ptp(xy, axis=0) == 0, 0.5, uv)
    px = inner[0] + uv[:, 0] * (inner[2] - inner[0])
    py = inner[1] + uv[:, 1] * (inner[3] - inner[1])
    where = {n: (px[i], py[i]) for i, n in enumerate(members)}
    r = 4.5 if len(members) < 200 else 3.0
    for s, t in sorted(sub.edges):
        (xs, ys), (xt, yt) = where[s], where[t]
        d.line((xs, ys), (xt, yt), "#9aa5b1", 1.2)
        _arrowhead(d, (xs, ys), (xt, yt), r)
    placer = LabelPlacer((x0 + 2, y0 + 24, x1 - 2, y1 - 2))
    for n in members:
        placer.take((where[n][0] - r, where[n][1] - r, where[n][0] + r, where[n][1] + r))
    for n in members:
        fill = PALETTE[0] if g.nodes[n]["has_image"] else OTHER
        if n == hub and len(members) > 2:
            fill = PALETTE[1]
        d.circle(where[n], r, fill, title=f"{n}: {g.nodes[n]['name']}")
    order = sorted(members, key=lambda n: (-g.in_degree(n), n))  # hubs get their labels first
    for n in order:
        text = fit(g.nodes[n]["name"], 10, 140)
        spot = placer.place(*where[n], text, 10, gap=r + 2)
        if spot:
            d.text(spot[:2], text, size=10, anchor=spot[2], halo=True)


def _arrowhead(d: Drawing, p0, p1, r: float, length: float = 8.0, half_width: float = 3.5) -> None:
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    dist = math.hypot(dx, dy)
    if dist < 2 * r + length:
        return
    ux, uy = dx / dist, dy / dist
    tipx, tipy = x1 - ux * r, y1 - uy * r
    bx, by = tipx - ux * length, tipy - uy * length
    wx, wy = -uy * half_width, ux * half_width
    d.polygon([(tipx, tipy), (bx + wx, by + wy), (bx - wx, by - wy)], "#6b7785")


# --- image grids -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One grid cell: images side by side, then lines of text (text, colour) under them."""
    images: tuple[Image.Image | None, ...]
    lines: tuple[tuple[str, str], ...]


def decode(png: bytes) -> Image.Image:
    """PNG bytes as an RGB image (OSError when they are not an image)."""
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")


def thumbnail(png: bytes, side: int) -> Image.Image:
    """PNG bytes as an RGB image fitted into side x side (see `fit_image`)."""
    return fit_image(decode(png), side)


def fit_image(image: Image.Image, side: int) -> Image.Image:
    """`image` fitted into side x side: shrunk smoothly, or enlarged with nearest-neighbour (keeps pixels)."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if scale < 1:
        return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image.resize(size, Image.Resampling.NEAREST) if scale > 1 else image


def grid_pages(cells: Sequence[Cell], *, title: str, columns: int, rows: int, thumb: int,
               line_size: int = 11) -> list[Image.Image]:
    """Cells on pages of columns x rows; each page titled, 'page k of n'."""
    per_page = columns * rows
    n_pages = max(1, math.ceil(len(cells) / per_page))
    return [_grid_page(cells[p * per_page:(p + 1) * per_page], f"{title} (page {p + 1} of {n_pages})",
                       columns, thumb, line_size) for p in range(n_pages)]


def strip(cells: Sequence[Cell], *, title: str, thumb: int, line_size: int = 11) -> Image.Image:
    """Cells in one row under a title (a frame strip): no pagination."""
    return _grid_page(cells, title, max(1, len(cells)), thumb, line_size)


def _grid_page(cells: Sequence[Cell], title: str, columns: int, thumb: int, line_size: int) -> Image.Image:
    k = max((len(c.images) for c in cells), default=1)
    n_lines = max((len(c.lines) for c in cells), default=0)
    pad, gap = 12, 4
    cell_w = k * thumb + (k - 1) * gap
    cell_h = thumb + 4 + n_lines * round(line_size * 1.3)
    n_rows = max(1, math.ceil(len(cells) / columns))
    head = 44
    width = max(pad + columns * (cell_w + pad), math.ceil(text_width(title, 16)) + 2 * pad)   # the title fits
    height = head + n_rows * (cell_h + pad) + pad
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    draw.text((width / 2, 14), title, fill=INK, font=font(16), anchor="mt")
    for i, cell in enumerate(cells):
        cx = pad + (i % columns) * (cell_w + pad)
        cy = head + (i // columns) * (cell_h + pad)
        for j, image in enumerate(cell.images):
            x = cx + j * (thumb + gap)
            if image is None:
                draw.rectangle([x, cy, x + thumb - 1, cy + thumb - 1], fill="#f1f1f1", outline="#dddddd")
                draw.text((x + thumb / 2, cy + thumb / 2), "missing", fill=MUTED, font=font(10), anchor="mm")
            else:
                page.paste(image, (x + (thumb - image.width) // 2, cy + (thumb - image.height) // 2))
        for j, (text, color) in enumerate(cell.lines):
            draw.text((cx, cy + thumb + 4 + j * round(line_size * 1.3)), fit(text, line_size, cell_w),
                      fill=color, font=font(line_size))
    return page
