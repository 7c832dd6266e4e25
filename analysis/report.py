"""`write_figures`: the figures and a static, offline HTML report of an analysed store.

    analysis tables (run `analyze_store` first when absent or older than the images)
    -> PNGs of the shown rows only, each decoded once: a page-size thumbnail file + a grid thumbnail in memory
    -> contact sheets, PCA scatter, graph pages, opposites grid, additions grid, feature scatter (PNG, SVG)
    -> when the store has them, the jobs from real images: transfiguration, dream and directed-dream grids (the
       source photograph beside each result), and per interpolation a frame strip and an animated GIF
    -> index.html + one page per class (relative links only: open the folder anywhere, no server)
"""
from __future__ import annotations

import collections
import functools
import hashlib
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from PIL import Image

from analysis import drawing
from analysis import figures as fig
from analysis.analyze import ANALYSIS_DIR, SUMMARY_FILE, AnalysisSummary, analyze_store
from analysis.load import (NUMERIC_COLUMNS, Store, iter_pngs, join_uri, open_store, read_frame, read_rows,
                           read_text, resolve, write_bytes)
from sweep.export import safe_name   # the one file-name rule, shared with `sweep export`
from sweep.plan import IMAGE_JOBS
from sweep.progress import Progress
from sweep.store import source_file

GRID_THUMB = fig.GRID_THUMB   # px, images in the grids
PAGE_THUMB = 256         # px, images written for the HTML pages (never enlarged; the browser scales them)
DECODE_THREADS = 2       # PNG decoding threads (the reference machine has two cores)
WRITE_QUEUE = 64         # files waiting for the writing thread at most (bounds memory)
GIF_FRAME_MS, GIF_HOLD_MS = 250, 1200   # interpolation GIFs: time per frame, and on the final image
# Names of what `write_figures` writes under its folder (anything else there is left alone).
OWNED = ("contact-", "pca.", "graph-", "opposites-", "additions-", "features-", "transfigure-", "interpolation-",
         "dream-", "directed-dream-", "classes/", "img/", "index.html")


def load_tables(st: Store) -> dict[str, pd.DataFrame]:
    """Every analysis table present under {store}/analysis/ (features.parquet included), by short name."""
    names = ("classes", "opposites", "opposites_summary", "additions", "additions_summary", "pca",
             "pca_variance", "graph_nodes", "graph_components", "graph_cliques", "features")
    out = {}
    for name in names:
        frame = read_frame(st.fs, st.path(ANALYSIS_DIR, f"{name}.parquet"))
        if frame is not None:
            out[name] = frame
    return out


def current_summary(store: str) -> AnalysisSummary:
    """The store's analysis summary, running the analysis when it is missing or older than the images."""
    st = open_store(store)
    text = read_text(st.fs, st.path(ANALYSIS_DIR, SUMMARY_FILE))
    summary = None
    if text is not None:
        try:
            summary = AnalysisSummary.from_json(text)
        except (ValueError, TypeError):
            summary = None
    current = summary is not None and summary.fingerprint == st.fingerprint() and all(
        st.fs.get_file_info(st.path(ANALYSIS_DIR, name)).type == pafs.FileType.File for name in summary.tables)
    if not current:
        summary = analyze_store(store, summary.metric if summary else "cosine")
    return summary


@dataclass(frozen=True)
class ReportFigure:
    """One entry of the report's Figures section."""
    title: str
    files: tuple[str, ...]          # written files, relative to the report folder (PNGs first)
    caption: str
    gallery: tuple["GalleryItem", ...] = ()   # one captioned strip (+ GIF) per item, shown instead of a preview

    @property
    def preview(self) -> str | None:
        return next((f for f in self.files if f.endswith(".png")), None)


@dataclass(frozen=True)
class GalleryItem:
    png: str
    gif: str | None
    caption: str


