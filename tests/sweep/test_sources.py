"""`--images store:URI[:JOB]` and `noise:N[:SIZE]` read into source images (`sweep.sources`, through `load_sources`),
on a small synthetic store (no Ray): names, the lowest seed, no frames, and the refusals; the driver checking,
hashing and storing them (`prepare`, `reconcile_store`, the digits model) on several threads, a few decoded pictures
at a time, with a progress line when there are many."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import threading
import time
import weakref

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from analysis.synthetic import Image, noise_png, write_store
from jobs.images import noise_pixels, read_image
from sweep.cli import main
from sweep.driver import SweepConfig, load_sources
from sweep.plan import PlanError
from sweep.sources import parse_store_spec
from sweep.lease import LEASE
from sweep.store import decode_png, source_hash
from tests.jobs.test_images import AtOnce

NAMES = ("zero", "great white shark", "two/three", "four")


def _pngs(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [noise_png(rng, 12) for _ in range(n)]


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    """A finished store: octaves of classes 0-3 with seeds 1 and 0 (written in that order), an interpolation with
    a frame, a dream on a photograph; its PNGs by (job, target, seed)."""
    path = str(tmp_path_factory.mktemp("sources") / "classes")
    pngs = iter(_pngs(20))
    logits = np.zeros(len(NAMES))
    images = [Image("octave", c, logits, seed=s, png=next(pngs)) for s in (1, 0) for c in range(4)]
    images += [Image("octave", 0, logits, seed=2, png=next(pngs))]
    images += [Image("interpolate", 0, logits, partner=1, source="china.jpg", png=next(pngs)),
               Image("interpolate", 0, logits, partner=1, source="china.jpg", frame=0, png=next(pngs)),
               Image("dream", -1, logits, variant="block2:0,4", source="china.jpg", png=next(pngs))]
    write_store(path, NAMES, images, rows_per_file=3)
    return path, {(im.job, im.target, im.seed, im.frame): im.png for im in images}


def sources(*images: str, store: str = "out", **config) -> dict:
    return load_sources(SweepConfig(store=store, images=images, **config))


def test_a_store_gives_each_class_its_lowest_seed_named_after_the_class(classes, tmp_path):
    path, pngs = classes
    got = sources(f"store:{path}", store=str(tmp_path / "out"))
    assert list(got) == ["octave-0000-zero", "octave-0001-great-white-shark", "octave-0002-two-three",
                         "octave-0003-four"]
    for name, target in zip(got, range(4)):
        np.testing.assert_array_equal(got[name].read(), decode_png(pngs["octave", target, 0, -1]))


def test_a_store_given_as_a_folder_of_pictures_is_pointed_to_store(classes, tmp_path):
    """`--images ./classes` (a store, without `store:`) said only that it held no image files."""
    path, _ = classes
    with pytest.raises(PlanError, match=rf"no image files found in {re.escape(path)}: a classweep store; start "
                                        rf"from its images with --images store:{re.escape(path)}$"):
        sources(path, store=str(tmp_path / "out"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PlanError, match=r"no image files found in \S+$"):            # a plain folder: no hint
        sources(str(empty), store=str(tmp_path / "out"))


def test_a_run_from_a_folder_says_what_of_it_was_not_read(tmp_path):
    """The notes printed before the run (and by the dry run) name a folder's subfolders and other files."""
    from sweep.driver import prepare
    folder = tmp_path / "pictures"
    (folder / "more").mkdir(parents=True)
    PILImage.new("RGB", (8, 8)).save(folder / "cat.png")
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="transfigure", classes="0", images=(str(folder), "noise:1")))
    assert prepared.lines()[-1].startswith(f"--images {folder}: left out 1 subfolder (more); read are the pictures")
    assert not prepare(SweepConfig(store=str(tmp_path / "t"), model="digits", weights="random", schedule="tiny",
                                   jobs="transfigure", classes="0", images=(str(folder / "cat.png"),))).notes


def test_a_store_given_as_a_folder_beside_a_picture_is_pointed_to_store_not_left_out(classes, tmp_path):
    """`--images ./classes --images cat.png`: the store's folder holds no image file, and the run started from the
    picture alone without a word (the hint came only when no --images value gave a picture)."""
    path, _ = classes
    PILImage.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    with pytest.raises(PlanError, match=rf"{re.escape(path)}: a classweep store; start from its images with "
                                        rf"--images store:{re.escape(path)}$"):
        sources(path, str(tmp_path / "cat.png"), store=str(tmp_path / "out"))


