"""`write_figures`: the figures and a static, offline HTML report of an analysed store.

    analysis tables (run `analyze_store` first when absent or older than the images or the scores, saying why)
    -> PNGs of the shown rows only, each decoded once: a grid thumbnail in memory, and a page-size thumbnail file
       for each image an HTML page shows (none for an opposite or addition of classes without a page)
    -> contact sheets, PCA scatter, graph pages (one figure per class range of the analysis, graph-0-499-01.png,
       ...: the article's halves by default; with `--graph-ranges all` the whole graph's, graph-01.png, ...),
       opposites grid, additions grid, feature scatter (PNG, SVG)
    -> when the store has them, the jobs from real images: transfiguration, dream and directed-dream grids (the
       source photograph beside each result), and per interpolation a frame strip and an animated GIF
    -> with `trajectories=KEY...` (a run with `--trajectory every:N,snapshots:M`): per chosen image the article's
       video, an animated GIF of the image at each snapshot beside the scatter of all outputs (and an MP4 when
       matplotlib finds an ffmpeg encoder; skipped silently otherwise), linked from its class page (an addition's
       or interpolation's from both classes' pages); the videos earlier reports made in the folder (VIDEOS_FILE)
       are kept and linked too, unless `keep_trajectories=False`
    -> index.html + one page per class (relative links only: open the folder anywhere, no server); the index shows
       the first INDEX_GALLERY interpolations and links pages holding them all (interpolations.html,
       interpolations-02.html, ..., GALLERY_PAGE each) when there are more; a class page
       shows every image made for the class: its class image, opposite, additions, its transfigurations and
       directed dreams beside the photograph as the job fitted it, its interpolations (strip and GIF), its videos

With `seeds=` (`sweep figures --seeds 0`) the report draws the additions and the jobs from source images of those
seeds only (`analysis.seeds.SeedChoice.rows`, applied to the rows as they are read); the index says which.

A store without octave images (only image jobs, say) has no classes table: the contact sheets, PCA, graph and
class pages are skipped, the index says so in one line (NO_CLASSES), and every other figure is drawn as usual;
trajectory videos of images without a class page are linked from the index.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import json
import math
import multiprocessing
import os
import posixpath
import re
import sys
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from PIL import Image

from analysis import drawing
from analysis import figures as fig
from analysis.analyze import ANALYSIS_DIR, ANALYSIS_VERSION, SUMMARY_FILE, AnalysisSummary, analyze_store_and_keys
from analysis.graph import HALVES, ClassRange
from analysis.load import (FIGURES, LABEL_PROB, NUMERIC_COLUMNS, OUTPUTS_FINITE, Rows, RowsWanted, drop_temp_folder,
                           iter_image_rows, iter_pngs, output_folder, read_rows_for)
from analysis.seeds import SeedChoice
from analysis.tables import DEFAULT_METRIC, MARGIN_SHARE
from jobs.catalog import ALL_JOBS, CLASSLESS, FRAMED, IMAGE_JOBS, job_of_key
from jobs.outputs import NOT_FINITE
from jobs.schedules import SOURCE_FITS
from jobs.text import class_label, counted
from sweep.export import UniqueNames, safe_name   # the one file-name rule, shared with `sweep export`
from sweep.progress import Progress
from sweep.store import (SCORES, TRAJECTORIES, Store, StoreError, job_schedule, open_store, require_images, source_file,
                         why_unreadable)

GRID_THUMB = fig.GRID_THUMB   # px, images in the grids
PAGE_THUMB = 256         # px, images written for the HTML pages (never enlarged; the browser scales them)
DECODE_THREADS = min(8, os.cpu_count() or 1)   # PNG decoding threads: Pillow's decoder releases the GIL
WRITE_QUEUE = 64         # files waiting for the writing thread at most (bounds memory)
# Worker processes that draw the interpolations (strip and GIF, each independent of the others; matplotlib and the
# GIF palettes hold the GIL, so threads would not help): the CPUs', up to 8 (each about 0.3 GB, mostly its imports).
DRAWING_PROCESSES = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
POOL_MIN_TASKS = 64      # fewer interpolations are drawn in this process: starting the workers takes seconds
GIF_FRAME_MS, GIF_HOLD_MS = 250, 1200   # interpolation GIFs: time per frame, and on the final image
SOURCE_SIDE = 1024       # px, a fitted source photograph at most (`fitted_source`; the pages show PAGE_THUMB)
# What the figures of the jobs from source images read of each row: a strip's logits of a and b are the stored
# target_logit and partner_logit, a GIF's size the final image's width and height.
IMAGE_JOB_COLUMNS = (*NUMERIC_COLUMNS, "step", "partner_logit", "width", "height", LABEL_PROB, OUTPUTS_FINITE)
# Those rows as the figures read them (`_image_job_rows`): their numbers and their frames', no output vectors.
IMAGE_JOB_ROWS = RowsWanted(IMAGE_JOB_COLUMNS, frames=True, logits=False, jobs=IMAGE_JOBS)
# Names of what `write_figures` writes under its folder, whole (anything else there is left alone: a user's
# index.html.bak or graph-notes.txt beside a report is not a stale page of it).
OWNED = re.compile(r"""(contact|opposites|additions|graph|transfigure|dream|directed-dream)-\d{2,}\.(png|svg)
                       |graph-\d+-\d+-\d{2,}\.(png|svg)
                       |(pca|transfer)\.(png|svg)|stability\.png|features-[^/]+\.(png|svg)
                       |interpolation-[^/]+\.(png|gif)|trajectory-[^/]+\.(gif|mp4)|trajectory-videos\.json
                       |classes/\d{4,}\.html|img/[^/]+\.png|index\.html
                       |interpolations(-\d{2,})?\.html""", re.VERBOSE)
INDEX_GALLERY = 12       # a long gallery's items the index shows (its first), linking the pages that hold them all: a
                         #   1000-class index showed its 3,000 interpolation strips and GIFs (2.1 MB of HTML)
GALLERY_PAGE = 200       # items per page of a gallery's own pages ({gallery_stem}.html, {gallery_stem}-02.html, ...)
TRAJECTORY_FRAME_MS = 200   # trajectory videos: time per recorded snapshot (the last one is held GIF_HOLD_MS)
SHOWN_KEYS = 10          # keys with snapshots named in the error for a --trajectories key without any
VIDEOS_FILE = "trajectory-videos.json"   # the trajectory videos in the folder ({key, target, partner, gif, mp4,
                                         #   steps, version} each; partner as the store holds it, null for none):
                                         #   a later report keeps and links them without drawing them again,
                                         #   unless they were drawn by an older VIDEO_VERSION
VIDEO_VERSION = 3   # how trajectory videos are drawn (2: an addition's partner marked, the legend above the panel;
                    #   3: an interpolation's classes named class a and class b, an opposite's minimised class)
PAGED_IMAGE_JOBS = tuple(job for job in IMAGE_JOBS if job not in CLASSLESS and job not in FRAMED)
# ^ the jobs from a source image whose final image is its target's (transfigure, directed-dream): shown on the class
#   page beside the photograph (an interpolation, from class a to b, is linked from both pages instead)
NO_CLASSES = ("No class images: the store holds no octave images, so the classes table, contact sheets, PCA, "
              "nearest-neighbour graph, feature embedding and class pages are skipped (run the octave job for them).")


def load_tables(st: Store) -> dict[str, pd.DataFrame]:
    """Every analysis table present under {store}/analysis/ (features.parquet included), by short name."""
    names = ("classes", "opposites", "opposites_summary", "additions", "additions_summary", "pca",
             "pca_variance", "graph_nodes", "graph_components", "graph_cliques", "graph_ranges", "features",
             "transfer", "transfer_top3", "stability_summary")
    out = {}
    for name in names:
        data = st.read_bytes(f"{ANALYSIS_DIR}/{name}.parquet")
        if data is not None:
            out[name] = analysis_table(st, name, data)
    return out


def analysis_table(st: Store, name: str, data: bytes) -> pd.DataFrame:
    """The analysis table `name` from its file's bytes; a damaged file is refused in one line naming it and the
    command that writes it again."""
    try:
        return pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError) as error:
        again = f"sweep analyze --store {st.uri}" + (" --features LAYER:MAPS" if name == "features" else "")
        raise StoreError(f"unreadable file {st.location(ANALYSIS_DIR, f'{name}.parquet')}: {why_unreadable(error)} "
                         f"(`{again}` writes it again)") from None


def stale_reason(st: Store, summary: AnalysisSummary | None) -> str | None:
    """Why the store's analysis (its `summary`, None when there is none) must run again before the figures are
    drawn; None when it is current."""
    if summary is None:
        return "no analysis yet"
    if summary.version != ANALYSIS_VERSION:
        return "the analysis was made by an older classweep"
    if summary.fingerprint != st.fingerprint():
        return "the store's images are newer than the analysis"
    if summary.scores_fingerprint != st.fingerprint(SCORES):
        return "the store's scores (`sweep score`) are newer than the analysis"
    missing = [name for name in summary.tables if not st.exists(ANALYSIS_DIR, name)]
    return f"{ANALYSIS_DIR}/{missing[0]} is missing" if missing else None


def current_summary(store: Store | str, stream: TextIO | None = None
                    ) -> tuple[AnalysisSummary, tuple[Rows | None, dict[str, list[str]]] | None]:
    """The store's analysis summary, running the analysis first (and saying why in one line on `stream`, stderr by
    default) when it is missing, or older than the images, the scores or this version of the analysis; and when it
    ran here, what `_image_job_rows` would read (the image jobs' rows and the key index of images/ and frames/),
    read in the analysis' own pass (`analyze_store_and_keys`); None when it did not run."""
    st = open_store(store)
    data = st.read_bytes(f"{ANALYSIS_DIR}/{SUMMARY_FILE}")
    summary = None
    if data is not None:
        try:
            summary = AnalysisSummary.from_json(data.decode("utf-8"))
        except (ValueError, TypeError):
            summary = None
    reason = stale_reason(st, summary)
    if reason is not None:
        metric = summary.metric if summary else DEFAULT_METRIC
        share = summary.margin_share if summary else MARGIN_SHARE   # the earlier analysis' choices, kept
        ranges = summary.graph_ranges if summary else HALVES
        again = f"--metric {metric}" + (f" --margin-share {share:g}" if share != MARGIN_SHARE else "") \
            + (f" --graph-ranges {ranges}" if ranges != HALVES else "")
        print(f"{reason}: running `sweep analyze {again}` first", file=stream or sys.stderr, flush=True)
        summary, _, ((rows, index),) = analyze_store_and_keys(st, metric, share, also=[IMAGE_JOB_ROWS],
                                                              graph_ranges=ranges)
        return summary, (rows if len(rows) else None, index)
    return summary, None


@dataclass(frozen=True)
class ReportFigure:
    """One entry of the report's Figures section."""
    title: str
    files: tuple[str, ...]          # written files, relative to the report folder (PNGs first)
    caption: str
    gallery: tuple["GalleryItem", ...] = ()   # one captioned image (+ GIF) per item, shown instead of a preview
    gallery_stem: str = ""   # the name of the gallery's own pages when the index shows only its first INDEX_GALLERY
                             #   items ("": shown whole on the index, however long)

    @property
    def gallery_pages(self) -> tuple[str, ...]:
        """The file names of the gallery's own pages, GALLERY_PAGE items each (`gallery_page_names`); none when the
        index shows it whole."""
        if not self.gallery_stem or len(self.gallery) <= INDEX_GALLERY:
            return ()
        return gallery_page_names(self.gallery_stem, math.ceil(len(self.gallery) / GALLERY_PAGE))

    @property
    def index_gallery(self) -> tuple["GalleryItem", ...]:
        """The gallery items the index shows: all of them, or the first INDEX_GALLERY when it has pages of its own."""
        return self.gallery[:INDEX_GALLERY] if self.gallery_pages else self.gallery

    @property
    def preview(self) -> str | None:
        """The first PNG, else the first GIF (a video's)."""
        return next((f for f in self.files if f.endswith(".png")),
                    next((f for f in self.files if f.endswith(".gif")), None))


def gallery_page_names(stem: str, count: int) -> tuple[str, ...]:
    """The names of a gallery's `count` pages: {stem}.html, {stem}-02.html, ... (OWNED's pattern)."""
    return tuple(f"{stem}.html" if p == 0 else f"{stem}-{p + 1:02d}.html" for p in range(count))


@dataclass(frozen=True)
class GalleryItem:
    png: str
    gif: str | None
    caption: str
    classes: tuple[int, ...] = ()   # the classes whose pages link the item too (an interpolation's a and b)


def write_figures(store, out: str | None = None, *, stream: TextIO | None = None,
                  trajectories: Iterable[str] = (), keep_trajectories: bool = True,
                  seeds: Iterable[int] | None = None, processes: int | None = 1) -> Path:
    """Write every figure and the HTML report; returns the path of index.html.

    `store`: an opened store or its URI. `out` defaults to {store}/figures (a local folder or a URI). The analysis
    runs first, with a line on `stream` saying why, when its tables are missing or older than the store's images or
    scores (`stale_reason`). Progress goes to `stream` (stderr by default): a bar on a terminal, plain lines
    otherwise. `trajectories`: keys of images whose recorded snapshots
    become a video (GIF; MP4 too when an ffmpeg encoder is available, none otherwise), linked from their class
    page; StoreError, before anything is written, for a key without snapshots. The videos earlier reports made in
    the folder are kept and linked as they are (a key given again is drawn anew), or with `keep_trajectories=False`
    removed. `seeds`: the seeds whose images the report draws (None: every seed; `analysis.seeds`); StoreError,
    before anything is written, for a seed the store does not have. `processes`: the worker processes that draw
    the interpolations (1: none, all in this process; None: DRAWING_PROCESSES, following the CPUs, as `sweep
    figures` does). They are spawned, so a script that asks for them calls this under `if __name__ == "__main__":`.
    """
    st = open_store(store) if isinstance(store, str) else store
    choice = SeedChoice.of_store(st.manifest, seeds)
    require_images(st)   # first: an emptied images/ is not "newer than the analysis"
    folder = output_folder(out, st)
    with st.keeping_objects() as st:   # on an object store a file's numbers and pictures come from one fetch
        listed = listed_videos(folder) if keep_trajectories else []   # read once: what to redraw, and what to keep
        redrawn = redrawn_video_keys(st, folder, listed)
        snapshots = recorded_snapshots(st, list(dict.fromkeys([*trajectories, *redrawn])))   # refused before writing
        summary, analysed = current_summary(st, stream)
        st = replace(st)   # the store read afresh (the analysis may have written tables since), its kept objects kept
        tables = load_tables(st)
        if "additions" in tables:   # every seed's images; the classes' and opposites' tables: one image per class
            tables["additions"] = choice.rows(tables["additions"])
            if tables["additions"].empty:   # none of the chosen seeds': no grid (an empty one was drawn)
                del tables["additions"]
        classes = tables.get("classes")
        opposites = tables.get("opposites")
        additions = tables.get("additions")
        keys = list(classes["key"]) if classes is not None else []
        keys += list(opposites["key"]) if opposites is not None else []
        keys += list(additions["key"]) if additions is not None else []
        with _Writer(folder, DRAWING_PROCESSES if processes is None else processes) as writer:
            return _write_report(st, summary, tables, keys, writer, stream, snapshots, listed or [], choice, analysed)


def listed_videos(folder: Store) -> list[dict] | None:
    """The videos the folder's VIDEOS_FILE lists (`listed_video`); None when there is no list (a report from before
    it, or none), [] when it cannot be read."""
    data = folder.read_bytes(VIDEOS_FILE)
    if data is None:
        return None
    try:
        return [listed_video(entry) for entry in json.loads(data)]
    except (ValueError, TypeError, KeyError):
        return []


def listed_video(entry: dict) -> dict:
    """One VIDEOS_FILE entry: {key, target, partner, gif, mp4, steps, version}. The partner is written as the
    store's `partner` column holds it (the class, null for none); older lists wrote -1 for none (read as None) or,
    older still, no partner at all: then the key is left out here too, for `with_partners` to take it from the
    store. version 1 when an older classweep did not record it."""
    video = {"key": str(entry["key"]), "target": int(entry["target"]), "gif": str(entry["gif"]),
             "mp4": entry.get("mp4"), "steps": str(entry["steps"]), "version": int(entry.get("version", 1))}
    if "partner" in entry:
        video["partner"] = partner_class(entry["partner"])
    return video


def partner_class(value) -> int | None:
    """A second class as the store's `partner` column holds it: the class, None for none (None, NaN, or the -1
    that older video lists and snapshot tables use)."""
    return None if value is None or pd.isna(value) or int(value) < 0 else int(value)


def redrawn_video_keys(st: Store, folder: Store, listed: list[dict] | None) -> list[str]:
    """The keys of the videos in `folder` to draw again, among those the store still has snapshots of: in a folder
    from before VIDEOS_FILE (`listed` None: `listed_videos` found no list), the GIFs named after a key (so that the
    first report of this version keeps them as later ones keep theirs); else those of the `listed` videos an older
    VIDEO_VERSION drew (so that a kept video looks like a new one)."""
    if listed is None:
        gifs = {info.base_name for info in folder.listing() if info.base_name.startswith("trajectory-")
                and info.base_name.endswith(".gif")}
        return [key for key in stored_snapshot_keys(st) if video_stem(key) + ".gif" in gifs] if gifs else []
    old = [video["key"] for video in listed if video["version"] < VIDEO_VERSION]
    have = set(stored_snapshot_keys(st)) if old else set()
    return [key for key in old if key in have]


def stored_snapshot_keys(st: Store) -> list[str]:
    """`snapshot_keys` of the store's trajectories/ ([] when it recorded none)."""
    table = stored_snapshots(st, ["key", "job", "target"])
    return [] if table is None else snapshot_keys(table)


def stored_snapshots(st: Store, columns: list[str], keys: list[str] | None = None) -> pa.Table | None:
    """`columns` of the trajectories/ rows with a snapshot (a picture), of `keys` (None: of every key); None when the
    store recorded no trajectories. Read file by file, each file's other rows and pictures dropped before the
    next is read: a sweep's snapshots of every image would be gigabytes of PNGs."""
    import pyarrow.compute as pc
    paths = st.files(TRAJECTORIES)
    if not paths:
        return None
    wanted = None if keys is None else pa.array(list(dict.fromkeys(keys)), pa.string())

    def shots(path: str) -> pa.Table:
        table = st.read_checked(path, list(dict.fromkeys([*columns, "key", "png"])))
        chosen = pc.is_valid(table.column("png"))
        if wanted is not None:
            chosen = pc.and_(chosen, pc.is_in(table.column("key"), value_set=wanted))
        return table.filter(chosen).select(columns)
    return pa.concat_tables(st.each_file(shots, paths), promote_options="permissive")


def video_stem(key: str) -> str:
    """A trajectory video's file name without its suffix (before `_Writer.unique_stem` makes it unique)."""
    return "trajectory-" + safe_name(key.replace(":", "_"))


def read_snapshots(st: Store, keys: list[str]) -> dict[str, pd.DataFrame]:
    """key -> its trajectories/ rows with a snapshot (step order), ending on its stored final image
    (`with_final_images`); StoreError for a key without any."""
    return with_final_images(st, recorded_snapshots(st, keys))


def recorded_snapshots(st: Store, keys: list[str]) -> dict[str, pd.DataFrame]:
    """key -> its trajectories/ rows with a snapshot (step order, each step once: its first record in file order),
    in the order asked; StoreError for a key without any."""
    if not keys:
        return {}
    table = stored_snapshots(st, ["key", "step", "octave", "target", "label", "logits", "png"], keys)
    found = pd.DataFrame() if table is None else table.to_pandas()
    out = {}
    for key, rows in (found.groupby("key", sort=False) if len(found) else ()):
        # a step recorded twice (a batch run again leaves an image's snapshots in two files): its first record, in
        # file order, as the stability table keeps it; else the video shows each step twice
        once = rows.drop_duplicates(["octave", "step"], keep="first")
        out[key] = once.sort_values("step", kind="stable").reset_index(drop=True)
    for key in dict.fromkeys(keys):
        if key not in out:
            raise StoreError(no_snapshots(key, st.uri, None if table is None else stored_snapshot_keys(st)))
    return {key: out[key] for key in dict.fromkeys(keys)}   # in the order asked


def with_final_images(st: Store, snapshots: dict[str, pd.DataFrame], files: dict[str, list[str]] | None = None
                      ) -> dict[str, pd.DataFrame]:
    """`recorded_snapshots` each with its stored final image (`with_final_image`), read from the files the key index
    `files` names (None: the key columns are read first)."""
    finals = {row["key"]: row for row in iter_image_rows(st, list(snapshots), ["step", "label", "logits", "png",
                                                                               "partner"], files)}
    return {key: with_final_image(rows, finals.get(key)) for key, rows in snapshots.items()}


def with_final_image(snapshots: pd.DataFrame, final: dict | None) -> pd.DataFrame:
    """One image's snapshots (step order) and, as the last frame, its stored final image (`final`: its images/ row's
    step, label, logits and png), which no snapshot shows: a snapshot at step t is the image the t-th step started
    from, so with snapshots every 50 of 200 steps the last is step 150. Left as they are when the store has no
    final image for the key, or does not say after how many steps it was taken (older stores)."""
    partner = final.get("partner") if final is not None else None   # an addition's second class, for the video
    snapshots = snapshots.assign(final=False, partner=-1 if partner is None else int(partner))
    if final is None or final["step"] is None or final["step"] <= snapshots["step"].iloc[-1]:
        return snapshots
    last = snapshots.iloc[-1]
    row = {"key": last["key"], "step": final["step"], "octave": last["octave"], "target": last["target"],
           "label": final["label"], "logits": np.asarray(final["logits"], np.float32), "png": final["png"],
           "final": True, "partner": last["partner"]}
    return pd.concat([snapshots, pd.DataFrame([row])], ignore_index=True)


def snapshot_keys(table: pa.Table) -> list[str]:
    """The keys with at least one snapshot in a trajectories/ table (key, job, target and png columns, or its
    snapshot rows without png), in the order a reader looks for them: by job (octave first, as `sweep run` lists
    jobs), then class."""
    import pyarrow.compute as pc
    if "png" in table.column_names:   # else the snapshot rows already (`stored_snapshots`)
        table = table.filter(pc.is_valid(table.column("png")))
    shots = table.select(["key", "job", "target"]).to_pandas()
    shots = shots.drop_duplicates("key").assign(
        rank=lambda f: f["job"].map({job: i for i, job in enumerate(ALL_JOBS)}).fillna(len(ALL_JOBS)),
        target=lambda f: f["target"].fillna(-1))
    return shots.sort_values(["rank", "target", "key"], kind="stable")["key"].tolist()


def no_snapshots(key: str, uri: str, keys: list[str] | None) -> str:
    """The error for a --trajectories key without snapshots: what the store does have (`keys`: the keys with
    snapshots; None: the store recorded no trajectories), up to SHOWN_KEYS of them, and how to list them all."""
    record = "run the sweep with --trajectory every:N,snapshots:M"
    if keys is None:
        return f"no snapshots of {key}: {uri} recorded no trajectories ({record})"
    if not keys:
        return f"no snapshots of {key}: {uri}/{TRAJECTORIES}/ holds no snapshots, only steps ({record})"
    listed = ", ".join(keys[:SHOWN_KEYS])
    more = "" if len(keys) <= SHOWN_KEYS else (
        f", ... ({len(keys)} in all; list them with python -c \"import pandas as pd; print(*pd.read_parquet("
        f"'{uri}/{TRAJECTORIES}', columns=['key', 'logits']).dropna()['key'].unique(), sep=chr(10))\")")
    return f"no snapshots of {key} in {uri}/{TRAJECTORIES}/; keys with snapshots: {listed}{more}"


def mp4_bytes(frames: list[np.ndarray]) -> bytes | None:
    """The frames (H x W x 3 pixels: the GIF's, `rgb_pixels` of `trajectory_frames`) as an H.264 MP4 through
    matplotlib's ffmpeg writer; None when no ffmpeg is available."""
    import tempfile
    from matplotlib import animation
    if not frames or not animation.writers.is_available("ffmpeg"):
        return None
    figure = drawing.new_figure(frames[0].shape[1], frames[0].shape[0])
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    shown = ax.imshow(frames[0])
    writer = animation.FFMpegWriter(fps=1000 / TRAJECTORY_FRAME_MS)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/video.mp4"
        with writer.saving(figure, path, dpi=drawing.DPI):
            for frame in frames:
                shown.set_data(frame)
                writer.grab_frame()
        return Path(path).read_bytes()


def earlier_videos(writer: "_Writer", listed: Iterable[dict], replaced: set[str]) -> list[dict]:
    """The trajectory videos an earlier report listed in the folder's VIDEOS_FILE (`listed`: `listed_videos`) whose
    GIF is still there, but for the `replaced` keys (drawn anew): each as listed, with mp4 None when gone, its files
    kept (and their names taken) by `writer`. An entry naming a file outside the folder is ignored."""
    kept = []
    for video in listed:
        files = [video["gif"]] + ([str(video["mp4"])] if video["mp4"] else [])
        try:
            for name in files:
                writer.path(name)
        except ValueError:   # a name outside the folder: not ours
            continue
        present = [name for name in files if writer.folder.exists(name)]
        if video["key"] in replaced or video["gif"] not in present:
            continue
        for name in present:
            writer.keep(name)
        kept.append({**video, "mp4": video["mp4"] if video["mp4"] in present else None})
    return kept


def stored_partners(st: Store, keys: list[str], files: dict[str, list[str]] | None = None
                    ) -> dict[str, int | None]:
    """key -> the second class of the store's image with that key (an addition's or interpolation's partner; None
    for none, and for a key the store no longer has); `files`: the key index, when the caller has it."""
    found = {row["key"]: row["partner"] for row in iter_image_rows(st, keys, ["partner"], files)} if keys else {}
    return {key: partner_class(found.get(key)) for key in keys}


def with_partners(st: Store, videos: list[dict], files: dict[str, list[str]] | None = None) -> list[dict]:
    """`videos` (kept ones, `earlier_videos`) each with its partner: as listed, or from the store where an older
    classweep did not record it (`listed_video` left the key out)."""
    partners = stored_partners(st, [v["key"] for v in videos if "partner" not in v], files)
    return [v if "partner" in v else {**v, "partner": partners[v["key"]]} for v in videos]


def videos_by_class(videos: dict[int, list[dict]]) -> dict[int, list[dict]]:
    """Per class, the videos to link from its page (`videos`: per target, as VIDEOS_FILE lists them): its own, and
    those of the additions and interpolations it is the partner of; each with `other`, the pair's other class (None:
    none), which the page names."""
    pages: dict[int, list[dict]] = {}
    for target, listed in videos.items():
        for video in listed:
            partner = video.get("partner")
            colours = video_colours(video)
            pages.setdefault(target, []).append({**video, "other": partner, "colours": colours})
            if partner is not None and partner != target:
                pages.setdefault(partner, []).append({**video, "other": target, "colours": colours})
    return pages


def video_colours(video: dict) -> str:
    """What a trajectory video's caption says of its marked classes (`fig.marked_roles`), after "every class's
    output": " (target in red)", and "partner in blue" for an addition's; " (class a in red, class b in blue)" for an
    interpolation's, " (minimised class in red)" for an opposite's; "" for a dream's, which marks none."""
    if job_of_key(video["key"]) in CLASSLESS:
        return ""
    first, second = fig.marked_roles(video["key"])
    return f" ({first} in red" + (f", {second} in blue)" if video.get("partner") is not None else ")")


def _trajectory_videos(snapshots: dict[str, pd.DataFrame], names, writer: "_Writer") -> dict[int, list[dict]]:
    """Per class, the videos of its chosen images: {key, partner (None: none), gif, mp4 (or None), steps, version}."""
    videos: dict[int, list[dict]] = {}
    for key, rows in snapshots.items():
        stem = writer.unique_stem(video_stem(key), key)
        frames = [drawing.rgb_pixels(f) for f in fig.trajectory_frames(rows, names)]   # F x H x W x 3, for both
        gif = writer.bytes(f"{stem}.gif", fig.trajectory_gif(frames, TRAJECTORY_FRAME_MS, GIF_HOLD_MS))
        video = mp4_bytes(frames)
        mp4 = writer.bytes(f"{stem}.mp4", video) if video is not None else None
        target = rows["target"].iloc[0]
        videos.setdefault(int(target) if pd.notna(target) else -1, []).append(
            {"key": key, "partner": partner_class(rows["partner"].iloc[0]), "gif": gif, "mp4": mp4,
             "steps": f"steps {rows.step.iloc[0]}-{rows.step.iloc[-1]}", "version": VIDEO_VERSION})
    return videos


def _write_report(st: Store, summary: AnalysisSummary, tables, keys, writer: "_Writer", stream,
                  snapshots: dict[str, pd.DataFrame] | None = None, earlier: Iterable[dict] = (),
                  seeds: SeedChoice = SeedChoice(),
                  analysed: tuple[Rows | None, dict[str, list[str]]] | None = None) -> Path:
    """The report; `snapshots`: the videos to draw (`recorded_snapshots`); `earlier`: the videos an earlier report
    listed (`listed_videos`), to keep where still there; `seeds`: whose images of the jobs from source images to
    draw (`tables` are of those seeds already); `analysed`: the image jobs' rows and the key index when the
    analysis ran in this command and read them (`current_summary`)."""
    classes = tables.get("classes")
    opposites = tables.get("opposites")
    additions = tables.get("additions")
    transfer = tables.get("transfer")
    scored = transfer is not None and transfer["scorer"].nunique() > 1 and judged_by_a_measure(transfer)
    # The key index ({path: keys}) tells each reader of PNGs which files to open: it comes with the analysis' pass
    # when it ran in this command (which read the image jobs' numbers too), else with the image jobs' numbers when
    # there are some (read only then), else from the key columns.
    image_rows, key_index = analysed or (_image_job_rows(st) if summary.image_jobs else (None, st.keys_by_file()))
    image_rows = image_rows if summary.image_jobs else None   # none the analysis counted: none drawn
    snapshots = with_final_images(st, snapshots or {}, key_index)
    image_rows = seeds.rows(image_rows)   # of the chosen seeds; the key index stays the store's
    image_rows = image_rows if image_rows is not None and len(image_rows) else None   # none of those seeds'
    steps = 1 + 2 * (classes is not None) + (opposites is not None) + (additions is not None) + ("pca" in tables) \
        + ("features" in tables) + (image_rows is not None) + scored   # 1: the HTML pages; 2: contact sheets, graph
    paged = set() if classes is None else set(classes["target"])
    sourced = sourced_images(image_rows, paged)
    paged_keys = [*page_keys(tables, paged), *sourced["key"]]   # the images the HTML pages show: a file each
    grid_only_keys = sorted((set(keys) | set([] if image_rows is None else grid_keys(image_rows))) - set(paged_keys))
    progress = Progress(len(paged_keys) + len(grid_only_keys) + steps, stream=stream, unit="steps", failures=False)
    progress.note = "reading images"
    thumbs, grid_only = _thumbnails(st, paged_keys, writer, progress, key_index, grid_only_keys)
    shown = {**thumbs, **grid_only}   # every grid thumbnail

    def step(note: str) -> None:
        progress.note = note
        progress.update(done=1)

    figures: list[ReportFigure] = []
    if classes is not None:
        figures += _class_figures(tables, shown, writer, step)
    if opposites is not None:
        step("opposites")
        figures.append(writer.figure("Opposites", "opposites", fig.opposites_grid(classes, opposites, shown),
                                     "Each class's image beside the image that minimises its logit, labelled by "
                                     "argmax (the opposite, with its probability on that image) and by the article's "
                                     "margin criterion on the class image. \"mutual\": the opposite's own opposite "
                                     "is the class." if classes is not None else "Each image that minimises its "
                                     "class's logit, labelled by argmax (the opposite, with its probability) and by "
                                     "the project's standout statistic. \"mutual\": the opposite's own opposite is "
                                     "the class."))
    if additions is not None:
        step("additions")
        figures.append(writer.figure("Additions", "additions", fig.additions_grid(additions, shown),
                                     "Per pair, each variant's image with both classes' ranks in the result "
                                     "(green: the two classes are the top two)."))
    if scored:
        step("transfer")
        from analysis.transfer import transfer_figure
        files = writer.figure_files("transfer", transfer_figure(transfer), svg=True)
        figures.append(ReportFigure("Transfer to other models", files, "Each job's images judged by its own "
                                    "measure, per scoring model (the generating model first; `sweep score` adds "
                                    "scorers): octave and image jobs by the share with the target top-1 (an "
                                    "interpolation's final image: class b top-1), additions by the share with both "
                                    "classes in the top 2, opposites by the mean percentile of the minimised class "
                                    "(0: the scorer's lowest output); dreams, which have no target, are not judged."))
    notes = []
    if "features" in tables:
        step("features")
        figures.extend(_feature_figures(fig.class_image_features(tables["features"], classes), writer,
                                        tables.get("graph_nodes"), classes))
    elif classes is not None:   # without class images NO_CLASSES says it
        notes.append(f"Feature embedding skipped: the store has no {ANALYSIS_DIR}/features.parquet (run "
                     "`sweep analyze --features LAYER:0,4` to compute it).")
    photos, fits = {}, source_fits(st.manifest)
    if image_rows is not None:
        step("image jobs")
        photos = {name: _source_image(st, name) for name in sorted(set(image_rows.meta["source"]) - {""})}
        figures.extend(_image_job_figures(image_rows, photos, fits, shown, st, writer,
                                          key_index))

    figures.extend(_directions_figures(writer))
    if "stability_summary" in tables:
        files = writer.figure_files("stability", fig.stability_figure(tables["stability_summary"]))
        figures.append(ReportFigure("Stability during generation", files, "How often the argmax changed between "
                                    "recorded steps, and the share of recorded steps with the target top-1, per "
                                    "octave, for the one job and variant its title names (Input generation, "
                                    "\"InceptionV3 and GoogleNet Compared\"). An "
                                    "opposite minimises its target, so for it a low share is success; the Summary "
                                    "judges each job by its own measure."))
    kept = with_partners(st, earlier_videos(writer, earlier, replaced=set(snapshots or {})), key_index)
    videos = _trajectory_videos(snapshots or {}, st.class_names, writer)
    for video in kept:
        videos.setdefault(video.pop("target"), []).append(video)
    if videos:
        writer.text(VIDEOS_FILE, json.dumps([{"target": target, **v} for target, vs in sorted(videos.items())
                                             for v in vs], indent=1))
    figures.extend(_video_figure(v) for target, vs in videos.items() for v in vs
                   if target not in paged and v["partner"] not in paged)   # else on a class page
    step("HTML pages")
    images = {key: writer.image_name(key) for key in thumbs}
    if classes is not None:
        images.update(_source_page_images(sourced, photos, fits, writer))
        _class_pages(st, summary, tables, writer, images, ClassExtras(
            videos=videos_by_class(videos), sourced=_sourced_by_class(sourced, fits, st.class_names),
            interpolations=gallery_by_class(figures)))
    _gallery_pages(figures, writer)
    writer.text("index.html", _index_html(st, summary, tables, figures, notes, images, writer.folder, seeds.line()))
    writer.finish()
    writer.remove_stale()
    progress.close()
    return Path(writer.root) / "index.html"


def judged_by_a_measure(transfer: pd.DataFrame) -> bool:
    """Whether the transfer figure has a cell to draw: an image of a job with a measure of success (a store of dreams
    alone, scored by another model, drew a figure reading "no scored images")."""
    from analysis.transfer import success_table
    return len(success_table(transfer)) > 0


def page_keys(tables, paged: set[int]) -> list[str]:
    """The keys of the analysis tables' images that the HTML pages show (`paged`: the classes with a page): every
    class image (the index and its page), the opposite image of a class with a page, and each addition of which one
    class or both have one (a store without class images shows them only in the grids: no page image is written)."""
    classes, opposites, additions = (tables.get(name) for name in ("classes", "opposites", "additions"))
    keys = [] if classes is None else list(classes["key"])
    if opposites is not None:
        keys += list(opposites.loc[opposites["target"].isin(paged), "key"])
    if additions is not None:
        keys += list(additions.loc[additions["target"].isin(paged) | additions["partner"].isin(paged), "key"])
    return keys


def _class_figures(tables, thumbs, writer: "_Writer", step: Callable[[str], None]) -> list[ReportFigure]:
    """The figures that start from the classes table: contact sheets, PCA (when there is one) and the graph."""
    step("contact sheets")
    figures = [writer.figure("Contact sheet", "contact", fig.contact_sheets(tables["classes"], thumbs),
                             "Every class's generated image with its class's probability p (green: the "
                             "model labels it as its class; red: as another class, named after the arrow with "
                             "that label's own probability).")]
    if "pca" in tables:
        step("PCA")
        files = writer.figure_files("pca", fig.output_pca(tables["pca"], tables["pca_variance"],
                                                          tables["graph_nodes"]), svg=True)
        figures.append(ReportFigure("PCA of the output space", files, "First two principal components of the "
                                    "class representatives' output vectors."))
    step("graph")
    if draws_whole_graph(tables):
        figures.append(writer.figure("Nearest-neighbour graph", graph_stem(None),
                                     fig.graph_pages(tables["graph_nodes"], tables["graph_components"]),
                                     f"{len(tables['graph_components'])} components; an arrow goes from each class "
                                     f"to the class most activated by its image. Nodes take their component's "
                                     f"colour, {GRAPH_STYLE}", svg=True))
        return figures
    ranges = tables["graph_ranges"]
    for (first, last), part in ranges.groupby(["first", "last"], sort=False):
        span = ClassRange(int(first), int(last))
        figures.append(writer.figure(f"Nearest-neighbour graph of classes {span.name}", graph_stem(span),
                                     fig.graph_pages(tables["graph_nodes"], part, span=span),
                                     f"{counted(len(part), 'component')}; an arrow goes from each class of "
                                     f"{span.name} to the class most activated by its image, which may lie outside "
                                     "the range, drawn as a square (the article graphs each half of ImageNet's "
                                     "classes apart: \"The first half ... are mostly animals\"). Nodes take the "
                                     f"colour of their component in the whole graph, {GRAPH_STYLE}", svg=True))
    return figures


def draws_whole_graph(tables) -> bool:
    """Whether the report draws the whole graph's pages: with `--graph-ranges all`, or ranges none of whose classes
    has an image (rather than no graph at all); else a figure per range."""
    return "graph_ranges" not in tables or tables["graph_ranges"].empty


def graph_stem(span: ClassRange | None) -> str:
    """The stem of a graph figure's pages: the whole graph's (None) or a class range's."""
    return "graph" if span is None else f"graph-{span.name}"


@dataclass(frozen=True)
class GraphPlace:
    """Where the report's graph figures draw a class: a class page says it, as the figures number the components
    of a class range apart from the whole graph's."""
    span: str | None   # the class range whose figure draws it (None: the whole graph's figure)
    component: int     # its component's number in that figure
    size: int          # that component's classes (in a range's figure, the neighbours outside it included)
    page: str          # the figure's page (PNG) that draws it


def graph_range_names(tables) -> list[str]:
    """The names of the class ranges the graph figures are drawn by ("0-499", ...), none when the whole graph is."""
    if draws_whole_graph(tables):
        return []
    spans = tables["graph_ranges"][["first", "last"]].drop_duplicates()
    return [ClassRange(int(first), int(last)).name for first, last in spans.itertuples(index=False)]


def graph_places(tables) -> dict[int, GraphPlace]:
    """Per class, where the graph figures draw it (`GraphPlace`): in the figure of the range that holds it (as the
    graph_ranges table numbers its components), or in the whole graph's (the graph_components table's)."""
    if draws_whole_graph(tables):
        parts = [(None, tables["graph_components"])]
    else:
        parts = [(ClassRange(int(first), int(last)), part)
                 for (first, last), part in tables["graph_ranges"].groupby(["first", "last"], sort=False)]
    places = {}
    for span, part in parts:
        members = [list(m) for m in part["members"]]
        for n, page in enumerate(fig.graph_page_numbers([len(m) for m in members])):
            for c in members[n]:
                if span is None or c in span:   # a neighbour outside the range: placed by its own range's figure
                    places[int(c)] = GraphPlace(None if span is None else span.name, n, len(members[n]),
                                                f"{page_stem(graph_stem(span), page)}.png")
    return places


def page_stem(stem: str, page: int) -> str:
    """The stem of a paginated figure's page (from 0): {stem}-01, {stem}-02, ..."""
    return f"{stem}-{page + 1:02d}"


GRAPH_STYLE = ("as in the PCA (light grey beyond the ten largest); larger with a black edge: the hub; hollow: no "
               "image of its own; a mutual pair's two arrows are bent apart.")


def _video_figure(video: dict) -> ReportFigure:
    """A trajectory video of an image without a class page, shown on the index."""
    return ReportFigure(f"Generation of {video['key']}", (video["gif"], *([video["mp4"]] if video["mp4"] else [])),
                        f"The image at each recorded snapshot beside every class's output{video_colours(video)}, "
                        f"{video['steps']}.")


class _Writer:
    """Writes files under the output folder (atomically, through `sweep.store.Store.write_bytes`). Every name is
    checked to lie inside the folder; names built from store keys are made safe and unique."""

    def __init__(self, folder: Store, processes: int = 1) -> None:
        self.folder = folder
        self.processes = processes            # worker processes drawing the interpolations (`drawing_pool`)
        self.fs, self.root = folder.fs, folder.root.rstrip("/") or "/"
        self.written: set[str] = set()
        self.images: dict[str, str] = {}      # store key -> its page image's file name
        self.names = UniqueNames()           # file names and stems, unique as macOS and Windows compare them
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
        drop_temp_folder(self.folder)

    def later(self, name: str, make: Callable[[], bytes]) -> str:
        """Write `make()` under `name` on the writing thread (PNG encoding and file writes release the GIL, so they
        overlap with drawing the next figure); errors come out of `finish`."""
        relative = posixpath.relpath(self.path(name), self.root)   # refused now when it would leave the folder
        self.pending.append(self.io.submit(lambda: self.folder.write_bytes(relative, make())))
        self.written.add(name)
        while len(self.pending) > WRITE_QUEUE:
            self.pending.popleft().result()
        return name

    def bytes(self, name: str, data: bytes) -> str:
        return self.later(name, lambda: data)

    def keep(self, name: str) -> str:
        """Leave the file `name` an earlier report wrote as it is: kept by `remove_stale`, its name taken."""
        self.path(name)   # refused when it would leave the folder
        self.names.claim(name, name)
        self.written.add(name)
        return name

    def finish(self) -> None:
        """Wait for every write (and raise the first error of one)."""
        while self.pending:
            self.pending.popleft().result()

    def text(self, name: str, text: str) -> str:
        return self.bytes(name, text.encode("utf-8"))

    def image_name(self, key: str) -> str:
        """The page image file of a store row: img/{key with ':' as '_'}.png, made safe; a key whose safe name is
        taken by another key (compared case-insensitively) gets a hash of the key added (names stay unique)."""
        if key not in self.images:
            self.images[key] = self.names.claim_stem("img/" + safe_name(str(key).replace(":", "_")), key, ".png")
        return self.images[key]

    def unique_stem(self, stem: str, key: str) -> str:
        """`stem` (already made safe), or with a hash of `key` added when another key took it in this report."""
        return self.names.claim_stem(stem, key)

    def figure_files(self, stem: str, figure, *, svg: bool = False) -> tuple[str, ...]:
        """One matplotlib figure as {stem}.png (and {stem}.svg)."""
        pixels = drawing.rgb_pixels(figure)   # drawn here; encoded on the writing thread
        files = (self.later(f"{stem}.png", lambda: drawing.png_bytes(Image.fromarray(pixels))),)
        return files + ((self.bytes(f"{stem}.svg", drawing.save(figure, "svg")),) if svg else ())

    def figure(self, title: str, stem: str, pages, caption: str, *, svg: bool = False) -> ReportFigure:
        """Pages of a paginated figure as {stem}-01.png, {stem}-02.png, ..."""
        files: list[str] = []
        for i in range(len(pages)):   # `Pages` builds each page on access: one page in memory at a time
            files += self.figure_files(page_stem(stem, i), pages[i], svg=svg)
        return ReportFigure(title, tuple(files), caption)

    def remove_stale(self) -> None:
        """Delete what an earlier report left here and this one did not write (pages that no longer exist)."""
        for info in self.folder.listing(recursive=True):
            name = posixpath.relpath(info.path, self.root)
            if info.type == pafs.FileType.File and name not in self.written and OWNED.fullmatch(name):
                self.folder.delete_file(info.path)


def _thumbnails(st: Store, keys: list[str], writer: _Writer, progress: Progress,
                files: dict[str, list[str]] | None = None, grid_only: Iterable[str] = ()
                ) -> tuple[dict[str, object], dict[str, object]]:
    """Decode each shown PNG once: write its page-size image and keep a grid thumbnail for `keys` (the pages'
    images), keep a grid thumbnail only for `grid_only` (the other images of the source grids); returns the two
    {key: thumbnail}. One pass over the files that hold them (`files`: the key index), so that no file's PNGs are
    read twice.

    PNGs come file by file and are decoded in chunks on a small thread pool (Pillow releases the GIL while it
    decodes, resizes and encodes), so memory holds one chunk of PNG bytes at a time (on S3 also the wanted PNGs of
    the READ_THREADS files fetched ahead).
    """
    paged, grid_only = set(keys), set(grid_only) - set(keys)
    thumbs, others = {}, {}
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for chunk in _chunks(iter_pngs(st, [*keys, *grid_only], files), 64):
            pages = [key in paged for key, _ in chunk]
            for (key, _), page, prepared in zip(chunk, pages, pool.map(_prepare, [png for _, png in chunk], pages)):
                if prepared is None:   # a broken PNG shows as missing; it does not stop the report
                    continue
                if page:
                    writer.bytes(writer.image_name(key), prepared[0])
                    thumbs[key] = prepared[1]
                else:
                    others[key] = prepared[1]
            progress.update(done=len(chunk))
    return thumbs, others


def _prepare(png: bytes, page: bool = True):
    """(page image bytes, grid thumbnail) of one stored PNG (page image None unless `page`); None when it cannot
    be decoded."""
    try:
        image = drawing.decode(png)
    except (OSError, ValueError, SyntaxError):
        return None
    if not page:
        return None, drawing.fit_image(image, GRID_THUMB)
    shrunk = page_image(image)   # small already: the stored bytes (the browser enlarges it, pixelated)
    return png if shrunk is image else drawing.png_bytes(shrunk), drawing.fit_image(image, GRID_THUMB)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _feature_figures(features: pd.DataFrame, writer: _Writer, nodes: pd.DataFrame | None = None,
                     classes: pd.DataFrame | None = None) -> list[ReportFigure]:
    """A feature scatter per layer of `features` (`fig.class_image_features`), its caption saying how many of the
    `classes` table's class images it lacks."""
    if not fig.feature_maps(features):
        return []
    out = []
    for layer in sorted(set(features["layer"])):
        stem = writer.unique_stem(f"features-{safe_name(layer)}", layer)   # two layers may share a safe name
        files = writer.figure_files(stem, fig.feature_scatter(features, layer, nodes), svg=True)
        out.append(ReportFigure(f"Feature embedding ({layer})", files, "Each class image placed by the mean "
                                "activation of two feature maps (the article's feature latent space; with more "
                                "maps, the subtitle names the two shown)"
                                + (", coloured by nearest-neighbour graph component as in the PCA." if nodes is not None
                                   else ".") + missing_features_words(features, classes, layer)))
    return out


def missing_features_words(features: pd.DataFrame, classes: pd.DataFrame | None, layer: str) -> str:
    """What a feature scatter's caption says of the class images without a row of `layer` in features.parquet
    (`sweep analyze --features` computed it before them, and nothing computes it again): "" when none lacks one, and
    for features of other images than the class images (`fig.class_image_features` draws them all)."""
    if classes is None or "key" not in features:
        return ""
    wanted, present = set(classes["key"]), set(features.loc[features["layer"] == layer, "key"])
    missing = len(wanted - present)
    if not missing or not wanted & present:
        return ""
    return (f" {missing} of the {counted(len(classes), 'class image')} are not in {ANALYSIS_DIR}/features.parquet "
            f"(computed before them) and not drawn: `sweep analyze --features {layer}:MAPS` computes it again.")


DIRECTIONS_FILES = ("directions-distribution.png", "directions-distribution.svg", "directions-strip.png")
DIRECTIONS_CAPTIONS = {   # the PNGs of `sweep directions`, each previewed with its caption
    "directions-distribution.png": "Where each group's images lie along the fitted direction.",
    "directions-strip.png": "The distinct stored images nearest to the line through the start image, from one end of "
                            "the direction to the other, each with its class, the job (and photograph) that made it, "
                            "its seed and its group."}


def _directions_figures(writer: _Writer) -> list[ReportFigure]:
    """The figures `sweep directions` wrote into this folder, when it did (they are its, not this report's: linked
    here, never deleted or redrawn), each PNG previewed."""
    files = tuple(name for name in DIRECTIONS_FILES if writer.folder.exists(name))
    if not files:
        return []
    shown = tuple(GalleryItem(name, None, caption) for name, caption in DIRECTIONS_CAPTIONS.items() if name in files)
    return [ReportFigure("Latent direction", files, "From `sweep directions` (latent directions article): the "
                         "images' positions along the direction fitted to the groups, and the stored images along "
                         "the line through the start image.", shown)]


# --- jobs from real images -------------------------------------------------------------------------------------------

def _image_job_rows(st: Store) -> tuple[Rows | None, dict[str, list[str]]]:
    """The rows of the jobs from source images, interpolation frames included (None when the store has none), and
    the store's key index ({path: keys} of images/ and frames/) from the same reads. Their numbers only, without
    output vectors (a strip shows its two classes' stored logits, a grid and a class page the label's
    probability), so that 10^5 images and their frames take megabytes, not gigabytes."""
    (rows, files), = read_rows_for(st, [IMAGE_JOB_ROWS])
    return rows if len(rows) else None, files


def grid_keys(rows: Rows) -> list[str]:
    """The keys of the images the source grids show (`_image_job_rows`' rows of every job but the framed one)."""
    return list(rows.meta.loc[~rows.meta["job"].isin(FRAMED), "key"])


def _image_job_figures(rows: Rows, photos: dict, fits: dict[str, str], shown: dict, st: Store,
                       writer: _Writer, files: dict[str, list[str]] | None = None) -> list[ReportFigure]:
    """Grids of transfigurations, dreams and directed dreams (source photograph | result), and per interpolation a
    frame strip (PNG) and an animated GIF. `rows`: `_image_job_rows`; `photos`: source name -> the photograph
    (`_source_image`); `fits`: `source_fits`; `shown`: the grid thumbnails of the grids' images, decoded with the
    pages' (`_thumbnails`; one missing shows as missing); `files`: the key index (`_image_job_rows`), for the
    interpolations' frames."""
    meta, names = rows.meta, st.class_names

    def sources(job: str) -> dict:
        """Each photograph's grid thumbnail as `job`'s schedule fitted it to the network's square."""
        return {name: None if photo is None else drawing.fit_image(fitted_source(photo, fits.get(job)), GRID_THUMB)
                for name, photo in photos.items()}
    framed = meta["job"].isin(FRAMED).to_numpy()
    gridded = meta[~framed]
    thumbs = {key: shown[key] for key in gridded["key"] if key in shown}
    figures = []
    for job in (job for job in IMAGE_JOBS if job not in FRAMED):
        part = gridded[gridded["job"] == job]
        if len(part):
            title, _, caption = fig.SOURCE_GRIDS[job]
            figures.append(writer.figure(title, job, fig.source_grid(job, part, sources(job), thumbs, names), caption))
    part = meta[framed]
    if len(part):   # one framed job (interpolate): its schedule's fit
        figures.append(_interpolations(part, sources(part["job"].iloc[0]), names, st, writer, files))
    return figures


def _source_image(st: Store, name: str):
    """The source photograph the sweep stored, decoded (None when the store does not have it)."""
    data = st.read_bytes(source_file(name))   # the real image, as the sweep stored it
    if data is None:
        return None
    try:
        return drawing.decode(data)
    except (OSError, ValueError, SyntaxError):
        return None


def source_fits(manifest: dict) -> dict[str, str]:
    """job -> the `source_fit` of the schedule it ran (the manifest's job_schedules and schedule_contents, which
    `sweep run` records); jobs of a store that does not record it are left out."""
    fits = {job: job_schedule(manifest, job).get("source_fit") for job in manifest.get("job_schedules") or {}}
    return {job: str(fit) for job, fit in fits.items() if fit}


def fitted_source(photo: Image.Image, fit: str | None) -> Image.Image:
    """The part of a photograph the network saw: `jobs.transforms.fit` itself, as the job's first octave ran it
    ("squash": the whole photograph resized to a square, "crop": the central square), here at the photograph's own
    resolution (the square's side its longer side to squash, its shorter to crop), SOURCE_SIDE at most; None (not
    recorded) or a fit this classweep does not know: the photograph as it is."""
    if fit not in SOURCE_FITS:
        return photo
    from jobs.kinds import from_uint8, to_uint8   # torch: only for a store with jobs from source images
    from jobs.transforms import fit as fit_to
    side = min(max(photo.size) if fit == "squash" else min(photo.size), SOURCE_SIDE)
    pixels = from_uint8(np.asarray(photo.convert("RGB"))[None])   # 1 x 3 x H x W
    return Image.fromarray(to_uint8(fit_to(side, fit)(pixels))[0])


def sourced_images(rows: Rows | None, classes: set[int]) -> pd.DataFrame:
    """The images from source images that the class pages show: the final images of PAGED_IMAGE_JOBS whose target
    has a page (`classes`), with each one's label probability (`label_prob`), in page order (job as the catalog
    lists them, then layer, source, seed). Empty (the columns kept) without any."""
    if rows is None:
        return pd.DataFrame(columns=["key", "job", "variant", "target", "source", "seed", "label", "target_prob",
                                     "label_prob", OUTPUTS_FINITE])
    meta = rows.meta
    meta = meta[meta["job"].isin(PAGED_IMAGE_JOBS) & (meta["frame"] < 0) & meta["target"].isin(classes)]
    order = meta["job"].map(ALL_JOBS.index)
    return meta.assign(order=order).sort_values(["order", "variant", "source", "seed", "key"], kind="mergesort") \
        .drop(columns="order").reset_index(drop=True)


def source_key(name: str, fit: str | None) -> str:
    """The report's name for a photograph as `fit` gave it to the network (`fitted_source`), among the store's keys
    in the page images (no job is called "source")."""
    return f"source:{fit or 'whole'}:{name}"


def page_image(image: Image.Image) -> Image.Image:
    """An image as the HTML pages show it: shrunk to PAGE_THUMB when larger, never enlarged (the browser does)."""
    return drawing.fit_image(image, PAGE_THUMB) if max(image.size) > PAGE_THUMB else image


def _source_page_images(sourced: pd.DataFrame, photos: dict, fits: dict[str, str], writer: _Writer
                        ) -> dict[str, str]:
    """Write the page image of each photograph the class pages show beside an image (`sourced_images`), as its job
    fitted it; returns source_key -> file name (a photograph the store does not have is left out)."""
    files = {}
    for job, name in sorted(set(zip(sourced["job"], sourced["source"]))):
        key = source_key(name, fits.get(job))
        if key not in files and photos.get(name) is not None:
            image = page_image(fitted_source(photos[name], fits.get(job)))
            files[key] = writer.bytes(writer.image_name(key), drawing.png_bytes(image))
    return files


def _sourced_by_class(sourced: pd.DataFrame, fits: dict[str, str], names) -> dict[int, list[dict]]:
    """Per class, what its page says of each of its images from a source image (`sourced_images`): the image's
    key, its photograph's `source_key`, and its caption's parts."""
    out: dict[int, list[dict]] = {}
    for r in sourced.itertuples():
        out.setdefault(int(r.target), []).append({
            "key": r.key, "photo": source_key(r.source, fits.get(r.job)), "title": fig.SOURCE_GRIDS[r.job][0],
            "source": r.source, "target_prob": float(r.target_prob), "correct": bool(r.label == r.target),
            "label_name": names[r.label] if 0 <= r.label < len(names) else str(r.label),
            "label_prob": float(r.label_prob), "finite": bool(getattr(r, OUTPUTS_FINITE, True))})
    return out


def gallery_by_class(figures: list[ReportFigure]) -> dict[int, list[GalleryItem]]:
    """Per class, the gallery items (interpolations) that name it among their `classes`."""
    out: dict[int, list[GalleryItem]] = {}
    for figure in figures:
        for item in figure.gallery:
            for c in dict.fromkeys(item.classes):
                out.setdefault(c, []).append(item)
    return out


@dataclass(frozen=True)
class Interpolation:
    """One interpolation (pair, source, seed) as the report shows it: the rows of its strip (its kept frames in
    order, else its final image) and the size of its GIF (the final image's)."""
    target: int
    partner: int
    source: str
    seed: int
    shown: pd.DataFrame
    size: tuple[int, int] | None   # (width, height) of the final image; None: that of the last frame shown

    @property
    def values(self) -> np.ndarray:
        """Class a's and class b's logit on each image shown (the stored target_logit and partner_logit): N x 2."""
        return self.shown[["target_logit", "partner_logit"]].to_numpy(dtype=float)


def interpolations(part: pd.DataFrame) -> list[Interpolation]:
    """The interpolations of `part` (rows of the interpolate job, frames included, with width and height), in
    (a, b, source, seed) order."""
    out = []
    for (a, b, source, seed), group in part.groupby(["target", "partner", "source", "seed"], sort=True):
        kept = group[group["frame"] >= 0].sort_values("frame")
        final = group[group["frame"] < 0]
        size = (int(final["width"].iloc[0]), int(final["height"].iloc[0])) if len(final) else (0, 0)
        out.append(Interpolation(int(a), int(b), str(source), int(seed), kept if len(kept) else final,
                                 size if min(size) > 0 else None))
    return out


def _interpolations(part: pd.DataFrame, sources, names, st: Store, writer: _Writer,
                    files: dict[str, list[str]] | None = None) -> ReportFigure:
    """Per interpolation (pair, source, seed): a strip of its frames with a's and b's logits under each, and an
    animated GIF of the frames at the final image's size.

    Each interpolation is drawn, and its frames dropped, once its frames are all in (they come from one batch's
    file): memory holds the PNGs of one file and of the interpolations being drawn, not of every interpolation.
    They are drawn on `writer.processes` worker processes (`drawing_pool`), 2 each at most in flight, and written
    in the order they were read. `files`, the key index, names the files to read: those of the frames (and of the
    final images shown)."""
    items = interpolations(part)
    stems = [writer.unique_stem(f"interpolation-{i.target:04d}-{i.partner:04d}-{safe_name(i.source)}-s{i.seed}",
                                i.source) for i in items]   # claimed in the gallery's order, whatever the files' order
    owner = {key: n for n, item in enumerate(items) for key in item.shown["key"]}
    waiting = [set(item.shown["key"]) for item in items]
    pngs: dict[int, dict[str, bytes]] = {}
    drawn: dict[int, tuple[str, str | None]] = {}
    in_flight: collections.deque = collections.deque()   # (n, future of its files' bytes), in the order read

    def write_oldest() -> None:
        n, future = in_flight.popleft()
        strip, gif = future.result()
        drawn[n] = (writer.bytes(f"{stems[n]}.png", strip), writer.bytes(f"{stems[n]}.gif", gif) if gif else None)
    with drawing_pool(writer.processes, len(items)) as pool:
        def draw(n: int) -> None:
            item = items[n]
            in_flight.append((n, pool.submit(interpolation_files, item, pngs.pop(n, {}), sources.get(item.source),
                                             names)))
            while len(in_flight) > 2 * writer.processes:
                write_oldest()
        for key, png in iter_pngs(st, list(owner), files):
            n = owner[key]
            pngs.setdefault(n, {})[key] = png
            waiting[n].discard(key)
            if not waiting[n]:
                draw(n)
        for n in range(len(items)):   # those with a frame the store no longer holds
            if waiting[n]:
                draw(n)
        while in_flight:
            write_oldest()
    files, gallery = [], []
    for n, item in enumerate(items):
        png, gif = drawn[n]
        files += [png] + ([gif] if gif else [])
        gallery.append(GalleryItem(png, gif, interpolation_caption(item, names), classes=(item.target, item.partner)))
    return ReportFigure("Class interpolation", tuple(files), "From a source photograph the objective moves from "
                        "class a to class b; each strip shows the kept frames with both classes' logits under each, "
                        "and the GIF plays them.", tuple(gallery), gallery_stem="interpolations")


def interpolation_caption(item: Interpolation, names) -> str:
    """An interpolation's caption: a's and b's logits on its first and last image shown, or how many of the images
    shown have outputs that are not finite (a NaN logit is no number to read)."""
    a, b = names[item.target], names[item.partner]
    head = f"{a} -> {b} from {item.source} (seed {item.seed})"
    finite = fig.shown_finite(item.shown, item.values)
    if not finite.all():
        shown = "the image shown" if len(finite) == 1 else f"{int((~finite).sum())} of the {len(finite)} images shown"
        return f"{head}: {NOT_FINITE} on {shown}"
    (first_a, first_b), (last_a, last_b) = item.values[0], item.values[-1]
    return f"{head}: {a}'s logit {first_a:.1f} -> {last_a:.1f}, {b}'s {first_b:.1f} -> {last_b:.1f}"


def interpolation_files(item: Interpolation, pngs: dict[str, bytes], source_thumb, names
                        ) -> tuple[bytes, bytes | None]:
    """One interpolation's strip (PNG bytes) and GIF (None without a decoded frame) from its stored PNGs (key ->
    bytes; a broken one shows as missing) and its photograph's grid thumbnail. Writes nothing: it runs in a worker
    process (`drawing_pool`) as well as in this one."""
    images = {}
    for key, png in pngs.items():
        try:
            images[key] = drawing.decode(png)
        except (OSError, ValueError, SyntaxError):
            pass   # a broken PNG shows as missing
    thumbs = {key: drawing.fit_image(image, GRID_THUMB) for key, image in images.items()}
    strip = drawing.save(fig.interpolation_strip(item.shown, item.values, source_thumb, thumbs, names))
    frames = [images[k] for k in item.shown["key"] if k in images]
    if not frames:
        return strip, None
    size = item.size or frames[-1].size   # every frame is shown at the final image's size
    return strip, fig.interpolation_gif(frames, size, GIF_FRAME_MS, GIF_HOLD_MS)


class InProcess:
    """An executor that runs each task at once, in this process (`drawing_pool` with one process)."""

    def submit(self, task: Callable, *args) -> Future:
        future: Future = Future()
        future.set_result(task(*args))
        return future


@contextlib.contextmanager
def drawing_pool(processes: int, tasks: int) -> Iterator:
    """Where `tasks` independent drawings run: on `processes` worker processes, started by spawning (a fork of
    this process, which holds threads, could deadlock; a spawned worker imports the analysis afresh: about 2 s),
    or in this process when `processes` is 1 or `tasks` are too few to pay for starting them (POOL_MIN_TASKS)."""
    if processes <= 1 or tasks < POOL_MIN_TASKS:
        yield InProcess()
        return
    with ProcessPoolExecutor(min(processes, tasks), mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


# --- HTML: Jinja2 templates in analysis/templates/, autoescaped ----------------------------------------------------

@functools.lru_cache(maxsize=1)
def templates():
    """The report's Jinja2 environment: templates shipped in the package, every value HTML-escaped; the `code`
    filter shows a text's `backticked` spans as code."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
    env = Environment(loader=PackageLoader("analysis", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["code"] = inline_code
    env.globals["class_label"] = class_label
    env.globals["counted"] = counted
    env.globals["not_finite"] = NOT_FINITE
    return env


def inline_code(text):
    """A line written for the terminal, where commands are quoted in backticks (`sweep score`), as HTML: each
    backticked span in <code>, everything escaped (a text with an odd number of backticks is only escaped)."""
    from markupsafe import Markup, escape
    parts = str(text).split("`")
    if len(parts) % 2 == 0:
        return escape(text)
    return Markup("").join(Markup("<code>%s</code>") % part if i % 2 else escape(part) for i, part in enumerate(parts))


def class_page(target: int) -> str:
    return f"classes/{target:04d}.html"


def _by_target(frame: pd.DataFrame | None) -> dict:
    return {} if frame is None else {r.target: r for r in frame.itertuples()}


def label_prob(r) -> float:
    """The probability of the label (the argmax) on a classes-table row's image, from its top 5: shown beside a
    label that is not the class, whose own probability (target_prob) says nothing of the label's."""
    return next((float(p) for c, p in zip(r.top5, r.top5_probs) if c == r.label), float("nan"))


def analysis_files(st: Store) -> list[str]:
    """The names of the files under {store}/analysis/ now (the tables of `sweep analyze`, and those other commands
    add there, features.parquet and directions.parquet), sorted; temporary ones left out."""
    return sorted(info.base_name for info in st.listing(ANALYSIS_DIR)
                  if info.type == pafs.FileType.File and not info.base_name.startswith((".", "_")))


def _tables_section(st: Store, folder: Store) -> dict:
    """What the index's Tables section lists: where the analysis files are (the store's real location), the
    Parquet tables and the other files apart, and the relative link to them when the report is {store}/figures."""
    names = analysis_files(st)
    inside = folder.root.rstrip("/") == st.path(FIGURES).rstrip("/")
    return {"location": st.location(ANALYSIS_DIR), "link": f"../{ANALYSIS_DIR}/" if inside else None,
            "parquet": [n for n in names if n.endswith(".parquet")],
            "other": [n for n in names if not n.endswith(".parquet")]}


def _index_html(st: Store, summary: AnalysisSummary, tables, figures, notes, images: dict[str, str],
                folder: Store, seeds: str | None = None) -> str:
    opp = _by_target(tables.get("opposites"))
    classes = tables.get("classes")
    rows = [] if classes is None else [
        {**r._asdict(), "opposite_name": opp[r.target].opposite_name if r.target in opp else "",
         "label_prob": label_prob(r)}
        for r in classes.itertuples()]
    return templates().get_template("index.html").render(
        title="classweep report", manifest=st.manifest, store_uri=st.uri, summary_lines=summary.lines(),
        names=st.class_names, figures=figures, notes=notes, tables=_tables_section(st, folder), rows=rows,
        images=images, skipped=None if classes is not None else NO_CLASSES, seeds=seeds)


def _gallery_pages(figures: list[ReportFigure], writer: "_Writer") -> None:
    """Write the own pages of each gallery the index shows only the start of (`ReportFigure.gallery_pages`): every
    item as the index showed it, GALLERY_PAGE to a page, each page linking the index and the other pages."""
    template = templates().get_template("gallery.html")
    for figure in figures:
        pages = figure.gallery_pages
        for p, name in enumerate(pages):
            writer.text(name, template.render(title=f"{figure.title} (page {p + 1} of {len(pages)})", figure=figure,
                                              items=figure.gallery[p * GALLERY_PAGE:(p + 1) * GALLERY_PAGE],
                                              first=p * GALLERY_PAGE + 1, page=p, pages=pages))


@dataclass(frozen=True)
class ClassExtras:
    """What class pages show besides the analysis tables, per class."""
    videos: dict[int, list[dict]]                  # `videos_by_class`
    sourced: dict[int, list[dict]]                 # `_sourced_by_class`: transfigurations, directed dreams
    interpolations: dict[int, list[GalleryItem]]   # `gallery_by_class`


def _class_pages(st: Store, summary: AnalysisSummary, tables, writer: _Writer, images: dict[str, str],
                 extras: ClassExtras) -> None:
    classes = tables["classes"]
    by_class = _by_target(classes)
    opp = _by_target(tables.get("opposites"))
    nodes = tables["graph_nodes"]
    pointing = nodes[nodes["has_image"]].groupby("neighbour")["node"].apply(list).to_dict()
    component = dict(zip(nodes["node"], zip(nodes["component"], nodes["component_size"])))
    places = graph_places(tables)
    ranges = graph_range_names(tables)
    adds = tables.get("additions")
    seeded = adds is not None and fig.seed_named(adds)   # each addition's seed named (as in the grid)
    top3 = tables.get("transfer_top3")
    if top3 is not None and top3["scorer"].nunique() < 2:
        top3 = None   # only the generating model: its top 5 is on the page already
    targets = list(classes["target"])
    template = templates().get_template("class.html")
    for i, r in enumerate(classes.itertuples()):
        o = opp.get(r.target)
        comp, size = component.get(r.target, (-1, 0))
        mine = [] if adds is None else list(adds[(adds["target"] == r.target)
                                                 | (adds["partner"] == r.target)].itertuples())
        html = template.render(
            title=class_label(r.target, st.class_names), r=r, label_prob=label_prob(r), o=o, classes=by_class,
            names=st.class_names, images=images,
            previous=targets[i - 1] if i > 0 else None, next=targets[i + 1] if i + 1 < len(targets) else None,
            mutual={True: "mutual", False: "not mutual", None: "unknown"}[fig._flag(o.mutual)] if o is not None
            else "", metric=summary.metric, pointing=pointing.get(r.target, []), component=comp,
            graph_place=places.get(r.target), graph_ranges=ranges,
            component_size=size, top5=[(int(c), lv, pv) for c, lv, pv in zip(r.top5, r.top5_logits, r.top5_probs)],
            additions=mine, seeded=seeded, videos=extras.videos.get(r.target, []),
            sourced=extras.sourced.get(r.target, []), interpolations=extras.interpolations.get(r.target, []),
            scorer_top3=[] if top3 is None else [(scorer, list(part.sort_values("rank").itertuples()))
                                                 for scorer, part in top3[top3["key"] == r.key].groupby(
                                                     "scorer", sort=False)])
        writer.text(class_page(r.target), html)