def write_figures(store, out: str | None = None, *, stream: TextIO | None = None) -> Path:
    """Write every figure and the HTML report; returns the path of index.html.

    `store`: an opened store or its URI. `out` defaults to {store}/figures (a local folder or a URI). The analysis
    runs first when its tables are missing or older than the store's images. Progress goes to `stream` (stderr by
    default): a bar on a terminal, plain lines otherwise.
    """
    st = open_store(store) if isinstance(store, str) else store
    summary = current_summary(st.uri)
    st = open_store(st.uri)   # the analysis may have written tables since
    tables = load_tables(st)
    out = out or join_uri(st.uri, "figures")
    classes = tables["classes"]
    opposites = tables.get("opposites")
    additions = tables.get("additions")
    keys = list(classes["key"])
    keys += list(opposites["key"]) if opposites is not None else []
    keys += list(additions["key"]) if additions is not None else []
    with _Writer(*resolve(out)) as writer:
        return _write_report(st, summary, tables, keys, writer, stream)


def _write_report(st: Store, summary: AnalysisSummary, tables, keys, writer: "_Writer", stream) -> Path:
    classes = tables["classes"]
    opposites = tables.get("opposites")
    additions = tables.get("additions")
    steps = 3 + (opposites is not None) + (additions is not None) + ("pca" in tables) + ("features" in tables) \
        + bool(summary.image_jobs)
    progress = Progress(len(keys) + steps, stream=stream, unit="steps")
    progress.note = "reading images"
    thumbs = _thumbnails(st, keys, writer, progress)

    def step(note: str) -> None:
        progress.note = note
        progress.update(done=1)

    figures: list[ReportFigure] = []
    step("contact sheets")
    figures.append(writer.figure("Contact sheet", "contact", fig.contact_sheets(classes, thumbs),
                                 "Every class's generated image with the model's label and probability "
                                 "(red: labelled as another class)."))
    if "pca" in tables:
        step("PCA")
        files = writer.figure_files("pca", fig.output_pca(tables["pca"], tables["pca_variance"],
                                                          tables["graph_nodes"]), svg=True)
        figures.append(ReportFigure("PCA of the output space", files, "First two principal components of the "
                                    "class representatives' output vectors."))
    step("graph")
    figures.append(writer.figure("Nearest-neighbour graph", "graph",
                                 fig.graph_pages(tables["graph_nodes"], tables["graph_components"]),
                                 f"{len(tables['graph_components'])} components; an arrow goes from each class to "
                                 "the class most activated by its image (orange: the component's hub; grey: no "
                                 "image of its own).", svg=True))
    if opposites is not None:
        step("opposites")
        figures.append(writer.figure("Opposites", "opposites", fig.opposites_grid(classes, opposites, thumbs),
                                     "Each class's image beside the image that minimises its logit, labelled by "
                                     "argmax (the opposite) and by the article's margin criterion on the class image."))
    if additions is not None:
        step("additions")
        figures.append(writer.figure("Additions", "additions", fig.additions_grid(additions, thumbs),
                                     "Per pair, each variant's image with both classes' ranks in the result "
                                     "(green: the two classes are the top two)."))
    notes = []
    if "features" in tables:
        step("features")
        figures.extend(_feature_figures(tables["features"], writer))
    else:
        notes.append(f"Feature embedding skipped: the store has no {ANALYSIS_DIR}/features.parquet (run "
                     "`sweep analyze --features LAYER:0,4` to compute it).")
    if summary.image_jobs:   # reading every row again is only worth it when there are image jobs to draw
        step("image jobs")
        figures.extend(_image_job_figures(st, writer))

    step("HTML pages")
    images = {key: writer.image_name(key) for key in thumbs}
    _class_pages(st, summary, tables, writer, images)
    writer.text("index.html", _index_html(st, summary, tables, figures, notes, images))
    writer.finish()
    writer.remove_stale()
    progress.close()
    return Path(writer.root) / "index.html"


