"""`write_figures`: the figures and a static, offline HTML report of an analysed store.

    analysis tables (run `analyze_store` first when absent or older than the images)
    -> PNGs of the shown rows only, each decoded once: a page-size thumbnail file + a grid thumbnail in memory
    -> contact sheets, PCA scatter, graph pages, opposites grid, additions grid, feature scatter (PNG, SVG)
    -> when the store has them, the jobs from real images: transfiguration, dream and directed-dream grids (the
       source photograph beside each result), and per interpolation a frame strip and an animated GIF
    -> index.html + one page per class (relative links only: open the folder anywhere, no server)
"""
from __future__ import annotations

import math
import posixpath
from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from analysis import figures as fig
from analysis import graph as graph_mod
from analysis.analyze import ANALYSIS_DIR, SUMMARY_FILE, AnalysisSummary, analyze_store
from analysis.load import (NUMERIC_COLUMNS, Store, iter_pngs, join_uri, open_store, read_frame, read_rows,
                           read_text, resolve, write_bytes)
from sweep.plan import IMAGE_JOBS
from sweep.store import source_file

GRID_THUMB = 96          # px, images in the grids
PAGE_THUMB = 256         # px, images written for the HTML pages (never enlarged; the browser scales them)
DECODE_THREADS = 2       # PNG decoding threads (the reference machine has two cores)
CONTACT = (10, 10)       # columns x rows per contact-sheet page
PAIRS = (5, 10)          # columns x rows per opposites / additions page
VARIANT_ORDER = ("merge", "juxtapose")
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


def write_figures(store: str, out: str | None = None) -> Path:
    """Write every figure and the HTML report; returns the path of index.html.

    `out` defaults to {store}/figures (a local folder or a URI). The analysis runs first when its tables are
    missing or older than the store's images.
    """
    summary = current_summary(store)
    st = open_store(store)
    tables = load_tables(st)
    out = out or join_uri(store, "figures")
    fs, root = resolve(out)
    writer = _Writer(fs, root)

    classes = tables["classes"]
    opposites = tables.get("opposites")
    additions = tables.get("additions")
    keys = list(classes["key"])
    keys += list(opposites["key"]) if opposites is not None else []
    keys += list(additions["key"]) if additions is not None else []
    thumbs = _thumbnails(st, keys, writer)

    figures: list[tuple[str, list[str], str]] = []   # (title, files, caption)
    figures.append(_contact_sheets(classes, thumbs, writer))
    if "pca" in tables:
        figures.append(_pca_figure(tables["pca"], tables["pca_variance"], tables["graph_nodes"], writer))
    figures.append(_graph_figure(tables["graph_nodes"], tables["graph_components"], writer))
    if opposites is not None:
        figures.append(_opposites_grid(classes, opposites, thumbs, writer))
    if additions is not None:
        figures.append(_additions_grid(additions, thumbs, writer))
    notes = []
    if "features" in tables:
        figures.extend(_feature_figures(tables["features"], writer))
    else:
        notes.append(f"Feature embedding skipped: the store has no {ANALYSIS_DIR}/features.parquet (run "
                     "`sweep analyze --features LAYER:0,4` to compute it).")
    if summary.image_jobs:   # reading every row again is only worth it when there are image jobs to draw
        figures.extend(_image_job_figures(st, writer))

    _class_pages(st, summary, tables, writer, set(thumbs))
    writer.text("index.html", _index_html(st, summary, tables, figures, notes, set(thumbs)))
    writer.remove_stale()
    return Path(root) / "index.html"


class _Writer:
    """Writes files under the output folder (atomically, through the store's filesystem layer)."""

    def __init__(self, fs, root: str) -> None:
        self.fs, self.root = fs, root
        self.written: set[str] = set()

    def bytes(self, name: str, data: bytes) -> str:
        write_bytes(self.fs, posixpath.join(self.root, name), data)
        self.written.add(name)
        return name

    def remove_stale(self) -> None:
        """Delete what an earlier report left here and this one did not write (pages that no longer exist)."""
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            name = posixpath.relpath(info.path, self.root)
            if info.type == pafs.FileType.File and name not in self.written and name.startswith(OWNED):
                self.fs.delete_file(info.path)

    def text(self, name: str, text: str) -> str:
        return self.bytes(name, text.encode("utf-8"))

    def png(self, name: str, image) -> str:
        return self.bytes(name, fig.png_bytes(image))


def image_file(key: str) -> str:
    """Relative path of the page-size image of a store row."""
    return "img/" + key.replace(":", "_") + ".png"