def test_a_stored_item_whose_name_would_be_too_long_for_a_file_gets_a_cut_name_with_a_hash(tmp_path):
    """Hunt: an interpolation between two long class names, from a photograph with a long name, is named past the
    255 bytes sources/NAME.png may have; it was refused with 'rename it', which no one can do to a stored item."""
    path = str(tmp_path / "classes")
    names = ["very long class name number one " * 4, "very long class name number two " * 4]
    write_store(path, names, [Image("interpolate", 0, np.zeros(2), partner=1, source=f"{'photo ' * 30}.jpg",
                                    png=_pngs(1)[0])])
    first = sources(f"store:{path}:interpolate", store=str(tmp_path / "out"))
    again = sources(f"store:{path}:interpolate", store=str(tmp_path / "out"))
    (name,) = first
    assert list(again) == [name] and len(f"{name}.png".encode()) <= 255
    assert name.startswith("interpolate-0000-very-long-class-name-number-one") and re.search(r"-[0-9a-f]{10}$", name)


def test_two_stores_of_one_job_give_distinct_names(classes, tmp_path):
    path, _ = classes
    shutil.copytree(path, tmp_path / "copy")
    got = sources(f"store:{path}", f"store:{tmp_path / 'copy'}")
    assert len(got) == 8 and len([name for name in got if name.startswith("octave-0000-zero")]) == 2
    assert all(re.fullmatch(r"octave-000\d-[a-z-]+?(-[0-9a-f]{10})?", name) for name in got)


def test_other_jobs_name_their_partner_variant_and_photograph_and_never_give_frames(classes):
    path, pngs = classes
    got = sources(f"store:{path}:interpolate", f"store:{path}:dream")
    assert list(got) == ["dream-block2-0-4-china-jpg", "interpolate-0000-zero-0001-great-white-shark-china-jpg"]
    np.testing.assert_array_equal(got["interpolate-0000-zero-0001-great-white-shark-china-jpg"].read(),
                                  decode_png(pngs["interpolate", 0, 0, -1]))   # the final image, not frame 0


def test_the_same_command_gives_the_same_sources(classes):
    path, _ = classes
    first, again = sources(f"store:{path}", "noise:2:9"), sources("noise:2:9", f"store:{path}")
    assert list(first) == list(again)
    assert [source_hash(s.read()) for s in first.values()] == [source_hash(s.read()) for s in again.values()]


@pytest.mark.parametrize("spec, uri, job", [
    ("store:./classes", "./classes", "octave"),
    ("store:/data/s:dream", "/data/s", "dream"),
    ("store:s3://bucket/classes", "s3://bucket/classes", "octave"),
    ("store:gs://bucket/a/b:directed-dream", "gs://bucket/a/b", "directed-dream"),
])
def test_store_specs(spec, uri, job):
    assert parse_store_spec(spec) == (uri, job)


@pytest.mark.parametrize("spec, fragment", [
    ("store:{missing}", "no store at"),
    ("store:{path}:opposite", "has no opposite images (jobs present: dream, interpolate, octave)"),
    ("store:{path}:dreams", "no job named 'dreams'"),
    ("store:", "write store:URI"),
    ("noise:0", "N must be between 1 and 1000"),
    ("noise:2:0", "SIZE must be between"),
    ("noise:two", "write noise:N or noise:N:SIZE"),
])
def test_bad_values_are_one_line_errors(classes, tmp_path, spec, fragment):
    path, _ = classes
    with pytest.raises(PlanError, match="^--images ") as error:
        sources(spec.format(path=path, missing=tmp_path / "none"))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_two_stores_of_one_long_named_item_give_distinct_names_that_fit_a_file(tmp_path):
    """The second store's item took its hash after the name was cut to fit sources/NAME.png: 11 bytes past the
    255, and the sweep refused it with 'rename it', which no one can do to a stored item."""
    path = str(tmp_path / "classes")
    names = ["very long class name number one " * 4, "very long class name number two " * 4]
    write_store(path, names, [Image("interpolate", 0, np.zeros(2), partner=1, source=f"{'photo ' * 30}.jpg",
                                    png=_pngs(1)[0])])
    shutil.copytree(path, tmp_path / "copy")
    got = sources(f"store:{path}:interpolate", f"store:{tmp_path / 'copy'}:interpolate", store=str(tmp_path / "out"))
    assert len(got) == 2 and all(len(f"{name}.png".encode()) <= 255 for name in got)
    assert list(got) == list(sources(f"store:{tmp_path / 'copy'}:interpolate", f"store:{path}:interpolate",
                                     store=str(tmp_path / "out")))   # the same names, whichever order