class _Writer:
    """Writes files under the output folder (atomically, through the store's filesystem layer). Every name is
    checked to lie inside the folder; names built from store keys are made safe and unique."""

    def __init__(self, fs, root: str) -> None:
        self.fs, self.root = fs, root.rstrip("/") or "/"
        self.written: set[str] = set()
        self.images: dict[str, str] = {}      # store key -> its page image's file name
        self.taken: set[str] = set()
        self.io = ThreadPoolExecutor(max_workers=1)   # encodes and writes, in order
        self.pending: collections.deque = collections.deque()

    def path(self, name: str) -> str:
        """The full path of `name`, refused when it would leave the output folder."""
        path = posixpath.normpath(posixpath.join(self.root, name))
        if posixpath.isabs(name) or not path.startswith(self.root.rstrip("/") + "/"):
            raise ValueError(f"refusing to write {name!r} outside {self.root}")
        return path

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.io.shutdown(wait=True, cancel_futures=True)

    def later(self, name: str, make: Callable[[], bytes]) -> str:
        """Write `make()` under `name` on the writing thread (PNG encoding and file writes release the GIL, so they
        overlap with drawing the next figure); errors come out of `finish`."""
        path = self.path(name)   # refused now
        self.pending.append(self.io.submit(lambda: write_bytes(self.fs, path, make())))
        self.written.add(name)
        while len(self.pending) > WRITE_QUEUE:
            self.pending.popleft().result()
        return name

    def bytes(self, name: str, data: bytes) -> str:
        return self.later(name, lambda: data)

    def finish(self) -> None:
        """Wait for every write (and raise the first error of one)."""
        while self.pending:
            self.pending.popleft().result()

    def text(self, name: str, text: str) -> str:
        return self.bytes(name, text.encode("utf-8"))

    def image_name(self, key: str) -> str:
        """The page image file of a store row: img/{key with ':' as '_'}.png, made safe; a key whose safe name is
        taken by another key gets a hash of the key added (names stay unique)."""
        if key not in self.images:
            name = "img/" + safe_name(str(key).replace(":", "_")) + ".png"
            if name in self.taken:
                name = name[:-4] + "-" + hashlib.sha1(str(key).encode()).hexdigest()[:10] + ".png"
            self.taken.add(name)
            self.images[key] = name
        return self.images[key]

    def unique_stem(self, stem: str, key: str) -> str:
        """`stem` (already made safe), or with a hash of `key` added when another key took it in this report."""
        if stem in self.taken:
            stem += "-" + hashlib.sha1(str(key).encode()).hexdigest()[:10]
        self.taken.add(stem)
        return stem

    def figure_files(self, stem: str, figure, *, svg: bool = False) -> tuple[str, ...]:
        """One matplotlib figure as {stem}.png (and {stem}.svg)."""
        pixels = drawing.rgb_pixels(figure)   # drawn here; encoded on the writing thread
        files = (self.later(f"{stem}.png", lambda: drawing.png_bytes(Image.fromarray(pixels))),)
        return files + ((self.bytes(f"{stem}.svg", drawing.save(figure, "svg")),) if svg else ())

    def figure(self, title: str, stem: str, pages, caption: str, *, svg: bool = False) -> ReportFigure:
        """Pages of a paginated figure as {stem}-01.png, {stem}-02.png, ..."""
        files: list[str] = []
        for i in range(len(pages)):   # `Pages` builds each page on access: one page in memory at a time
            files += self.figure_files(f"{stem}-{i + 1:02d}", pages[i], svg=svg)
        return ReportFigure(title, tuple(files), caption)

    def remove_stale(self) -> None:
        """Delete what an earlier report left here and this one did not write (pages that no longer exist)."""
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            name = posixpath.relpath(info.path, self.root)
            if info.type == pafs.FileType.File and name not in self.written and name.startswith(OWNED):
                self.fs.delete_file(info.path)


def _thumbnails(st: Store, keys: list[str], writer: _Writer, progress: Progress) -> dict[str, object]:
    """Decode each shown PNG once: write its page-size image, keep a grid thumbnail.

    PNGs come file by file and are decoded in chunks on a small thread pool (Pillow releases the GIL while it
    decodes, resizes and encodes), so memory holds one chunk of PNG bytes at a time.
    """
    thumbs = {}
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for chunk in _chunks(iter_pngs(st, keys), 64):
            for (key, _), prepared in zip(chunk, pool.map(_prepare, [png for _, png in chunk])):
                if prepared is not None:  # a broken PNG shows as missing; it does not stop the report
                    writer.bytes(writer.image_name(key), prepared[0])
                    thumbs[key] = prepared[1]
            progress.update(done=len(chunk))
    return thumbs