def _thumbnails(st: Store, keys: list[str], writer: _Writer) -> dict[str, object]:
    """Decode each shown PNG once: write its page-size image, keep a grid thumbnail.

    PNGs come file by file and are decoded in chunks on a small thread pool (Pillow releases the GIL while it
    decodes, resizes and encodes), so memory holds one chunk of PNG bytes at a time.
    """
    thumbs = {}
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for chunk in _chunks(iter_pngs(st, keys), 64):
            for (key, _), prepared in zip(chunk, pool.map(_prepare, [png for _, png in chunk])):
                if prepared is not None:  # a broken PNG shows as missing; it does not stop the report
                    writer.bytes(image_file(key), prepared[0])
                    thumbs[key] = prepared[1]
    return thumbs


def _prepare(png: bytes):
    """(page image bytes, grid thumbnail) of one stored PNG; None when it cannot be decoded."""
    try:
        image = fig.decode(png)
    except (OSError, ValueError, SyntaxError):
        return None
    # small already: keep the stored bytes (the browser enlarges it, pixelated)
    page = fig.png_bytes(fig.fit_image(image, PAGE_THUMB)) if max(image.size) > PAGE_THUMB else png
    return page, fig.fit_image(image, GRID_THUMB)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _contact_sheets(classes: pd.DataFrame, thumbs, writer: _Writer) -> tuple[str, list[str], str]:
    cells = []
    for r in classes.itertuples():
        colour = fig.GOOD if r.correct else fig.BAD
        cells.append(fig.Cell((thumbs.get(r.key),),
                              ((f"{r.target} {r.name}", fig.INK),
                               (f"-> {r.label_name} {r.target_prob:.2f}" if not r.correct
                                else f"p = {r.target_prob:.3f}", colour))))
    pages = fig.grid_pages(cells, title="Class images: octave, lowest seed", columns=CONTACT[0],
                           rows=CONTACT[1], thumb=GRID_THUMB)
    files = [writer.png(f"contact-{i + 1:02d}.png", p) for i, p in enumerate(pages)]
    return ("Contact sheet", files, "Every class's generated image with the model's label and probability "
            "(red: labelled as another class).")


def _component_colours(nodes: pd.DataFrame, targets: np.ndarray) -> list[str]:
    component = dict(zip(nodes["node"], nodes["component"]))
    return [fig.PALETTE[c] if (c := component.get(t, -1)) in range(len(fig.PALETTE)) else fig.OTHER
            for t in targets]


def _pca_figure(pca: pd.DataFrame, variance: pd.DataFrame, nodes: pd.DataFrame, writer: _Writer):
    ratio = variance["explained_variance_ratio"].to_numpy()
    r2 = ratio[1] if len(ratio) > 1 else 0.0
    d = fig.scatter(pca["pc1"], pca["pc2"], list(pca["name"]),
                    title="Output space: PCA of the class images' outputs",
                    subtitle=f"PC1 {ratio[0]:.1%} and PC2 {r2:.1%} of the variance; colours: the ten largest "
                             f"nearest-neighbour components",
                    xlabel=f"PC1 ({ratio[0]:.1%})", ylabel=f"PC2 ({r2:.1%})",
                    colors=_component_colours(nodes, pca["target"].to_numpy()),
                    tooltips=[f"{t}: {n}" for t, n in zip(pca["target"], pca["name"])])
    files = [writer.png("pca.png", fig.to_png(d)), writer.text("pca.svg", fig.to_svg(d))]
    return ("PCA of the output space", files, "First two principal components of the class representatives' "
            "output vectors (SVG: hover a point for its class).")


def _graph_figure(nodes: pd.DataFrame, comps: pd.DataFrame, writer: _Writer):
    g = graph_mod.graph_from_tables(nodes)
    members = [list(m) for m in comps["members"]]
    pages = fig.graph_pages(g, members, title="Nearest-neighbour graph, by component")
    files = []
    for i, d in enumerate(pages):
        files.append(writer.png(f"graph-{i + 1:02d}.png", fig.to_png(d)))
        files.append(writer.text(f"graph-{i + 1:02d}.svg", fig.to_svg(d)))
    return ("Nearest-neighbour graph", files, f"{len(members)} components; an arrow goes from each class to the "
            "class most activated by its image (orange: the component's hub; grey: no image of its own).")


