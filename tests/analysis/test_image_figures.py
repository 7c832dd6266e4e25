"""Stores with the jobs from real images: the class tables ignore them, old stores without their columns still
read, and `write_figures` draws transfiguration, dream and directed-dream grids, interpolation strips and GIFs."""
from __future__ import annotations

import collections
import copy
import dataclasses
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import pandas as pd
import pyarrow.parquet as pq
import scipy.special
from PIL import Image as PILImage

from analysis import analyze_store, write_figures
from analysis.analyze import NO_CLASS_IMAGES
from analysis.report import NO_CLASSES
from analysis.coverage import coverage
from jobs.catalog import key_of
from sweep.store import TRAJECTORIES, Store
from analysis.load import open_store, read_rows
from analysis.synthetic import Image, noise_png, png_bytes, write_store
from handmade import NAMES, OPTIONS, Report, copied, make_small_store, small_images
from test_stability import trajectory_rows

SOURCE = "photo.png"
FRAMES = ((0, 16, [8, 0, 0, 0, 0, 0]), (1, 24, [5, 3, 0, 0, 0, 0]), (2, 24, [2, 6, 0, 0, 0, 0]),
          (3, 24, [0, 9, 0, 0, 0, 0]))   # (frame, side, logits): apple's logit falls, bear's rises
IMAGE_OPTIONS = {**OPTIONS, "jobs": [*OPTIONS["jobs"], "transfigure", "interpolate", "dream", "directed-dream"],
                 "sources": [SOURCE], "layers": ["block2"], "interpolate_pairs": [[0, 1]]}


def image_rows(rng) -> list[Image]:
    """One of each image job from SOURCE: transfigurations to every class, a 0 -> 1 interpolation with its four
    frames (the first one smaller, as in a first octave), a dream, and directed dreams to every class."""
    def logits(c):
        v = np.zeros(len(NAMES))
        v[c] = 9
        return v
    rows = [Image("transfigure", c, logits(c), source=SOURCE, step=4, png=noise_png(rng, 24)) for c in range(6)]
    rows += [Image("interpolate", 0, np.array(v, float), partner=1, source=SOURCE, frame=k, step=2 + k,
                   png=noise_png(rng, side)) for k, side, v in FRAMES]
    rows.append(Image("interpolate", 0, np.array(FRAMES[-1][2], float), partner=1, source=SOURCE, step=5,
                      png=noise_png(rng, 24)))
    rows.append(Image("dream", -1, logits(4), variant="block2", source=SOURCE, step=4, png=noise_png(rng, 24)))
    rows += [Image("directed-dream", c, logits(c), variant="block2", source=SOURCE, step=4,
                   png=noise_png(rng, 24)) for c in range(6)]
    return rows


def make_image_store(path, jobs: tuple[str, ...] | None = None, seeds: int = 1, drop: tuple[str, ...] = ()) -> str:
    """The hand-made store plus `image_rows`; with `jobs`, only the rows (and the plan) of those jobs; with `seeds`,
    each row once per seed 0 .. seeds-1 (seed 0's images those of a store of one seed); `drop`: keys of the
    hand-made store's rows to leave out."""
    rng = np.random.default_rng(1)
    rows = [dataclasses.replace(r, seed=seed) for seed in range(seeds) for r in small_images(drop) + image_rows(rng)]
    if jobs is not None:
        rows = [r for r in rows if r.job in jobs]
    options = {**IMAGE_OPTIONS, "seeds": seeds, **({} if jobs is None else {"jobs": list(jobs)})}
    write_store(str(path), NAMES, rows, options=options, rows_per_file=5)
    os.makedirs(os.path.join(path, "sources"), exist_ok=True)
    photo = np.zeros((30, 50, 3), np.uint8)
    photo[:, :25] = (200, 40, 40)
    with open(os.path.join(path, "sources", f"{SOURCE}.png"), "wb") as f:
        f.write(png_bytes(photo))
    return str(path)


# A report of the image store costs more than half a second: the tests that read its first report share one
# (`image_report`), those that write a report again over it start from a copy of it.
@pytest.fixture(scope="module")
def image_report(tmp_path_factory) -> Report:
    """`make_image_store` after its first `write_figures` (which analysed it first). Read only."""
    store = make_image_store(tmp_path_factory.mktemp("image-report") / "s")
    return Report(store, write_figures(store))


def test_class_tables_ignore_the_image_jobs(tmp_path):
    plain = make_small_store(tmp_path / "plain")
    mixed = make_image_store(tmp_path / "mixed")
    a, b = analyze_store(plain), analyze_store(mixed)
    for table in ("classes", "opposites", "additions", "pca", "graph_nodes"):
        pd.testing.assert_frame_equal(pd.read_parquet(os.path.join(plain, "analysis", f"{table}.parquet")),
                                      pd.read_parquet(os.path.join(mixed, "analysis", f"{table}.parquet")))
    # frames are extra rows of their interpolation, not images; the dream (target -1) is not dropped
    assert b.images == {**a.images, "transfigure": 6, "interpolate": 1, "dream": 1, "directed-dream": 6}
    assert not any("left out" in note for note in b.notes)
    assert b.image_jobs["transfigure"] == {"images": 6, "on_target": 6}
    assert b.image_jobs["interpolate"] == {"images": 1, "on_target": 1}
    assert b.complete and "store complete" in b.lines()


