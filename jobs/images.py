"""Real images as starting points (transfiguration, interpolation, deep dream).

Files of any mode (greyscale, RGBA, palette, CMYK, 16-bit, 32-bit float) become RGB with their EXIF orientation
applied, then are resized to the schedule's first size. Unreadable or non-image files are gathered into one error
before any work starts, so a sweep never dies halfway through its inputs. A folder's pictures are checked on
several threads (`in_order`: Pillow's decoders let go of the GIL), a few of them decoded at a time.
"""
from __future__ import annotations

import collections
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageOps

from jobs.text import counted, flattened

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Largest source image accepted, in pixels (a 64-megapixel photograph; Pillow's own bomb limit is ~179 M and only
# warns above ~89 M). Checked on the header, before any pixel is decoded: a 30000 x 30000 image of one colour
# compresses to a few kilobytes and decodes to gigabytes. Every job resizes its source to the schedule's first size.
MAX_SOURCE_PIXELS = 8000 * 8000
# A float image (mode 'F', as scientific tools write TIFFs) whose values lie within half an 8-bit step of [0, 1] is
# in unit range: a value 1e-7 past 1 (rounding in the tool that wrote it) rounds to 255 all the same.
UNIT_RANGE_SLACK = 0.5 / 255
# Threads that read many pictures at once (`reading_threads`): one per core of the machine, at most this many (past
# it the disk or the network, not the decoders, sets the pace).
MAX_READING_THREADS = 16
# Pictures `in_order` has handed to its threads and not yet given back, per thread: each thread decodes one at a
# time, and a few more wait their turn, so that no thread waits for the next.
AHEAD_PER_THREAD = 2

T = TypeVar("T")
R = TypeVar("R")
# (results as they come, how many there will be) -> the same results: a hook for a progress bar
Track = Callable[[Iterator[T], int], Iterator[T]]


class ImageInputError(ValueError):
    """One or more inputs are not readable images; the message lists every one of them."""


@dataclass(frozen=True)
class SourceImage:
    """A picture an image job starts from, kept as the way to read it (a path, the encoded bytes, a noise index),
    not as its pixels: a folder of 50,000 photographs is ~28 GB decoded, so its readers decode one at a time."""
    name: str                                            # file name (or the sample's name): the `source` column
    read: Callable[[], np.ndarray] = field(repr=False)   # -> H x W x 3 uint8 RGB, orientation applied, decoded
                                                         #    anew on each call
    digest: str = ""                                     # what the caller's `digest` made of the pixels the check
                                                         #    decoded (the sweep's content hash); "" when not asked


def to_rgb(image: Image.Image) -> Image.Image:
    """EXIF orientation applied, then RGB: palette, LA/RGBA and a transparent colour key via RGBA (transparency on
    white), CMYK converted by Pillow, 16/32-bit greyscale scaled by its depth, float greyscale by its range
    (`float_pixels_to_8_bit`; ImageInputError for a range it refuses)."""
    image = oriented(image)
    if image.mode in ("P", "PA") or (image.mode in ("1", "L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")   # a transparent colour key (PNG's tRNS) becomes alpha, as a palette's does
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        # 16-bit modes say their depth; only a 32-bit "I" image (which may hold 8-bit values) is judged by its values
        scale = 65535.0 if image.mode != "I" or array.max() > 255 else 255.0
        image = Image.fromarray((array / scale * 255).round().clip(0, 255).astype(np.uint8))   # "I" may pass 65535
    if image.mode == "F":
        image = Image.fromarray(float_pixels_to_8_bit(np.asarray(image)))
    return image.convert("RGB")


def oriented(image: Image.Image) -> Image.Image:
    """`image` with its EXIF orientation applied; as stored when its EXIF block does not parse (Pillow raises
    SyntaxError on a PNG's or WebP's, and reads a JPEG's same block as no orientation): the pixels are whole, and a
    viewer shows them so."""
    try:
        return ImageOps.exif_transpose(image)
    except SyntaxError:
        return image


def float_pixels_to_8_bit(values: np.ndarray) -> np.ndarray:
    """A float image's values as uint8, by their range, since a float file does not say it (a 16-bit one does):
    within [0, 1] (give or take half an 8-bit step) scaled by 255, as scientific tools write intensities; within
    [0, 255] (an 8-bit image saved as float) kept as they are, as Pillow read them before. Anything else (negative
    values, values above 255, NaN or infinity) is refused: scaling it by its own maximum would brighten a dark image
    (the fault 16-bit images had), and clipping it would hide that the picture is not what was meant."""
    if values.size and not np.isfinite(values).all():
        raise ImageInputError("float pixels include NaN or infinity (write the image as 8-bit or as floats in [0, 1])")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low >= -UNIT_RANGE_SLACK and high <= 1 + UNIT_RANGE_SLACK:
        return (values.astype(np.float64) * 255).round().clip(0, 255).astype(np.uint8)
    if low >= 0 and high <= 255:
        return values.astype(np.uint8)   # truncated, as Pillow's own conversion of mode F did
    raise ImageInputError(f"float pixels from {low:g} to {high:g}: only values in [0, 1] (scaled to 0-255) or in "
                          f"[0, 255] are read (rescale the image to [0, 1] first)")


def read_image(data: bytes | str | Path, name: str | None = None) -> np.ndarray:
    """H x W x 3 uint8 RGB from a path or encoded bytes; raises ImageInputError, naming the picture (`name`, else
    the path), when it is not an image."""
    name = name or (data if not isinstance(data, bytes) else "<bytes>")
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > MAX_SOURCE_PIXELS:
                    raise ImageInputError(f"{name}: {width} x {height} pixels is more than the "
                                          f"{MAX_SOURCE_PIXELS // 10**6} megapixels a source image may have "
                                          f"(shrink it first)")
                image.load()
                try:
                    return np.asarray(to_rgb(image))
                except ImageInputError as refused:   # a float image's range, which to_rgb cannot name the file of
                    raise ImageInputError(f"{name}: {refused}") from None
    except ImageInputError:
        raise
    except Exception as error:  # whatever a damaged or hostile file makes a decoder raise: one line naming it
        detail = flattened(error)
        raise ImageInputError(f"{name}: not a readable image ({type(error).__name__}: {detail[:200]})") from None


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and the image files (by suffix) inside named folders, sorted within each folder,
    hidden ones left out (macOS's `._cat.png` beside `cat.png` is not a picture), a link to nothing kept (its check
    lists it as missing: a folder of links into a cache that lost some must not lose them silently); a file reached
    twice under one name (a folder and a file in it, one path written twice) once."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if (p.is_file() or is_dangling_link(p))
                            and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        else:
            files.append(path)
    unique: dict[tuple[str, str], Path] = {}
    for path in files:
        unique.setdefault((os.path.realpath(path), path.name), path)   # realpath: never raises (a link loop)
    return list(unique.values())


def left_out(inputs: Iterable[str | Path]) -> list[str]:
    """One line per named folder holding entries `expand_inputs` does not read (`unread_entries`)."""
    return [f"--images {item}: left out {unread}; read are the pictures directly in it ({', '.join(IMAGE_SUFFIXES)})"
            for item in inputs if (unread := unread_entries(Path(item)))]


def unread_entries(folder: Path, shown: int = 3) -> str:
    """What of `folder` `expand_inputs` does not read, in words ("" for none, or not a folder): its subfolders (it
    does not descend: a folder of class folders gives none of their pictures) and its files of other kinds
    (`.jfif`, `.heic`, a text file), hidden ones aside; the first `shown` of each named."""
    if not folder.is_dir():
        return ""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    kinds = (([p.name for p in entries if p.is_dir()], "subfolder", "subfolders"),
             ([p.name for p in entries if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES],
              "file of another kind", "files of other kinds"))
    return " and ".join(f"{counted(len(names), noun, plural)} ({', '.join(names[:shown])}"
                        f"{', ...' if len(names) > shown else ''})" for names, noun, plural in kinds if names)


def is_dangling_link(path: Path) -> bool:
    """A symbolic link whose target does not exist (or a link loop)."""
    return path.is_symlink() and not path.exists()


def untracked(results: Iterator[T], count: int) -> Iterator[T]:
    return results


def reading_threads() -> int:
    """Threads for reading many pictures: the cores this process may use, at most MAX_READING_THREADS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_READING_THREADS))


def in_order(function: Callable[[T], R], items: Iterable[T], threads: int = 1) -> Iterator[R]:
    """`function(item)` of each item, in the items' order, computed on `threads` threads (in this one when 1). At
    most AHEAD_PER_THREAD x `threads` items are handed out and not yet given back, so a function that decodes a
    picture holds at most `threads` of them decoded at once, however many items there are; an item's exception
    is raised in its turn, and the items not yet started then are not started."""
    if threads <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="classweep-read") as pool:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                if len(pending) >= AHEAD_PER_THREAD * threads:
                    yield pending.popleft().result()
                pending.append(pool.submit(function, item))
            while pending:
                yield pending.popleft().result()
        finally:   # an error, an interrupt, or a caller that stopped reading: only the running ones finish
            for future in pending:
                future.cancel()


def checked_file(path: Path, digest: Callable[[np.ndarray], str] | None = None) -> SourceImage | str:
    """The file as a source that reads it again when its pixels are wanted (its `digest` made of the pixels
    decoded here, when asked), or why it is not one."""
    if not path.exists():
        return f"{path}: no such file" + (" (a link that leads nowhere)" if path.is_symlink() else "")
    try:
        pixels = read_image(path)
    except ImageInputError as error:
        return str(error)
    return SourceImage(path.name, partial(read_image, path), digest(pixels) if digest is not None else "")


def load_images(inputs: Sequence[str | Path], *, threads: int = 1, digest: Callable[[np.ndarray], str] | None = None,
                track: Track = untracked) -> list[SourceImage]:
    """Every input checked (decoded, and its pixels dropped; `threads` at a time), or one ImageInputError listing
    all the bad ones (missing, unreadable, not an image) in the inputs' order; each image reads its file again
    when its pixels are wanted. `digest(pixels)` of each picture as the check decoded it becomes its `digest` (one
    decode fewer for a caller that hashes them); `track` sees the files' outcomes as they come."""
    files = expand_inputs(inputs)
    outcomes = list(track(in_order(partial(checked_file, digest=digest), files, threads), len(files)))
    problems = [outcome for outcome in outcomes if isinstance(outcome, str)]
    if problems:
        raise ImageInputError(f"{len(problems)} input(s) are not readable images: " + "; ".join(problems))
    if not outcomes:
        unread = [f"{item}: {words}" for item in inputs if (words := unread_entries(Path(item)))]
        raise ImageInputError(f"no image files found in {', '.join(map(str, inputs)) or 'the inputs'}"
                              + (f" (not read: {'; '.join(unread)})" if unread else ""))
    return outcomes


def sample_images() -> list[SourceImage]:
    """The two photographs scikit-learn ships (china.jpg, flower.jpg): the demo's real images."""
    from sklearn.datasets import load_sample_images
    return [SourceImage(Path(name).name, partial(sample_pixels, Path(name).name))
            for name in load_sample_images().filenames]


def sample_pixels(name: str) -> np.ndarray:
    """The sample photograph `name` as scikit-learn reads it: H x W x 3 uint8."""
    from sklearn.datasets import load_sample_image
    return np.ascontiguousarray(load_sample_image(name))


# ---- noise sources (`--images noise:N[:SIZE]`) ------------------------------------------------------------------

NOISE_PREFIX = "noise:"
MAX_NOISE_IMAGES = 1000          # names noise-000 .. noise-999
MAX_NOISE_SIDE = 8000            # as MAX_SOURCE_PIXELS allows
NOISE_LOW, NOISE_WIDTH = 0.5, 0.1   # Deep dream: `torch.rand(1, 3, 299, 299) / 10 + 0.5`


def is_noise_spec(value: str) -> bool:
    return str(value).startswith(NOISE_PREFIX)


def parse_noise(value: str, default_side: int | None = None) -> tuple[int, int | None]:
    """`noise:N[:SIZE]` -> (N, SIZE); SIZE is `default_side` when not written. ImageInputError, naming the value,
    for anything else."""
    fields = str(value)[len(NOISE_PREFIX):].split(":")
    try:
        if not 1 <= len(fields) <= 2:
            raise ValueError
        count, side = int(fields[0]), int(fields[1]) if len(fields) == 2 else default_side
    except ValueError:
        raise ImageInputError(f"--images {value}: write noise:N or noise:N:SIZE, e.g. noise:8:299") from None
    if not 1 <= count <= MAX_NOISE_IMAGES:
        raise ImageInputError(f"--images {value}: N must be between 1 and {MAX_NOISE_IMAGES}")
    if side is not None and not 1 <= side <= MAX_NOISE_SIDE:
        raise ImageInputError(f"--images {value}: SIZE must be between 1 and {MAX_NOISE_SIDE} pixels")
    return count, side


def noise_pixels(index: int, side: int) -> np.ndarray:
    """Noise image `index`: side x side x 3 uint8, uniform on [0.5, 0.6] before rounding to 8 bits (128..153), drawn
    from a numpy Generator seeded with `index` (the same image in every run: the manifest's hash matches on resume).

    Deep dream, features from noise or from real images: "starting from the following scaled normal
    distribution `single_input = (torch.rand(1, 3, 299, 299))/10 + 0.5`" (torch.rand is uniform, not normal)."""
    uniform = np.random.default_rng(index).random((side, side, 3))             # side x side x 3 in [0, 1)
    return np.round((uniform * NOISE_WIDTH + NOISE_LOW) * 255).astype(np.uint8)


def noise_images(count: int, side: int) -> list[SourceImage]:
    """`count` noise images named noise-000, noise-001, ... (`noise_pixels`), stored as 8-bit PNGs like every other
    source."""
    return [SourceImage(f"noise-{index:03d}", partial(noise_pixels, index, side)) for index in range(count)]