def _opposites_grid(classes: pd.DataFrame, opposites: pd.DataFrame, thumbs, writer: _Writer):
    class_key = dict(zip(classes["target"], classes["key"]))
    cells = []
    for r in opposites.itertuples():
        mutual = " (mutual)" if _flag(r.mutual) else ""
        cells.append(fig.Cell((thumbs.get(class_key.get(r.target, "")), thumbs.get(r.key)),
                              ((f"{r.target} {r.name}", fig.INK),
                               (f"opposite: {r.opposite_name}{mutual}", fig.GOOD if mutual else fig.INK),
                               (f"article's margin (class image): {getattr(r, 'margin_opposite_name', '')}"
                                if getattr(r, "margin_opposite", -1) >= 0
                                else f"standout: {r.standout_opposite_name}", fig.MUTED))))
    pages = fig.grid_pages(cells, title="Opposites: class image | image minimising the class", columns=PAIRS[0],
                           rows=PAIRS[1], thumb=GRID_THUMB)
    files = [writer.png(f"opposites-{i + 1:02d}.png", p) for i, p in enumerate(pages)]
    return ("Opposites", files, "Each class's image beside the image that minimises its logit, labelled by argmax "
            "(the opposite) and by the article's margin criterion on the class image (or, without a class image, "
            "the project's standout statistic on the opposite image).")


def _additions_grid(additions: pd.DataFrame, thumbs, writer: _Writer):
    variants = [v for v in VARIANT_ORDER if v in set(additions["variant"])]
    variants += sorted(set(additions["variant"]) - set(variants))
    cells = []
    for (a, b, seed), group in additions.groupby(["target", "partner", "seed"], sort=True):
        by_variant = {r.variant: r for r in group.itertuples()}
        first = group.iloc[0]
        lines = [(f"{first.target_name} + {first.partner_name}", fig.INK)]
        for v in variants:
            r = by_variant.get(v)
            if r is not None:
                verdict = "both top-2" if r.top_two else f"-> {r.label_name}"
                lines.append((f"{v}: #{r.target_rank}/#{r.partner_rank} {verdict}",
                              fig.GOOD if r.top_two else fig.BAD))
        cells.append(fig.Cell(tuple(thumbs.get(by_variant[v].key) if v in by_variant else None for v in variants),
                              tuple(lines)))
    pages = fig.grid_pages(cells, title=f"Additions: {' | '.join(variants)}", columns=PAIRS[0], rows=PAIRS[1],
                           thumb=GRID_THUMB)
    files = [writer.png(f"additions-{i + 1:02d}.png", p) for i, p in enumerate(pages)]
    return ("Additions", files, "Per pair, each variant's image with both classes' ranks in the result "
            "(green: the two classes are the top two).")


def _feature_figures(features: pd.DataFrame, writer: _Writer):
    out = []
    maps = sorted((c for c in features.columns if c.startswith("map_")), key=lambda c: int(c[4:]))
    if not maps:
        return out
    for layer, part in features.groupby("layer", sort=True):
        part = part.sort_values("target", kind="mergesort")
        x = part[maps[0]].to_numpy(dtype=float)
        if len(maps) > 1:
            y, ylabel = part[maps[1]].to_numpy(dtype=float), f"mean activation, {layer} map {maps[1][4:]}"
        else:
            y, ylabel = part["target"].to_numpy(dtype=float), "class index"
        d = fig.scatter(x, y, list(part["target_name"]), title=f"Feature latent space: {layer}",
                        subtitle="mean activation of chosen feature maps on each class image",
                        xlabel=f"mean activation, {layer} map {maps[0][4:]}", ylabel=ylabel,
                        tooltips=[f"{t}: {n}" for t, n in zip(part["target"], part["target_name"])])
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(layer))
        files = [writer.png(f"features-{safe}.png", fig.to_png(d)), writer.text(f"features-{safe}.svg",
                                                                                fig.to_svg(d))]
        out.append((f"Feature embedding ({layer})", files, "Each class image placed by the mean activation of two "
                    "feature maps (the article's feature latent space)."))
    return out


# --- jobs from real images -------------------------------------------------------------------------------------------

def _image_job_figures(st: Store, writer: _Writer) -> list[tuple]:
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
                image = fig.decode(png)
            except (OSError, ValueError, SyntaxError):
                continue   # a broken PNG shows as missing
            thumbs[key] = fig.fit_image(image, GRID_THUMB)
            if key in interpolations:   # frames (and final images) of interpolations: the GIFs need them whole
                full[key] = image
    finals = meta[meta["job"].to_numpy() != "interpolate"]
    figures = []
    for job in ("transfigure", "dream", "directed-dream"):
        part = finals[finals["job"] == job]
        if len(part):
            figures.append(_source_grid(job, part, sources, thumbs, names, writer))
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
            return fig.thumbnail(f.read(), GRID_THUMB)
        except (OSError, ValueError, SyntaxError):
            return None