def test_frames_are_read_only_when_asked(tmp_path):
    store = open_store(make_image_store(tmp_path / "s"))
    finals, everything = read_rows(store), read_rows(store, frames=True)
    assert (finals.meta["frame"] == -1).all() and len(everything) == len(finals) + len(FRAMES)
    frames = everything.meta[everything.meta["frame"] >= 0]
    assert list(frames["frame"]) == [0, 1, 2, 3] and set(frames["source"]) == {SOURCE}
    assert all(k.endswith(f"#frame{f}") for k, f in zip(frames["key"], frames["frame"]))
    # images/ holds one row per item: every frame is in frames/ (issue 10.8)
    assert (pd.read_parquet(os.path.join(store.root, "images"), columns=["frame"])["frame"] == -1).all()
    assert len(pd.read_parquet(os.path.join(store.root, "frames"), columns=["key"])) == len(FRAMES)


def test_stores_with_frames_among_the_images_still_read(tmp_path):
    """Stores written before frames/ existed kept frames as extra rows of images/: they read the same."""
    new = open_store(make_image_store(tmp_path / "new"))
    old = make_image_store(tmp_path / "old")
    frames_dir = os.path.join(old, "frames")
    moved = pq.read_table(frames_dir)
    for name in os.listdir(frames_dir):
        os.remove(os.path.join(frames_dir, name))
    os.rmdir(frames_dir)
    pq.write_table(moved, os.path.join(old, "images", "part-999999.parquet"))
    old = open_store(old)
    for frames in (False, True):
        a, b = read_rows(new, frames=frames), read_rows(old, frames=frames)
        pd.testing.assert_frame_equal(a.meta, b.meta)
        assert np.array_equal(a.logits, b.logits)


def test_coverage_plans_the_image_jobs_and_names_what_is_missing(tmp_path):
    store = open_store(make_image_store(tmp_path / "s"))
    keys = list(read_rows(store, frames=True).meta["key"])
    assert coverage(store.manifest, keys).complete
    gone = key_of("directed-dream", "block2", 3, -1, 0, SOURCE)
    partial = coverage(store.manifest, [k for k in keys if k != gone])
    assert not partial.complete
    assert any(gone in line and "directed-dream: 5 of 6" in line for line in partial.lines())


def _gif_frames(path) -> list[PILImage.Image]:
    with PILImage.open(path) as gif:
        out = []
        for i in range(gif.n_frames):
            gif.seek(i)
            out.append(gif.convert("RGB"))
        return out


def test_figures_draw_the_image_jobs_and_link_them(image_report):
    index = image_report.index
    out = index.parent
    stem = f"interpolation-0000-0001-{SOURCE}-s0"
    for name in ("transfigure-01.png", "dream-01.png", "directed-dream-01.png", f"{stem}.png", f"{stem}.gif"):
        assert (out / name).exists(), name
    frames = _gif_frames(out / f"{stem}.gif")
    assert len(frames) == len(FRAMES) and {f.size for f in frames} == {(24, 24)}   # all at the final size
    with PILImage.open(out / f"{stem}.gif") as gif:
        assert gif.info.get("loop") == 0
    # the strip: the source photograph then one cell per frame, so it is wider than a single cell by four
    strip = PILImage.open(out / f"{stem}.png")
    grid = PILImage.open(out / "dream-01.png")
    assert strip.width > 4 * 96 and grid.height > 96
    html = index.read_text()
    links = re.findall(r'(?:href|src)="([^"#]+)"', html)
    for name in ("transfigure-01.png", "dream-01.png", "directed-dream-01.png", f"{stem}.png", f"{stem}.gif"):
        assert name in links, name
    assert "Class interpolation" in html and "Transfiguration" in html and "Directed dream" in html
    assert "apple&#39;s logit 8.0 -&gt; 0.0, bear&#39;s 0.0 -&gt; 9.0" in html   # first and last frame, escaped
    # a class page shows every image made for the class: cat's transfiguration and directed dream, each beside the
    # photograph, captioned as the class image is; the interpolation apple -> bear on both apple's and bear's pages
    pages = {c: (out / "classes" / f"{c:04d}.html").read_text() for c in range(len(NAMES))}
    p_cat = float(scipy.special.softmax([0, 0, 9, 0, 0, 0])[2])
    for job, layer in (("transfigure", ""), ("directed-dream", "block2")):
        name = key_of(job, layer, 2, -1, 0, SOURCE).replace(":", "_")
        assert re.search(rf'<img class="px" src="../img/source_[^"]+"[^>]*>\s*<img class="px" src="../img/{name}.png"',
                         pages[2]), job
        assert all(name not in page for c, page in pages.items() if c != 2)
    assert len(re.findall(rf'p\(class\) = {p_cat:.3f};\s*labelled <span class="good">cat</span></figcaption>',
                          pages[2])) == 2                                   # as the class image's caption
    assert "img/dream_" not in "".join(pages.values())                     # a dream has no class
    assert [c for c, page in pages.items() if f'src="../{stem}.gif"' in page and f'href="../{stem}.png"' in page] \
        == [0, 1]
    for c, page in pages.items():
        for link in re.findall(r'(?:href|src)="([^"#]+)"', page):
            assert (out / "classes" / link).resolve().is_file(), (c, link)