def _prepare(png: bytes):
    """(page image bytes, grid thumbnail) of one stored PNG; None when it cannot be decoded."""
    try:
        image = drawing.decode(png)
    except (OSError, ValueError, SyntaxError):
        return None
    # small already: keep the stored bytes (the browser enlarges it, pixelated)
    page = drawing.png_bytes(drawing.fit_image(image, PAGE_THUMB)) if max(image.size) > PAGE_THUMB else png
    return page, drawing.fit_image(image, GRID_THUMB)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _feature_figures(features: pd.DataFrame, writer: _Writer) -> list[ReportFigure]:
    if not fig.feature_maps(features):
        return []
    out = []
    for layer in sorted(set(features["layer"])):
        stem = writer.unique_stem(f"features-{safe_name(layer)}", layer)   # two layers may share a safe name
        files = writer.figure_files(stem, fig.feature_scatter(features, layer), svg=True)
        out.append(ReportFigure(f"Feature embedding ({layer})", files, "Each class image placed by the mean "
                                "activation of two feature maps (the article's feature latent space)."))
    return out


# --- jobs from real images -------------------------------------------------------------------------------------------

def _image_job_figures(st: Store, writer: _Writer) -> list[ReportFigure]:
    """Grids of transfigurations, dreams and directed dreams (source photograph | result), and per interpolation a
    frame strip (PNG) and an animated GIF; nothing when the store holds none of these jobs."""
    rows = read_rows(st, (*NUMERIC_COLUMNS, "step"), frames=True)
    mask = rows.meta["job"].isin(IMAGE_JOBS).to_numpy()
    if not mask.any():
        return []
    rows = rows.select(mask)
    meta, names = rows.meta, st.class_names
    sources = {name: _source_thumbnail(st, name) for name in sorted(set(meta["source"]) - {""})}
    interpolations = set(meta.loc[meta["job"] == "interpolate", "key"])
    thumbs, full = {}, {}
    for chunk in _chunks(iter_pngs(st, meta["key"]), 64):
        for key, png in chunk:
            try:
                image = drawing.decode(png)
            except (OSError, ValueError, SyntaxError):
                continue   # a broken PNG shows as missing
            thumbs[key] = drawing.fit_image(image, GRID_THUMB)
            if key in interpolations:   # frames (and final images) of interpolations: the GIFs need them whole
                full[key] = image
    finals = meta[meta["job"].to_numpy() != "interpolate"]
    figures = []
    for job in ("transfigure", "dream", "directed-dream"):
        part = finals[finals["job"] == job]
        if len(part):
            title, _, caption = fig.SOURCE_GRIDS[job]
            figures.append(writer.figure(title, job, fig.source_grid(job, part, sources, thumbs, names), caption))
    part = meta[meta["job"] == "interpolate"]
    if len(part):
        figures.append(_interpolations(part, rows.logits[part.index.to_numpy()], sources, thumbs, full, names,
                                       writer))
    return figures


def _source_thumbnail(st: Store, name: str):
    """The source photograph the sweep stored, as a grid thumbnail (None when the store does not have it)."""
    path = st.path(source_file(name))   # the real image, as the sweep stored it
    if st.fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with st.fs.open_input_stream(path) as f:
        try:
            return drawing.thumbnail(f.read(), GRID_THUMB)
        except (OSError, ValueError, SyntaxError):
            return None


