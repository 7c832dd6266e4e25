"""Drawing helpers for `figures.py`, on matplotlib (Agg canvas) and Pillow.

    new_figure       a matplotlib Figure of a given pixel size on the Agg canvas (no display, no pyplot state)
    declutter        labels a scatter's points where their text does not overlap (matplotlib's own text extents
                     and `Bbox.count_overlaps`); the others stay unlabelled
    grid_pages       cells (images + lines of text) on paginated pages, built page by page (`Pages`): the thumbnails
                     pasted into one RGBA mosaic drawn by `Figure.figimage` at one pixel per pixel, the captions as
                     figure texts (a 100-cell page has no Axes and one image), each cut to its cell's width
    text_px, fit_text, wrap_text, wrap_lines   a line's width from the font's glyph advances; a line cut (or a class
                     name wrapped onto two lines, or a subtitle onto as many as it takes) to a width in pixels
    save             a Figure as PNG / SVG / PDF bytes
    literal_text     a figure builder whose texts are drawn as written (a '$' in a name is no mathtext)
    image helpers    decode, fit_image, thumbnail, png_bytes, paletted, gif_bytes (Pillow: the store's PNGs and the
                     GIFs, whose palettes keep the marker colours exact)

Nothing here writes files; `report.py` does.
"""
from __future__ import annotations

import functools
import io
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from PIL import Image, ImageColor

INK = "#222222"
MUTED = "#777777"
GOOD = "#1a7f37"
BAD = "#c0392b"
PARTNER = "#1f5fbf"    # a trajectory's second class (an addition's partner), beside the target's BAD red
# Colours of the ten largest graph components: tab10 without its grey (too close to OTHER) and its red (BAD's
# "wrong" elsewhere), plus two darker hues of tab20b. The rest are OTHER, a light grey.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79",
           "#8c6d31")
OTHER = "#d0d0d0"
LABEL_PLACES = ((4, "left"), (-4, "right"))   # a scatter label's places in turn: right of its point, then left
LABEL_ZORDER = 5      # above points (2), graph nodes and arrows
LABEL_PAD = 0.1       # a label's white box beyond its text, in font sizes
DPI = 100             # figure pixels per inch: sizes below are in pixels
LINE_PX = 13          # px per text line under a grid cell
LINE_FONT = 7.5       # pt, text under grid cells
GRID_TITLE_FONT = 12  # pt, a grid page's title
IMAGE_GAP = 4         # px between the images of one grid cell
WORD_END = 3          # characters of a word broken inside (`wrap_text`) that go to the next line at least
CAPTION_SLACK = 2     # px a caption line keeps clear of its cell's right edge (glyph advances overestimate a bit)


def new_figure(width_px: float, height_px: float) -> Figure:
    """A Figure of width_px x height_px pixels on the Agg canvas: draws without a display and leaves pyplot's
    global state (and a notebook's backend) alone."""
    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def literal_text(build: Callable[..., Figure]) -> Callable[..., Figure]:
    """`build` (a function that makes a Figure) with every text it creates drawn as written: a class, photograph or
    layer name holding two '$' is not mathtext (matplotlib parsed the text between as TeX: `sale_$5_$10.jpg` failed
    the report, `$5 or $10` lost its dollars). matplotlib reads `text.parse_math` when a text is made, so the
    setting holds only while `build` runs, and a notebook's own figures keep theirs."""
    @functools.wraps(build)
    def literal(*args, **kwargs) -> Figure:
        with matplotlib.rc_context({"text.parse_math": False}):
            return build(*args, **kwargs)
    return literal


def save(figure: Figure, fmt: str = "png") -> bytes:
    """The figure as PNG, SVG or PDF bytes. Text is rasterised without font hinting (about a third faster on the
    grids' captions, at a barely softer look); SVG keeps text as text (searchable, and class names stay readable in
    the file); PNG is written as RGB at zlib level 1 (fast; photo-like pages barely compress more)."""
    with matplotlib.rc_context({"text.hinting": "none", "svg.fonttype": "none"}):
        if fmt != "png":
            buf = io.BytesIO()
            figure.savefig(buf, format=fmt, dpi=DPI, facecolor="white")
            return buf.getvalue()
        return png_bytes(Image.fromarray(rgb_pixels(figure)))