def test_the_transfiguration_grid_shows_the_source_photograph(image_report, tmp_path):
    store = copied(image_report.store, tmp_path / "s")
    out = Path(store) / "figures"                                # the first report, drawn with the photograph
    with_photo = np.asarray(PILImage.open(out / "transfigure-01.png").convert("RGB"))
    os.remove(os.path.join(store, "sources", f"{SOURCE}.png"))   # a store without its sources still draws
    without = np.asarray(PILImage.open(write_figures(store).parent / "transfigure-01.png").convert("RGB"))
    red = lambda a: ((a[..., 0] > 180) & (a[..., 1] < 70)).sum()  # noqa: E731  the photograph's red half
    assert red(with_photo) > 6 * 300 and red(without) < red(with_photo) / 10


def test_old_store_without_the_new_columns_still_reads(tmp_path):
    store = make_small_store(tmp_path / "old")
    for name in os.listdir(os.path.join(store, "images")):
        path = os.path.join(store, "images", name)
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["source", "frame", "step"]), path)
    rows = read_rows(open_store(store))
    assert len(rows) == 16 and set(rows.meta["source"]) == {""} and set(rows.meta["frame"]) == {-1}
    summary = analyze_store(store)
    assert summary.classes == 6 and summary.image_jobs == {}
    out = write_figures(store).parent
    assert not [n for n in os.listdir(out) if n.startswith(("transfigure-", "interpolation-", "dream-"))]
    assert "Class interpolation" not in (out / "index.html").read_text()


def test_gif_bytes_resize_every_frame_to_the_final_size():
    from analysis.drawing import gif_bytes
    small = PILImage.new("RGB", (8, 8), (255, 0, 0))
    large = PILImage.new("RGB", (12, 12), (0, 0, 255))
    data = gif_bytes([small, large], (12, 12), duration=100, hold=500)
    frames = _gif_frames(io.BytesIO(data))
    assert [f.size for f in frames] == [(12, 12), (12, 12)]
    assert frames[0].getpixel((6, 6))[0] > 200 and frames[1].getpixel((6, 6))[2] > 200


def test_a_gifs_frames_share_one_palette_close_to_each_frames_own_and_keep_the_markers_exact():
    """One palette for all frames (built from a sample of them) instead of a median cut per frame: each frame is
    about as close to its pixels as with its own palette, and a marker colour drawn on a few pixels stays exact."""
    from analysis.drawing import BAD, MARKERS, gif_bytes, gif_palette, paletted
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):   # smooth colourful images, each with other colours, and a red dot on the last
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        frames.append(PILImage.fromarray(small).resize((60, 60), PILImage.Resampling.BILINEAR))
    red = PILImage.new("RGB", (2, 2), BAD)
    frames[-1].paste(red, (30, 30))
    palette = gif_palette(frames, 256 - len(MARKERS))

    def error(frame, image) -> float:
        return float(np.abs(np.asarray(frame, float) - np.asarray(image.convert("RGB"), float)).mean())
    shared = [error(f, paletted(f, palette=palette)) for f in frames]
    own = [error(f, paletted(f)) for f in frames]
    assert max(shared) < 1.5 * max(own), (shared, own)   # 6 unlike frames: about 10 against 7 levels of 255
    decoded = _gif_frames(io.BytesIO(gif_bytes(frames, (60, 60))))
    assert decoded[-1].getpixel((30, 30)) == PILImage.new("RGB", (1, 1), BAD).getpixel((0, 0))
    assert np.mean([error(f, d) for f, d in zip(frames, decoded)]) == pytest.approx(np.mean(shared), abs=0.5)



def test_a_gif_frame_keeps_exactly_the_pixels_of_a_marker_colour_and_no_neighbour():
    """`paletted` finds a marker's pixels by one integer per colour (`rgb_codes`): every pixel of exactly that
    colour takes the marker's entry, and none that differs from it in one channel by one level."""
    from analysis.drawing import MARKERS, paletted, rgb_codes
    from PIL import ImageColor
    marker = ImageColor.getrgb(MARKERS[0])
    pixels = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    pixels[2:4, 2:4] = marker
    for k in range(3):   # one level off, in each channel
        pixels[10, k] = marker
        pixels[10, k, k] ^= 1
    assert rgb_codes(np.array(marker, np.uint8)) == (marker[0] << 16) + (marker[1] << 8) + marker[2]
    image = paletted(PILImage.fromarray(pixels))
    entry = 256 - len(MARKERS)
    assert image.getpalette()[3 * entry:3 * entry + 3] == list(marker)
    assert np.array_equal(np.asarray(image) == entry, (pixels == marker).all(axis=-1))