_GRID_TEXT = {
    "transfigure": ("Transfiguration", "source photograph | pushed toward the class",
                    "Each source photograph beside the image it became when pushed toward a class, with the "
                    "class's probability (red: labelled as another class)."),
    "dream": ("Deep dream", "source photograph | dream",
              "Each source photograph beside its dream: the layer's activation raised through the octaves, "
              "without blur; labelled by the layer and the class the model now sees."),
    "directed-dream": ("Directed dream", "source photograph | directed dream",
                       "Each source photograph beside its directed dream: the layer objective plus a class "
                       "objective, blurred every few steps; with the class's probability."),
}


def _source_grid(job: str, part: pd.DataFrame, sources, thumbs, names, writer: _Writer):
    title, legend, caption = _GRID_TEXT[job]
    cells = []
    for r in part.sort_values(["variant", "source", "target", "seed"], kind="mergesort").itertuples():
        seen = names[r.label] if 0 <= r.label < len(names) else str(r.label)
        if job == "dream":
            lines = ((f"layer {r.variant}", fig.INK), (f"-> {seen}", fig.MUTED))
        else:
            good = r.label == r.target
            head = f"{r.target} {names[r.target]}" + (f" ({r.variant})" if r.variant else "")
            lines = ((head, fig.INK), (f"p = {r.target_prob:.3f}" + ("" if good else f"  -> {seen}"),
                                       fig.GOOD if good else fig.BAD))
        cells.append(fig.Cell((sources.get(r.source), thumbs.get(r.key)),
                              (*lines, (f"{r.source}, seed {r.seed}", fig.MUTED))))
    pages = fig.grid_pages(cells, title=f"{title}: {legend}", columns=PAIRS[0], rows=PAIRS[1], thumb=GRID_THUMB)
    files = [writer.png(f"{job}-{i + 1:02d}.png", p) for i, p in enumerate(pages)]
    return (title, files, caption)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))


def _interpolations(part: pd.DataFrame, logits: np.ndarray, sources, thumbs, full, names, writer: _Writer):
    """Per interpolation (pair, source, seed): a strip of its frames with a's and b's logits under each, and an
    animated GIF of the frames at the final image's size."""
    part = part.assign(row=np.arange(len(part)))
    files, gallery = [], []
    for (a, b, source, seed), group in part.groupby(["target", "partner", "source", "seed"], sort=True):
        kept = group[group["frame"] >= 0].sort_values("frame")
        final = group[group["frame"] < 0]
        shown = kept if len(kept) else final
        cells = [fig.Cell((sources.get(source),), ((f"{names[a]} -> {names[b]}", fig.INK),
                                                    (str(source), fig.MUTED), (f"seed {seed}", fig.MUTED)))]
        for r in shown.itertuples():
            values = logits[r.row]
            cells.append(fig.Cell((thumbs.get(r.key),), ((f"step {r.step}", fig.MUTED),
                                                         (f"{names[a]}: {values[a]:.1f}", fig.PALETTE[0]),
                                                         (f"{names[b]}: {values[b]:.1f}", fig.PALETTE[1]))))
        stem = f"interpolation-{a:04d}-{b:04d}-{_safe(source)}-s{seed}"
        png = writer.png(f"{stem}.png", fig.strip(cells, title=f"Interpolation from {names[a]} to {names[b]}, "
                                                         f"from {source}", thumb=GRID_THUMB))
        frames = [full[k] for k in shown["key"] if k in full]
        end = full.get(final["key"].iloc[0]) if len(final) else None
        end = end if end is not None else (frames[-1] if frames else None)   # the size every frame is shown at
        gif = writer.bytes(f"{stem}.gif", fig.gif_bytes(frames, end.size, GIF_FRAME_MS, GIF_HOLD_MS)) \
            if frames else None
        first, last = logits[shown["row"].iloc[0]], logits[shown["row"].iloc[-1]]
        files += [png] + ([gif] if gif else [])
        gallery.append((png, gif, f"{names[a]} -> {names[b]} from {source} (seed {seed}): {names[a]}'s logit "
                                  f"{first[a]:.1f} -> {last[a]:.1f}, {names[b]}'s {first[b]:.1f} -> {last[b]:.1f}"))
    return ("Class interpolation", files, "From a source photograph the objective moves from class a to class b; "
            "each strip shows the kept frames with both classes' logits under each, and the GIF plays them.",
            gallery)