def rgb_pixels(figure: Figure) -> np.ndarray:
    """The figure drawn on the Agg canvas, as an H x W x 3 uint8 array (a copy; the figure's own facecolor, white
    unless restyled, is the background)."""
    canvas = FigureCanvasAgg(figure) if not isinstance(figure.canvas, FigureCanvasAgg) else figure.canvas
    with matplotlib.rc_context({"text.hinting": "none"}):
        canvas.draw()
    return np.array(np.asarray(canvas.buffer_rgba())[..., :3])   # H x W x 3


class Pages(Sequence):
    """The pages of a paginated figure, each built when it is asked for (`pages[i]`, iteration): a 1000-class
    report never holds more than the page being written. `list(pages)` builds them all."""

    def __init__(self, count: int, build: Callable[[int], Figure]) -> None:
        self.count, self.build = count, build

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(index)
        return self.build(index % self.count)


def isolation_order(points: np.ndarray) -> np.ndarray:
    """Point indices, most isolated first (distance to the nearest other point, descending; ties by index)."""
    n = len(points)
    if n < 2:
        return np.arange(n)
    from sklearn.neighbors import NearestNeighbors
    dist, _ = NearestNeighbors(n_neighbors=2).fit(points).kneighbors(points)
    return np.lexsort((np.arange(n), -dist[:, 1]))


def marker_radius(size: float, linewidth: float = 0.0) -> float:
    """The radius in points of a scatter marker of `size` (its area in points², as `scatter`'s and networkx's
    node_size take it: a circle's diameter, a square's side, is its square root), its edge included."""
    return math.sqrt(size) / 2 + linewidth / 2


def declutter(ax, x: Sequence[float], y: Sequence[float], labels: Sequence[str], order: Sequence[int], *,
              fontsize: float = 7.0, max_chars: int = 24, radii: Sequence[float] | None = None) -> list:
    """Annotate points in `order` (most important first) just right of each point, or else just left of it,
    keeping a label only where its rendered box overlaps no kept label and lies inside the axes; returns the kept
    annotations. Kept labels sit on a half-transparent white box above everything drawn (nodes, arrows), clear of
    each point's marker (`radii`: its radius in points, edge included; `marker_radius`).

    Call after the axes limits are final (the boxes are measured in display space)."""
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    pad = LABEL_PAD * fontsize   # the box's padding, in points
    kept, boxes = [], []
    for i in order:
        text = shorten(str(labels[i]), max_chars)
        for dx, ha in LABEL_PLACES:
            if radii is not None:   # a graph's hub is larger: its label's box covered half its black edge
                dx = math.copysign(max(abs(dx), radii[i] + pad), dx)
            note = ax.annotate(text, (x[i], y[i]), xytext=(dx, 0), textcoords="offset points", ha=ha, va="center",
                               fontsize=fontsize, color=INK, annotation_clip=True, zorder=LABEL_ZORDER,
                               bbox=dict(boxstyle=f"square,pad={LABEL_PAD}", fc="white", alpha=0.7, lw=0))
            box = note.get_window_extent(renderer)
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if fits and not (boxes and Bbox(box).count_overlaps(boxes)):
                kept.append(note)
                boxes.append(box)
                break
            note.remove()
    return kept


# --- image grids -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One grid cell: images side by side (None: missing), then lines of text (text, colour) under them."""
    images: tuple[Image.Image | None, ...]
    lines: tuple[tuple[str, str], ...]
    wrap: int = -1   # the line (a long class name, under one image) that may take a second line; -1: none