DREAMS_ONLY = ("transfigure", "dream")


def test_a_store_of_image_jobs_only_is_analysed_without_the_class_tables(tmp_path):
    store = make_image_store(tmp_path / "s", jobs=DREAMS_ONLY)
    summary = analyze_store(store)
    assert NO_CLASS_IMAGES in summary.notes and summary.complete   # the plan asked for no class images
    assert summary.images == {"dream": 1, "transfigure": 6} and summary.classes == 0
    assert summary.image_jobs["transfigure"] == {"images": 6, "on_target": 6}
    assert summary.tables == ["transfer.parquet", "transfer_top3.parquet"]
    assert sorted(os.listdir(os.path.join(store, "analysis"))) == sorted([*summary.tables, "summary.json"])


def test_figures_of_an_image_job_store_draw_its_grids_and_say_what_was_skipped(tmp_path):
    store = make_image_store(tmp_path / "s", jobs=DREAMS_ONLY)
    dream = key_of("dream", "x", -1, -1, 0)   # test_stability's recorded dream, a video without a class page
    Store.open(store).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(dream,)))
    index = write_figures(store, trajectories=[dream])
    out, html = index.parent, index.read_text()
    names = set(os.listdir(out))
    assert {"transfigure-01.png", "dream-01.png", "index.html"} <= names
    assert not [n for n in names if n.startswith(("contact-", "graph-", "pca", "classes"))]
    assert html.count(NO_CLASSES) == 1 and "Feature embedding skipped" not in html
    gif = next(n for n in names if n.startswith("trajectory-") and n.endswith(".gif"))
    links = re.findall(r'(?:href|src)="([^"#]+)"', html)
    assert {"transfigure-01.png", "dream-01.png", gif} <= set(links)
    assert all((out / link).exists() for link in links)


def test_a_store_analysed_with_class_images_then_holding_only_image_jobs_loses_its_class_tables(image_report,
                                                                                                  tmp_path):
    store = copied(image_report.store, tmp_path / "s")
    out = Path(store) / "figures"                                # the first report, with class pages
    assert (out / "classes").is_dir() and os.path.exists(os.path.join(store, "analysis", "graph.graphml"))
    for directory in ("images", "frames"):
        for name in os.listdir(os.path.join(store, directory)):
            os.remove(os.path.join(store, directory, name))
    make_image_store(store, jobs=DREAMS_ONLY)   # the same store, now with only image jobs
    write_figures(store)
    assert sorted(os.listdir(os.path.join(store, "analysis"))) == ["summary.json", "transfer.parquet",
                                                                   "transfer_top3.parquet"]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["dream-01.png", "index.html", "transfigure-01.png"]   # no class pages, grids or images left


def _recorded(key: str, steps, n_classes: int = 6, *, job: str = "octave", target: int = 3):
    """A trajectories/ table of one image (of `job` and `target`) with a snapshot (a flat grey image and outputs
    0..5) at each step."""
    import pyarrow as pa
    from sweep.store import encode_png
    shot = encode_png(np.full((8, 8, 3), 100, np.uint8))
    n = len(steps)
    return pa.table({"key": [key] * n, "job": [job] * n, "target": pa.array([target] * n, pa.int32()),
                     "step": pa.array(steps, pa.int32()), "octave": pa.array([0] * n, pa.int32()),
                     "label": pa.array([1] * n, pa.int32()),
                     "logits": pa.array([list(np.arange(n_classes, dtype=np.float32))] * n,
                                        pa.list_(pa.float32(), n_classes)),
                     "png": pa.array([shot] * n, pa.binary())})


def test_the_generation_video_ends_on_the_final_stored_image(tmp_path):
    """Walk-through audit: with snapshots every 50 of 200 steps the video ended at step 150 (a snapshot at step t is
    the image the t-th step started from), not on the image the sweep stored."""
    from dataclasses import replace

    from analysis.figures import trajectory_frames
    from analysis.load import iter_pngs
    from analysis.report import read_snapshots, with_final_image
    from handmade import OCTAVE

    key = key_of("octave", "", 3, -1, 0)
    images = [replace(im, step=200) if im.job == "octave" else im for im in small_images()]
    store = write_store(str(tmp_path / "s"), NAMES, images, options=OPTIONS)
    Store.open(store).write_table(f"{TRAJECTORIES}/part-1.parquet", _recorded(key, [0, 50, 100, 150]))
    shots = read_snapshots(Store.open(store), [key])[key]
    assert shots.step.tolist() == [0, 50, 100, 150, 200] and shots.final.tolist() == [False] * 4 + [True]
    assert shots.png.iloc[-1] == dict(iter_pngs(store, [key]))[key]
    assert shots.logits.iloc[-1].tolist() == OCTAVE[3] and shots.label.iloc[-1] == 3 and shots.octave.iloc[-1] == 0
    assert trajectory_frames(shots, NAMES)[-1].axes[0].get_title() == "final image, step 200 (octave 1)"
    index = write_figures(store, trajectories=[key])
    assert len(_gif_frames(index.parent / f"trajectory-{key.replace(':', '_')}.gif")) == 5
    older = shots.iloc[:4].drop(columns="final")   # a store that does not say when its image was taken: as it was
    assert len(with_final_image(older, {"step": -1, "label": 3, "logits": OCTAVE[3], "png": b""})) == 4
    assert len(with_final_image(older, None)) == 4