# --- HTML ----------------------------------------------------------------------------------------------------------

_CSS = """body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}
img.px{image-rendering:pixelated}figure{display:inline-block;margin:8px;vertical-align:top}
figcaption{font-size:13px;color:#555;max-width:260px}figure.wide figcaption{max-width:880px}
table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}.bad{color:#c0392b}.good{color:#1a7f37}
.muted{color:#777}a{color:#1f5fa8}"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _img(key: str, shown: set[str], prefix: str = "", width: int = 256, alt: str = "") -> str:
    """An <img> of a store row's page image, or a note when its PNG could not be read."""
    if key not in shown:
        return '<span class="muted">[image unreadable]</span>'
    return (f'<img class="px" src="{escape(prefix + image_file(key))}" width="{width}" alt="{escape(alt)}" '
            'loading="lazy">')


def class_page(target: int) -> str:
    return f"classes/{target:04d}.html"


def _index_html(st: Store, summary: AnalysisSummary, tables, figures, notes, shown: set[str]) -> str:
    m = st.manifest
    body = [f"<h1>classweep report: {escape(str(m.get('model', '?')))}</h1>",
            f"<p class=\"muted\">weights {escape(str(m.get('weights', '?')))} &middot; schedule "
            f"{escape(str(m.get('schedule', '?')))} ({escape(str(m.get('schedule_id', '?')))}) &middot; store "
            f"{escape(st.uri)}</p>", "<h2>Summary</h2><ul>"]
    body += [f"<li>{escape(line)}</li>" for line in summary.lines()]
    body.append("</ul><h2>Figures</h2>")
    for title, files, caption, *gallery in figures:
        pngs = [f for f in files if f.endswith(".png")]
        links = " ".join(f'<a href="{escape(f)}">{escape(f)}</a>' for f in files)
        preview = f'<a href="{escape(pngs[0])}"><img src="{escape(pngs[0])}" width="360" alt=""></a>' if pngs else ""
        if gallery:   # one figure per item: a strip and its animation, captioned
            preview = "".join(
                f'<figure class="wide"><a href="{escape(png)}"><img src="{escape(png)}" width="720" alt=""></a>'
                + (f'<a href="{escape(gif)}"><img class="px" src="{escape(gif)}" width="160" alt=""></a>' if gif
                   else "") + f"<figcaption>{escape(text)}</figcaption></figure>" for png, gif, text in gallery[0])
        body.append(f"<h3>{escape(title)}</h3><p>{escape(caption)}</p>{preview}<p>{links}</p>")
    body += [f"<p class=\"muted\">{escape(n)}</p>" for n in notes]
    body.append("<h2>Tables</h2><p>Parquet files under <code>{store}/analysis/</code>: "
                + ", ".join(escape(t) for t in summary.tables) + ".</p>")
    body.append("<h2>Classes</h2><table><tr><th>class</th><th>image</th><th>label</th><th>p</th>"
                "<th>opposite</th><th>nearest neighbour</th><th>output neighbour</th></tr>")
    opp = _by_target(tables.get("opposites"))
    for r in tables["classes"].itertuples():
        o = opp.get(r.target)
        cls = "good" if r.correct else "bad"
        body.append(
            f"<tr><td><a href=\"{class_page(r.target)}\">{r.target} {escape(r.name)}</a></td>"
            f"<td>{_img(r.key, shown, width=48)}</td><td class=\"{cls}\">{escape(r.label_name)}</td>"
            f"<td>{r.target_prob:.3f}</td><td>{escape(o.opposite_name) if o is not None else ''}</td>"
            f"<td>{escape(r.nn_article_name)}</td><td>{escape(r.nn_output_name)}</td></tr>")
    body.append("</table>")
    return _page("classweep report", "\n".join(body))


def _flag(value) -> bool | None:
    """A nullable boolean cell as True, False or None."""
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) \
        else bool(value)


def _by_target(frame: pd.DataFrame | None) -> dict:
    return {} if frame is None else {r.target: r for r in frame.itertuples()}