def test_a_damaged_picture_in_the_store_is_refused_naming_the_store_and_the_image(tmp_path):
    """Hunt: a truncated PNG in the store read from was refused as '<bytes>: not a readable image (OSError: image
    file is truncated)', naming neither the store nor which of its images."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = str(tmp_path / "classes")
    write_store(path, NAMES, [Image("octave", c, np.zeros(len(NAMES)), png=png) for c, png in enumerate(_pngs(2))])
    part, = (tmp_path / "classes" / "images").iterdir()
    table = pq.read_table(part)
    pngs = [png if key != "octave:-:1:-1:0" else png[:60] for key, png in zip(table["key"].to_pylist(),
                                                                               table["png"].to_pylist())]
    pq.write_table(table.set_column(table.schema.get_field_index("png"), "png", pa.array(pngs, pa.binary())), part)
    with pytest.raises(PlanError) as error:
        sources(f"store:{path}", store=str(tmp_path / "out"))
    assert str(error.value).startswith(f"--images store:{path}: image octave:-:1:-1:0 of {path}: not a readable "
                                       f"image (")
    assert "\n" not in str(error.value)


def test_the_store_being_written_is_refused_even_through_a_link(classes, tmp_path):
    path, _ = classes
    os.symlink(path, tmp_path / "link")
    with pytest.raises(PlanError, match="that is the store this sweep writes"):
        sources(f"store:{tmp_path / 'link'}", store=path)


def test_a_store_a_sweep_is_writing_is_refused(classes, tmp_path):
    path, _ = classes
    busy = tmp_path / "busy"
    write_store(str(busy), NAMES, [Image("octave", 0, np.zeros(len(NAMES)))])
    (busy / LEASE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "run": "r",
                                          "heartbeat": time.time()}))
    with pytest.raises(PlanError, match="a sweep is writing .* now"):
        sources(f"store:{busy}")


def test_noise_and_repeats_are_given_once(classes):
    path, _ = classes
    with pytest.raises(PlanError, match="give noise:N once"):
        sources("noise:2", "noise:3")
    with pytest.raises(PlanError, match="given more than once"):
        sources(f"store:{path}", f"store:{path}")


def test_noise_without_a_size_takes_the_given_side():
    got = load_sources(SweepConfig(store="out", images=("noise:2",)), lambda: 17)
    assert list(got) == ["noise-000", "noise-001"] and got["noise-000"].read().shape == (17, 17, 3)
    assert sources("noise:1")["noise-000"].read().shape == (299, 299, 3)   # Deep dream's side when no model says


def test_noise_side_follows_the_models_default_image_schedules(random_digits_model):
    from sweep.driver import noise_side
    assert noise_side(random_digits_model) == 32   # the digits preset starts at 32 px


def test_the_cli_refuses_a_missing_store_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["run", "--store", str(tmp_path / "out"), "--model", "digits", "--weights",
                                       "random", "--jobs", "dream", "--images", f"store:{tmp_path / 'none'}"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: --images store:") and "no store at" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("again", ["store:{path}/", "store:{path}:octave", "store:{link}"])
def test_one_store_and_job_given_twice_under_two_spellings_is_refused(classes, tmp_path, again):
    """The same images twice would become twice the sources (the second under hashed names): refused, as the same
    spelling given twice is."""
    path, _ = classes
    os.symlink(path, tmp_path / "link")
    with pytest.raises(PlanError, match="given more than once") as error:
        sources(f"store:{path}", again.format(path=path, link=tmp_path / "link"))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("first, second", [("Cat.png", "cat.png"), ("caf\u00e9.png", "cafe\u0301.png")])
def test_two_pictures_whose_names_differ_only_in_case_or_unicode_form_are_refused(tmp_path, first, second):
    """A store on macOS or Windows (or a copy of it there) keeps sources/NAME.png as one file for both: the second
    picture would replace the first, and every image of the first would start from the second."""
    for folder, name, value in (("a", first, 10), ("b", second, 200)):
        (tmp_path / folder).mkdir()
        PILImage.new("RGB", (8, 8), (value,) * 3).save(tmp_path / folder / name)
    with pytest.raises(PlanError, match="several source images are named") as error:
        sources(str(tmp_path / "a"), str(tmp_path / "b"), store=str(tmp_path / "out"))
    assert first in str(error.value) and second in str(error.value)


def test_a_picture_named_like_an_interpolation_frame_is_refused(tmp_path):
    """A key ending in #frame<N> is an interpolation frame's to every reader (status, coverage, score, store:
    sources): an image started from a file named so would count as missing for ever and never be scored."""
    PILImage.new("RGB", (8, 8)).save(tmp_path / "shot#frame2", format="PNG")   # named directly: no suffix needed
    with pytest.raises(PlanError, match="shot#frame2") as error:
        sources(str(tmp_path / "shot#frame2"), store=str(tmp_path / "out"))
    assert "#frame" in str(error.value) and "\n" not in str(error.value)


def test_a_picture_whose_stored_name_would_be_too_long_is_refused_before_anything_is_written(tmp_path):
    """Hunt: a 252-byte file name is a valid file, but its copy sources/NAME.png is not: the sweep wrote its manifest
    and then died on 'File name too long', naming a temporary file under .tmp/."""
    for stem in ("x" * 247, "y" * 248):   # + ".png": names of 251 and 252 bytes
        PILImage.new("RGB", (8, 8)).save(tmp_path / f"{stem}.png")
    with pytest.raises(PlanError, match="y{248}.png: the store keeps it as sources/NAME.png") as error:
        sources(str(tmp_path), store=str(tmp_path / "out"))
    assert "x" * 247 not in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_picture_whose_file_name_is_not_utf8_is_refused_before_anything_is_written(tmp_path):
    """Hunt: a Latin-1 name (b'caf\\xe9.png', from an old archive) passed the check, and the run died with a
    UnicodeEncodeError traceback from pyarrow after writing the manifest."""
    PILImage.new("RGB", (8, 8)).save(os.path.join(str(tmp_path), os.fsdecode(b"caf\xe9.png")))
    with pytest.raises(PlanError) as error:
        sources(str(tmp_path), store=str(tmp_path / "out"))
    assert str(error.value).startswith("source image caf\\xe9.png: its file name is not UTF-8")


def test_a_source_of_the_longest_name_a_file_may_have_is_stored(tmp_path):
    """sources/NAME.png of 255 bytes: its temporary under .tmp/ (the name and a random tail) was 264 bytes, too long."""
    from sweep.store import MAX_NAME_BYTES, Store
    store, pixels = Store.open(str(tmp_path / "out")), np.full((4, 4, 3), 7, np.uint8)
    name = "\u00e9" * 123 + "x.png"   # 251 bytes of UTF-8, 128 characters
    store.write_source(name, pixels)
    assert len(f"{name}.png".encode()) == MAX_NAME_BYTES and not os.listdir(tmp_path / "out" / ".tmp")
    np.testing.assert_array_equal(store.read_source(name), pixels)


def test_two_stores_given_in_the_other_order_give_the_same_sources(classes, tmp_path):
    """Sources are the sweep's, whatever order --images gives them in (`load_sources` sorts them by name): when two
    stores' names clash, which of them gets the hashed names must not depend on that order either, or the resume
    of the same command written the other way round is refused as other sources."""
    path, _ = classes
    copy = str(shutil.copytree(path, tmp_path / "copy"))
    write_store(copy, NAMES, [Image("octave", 0, np.zeros(len(NAMES)), png=_pngs(1, seed=9)[0])])  # other pixels
    first, again = sources(f"store:{path}", f"store:{copy}"), sources(f"store:{copy}", f"store:{path}")
    assert list(first) == list(again)
    assert [source_hash(s.read()) for s in first.values()] == [source_hash(s.read()) for s in again.values()]


# ---- the driver holds a few decoded pictures at a time (`prepare` hashes, `reconcile_store` writes) -------------

class LiveArrays:
    """Counts the decoded pictures alive at once: each array a source reader returns is followed by a weakref
    finalizer, so `most` is how many of them the driver held together at worst."""

    def __init__(self):
        self.live = self.most = self.made = 0
        self.lock = threading.Lock()   # read on several threads

    def counted(self, read):
        def counted_read(*args):
            pixels = read(*args)
            with self.lock:
                self.live, self.made = self.live + 1, self.made + 1
                self.most = max(self.most, self.live)
            weakref.finalize(pixels, self.dropped)
            return pixels
        return counted_read

    def dropped(self):
        with self.lock:
            self.live -= 1


def _pictures(folder, count: int) -> list:
    """`count` random pictures of differing sizes in `folder`, PNG and JPEG in turn."""
    rng, paths = np.random.default_rng(3), []
    folder.mkdir()
    for index in range(count):
        path = folder / f"photo-{index:02d}.{'png' if index % 2 else 'jpg'}"
        PILImage.fromarray(rng.integers(0, 256, (30 + index, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("threads", [1, 3])
def test_a_folder_noise_and_a_store_are_hashed_and_stored_a_few_decoded_pictures_at_a_time(classes, tmp_path,
                                                                                            monkeypatch, threads):
    """A folder of 50,000 photographs is ~28 GB decoded: the driver checks, hashes and stores its sources reading
    each when it is wanted and dropping it, at most one a thread at once, never the whole set; a file or stored
    picture is checked and hashed in one decode and decoded once more to be stored. The manifest's hashes and the
    bytes of sources/NAME.png are those of each picture read on its own, on 1 thread or 3 (an older store resumes
    unchanged)."""
    import jobs.images
    import sweep.sources
    from sweep.driver import prepare, reconcile_store
    from sweep.store import SOURCE_PNG_LEVEL, SOURCES, encode_png
    path, pngs = classes
    photos = _pictures(tmp_path / "photos", 12)
    expected = {p.name: read_image(p) for p in photos}
    expected |= {f"noise-{i:03d}": noise_pixels(i, 16) for i in range(3)}
    expected |= {name: decode_png(pngs["octave", target, 0, -1]) for name, target in zip(sources(f"store:{path}"),
                                                                                           range(4))}
    arrays = LiveArrays()
    monkeypatch.setattr(jobs.images, "read_image", arrays.counted(read_image))
    monkeypatch.setattr(sweep.sources, "read_image", jobs.images.read_image)
    monkeypatch.setattr(jobs.images, "noise_pixels", arrays.counted(noise_pixels))
    store = tmp_path / "out"
    prepared = prepare(SweepConfig(store=str(store), model="digits", weights="random", schedule="tiny",
                                   jobs="transfigure", classes="0", images=(str(tmp_path / "photos"), "noise:3:16",
                                                                            f"store:{path}"),
                                   source_threads=threads))
    reconcile_store(prepared, io.StringIO())
    assert arrays.most <= threads               # each thread holds the one it reads
    assert arrays.made == 2 * len(expected)     # checked and hashed (a noise image: hashed), then stored
    assert sorted(prepared.manifest["sources"]) == sorted(expected) == sorted(prepared.sources)
    for name, pixels in expected.items():
        assert prepared.manifest["sources"][name] == source_hash(pixels)
        assert (store / SOURCES / f"{name}.png").read_bytes() == encode_png(pixels, SOURCE_PNG_LEVEL)


def test_a_picture_changed_or_removed_after_the_check_is_refused_not_stored(tmp_path):
    """The driver reads a file again to store it: a picture replaced (or removed) between the check and the
    writing would leave sources/ holding another picture than the manifest's hash, so the run stops in one line
    naming it, and the same command run again starts from the picture as it is then."""
    from sweep.driver import prepare, reconcile_store
    from sweep.store import SOURCES
    picture, _ = _pictures(tmp_path / "photos", 2)
    config = SweepConfig(store=str(tmp_path / "out"), model="digits", weights="random", schedule="tiny",
                         jobs="transfigure", classes="0", images=(str(tmp_path / "photos"),))
    stored = tmp_path / "out" / SOURCES / f"{picture.name}.png"

    def refused(prepared, fragment):
        with pytest.raises(PlanError, match=f"^source image {picture.name} {fragment}") as error:
            reconcile_store(prepared, io.StringIO())
        assert "\n" not in str(error.value) and not stored.exists()

    prepared = prepare(config)
    PILImage.new("RGB", (8, 8)).save(picture)      # another picture under the same name
    refused(prepared, "changed after the sweep was checked")
    prepared = prepare(config)
    picture.unlink()
    refused(prepared, "was readable when the sweep was checked and is not now")
    PILImage.new("RGB", (8, 8), (9, 9, 9)).save(picture)
    reconcile_store(prepare(config), io.StringIO())   # the same command again: the picture as it is now
    assert (decode_png(stored.read_bytes()) == 9).all()


def test_a_resume_lists_the_stored_sources_once_and_writes_only_the_missing_one(tmp_path, monkeypatch):
    """Of 50,000 photographs on S3 a resume asked the store about each (one request a source): now it lists
    sources/ once, and writes only the picture the store lost."""
    from sweep.driver import prepare, reconcile_store
    from sweep.store import SOURCES, Store
    _pictures(tmp_path / "photos", 5)
    config = SweepConfig(store=str(tmp_path / "out"), model="digits", weights="random", schedule="tiny",
                         jobs="transfigure", classes="0", images=(str(tmp_path / "photos"),))
    reconcile_store(prepare(config), io.StringIO())
    folder = tmp_path / "out" / SOURCES
    kept = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    lost = sorted(kept)[2]
    (folder / lost).unlink()
    asked, listed = [], []
    real_type, real_listing = Store.file_type, Store.listing
    monkeypatch.setattr(Store, "file_type", lambda self, *parts: asked.append(parts) or real_type(self, *parts))
    monkeypatch.setattr(Store, "listing", lambda self, directory="", recursive=False:
                        listed.append(directory) or real_listing(self, directory, recursive))
    reconcile_store(prepare(config), io.StringIO())
    assert not [parts for parts in asked if parts and parts[0].startswith(SOURCES)]   # no request per source
    assert listed.count(SOURCES) == 2             # whatever their number: the temporaries' sweep's and this one
    assert {p.name for p in folder.iterdir()} == set(kept)
    assert {n: p.stat().st_mtime_ns for n, p in ((p.name, p) for p in folder.iterdir()) if n != lost} == \
        {n: t for n, t in kept.items() if n != lost}                      # the others not written again


def test_sources_are_hashed_and_written_two_at_once_on_two_threads(tmp_path, monkeypatch):
    """Hashing (noise images: no check decodes them first) and PNG-encoding the sources run on the driver's cores
    (`source_threads`), not one picture after another on one."""
    import jobs.images
    import sweep.store
    from sweep.driver import prepare, reconcile_store
    from sweep.store import SOURCES
    draw, encode = AtOnce(noise_pixels), AtOnce(sweep.store.encode_png)
    monkeypatch.setattr(jobs.images, "noise_pixels", draw)
    monkeypatch.setattr(sweep.store, "encode_png", encode)
    prepared = prepare(SweepConfig(store=str(tmp_path / "out"), model="digits", weights="random", schedule="tiny",
                                   jobs="transfigure", classes="0", images=("noise:4:8",), source_threads=2))
    assert draw.most == 2
    reconcile_store(prepared, io.StringIO())
    assert encode.most == 2
    assert sorted(p.name for p in (tmp_path / "out" / SOURCES).iterdir()) == [f"noise-00{i}.png" for i in range(4)]


@pytest.mark.parametrize("count", [60, 2])
def test_many_sources_are_checked_and_stored_with_a_progress_line_and_two_without(tmp_path, count):
    """A folder of photographs takes minutes to check, hash and store before the first batch: with more than
    PROGRESS_SOURCES of them the driver says so, and how far it is (a plain line in a log); the demo's two say
    nothing new."""
    from sweep.driver import PROGRESS_SOURCES, prepare, reconcile_store
    assert 2 < PROGRESS_SOURCES < 60
    _pictures(tmp_path / "photos", count)
    checking, storing = io.StringIO(), io.StringIO()
    prepared = prepare(SweepConfig(store=str(tmp_path / "out"), model="digits", weights="random", schedule="tiny",
                                   jobs="transfigure", classes="0", images=(str(tmp_path / "photos"),),
                                   source_threads=2), stream=checking)
    reconcile_store(prepared, io.StringIO(), stream=storing)
    if count == 2:
        assert checking.getvalue() == storing.getvalue() == ""
        return
    assert checking.getvalue().startswith("checking and hashing 60 source images (2 threads)\n")
    assert re.search(r"^60/60 source images \(100.0%\) .* checking and hashing$", checking.getvalue(), re.M)
    assert storing.getvalue().startswith("storing 60 source images (2 threads)\n")
    assert re.search(r"^60/60 source images \(100.0%\) .* storing$", storing.getvalue(), re.M)
    assert "failed" not in checking.getvalue() + storing.getvalue()   # a bad picture stops the run, listed