def shorten(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars` characters, the last one an ellipsis when it was cut."""
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


@functools.lru_cache(maxsize=None)
def _advance_px(char: str, fontsize: float) -> float:
    """How far `char` moves the pen at `fontsize` (unhinted, as `save` draws text), in pixels. A character the font
    lacks (a source photograph named in Chinese, a tab) is measured as the renderer draws it, from a fallback font or
    as a missing-glyph box (matplotlib 3.11's `load_char` raises on it)."""
    from matplotlib.font_manager import FontProperties, findfont, get_font
    try:
        from matplotlib.ft2font import LoadFlags   # matplotlib >= 3.10
        no_hinting = LoadFlags.NO_HINTING
    except ImportError:                             # 3.8 and 3.9 (pyproject allows >= 3.8)
        from matplotlib.ft2font import LOAD_NO_HINTING as no_hinting
    font = get_font(findfont(FontProperties(size=fontsize)))
    font.set_size(fontsize, DPI)
    if not font.get_char_index(ord(char)):   # 0: not in the font
        from matplotlib.backends.backend_agg import RendererAgg
        with warnings.catch_warnings():   # "Glyph ... missing from font(s)": drawing the figure says so once
            warnings.simplefilter("ignore", UserWarning)
            return RendererAgg(1, 1, DPI).get_text_width_height_descent(char, FontProperties(size=fontsize), False)[0]
    return font.load_char(ord(char), flags=no_hinting).linearHoriAdvance / 65536


def text_px(text: str, fontsize: float = LINE_FONT) -> float:
    """The width of `text` in the default font, in pixels: the sum of its glyphs' advances (without kerning, which
    only narrows it, so a bit over the drawn width; measuring each line with the renderer costs ~0.5 ms)."""
    return sum(_advance_px(c, fontsize) for c in text)


def fit_text(text: str, width_px: float, *, tail: str = "", fontsize: float = LINE_FONT) -> str:
    """`text + tail` when it fits in `width_px`; else the longest start of `text` that fits with an ellipsis and
    `tail` after it (a value kept whole while a long name is cut)."""
    if text_px(text + tail, fontsize) <= width_px:
        return text + tail
    room = width_px - text_px("…" + tail, fontsize)
    n, used = 0, 0.0
    while n < len(text) and used + _advance_px(text[n], fontsize) <= room:
        used += _advance_px(text[n], fontsize)
        n += 1
    return text[:n].rstrip() + "…" + tail


def wrap_text(text: str, width_px: float, *, fontsize: float = LINE_FONT) -> list[str]:
    """`text` on one line when it fits in `width_px`, else on two: broken after the last word that fits, else after
    the last hyphen that fits, else inside a word (a hyphen added there); never after a number alone, which stays
    with the word it names ("89 sulphur-" / "crested cockatoo", not "89" / "sulphur-crested…"). The second line is
    cut with an ellipsis if it is still too long."""
    if text_px(text, fontsize) <= width_px:
        return [text]
    first = next((head for head in line_heads(text) if text_px(head, fontsize) <= width_px
                  and not head.strip().isdigit()), None)
    if first is None:   # no break fits: inside a word, a hyphen added
        n = cut_inside(text, width_px, fontsize)
        first, rest = text[:n] + "-", text[n:]
    else:
        rest = text[len(first):]
    return [first.rstrip(), fit_text(rest.lstrip(), width_px, fontsize=fontsize)]


def cut_inside(text: str, width_px: float, fontsize: float = LINE_FONT, *, kept: int = WORD_END) -> int:
    """Where to break `text` inside a word: the most characters whose line, with a hyphen added, fits `width_px`,
    leaving at least `kept` characters of that word to the next line where the line still has one other character
    ("143 oystercat-" / "cher", not "143 oystercatche-" / "r")."""
    room = width_px - text_px("-", fontsize)
    n, used = 0, 0.0
    while n < len(text) - 1 and used + _advance_px(text[n], fontsize) <= room:
        used += _advance_px(text[n], fontsize)
        n += 1
    word_start = next((i + 1 for i in range(n - 1, -1, -1) if not text[i].isalnum()), 0)
    word_end = next((i for i in range(n, len(text)) if not text[i].isalnum()), len(text))
    return max(1, min(n, word_end - kept) if word_end - kept > word_start else n)


def line_heads(text: str) -> list[str]:
    """The first lines `text` may be broken into, in the order `wrap_text` prefers them: up to a space (the longest
    first), then up to and with a hyphen between two characters (the longest first)."""
    spaces = [text[:i] for i in range(len(text) - 1, 0, -1) if text[i] == " "]
    hyphens = [text[:i + 1] for i in range(len(text) - 2, 0, -1) if text[i] == "-" and text[i - 1] != " "]
    return spaces + hyphens


def wrap_lines(text: str, width_px: float, *, fontsize: float = LINE_FONT) -> list[str]:
    """`text` broken between words into as many lines as it takes, each within `width_px` where its words allow (a
    word longer than that alone on its line)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and text_px(f"{lines[-1]} {word}", fontsize) <= width_px:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def caption_px(images: int, thumb: int) -> float:
    """The width a caption line may take under a cell of `images` thumbnails of `thumb` px."""
    return images * thumb + (images - 1) * IMAGE_GAP - CAPTION_SLACK


def cell_lines(cell: "Cell", width_px: float) -> list[tuple[str, str]]:
    """A cell's lines as drawn: each cut to `width_px`, the `cell.wrap` line on up to two lines."""
    lines = []
    for j, (text, colour) in enumerate(cell.lines):
        parts = wrap_text(text, width_px) if j == cell.wrap else [fit_text(text, width_px)]
        lines += [(part, colour) for part in parts]
    return lines


def grid_pages(cells: Sequence[Cell], *, title: str, columns: int, rows: int, thumb: int) -> Pages:
    """Cells on pages of columns x rows; each page titled '(page k of n)'."""
    per_page = columns * rows
    n_pages = max(1, math.ceil(len(cells) / per_page))
    return Pages(n_pages, lambda p: grid_figure(cells[p * per_page:(p + 1) * per_page], columns=columns,
                                                title=f"{title} (page {p + 1} of {n_pages})", thumb=thumb))


@literal_text
def grid_figure(cells: Sequence[Cell], *, title: str, columns: int, thumb: int) -> Figure:
    """One page of cells, `columns` per row: the mosaic of thumbnails at one screen pixel per image pixel
    (`Figure.figimage`, no Axes), a figure text per line under each cell, cut to the cell's width (`cell_lines`:
    a caption never runs into the next cell); missing images are grey squares marked 'missing'."""
    k = max((len(c.images) for c in cells), default=1)
    pad, gap, head = 12, IMAGE_GAP, 40
    drawn = [cell_lines(c, caption_px(k, thumb)) for c in cells]
    n_lines = max((len(lines) for lines in drawn), default=0)
    cell_w, cell_h = k * thumb + (k - 1) * gap, thumb + 4 + n_lines * LINE_PX
    n_rows = max(1, math.ceil(len(cells) / columns))
    width = max(pad + columns * (cell_w + pad), math.ceil(text_px(title, GRID_TITLE_FONT)) + 2 * pad)   # title whole
    height = n_rows * (cell_h + pad) + pad
    mosaic = np.full((height, width, 4), 255, np.uint8)   # H x W x RGBA: drawn as is, without conversion
    missing = []
    for i, cell in enumerate(cells):
        cx, cy = pad + (i % columns) * (cell_w + pad), pad + (i // columns) * (cell_h + pad)
        for j, image in enumerate(cell.images):
            x = cx + j * (thumb + gap)
            if image is None:
                mosaic[cy:cy + thumb, x:x + thumb, :3] = 241
                missing.append((x + thumb / 2, cy + thumb / 2))
                continue
            pixels = np.asarray(image.convert("RGB"))[:thumb, :thumb]
            oy, ox = (thumb - pixels.shape[0]) // 2, (thumb - pixels.shape[1]) // 2
            mosaic[cy + oy:cy + oy + pixels.shape[0], x + ox:x + ox + pixels.shape[1], :3] = pixels
    total = height + head
    figure = new_figure(width, total)
    figure.suptitle(title, y=1 - 12 / total, va="top", fontsize=GRID_TITLE_FONT, color=INK)
    figure.figimage(mosaic, xo=0, yo=0, origin="upper", interpolation="nearest")   # one screen pixel per pixel

    def at(x: float, y: float) -> tuple[float, float]:    # mosaic pixels (from the top left) -> figure fraction
        return x / width, (height - y) / total
    for x, y in missing:
        figure.text(*at(x, y), "missing", ha="center", va="center", fontsize=7, color=MUTED)
    for i, lines in enumerate(drawn):
        cx, cy = pad + (i % columns) * (cell_w + pad), pad + (i // columns) * (cell_h + pad)
        for j, (text, colour) in enumerate(lines):
            figure.text(*at(cx, cy + thumb + 4 + j * LINE_PX), text, ha="left", va="top", fontsize=LINE_FONT,
                        color=colour)
    return figure


# --- Pillow: the store's PNGs and the GIFs ------------------------------------------------------------------------

def decode(png: bytes) -> Image.Image:
    """PNG bytes as an RGB image (OSError when they are not an image)."""
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")


def fit_image(image: Image.Image, side: int) -> Image.Image:
    """`image` fitted into side x side: shrunk smoothly, or enlarged with nearest-neighbour (keeps pixels)."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if scale < 1:
        return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image.resize(size, Image.Resampling.NEAREST) if scale > 1 else image


def thumbnail(png: bytes, side: int) -> Image.Image:
    """PNG bytes as an RGB image fitted into side x side (see `fit_image`)."""
    return fit_image(decode(png), side)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)   # fast; photo-like images barely compress more at 9
    return buf.getvalue()


# Colours a GIF frame keeps exactly: its palette is otherwise built from the frame, mostly image, where a small red
# target dot is a handful of pixels that median cut merges into the image's colours (a grey mauve, once).
MARKERS = (BAD, GOOD, INK, MUTED, PARTNER)


GIF_SAMPLE_PIXELS = 300 * 300   # pixels of all a GIF's frames together its one palette is built from


def gif_palette(frames: Sequence[Image.Image], colours: int) -> Image.Image:
    """One adaptive palette (median cut) of `colours` colours for all `frames` (RGB): built from a sample of about
    GIF_SAMPLE_PIXELS pixels of them all, the frames side by side and scaled down (nearest), so that it costs one
    frame's median cut (about 0.1 s at 299 px) however many frames the GIF has; each frame is then only mapped to it
    (under 1 ms). Median cut of every frame was most of a report's time: 85 ms a frame, 24,000 frames of 299 px for
    the 3,000 interpolations of a 1000-class sweep."""
    width, height = frames[0].size
    scale = min(1.0, (GIF_SAMPLE_PIXELS / (len(frames) * width * height)) ** 0.5)
    side = (max(1, round(width * scale)), max(1, round(height * scale)))
    sample = Image.new("RGB", (side[0] * len(frames), side[1]))
    for i, frame in enumerate(frames):
        sample.paste(frame.resize(side, Image.Resampling.NEAREST), (i * side[0], 0))
    return sample.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def paletted(image: Image.Image, keep: Sequence[str] = MARKERS, palette: Image.Image | None = None) -> Image.Image:
    """An RGB image as a palette image for a GIF: `palette` (`gif_palette`, one for a GIF's frames) or the
    image's own adaptive palette (median cut, no dithering) of 256 - len(keep) colours, plus the `keep` colours as
    entries of their own, which every pixel of exactly that colour takes (anti-aliased edges keep the nearest
    adaptive colour)."""
    exact = [ImageColor.getrgb(c)[:3] for c in keep]
    adaptive = (image.quantize(palette=palette, dither=Image.Dither.NONE) if palette is not None else
                image.quantize(colors=256 - len(exact), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    palette_values = (adaptive if palette is None else palette).getpalette()[:3 * (256 - len(exact))]   # 3 x colours
    first = len(palette_values) // 3
    codes, indices = rgb_codes(np.asarray(image.convert("RGB"))), np.array(adaptive)   # H x W, H x W
    for i, colour in enumerate(exact):
        indices[codes == rgb_codes(np.array(colour, np.uint8))] = first + i
    out = Image.fromarray(indices, "P")
    out.putpalette(palette_values + [v for colour in exact for v in colour])
    return out


def rgb_codes(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's colour as one integer, 0xRRGGBB: ... x 3 uint8 -> ... uint32. Finding a colour is then one
    comparison a pixel; comparing the three channels and reducing them (`(pixels == colour).all(axis=-1)`) took
    30x longer, a third of `sweep figures` at 24,000 interpolation frames."""
    wide = pixels.astype(np.uint32)
    return (wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]


def gif_bytes(frames: Sequence[Image.Image], size: tuple[int, int], duration: int = 250,
              hold: int = 1000, keep: Sequence[str] = MARKERS) -> bytes:
    """A looping animated GIF of `frames`, each resized (bilinear, as the octaves resize) to `size` (width,
    height); every frame shows for `duration` ms, the last one for `hold` ms. The frames share one adaptive palette
    (`gif_palette`); pixels of the `keep` colours (the figures' marker colours) stay exactly those colours
    (`paletted`)."""
    rgb = [f.convert("RGB") if f.size == tuple(size) else f.convert("RGB").resize(size, Image.Resampling.BILINEAR)
           for f in frames]
    palette = gif_palette(rgb, 256 - len(keep))
    images = [paletted(f, keep, palette) for f in rgb]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=[duration] * (len(images) - 1) + [hold], loop=0)
    return buf.getvalue()