def _interpolations(part: pd.DataFrame, logits: np.ndarray, sources, thumbs, full, names,
                    writer: _Writer) -> ReportFigure:
    """Per interpolation (pair, source, seed): a strip of its frames with a's and b's logits under each, and an
    animated GIF of the frames at the final image's size."""
    part = part.assign(row=np.arange(len(part)))
    files, gallery = [], []
    for (a, b, source, seed), group in part.groupby(["target", "partner", "source", "seed"], sort=True):
        kept = group[group["frame"] >= 0].sort_values("frame")
        final = group[group["frame"] < 0]
        shown = kept if len(kept) else final
        values = logits[shown["row"].to_numpy()]
        stem = writer.unique_stem(f"interpolation-{a:04d}-{b:04d}-{safe_name(source)}-s{seed}", source)
        png = writer.figure_files(stem, fig.interpolation_strip(shown, values, sources.get(source), thumbs,
                                                                names))[0]
        frames = [full[k] for k in shown["key"] if k in full]
        end = full.get(final["key"].iloc[0]) if len(final) else None
        end = end if end is not None else (frames[-1] if frames else None)   # the size every frame is shown at
        gif = writer.bytes(f"{stem}.gif", fig.interpolation_gif(frames, end.size, GIF_FRAME_MS, GIF_HOLD_MS)) \
            if frames else None
        first, last = values[0], values[-1]
        files += [png] + ([gif] if gif else [])
        gallery.append(GalleryItem(png, gif, f"{names[a]} -> {names[b]} from {source} (seed {seed}): {names[a]}'s "
                                             f"logit {first[a]:.1f} -> {last[a]:.1f}, {names[b]}'s {first[b]:.1f} "
                                             f"-> {last[b]:.1f}"))
    return ReportFigure("Class interpolation", tuple(files), "From a source photograph the objective moves from "
                        "class a to class b; each strip shows the kept frames with both classes' logits under each, "
                        "and the GIF plays them.", tuple(gallery))


# --- HTML: Jinja2 templates in analysis/templates/, autoescaped ----------------------------------------------------

@functools.lru_cache(maxsize=1)
def templates():
    """The report's Jinja2 environment: templates shipped in the package, every value HTML-escaped."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
    return Environment(loader=PackageLoader("analysis", "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def class_page(target: int) -> str:
    return f"classes/{target:04d}.html"


def _by_target(frame: pd.DataFrame | None) -> dict:
    return {} if frame is None else {r.target: r for r in frame.itertuples()}


def _index_html(st: Store, summary: AnalysisSummary, tables, figures, notes, images: dict[str, str]) -> str:
    opp = _by_target(tables.get("opposites"))
    rows = [{**r._asdict(), "opposite_name": opp[r.target].opposite_name if r.target in opp else ""}
            for r in tables["classes"].itertuples()]
    return templates().get_template("index.html").render(
        title="classweep report", manifest=st.manifest, store_uri=st.uri, summary_lines=summary.lines(),
        figures=figures, notes=notes, tables=summary.tables, rows=rows, images=images)


def _class_pages(st: Store, summary: AnalysisSummary, tables, writer: _Writer, images: dict[str, str]) -> None:
    classes = tables["classes"]
    by_class = _by_target(classes)
    opp = _by_target(tables.get("opposites"))
    nodes = tables["graph_nodes"]
    pointing = nodes[nodes["has_image"]].groupby("neighbour")["node"].apply(list).to_dict()
    component = dict(zip(nodes["node"], zip(nodes["component"], nodes["component_size"])))
    adds = tables.get("additions")
    targets = list(classes["target"])
    template = templates().get_template("class.html")
    for i, r in enumerate(classes.itertuples()):
        o = opp.get(r.target)
        comp, size = component.get(r.target, (-1, 0))
        mine = [] if adds is None else list(adds[(adds["target"] == r.target)
                                                 | (adds["partner"] == r.target)].itertuples())
        html = template.render(
            title=f"{r.target} {r.name}", r=r, o=o, classes=by_class, names=st.class_names, images=images,
            previous=targets[i - 1] if i > 0 else None, next=targets[i + 1] if i + 1 < len(targets) else None,
            mutual={True: "mutual", False: "not mutual", None: "unknown"}[fig._flag(o.mutual)] if o is not None
            else "", metric=summary.metric, pointing=pointing.get(r.target, []), component=comp,
            component_size=size, top5=[(int(c), lv, pv) for c, lv, pv in zip(r.top5, r.top5_logits, r.top5_probs)],
            additions=mine)
        writer.text(class_page(r.target), html)