def test_a_snapshot_recorded_twice_is_one_frame_of_the_video(tmp_path):
    """Report hunt: a batch run again leaves an image's snapshots in two trajectories/ files; the video showed each
    step twice (0, 0, 50, 50, ...), as the stability table counted them before it kept each step's first record."""
    from analysis.report import read_snapshots
    key = key_of("octave", "", 3, -1, 0)
    store = write_store(str(tmp_path / "s"), NAMES, small_images(), options=OPTIONS)
    Store.open(store).write_table(f"{TRAJECTORIES}/part-1.parquet", _recorded(key, [0, 50, 100]))
    Store.open(store).write_table(f"{TRAJECTORIES}/part-2.parquet", _recorded(key, [0, 50, 100]))
    assert read_snapshots(Store.open(store), [key])[key]["step"].tolist() == [0, 50, 100]
    index = write_figures(store, trajectories=[key])
    assert len(_gif_frames(index.parent / f"trajectory-{key.replace(':', '_')}.gif")) == 3


def test_snapshots_are_read_for_the_keys_asked_only(tmp_path, monkeypatch):
    """Scale audit: a video of one image read every snapshot's picture and outputs of the store at once (with
    `--trajectory every:10,snapshots:50`, some fifteen PNGs per image of a 10^5-image sweep). Now file by file, the
    keys asked kept: no read of the whole trajectories/ folder loads pictures."""
    from analysis.report import read_snapshots, stored_snapshot_keys
    keys = [key_of("octave", "", c, -1, 0) for c in range(3)]
    store = write_store(str(tmp_path / "s"), NAMES, small_images(), options=OPTIONS)
    for n, key in enumerate(keys):
        Store.open(store).write_table(f"{TRAJECTORIES}/part-{n}.parquet", _recorded(key, [0, 50]))
    whole_folder = Store.read

    def read(self, directory, columns=None):
        assert not (directory == TRAJECTORIES and (columns is None or "png" in columns)), columns
        return whole_folder(self, directory, columns)
    monkeypatch.setattr(Store, "read", read)
    shots = read_snapshots(Store.open(store), [keys[1]])
    assert list(shots) == [keys[1]] and shots[keys[1]]["step"].tolist() == [0, 50]
    assert stored_snapshot_keys(Store.open(store)) == keys


def test_the_trajectory_gif_keeps_the_target_dot_red():
    """Walk-through audit: the GIF's palette, made from a frame that is mostly image, turned the red target dot a
    grey mauve. Every pixel drawn in the marker red stays exactly that red in the decoded GIF."""
    from PIL import ImageColor

    from analysis.drawing import BAD, GOOD, rgb_pixels
    from analysis.figures import trajectory_frames, trajectory_gif
    from sweep.store import encode_png

    rng = np.random.default_rng(0)
    colourful = encode_png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))   # crowds the adaptive palette
    shots = pd.DataFrame({"step": [0, 10], "octave": [0, 0], "target": [3, 3], "label": [1, 3],
                          "logits": [rng.normal(size=6), rng.normal(size=6)], "png": [colourful, colourful]})
    frames = list(trajectory_frames(shots, NAMES))
    decoded = [np.asarray(f) for f in _gif_frames(io.BytesIO(trajectory_gif([rgb_pixels(f) for f in frames])))]
    for colour, frame in ((BAD, 0), (BAD, 1), (GOOD, 1)):   # the target dot; the argmax title when it is the target
        rgb = ImageColor.getrgb(colour)
        drawn = (rgb_pixels(frames[frame]) == rgb).all(axis=-1)   # H x W
        assert drawn.sum() > 10
        assert (decoded[frame][drawn] == rgb).all(), colour