def _class_pages(st: Store, summary: AnalysisSummary, tables, writer: _Writer, shown: set[str]) -> None:
    classes = tables["classes"]
    by_class = _by_target(classes)
    opp = _by_target(tables.get("opposites"))
    nodes = tables["graph_nodes"]
    pointing = nodes[nodes["has_image"]].groupby("neighbour")["node"].apply(list).to_dict()
    component = dict(zip(nodes["node"], zip(nodes["component"], nodes["component_size"])))
    adds = tables.get("additions")
    targets = list(classes["target"])

    def img(key: str, width: int = 256, alt: str = "") -> str:
        return _img(key, shown, "../", width, alt)

    def link(c: int, label: str | None = None) -> str:
        text = escape(label if label is not None else f"{c} {st.class_names[c]}")
        return f'<a href="../{class_page(c)}">{text}</a>' if c in by_class else text

    for i, r in enumerate(classes.itertuples()):
        nav = [f'<a href="../index.html">index</a>']
        if i > 0:
            nav.append(link(targets[i - 1], "previous"))
        if i + 1 < len(targets):
            nav.append(link(targets[i + 1], "next"))
        cls = "good" if r.correct else "bad"
        body = [f"<p>{' &middot; '.join(nav)}</p><h1>{r.target} &middot; {escape(r.name)}</h1>",
                f"<figure>{img(r.key, alt=r.name)}<figcaption>class image ({escape(r.key)}): "
                f"labelled <span class=\"{cls}\">{escape(r.label_name)}</span>, p = {r.target_prob:.3f}"
                f"</figcaption></figure>"]
        o = opp.get(r.target)
        if o is not None:
            mutual = {True: "mutual", False: "not mutual", None: "unknown"}[_flag(o.mutual)]
            back = link(o.opposite_of_opposite) if o.opposite_of_opposite >= 0 else "unknown"
            body.append(
                f"<figure>{img(o.key)}<figcaption>opposite image (minimising the class): labelled "
                f"{link(o.opposite)} (p = {o.opposite_prob:.3f}); standout on this image: {link(o.standout_opposite)}; "
                f"the article's margin opposite (class image): "
                f"{link(o.margin_opposite) if getattr(o, 'margin_opposite', -1) >= 0 else 'unknown'}; "
                f"the opposite's own opposite: {back} ({mutual})</figcaption></figure>")
            if o.opposite in by_class:
                oc = by_class[o.opposite]
                body.append(f"<figure>{img(oc.key, 128, oc.name)}<figcaption>the opposite "
                            f"class's own image: {link(o.opposite)}</figcaption></figure>")
        else:
            body.append("<p class=\"muted\">no opposite image in the store</p>")
        comp, size = component.get(r.target, (-1, 0))
        into = pointing.get(r.target, [])
        body.append("<h2>Neighbours</h2><ul>"
                    f"<li>nearest neighbour (most activated other class on this image): {link(r.nn_article)} "
                    f"(logit {r.nn_article_logit:.3f})</li>"
                    f"<li>nearest in output space ({escape(summary.metric)}): "
                    f"{link(r.nn_output) if r.nn_output >= 0 else 'none'} (distance {r.nn_output_distance:.4f})</li>"
                    f"<li>least activated class on this image: {link(r.least_activated)}</li>"
                    f"<li>classes whose nearest neighbour is this one: "
                    f"{', '.join(link(c) for c in into) or 'none'}</li>"
                    f"<li>graph component {comp} ({size} classes)</li></ul>")
        body.append("<h2>Top-5 outputs on the class image</h2><table><tr><th>rank</th><th>class</th><th>logit</th>"
                    "<th>probability</th></tr>")
        for k, (c, lv, pv) in enumerate(zip(r.top5, r.top5_logits, r.top5_probs)):
            body.append(f"<tr><td>{k + 1}</td><td>{link(int(c))}</td><td>{lv:.3f}</td><td>{pv:.4f}</td></tr>")
        body.append("</table>")
        if adds is not None:
            mine = adds[(adds["target"] == r.target) | (adds["partner"] == r.target)]
            if len(mine):
                body.append("<h2>Additions with this class</h2>")
                for a in mine.itertuples():
                    verdict = "both in the top two" if a.top_two else f"labelled {escape(a.label_name)}"
                    body.append(f"<figure>{img(a.key, 128, a.key)}<figcaption>"
                                f"{link(a.target, a.target_name)} + {link(a.partner, a.partner_name)} "
                                f"({escape(a.variant)}): ranks {a.target_rank} and {a.partner_rank}, {verdict}"
                                f"</figcaption></figure>")
        writer.text(class_page(r.target), _page(f"{r.target} {r.name}", "\n".join(body)))