def test_each_interpolation_is_drawn_once_its_frames_are_read(tmp_path, monkeypatch):
    """Scale audit: the report decoded every interpolation's frames (and final image) at full size before drawing the
    first strip: 7 GB for 3000 interpolations of 299 px, 70 GB at 10^5 images. Now each one is drawn, and its
    images dropped, as soon as its frames are in; the final image only gives the GIF's size (its stored width and
    height), and is not decoded."""
    from analysis import drawing
    from analysis import figures
    store = make_interpolation_store(tmp_path / "s")
    decoded, at_strip = [], []
    decode, strip = drawing.decode, figures.interpolation_strip
    monkeypatch.setattr(drawing, "decode", lambda png: (decoded.append(1), decode(png))[1])
    monkeypatch.setattr(figures, "interpolation_strip", lambda *a, **k: (at_strip.append(len(decoded)),
                                                                         strip(*a, **k))[1])
    out = write_figures(store).parent
    assert at_strip == [4, 8, 12, 16] and len(decoded) == 16
    for a, b in PAIRS:
        frames = _gif_frames(out / f"interpolation-{a:04d}-{b:04d}-{SOURCE}-s0.gif")
        assert len(frames) == len(FRAMES) and {f.size for f in frames} == {(24, 24)}   # at the final image's size



def test_interpolations_drawn_on_worker_processes_are_the_files_drawn_in_this_process(tmp_path, monkeypatch):
    """`processes` > 1 draws the interpolations (strip and GIF) on a pool of that many worker processes, once
    there are POOL_MIN_TASKS of them, into the same bytes as in this process; below it no worker is started."""
    from concurrent.futures import ProcessPoolExecutor
    from analysis import report
    started = []

    class Counted(ProcessPoolExecutor):
        def __init__(self, workers, **kwargs):
            started.append(workers)
            super().__init__(workers, **kwargs)
    monkeypatch.setattr(report, "ProcessPoolExecutor", Counted)
    store = make_interpolation_store(tmp_path / "s")
    alone = write_figures(store, str(tmp_path / "alone"), processes=1).parent
    few = write_figures(store, str(tmp_path / "few"), processes=2).parent
    assert started == []
    monkeypatch.setattr(report, "POOL_MIN_TASKS", 2)
    pooled = write_figures(store, str(tmp_path / "pooled"), processes=2).parent
    assert started == [2]
    drawn = sorted(p.name for p in alone.glob("interpolation-*.*"))
    assert len(drawn) == 2 * len(PAIRS)
    for folder in (few, pooled):
        assert sorted(p.name for p in folder.glob("interpolation-*.*")) == drawn
        assert all((folder / name).read_bytes() == (alone / name).read_bytes() for name in drawn)

PAIRS = [(0, 1), (1, 2), (2, 3), (3, 4)]


def make_interpolation_store(path, *, classes: bool = False) -> str:
    """Interpolations of PAIRS from SOURCE, one per batch: its four frames in a frames/ file, its final image in the
    images/ file of the same name (as a sweep writes them); with `classes`, after the hand-made store's images (its
    class pages link the interpolations)."""
    rng = np.random.default_rng(0)
    rows = small_images() if classes else []
    for a, b in PAIRS:
        rows += [Image("interpolate", a, np.array(v, float), partner=b, source=SOURCE, frame=k, step=2 + k,
                       png=noise_png(rng, side)) for k, side, v in FRAMES]
        rows.append(Image("interpolate", a, np.array(FRAMES[-1][2], float), partner=b, source=SOURCE, step=5,
                          png=noise_png(rng, 24)))
    return write_store(str(path), NAMES, rows, rows_per_file=len(FRAMES) + 1, options={
        **IMAGE_OPTIONS, "jobs": [*(OPTIONS["jobs"] if classes else []), "interpolate"],
        "interpolate_pairs": [list(p) for p in PAIRS]})


def test_the_index_shows_the_first_interpolations_and_links_pages_holding_them_all(tmp_path, monkeypatch):
    """Audit at 1000 classes: the index showed all 3,000 interpolations, strip and GIF each (index.html 2.1 MB).
    It shows the first INDEX_GALLERY, linking pages of GALLERY_PAGE that show every one as the index did; class pages
    keep theirs; a later report with fewer pages removes the pages it no longer writes, and only those."""
    from analysis import report
    monkeypatch.setattr(report, "INDEX_GALLERY", 2, raising=False)   # (not raising: the audit's code had neither)
    monkeypatch.setattr(report, "GALLERY_PAGE", 3, raising=False)
    store = make_interpolation_store(tmp_path / "s", classes=True)
    index = write_figures(store)
    out, html = index.parent, index.read_text()
    strips = [f"interpolation-{a:04d}-{b:04d}-{SOURCE}-s0" for a, b in PAIRS]
    shown = lambda page: re.findall(r'<img class="fig" src="(interpolation-[^"]+)\.png"', page)  # noqa: E731
    assert shown(html) == strips[:2]
    assert '<a href="interpolations.html">all 4 interpolations</a>' in html
    assert not [link for link in re.findall(r'href="([^"]+)"', html) if link.startswith("interpolation-")
                and link.removesuffix(".png").removesuffix(".gif") not in strips[:2]]   # nor the others' files
    pages = [(out / name).read_text() for name in ("interpolations.html", "interpolations-02.html")]
    assert [shown(page) for page in pages] == [strips[:3], strips[3:]]
    for page, other in zip(pages, ("interpolations-02.html", "interpolations.html")):   # as on the index
        assert re.findall(r'<img class="px" src="(interpolation-[^"]+)\.gif"[^>]*loading="lazy"', page) == shown(page)
        assert 'href="index.html"' in page and f'href="{other}"' in page
        for link in re.findall(r'(?:href|src)="([^"#]+)"', page):
            assert (out / link).is_file(), link
    assert "apple -&gt; bear from photo.png (seed 0)" in pages[0] and 'href="interpolations-02.html">next' in pages[0]
    for c in range(5):   # each class page links the interpolations it starts or ends, as before
        mine = [s for (a, b), s in zip(PAIRS, strips) if c in (a, b)]
        assert re.findall(r'src="\.\./(interpolation-[^"]+)\.gif"', (out / "classes" / f"{c:04d}.html").read_text()) \
            == mine
    (out / "interpolations-notes.html").write_text("the user's own page")
    monkeypatch.setattr(report, "GALLERY_PAGE", 200)
    write_figures(store)
    assert (out / "interpolations.html").is_file() and not (out / "interpolations-02.html").exists()
    assert (out / "interpolations-notes.html").is_file()
    monkeypatch.setattr(report, "INDEX_GALLERY", 12)   # all on the index: no pages
    write_figures(store)
    assert shown(index.read_text()) == strips and not (out / "interpolations.html").exists()


def counted_reads(monkeypatch, store: str) -> tuple[collections.Counter, dict[str, list[str]]]:
    """From now on, per images/ and frames/ file of the local `store` (as "images/NAME"): how many times it is
    opened, and the columns read from it, one entry per read of each (every reader of a store file goes through
    a pyarrow ParquetFile)."""
    opened, read = collections.Counter(), collections.defaultdict(list)
    init, read_columns = pq.ParquetFile.__init__, pq.ParquetFile.read
    root = os.path.realpath(store) + "/"

    def counting_init(self, source, *args, **kwargs):
        name = os.path.realpath(source)[len(root):] if isinstance(source, str) else ""
        self.counted = name if name.startswith(("images/", "frames/")) else None
        opened[self.counted] += self.counted is not None
        init(self, source, *args, **kwargs)

    def counting_read(self, columns=None, *args, **kwargs):
        if getattr(self, "counted", None):
            read[self.counted] += list(columns or ["*"])
        return read_columns(self, columns, *args, **kwargs)
    monkeypatch.setattr(pq.ParquetFile, "__init__", counting_init)
    monkeypatch.setattr(pq.ParquetFile, "read", counting_read)
    return opened, read


def reads_of_figures_after_analysis(store: str) -> tuple[collections.Counter, dict[str, list[str]]]:
    """`analyze_store(store)`, then `write_figures(store)` counting its reads of images/ and frames/
    (`counted_reads`)."""
    analyze_store(store)
    with pytest.MonkeyPatch.context() as patch:
        opened, read = counted_reads(patch, store)
        write_figures(store)
    return opened, read


@pytest.fixture(scope="module")
def image_store_reads_made_once(tmp_path_factory) -> tuple[str, collections.Counter, dict[str, list[str]]]:
    """`make_image_store`, analysed, then its figures written: the store and `reads_of_figures_after_analysis`."""
    store = make_image_store(tmp_path_factory.mktemp("image-reads") / "mixed")
    return (store, *reads_of_figures_after_analysis(store))


@pytest.fixture
def image_store_reads(image_store_reads_made_once) -> tuple[str, collections.Counter, dict[str, list[str]]]:
    """The test's own copy of the counts (looking up a file in a defaultdict adds it)."""
    store, opened, read = image_store_reads_made_once
    return store, collections.Counter(opened), copy.deepcopy(read)


def test_figures_read_each_file_s_numbers_once_and_its_pictures_at_most_once(image_store_reads, tmp_path):
    """Scale audit A9: `sweep figures` opened every images/ file three or four times (the image jobs' numbers, the
    page images, the grids' other images, the interpolations' key columns) and frames/ twice; on S3 each time a
    download of the whole file. Now the pass over the numbers gives the key index ({path: keys}) and each reader of
    pictures opens only the files holding its keys: a file is opened once for its numbers, and again only when it
    holds a picture shown, whose column is then read once (the page images and the grids' other images in one
    pass)."""
    interpolations = make_interpolation_store(tmp_path / "interpolations")
    stores = {"mixed": image_store_reads, "interpolations": (interpolations, *reads_of_figures_after_analysis(
        interpolations))}   # files holding every job's images; images/ files of final images only
    for name, (store, opened, read) in stores.items():
        files = [f"{folder}/{file}" for folder in ("images", "frames")
                 for file in sorted(os.listdir(os.path.join(store, folder)))]
        assert len(files) == {"mixed": 9, "interpolations": 8}[name]
        for path in files:
            pictures = read[path].count("png")
            assert pictures <= 1 and opened[path] == 1 + pictures, (name, path, opened[path], read[path])
            if name == "interpolations":   # its final images give the GIFs' size, from the numbers
                assert pictures == path.startswith("frames/"), (path, read[path])


def test_figures_that_run_the_analysis_read_each_file_s_numbers_once_and_write_what_they_wrote(tmp_path,
                                                                                                monkeypatch):
    """`sweep figures` on a store with image jobs and no analysis yet read every images/ file's numbers twice: the
    analysis' pass, then the image jobs' (their columns, and frames/). Now one pass gives both: each file is opened
    once for its numbers and again only for the pictures it holds, as when the analysis was there already, and the
    tables and the report are those the two passes wrote."""
    def written(folder: str) -> dict[str, bytes]:
        return {os.path.relpath(os.path.join(path, name), folder): open(os.path.join(path, name), "rb").read()
                for path, _, names in os.walk(folder) for name in names}
    import matplotlib
    for maker in (make_image_store, make_interpolation_store):
        store = maker(tmp_path / maker.__name__)
        with monkeypatch.context() as patch:
            patch.setitem(matplotlib.rcParams, "svg.hashsalt", "classweep")   # the SVGs' ids, else random
            patch.setenv("SOURCE_DATE_EPOCH", "0")                              # and their dates
            opened, read = counted_reads(patch, store)
            first, again = (os.path.join(tmp_path, f"{maker.__name__}-{name}") for name in ("first", "again"))
            write_figures(store, first, stream=io.StringIO())                          # the analysis runs first
            files = [f"{folder}/{file}" for folder in ("images", "frames")
                     for file in sorted(os.listdir(os.path.join(store, folder)))]
            for path in files:
                pictures = read[path].count("png")
                assert opened[path] == 1 + pictures, (maker.__name__, path, opened[path], read[path])
            tables = written(os.path.join(store, "analysis"))
            analyze_store(store)                                   # the analysis by itself, then figures without it
            assert written(os.path.join(store, "analysis")) == tables
            write_figures(store, again, stream=io.StringIO())
        assert written(first) == written(again)


def test_figures_read_no_frame_s_outputs(image_store_reads):
    """Scale audit: `sweep figures` read every frames/ file's output vectors (1 GB at 10^5 images) to compute each
    frame's label probability, which no figure shows (a strip shows the two classes' stored logits). Now the
    outputs are read from images/ files only, for the dream grid's and the class pages' probabilities."""
    _, _, read = image_store_reads
    frames = [path for path in read if path.startswith("frames/")]
    assert frames and not [path for path in frames if "logits" in read[path]], {p: read[p] for p in frames}
    assert any("logits" in columns for path, columns in read.items() if path.startswith("images/"))


def test_an_image_job_whose_outputs_are_not_finite_is_captioned_so_not_p_nan(tmp_path, monkeypatch):
    """An image job's result whose stored outputs are NaN was drawn "p = nan" (grids), "p(class) = nan" (class
    pages) and "logit nan" (interpolations): it reads "outputs not finite", as `sweep analyze` leaves it out."""
    from analysis import figures
    nan = np.full(len(NAMES), np.nan)
    broken = {("transfigure", 2, -1), ("directed-dream", 3, -1), ("dream", -1, -1), ("interpolate", 0, 3),
              ("interpolate", 0, -1)}
    rows = [dataclasses.replace(r, logits=nan) if (r.job, r.target, r.frame) in broken else r
            for r in small_images() + image_rows(np.random.default_rng(1))]
    store = str(tmp_path / "s")
    write_store(store, NAMES, rows, options=IMAGE_OPTIONS, rows_per_file=5)
    drawn = []
    grid, strip = figures.source_grid, figures.interpolation_strip
    monkeypatch.setattr(figures, "source_grid", lambda *a, **k: drawn.append(grid(*a, **k)[0]) or grid(*a, **k))
    monkeypatch.setattr(figures, "interpolation_strip", lambda *a, **k: drawn.append(strip(*a, **k)) or
                        strip(*a, **k))
    out = write_figures(store).parent
    texts = [text for figure in drawn for text in [t.get_text() for t in figure.texts]
             + [t.get_text() for ax in figure.axes for t in ax.texts]]
    assert not [text for text in texts if "nan" in text], texts
    assert texts.count("outputs not finite") == 4            # transfigure 2, directed dream 3, the dream, frame 3
    assert "p = 0.999" in texts and "apple: 8.0" in texts    # the others as before
    page = (out / "classes" / "0002.html").read_text()
    assert "nan" not in page and re.search(r'<span class="bad">outputs not finite</span> \(NaN or inf: left out of '
                                           r'the analysis\)</figcaption>', page)
    index = (out / "index.html").read_text()
    assert "apple -&gt; bear from photo.png (seed 0): outputs not finite on 1 of the 4 images shown" in index
    assert "logit nan" not in index
