"""Export a store's images as PNG files with readable names: `octave/0042_goldfish_s0.png`,
`transfigure/0003_digit-3_china-jpg_s0.png`, `interpolate/0000_digit-0+0001_digit-1_china-jpg_s0_f03.png`.
A file already there with the same bytes is left alone (exporting again writes nothing); one with other bytes is
refused before anything is written, unless the caller asks to overwrite.

A store is data a user may have received from someone else, so nothing in it chooses where a file lands: every
part of an output path is made safe (`safe_name`), the path is checked to lie inside the output folder, and two
rows whose names come out the same (`日本` and `中国` are both "class" to an ASCII-only rule, `A` and `a` one file
on macOS) get distinct files (`UniqueNames`). `safe_name` is also the report's (`analysis.report`)."""
from __future__ import annotations

import hashlib
import os
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pyarrow as pa

from jobs.text import counted, listing, utf8_prefix
from sweep.store import FRAMES, IMAGES, MAX_NAME_BYTES, Store, StoreError, open_store, require_images, unreadable

COLUMNS = ["key", "job", "variant", "target", "partner", "seed", "target_name", "partner_name", "png"]
# Columns older stores lack, and the values of missing data (stored as nulls).
MISSING = {"source": "", "frame": -1, "partner": -1, "partner_name": "", "variant": ""}
MAX_PART_BYTES = 100   # one name part, in UTF-8 bytes (file systems allow 255 per name; a stem joins a few parts)
TAIL_ROOM = 20         # bytes a file name cut to fit 255 keeps for its seed and frame (`_s12345678_f999`)


def safe_name(text: object, *, fill: str = "_", keep: str = "-_.") -> str:
    """`text` as one file-name component, whatever it holds: letters and digits of any script and the characters
    of `keep` stay, each run of anything else (path separators, spaces, control characters) becomes `fill`; no
    leading or trailing `fill` or '.', so never '', '.' or '..'; at most MAX_PART_BYTES bytes of UTF-8 (callers
    keep names unique). `safe_name("great white shark", fill="-", keep="")` -> "great-white-shark"."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", str(text)):
        if ch.isalnum() or ch in keep:
            out.append(ch)
        elif not out or out[-1] != fill:
            out.append(fill)
    name = "".join(out).strip(fill + ".")
    while len(name.encode("utf-8")) > MAX_PART_BYTES:
        name = name[:-1].rstrip(fill + ".")
    return name or fill


def slug(name: str) -> str:
    """A class name, job or source as a file-name part: "great white shark" -> "great-white-shark"."""
    part = safe_name(name.lower(), fill="-", keep="")
    return "class" if part == "-" else part


class UniqueNames:
    """Relative output paths, one per key: a path another key took (compared as macOS and Windows compare names:
    case-insensitively, after Unicode normalisation) gets a hash of the key before its suffix."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def claim(self, name: str, key: str, clashing: str | None = None) -> str:
        """`name` (a file name with its suffix), or when it is taken `clashing` (the caller's name made unique by
        the key) or else `name` with the key's hash before the suffix."""
        if clashing is not None and self.folded(name) in self.taken:
            name = clashing
        stem, dot, suffix = name.rpartition(".")
        return self.claim_stem(stem, key, dot + suffix) if dot else self.claim_stem(name, key)

    def claim_stem(self, stem: str, key: str, suffix: str = "") -> str:
        """`stem + suffix`, or `stem-HASH + suffix` when another key took it (a stem may hold dots: features-a.b)."""
        name = stem + suffix
        if self.folded(name) in self.taken:
            name = f"{stem}-{key_hash(key)}{suffix}"
        self.taken.add(self.folded(name))
        return name

    @staticmethod
    def folded(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()


def key_hash(key: object) -> str:
    """The hash that tells apart two keys whose file names came out the same."""
    return hashlib.sha1(str(key).encode()).hexdigest()[:10]


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, refused (StoreError) unless it lies inside `root` (symbolic links followed)."""
    base = root.resolve()
    target = (base / relative).resolve()
    if base not in target.parents:
        raise StoreError(f"refusing to write {relative!r} outside {root}")
    return target


def png_name(row: dict, clash: str | None = None) -> str:
    """Relative file name of one image row: job (and variant) folder, class index and name, source image, seed,
    and the frame of an interpolation frame; every part made safe, and the classes and source cut, with a hash of
    them, where the name would pass MAX_NAME_BYTES. `clash`: the row's key, for a row whose name another key took
    (`UniqueNames`): the key's hash goes before `.png`, or, where that would pass MAX_NAME_BYTES, in the cut
    name's hash's place."""
    folder = slug(row["job"]) + (f"-{slug(row['variant'])}" if row["variant"] else "")
    parts = []
    if row["target"] >= 0:
        part = f"{row['target']:04d}_{slug(row['target_name'])}"
        if row["partner"] >= 0:
            part += f"+{row['partner']:04d}_{slug(row['partner_name'])}"
        parts.append(part)
    if row.get("source"):
        parts.append(slug(row["source"]))
    head = "_".join(parts)
    tail = ("_" if head else "") + f"s{row['seed']}" + (f"_f{row['frame']:02d}" if row.get("frame", -1) >= 0 else "")
    room = MAX_NAME_BYTES - len(".png")
    stem = head
    if len((head + tail).encode()) > room:
        # two long class names and a long source: cut to one length whatever the tail (an item's image and its
        # frames keep one head), the hash of the whole after it
        stem = cut_head(head, hashlib.sha1(head.encode()).hexdigest()[:10])
    if clash is None:
        return f"{folder}/{stem}{tail}.png"
    unique = f"{stem}{tail}-{key_hash(clash)}"   # as UniqueNames makes a taken name unique
    if len(unique.encode()) > room:              # no room left: the key's hash in the cut name's hash's place
        unique = cut_head(head, key_hash(clash)) + tail
    return f"{folder}/{unique}.png"


def cut_head(head: str, digest: str) -> str:
    """A file name's head cut to leave room for `digest` after it and TAIL_ROOM after that (`png_name`)."""
    kept = MAX_NAME_BYTES - len(".png") - TAIL_ROOM - len(digest) - 1
    return utf8_prefix(head, kept) + "-" + digest


def checked_files(store: Store, directories: tuple[str, ...] = (IMAGES, FRAMES)) -> list[tuple[str, list[str]]]:
    """(path, columns to read) of every images/ and frames/ file (or those of `directories`), each opened first: a
    damaged or foreign file is refused in one line before any of them is read."""
    files = []
    for path in [path for directory in directories for path in store.files(directory)]:
        try:
            names = store.file_schema(path).names
        except (pa.ArrowException, OSError) as error:
            raise StoreError(unreadable(store.location_of(path), error)) from None
        files.append((path, file_columns(store.location_of(path), names)))
    return files


def file_columns(location: str, names: Sequence[str], pictures: bool = True) -> list[str]:
    """The columns to read of an images/ or frames/ file whose columns are `names` (`png` only with `pictures`);
    StoreError naming the file (`location`) when it lacks one that a PNG's name needs (a foreign file)."""
    missing = [c for c in COLUMNS if c not in names and c not in MISSING]
    if missing:
        raise StoreError(unreadable(location, KeyError(f"not an images file: no column {', '.join(missing)}")))
    return [c for c in COLUMNS + ["source", "frame"] if c in names and (pictures or c != "png")]


@dataclass(frozen=True)
class Exported:
    """What `export_pngs` did under its folder."""
    written: int       # files written: new ones, and with --overwrite those that held other bytes
    unchanged: int     # files already there with the very bytes export would write: left as they are
    replaced: int = 0  # of `written`, files that were there with other bytes (--overwrite)

    @property
    def count(self) -> int:
        """The store's images the folder now holds."""
        return self.written + self.unchanged

    def line(self, out: str | Path) -> str:
        notes = ([f"{self.unchanged} already there, the same"] if self.unchanged else []) + \
                ([f"{self.replaced} replaced"] if self.replaced else [])
        return f"wrote {self.written} PNG files under {out}" + (f" ({'; '.join(notes)})" if notes else "")


def first_rows(store: Store, paths: Sequence[str], *, pictures: bool, last: bool = False
               ) -> Iterator[tuple[str, dict]]:
    """(key, row) of every stored key of the images/ and frames/ files at `paths`, from the first file by name that
    holds it (as the readers take it); the `png` column only with `pictures`. A file without a column a name needs
    (`file_columns`), or a row without a value a name or the file needs, is a damaged or foreign file: StoreError
    naming it. Reads one file at a time (a local one a row group at a time); `last`: the command's last read of
    each file, whose kept copy is let go once read (`Store.let_go`)."""
    exported: set[str] = set()   # a key repeated in a later file (one copied in) is the readers' first file's
    needed = [c for c in COLUMNS if pictures or c != "png"]
    for path in paths:
        try:
            for batch in file_batches(store, path, pictures):
                for row in batch.to_pylist():
                    key = str(row.get("key"))
                    if key in exported:
                        continue
                    exported.add(key)
                    row = {**MISSING, **{name: value for name, value in row.items() if value is not None}}
                    absent = [c for c in needed if c not in row
                              and (c != "target_name" or row.get("target", -1) >= 0)]   # a class needs a name
                    if absent:
                        raise StoreError(unreadable(store.location_of(path), ValueError(
                            f"the row of key {key!r} has no {', '.join(absent)}")))
                    yield key, row
        except (pa.ArrowException, OSError) as error:
            if isinstance(error, OSError) and not isinstance(error, pa.ArrowException) and error.filename:
                raise   # a local file the system would not let us read: the CLI names it
            raise StoreError(unreadable(store.location_of(path), error)) from None
        if last:
            store.let_go(path)


def file_batches(store: Store, path: str, pictures: bool) -> Iterator[pa.RecordBatch]:
    """The columns export reads of one images/ or frames/ file (`file_columns`, checked against the file's schema),
    a few rows at a time. With the pictures, a local file is read a row group at a time and an object fetched whole
    (`Store.parquet_file`); without, only the small columns are read (`Store.read_chosen`: on S3 a large object by
    ranges, not the PNGs)."""
    def columns(schema: pa.Schema) -> list[str]:
        return file_columns(store.location_of(path), schema.names, pictures)
    if not pictures:
        yield from store.read_chosen(path, columns).to_batches(max_chunksize=256)
        return
    with store.parquet_file(path) as parquet:
        yield from parquet.iter_batches(columns=columns(parquet.schema_arrow), batch_size=256)


def same_bytes(path: Path, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data` (its size asked first: most differing files differ there)."""
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def refuse_writing_into(store: Store, out: Path, targets: Iterable[Path]) -> None:
    """StoreError when a file of `targets` (resolved paths under `out`) lies in the local store itself: `out` holds
    a store named after a job folder (`--out runs` of the store `runs/octave`)."""
    if store.is_object_store:
        return
    root = Path(store.root).resolve()
    inside_store = next((target for target in targets if target.is_relative_to(root)), None)
    if inside_store is not None:
        raise StoreError(f"--out {out} would put PNG files into the store {store.uri} (as "
                         f"{inside_store.relative_to(out.resolve()).as_posix()}): export into a folder of its own")


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` by way of a hidden temporary file beside it, renamed into place once whole: an export
    stopped halfway (Ctrl-C, a full disk) leaves no cut-off PNG under a PNG's name, which the next export would
    take for a file of other contents and refuse."""
    temporary = path.with_name(f".{uuid.uuid4().hex}.part")
    try:
        with open(temporary, "xb") as file:   # created as write_bytes creates a file (permissions by the umask)
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def in_the_way(root: Path, targets: Iterable[Path]) -> list[str]:
    """What under `root` stops a file of `targets` (resolved paths inside it) being written, as paths relative to
    `root`: a folder where the file goes, or a file where one of its folders goes (found before writing, not when
    the export is halfway through; --overwrite replaces files, never a folder or a file in a folder's place)."""
    base = root.resolve()
    folders = {folder for target in targets for folder in [target.parent, *target.parent.parents]
               if folder != base and folder.is_relative_to(base)}
    not_folders = sorted(folder for folder in folders if folder.exists() and not folder.is_dir())
    folders_in_place = sorted(target for target in targets if target.is_dir())
    return [path.relative_to(base).as_posix() for path in not_folders + folders_in_place]


def export_pngs(store: Store | str, out: str | Path, *, overwrite: bool = False) -> Exported:
    """Write every stored image (and interpolation frame) under the local folder `out` (a URI is refused), each key
    once (from the first file by name that holds it, as the readers take it).

    A file already under `out` with the bytes export would write is left as it is, so exporting a store again
    writes nothing; one with other bytes (the user's, another store's export) is refused, StoreError naming the
    first few, before anything is written, unless `overwrite`; so is a file or folder in the way of one
    (`in_the_way`), even with `overwrite`. The names are read first (not the pictures); only when some of the files
    are there already are the pictures read twice, once to compare them.

    On an object store each file is fetched once: an object the names' pass fetched whole (every one on GCS, one
    under RANGED_READ_BYTES on S3) is kept for the pictures' pass (`Store.keeping_objects`), which lets it go once
    its PNGs are written, so that the kept copies and the PNGs written together take about the store's size."""
    if "://" in str(out):   # pathlib would make `s3://b/x` the local folders s3:/b/x
        raise StoreError(f"--out {out} is a URI: export writes into a local folder (give its path; copy the folder "
                         f"to an object store afterwards)")
    store = open_store(store)
    out = Path(out).expanduser()   # `--out=~/pngs` comes unexpanded from the shell, as the store's path may
    if not store.is_object_store and out.resolve().is_relative_to(Path(store.root).resolve()):
        raise StoreError(f"--out {out} is inside the store: export into a folder of its own (PNGs among the store's "
                         f"folders would be taken for part of it)")
    require_images(store)
    with store.keeping_objects() as store:
        return export_files(store, [path for directory in (IMAGES, FRAMES) for path in store.files(directory)], out,
                            overwrite)


def export_files(store: Store, paths: Sequence[str], out: Path, overwrite: bool) -> Exported:
    """`export_pngs` of the images/ and frames/ files at `paths`, in name order."""
    names = UniqueNames()
    targets = {key: inside(out, names.claim(png_name(row), key, png_name(row, key)))
               for key, row in first_rows(store, paths, pictures=False)}
    refuse_writing_into(store, out, targets.values())
    blocked = in_the_way(out, targets.values())
    if blocked:
        raise StoreError(f"--out {out} holds {counted(len(blocked), 'file or folder', 'files or folders')} where "
                         f"export would write a PNG file or its folder ({listing(blocked)}): move them away, or "
                         f"export into another folder")
    there = {key for key, target in targets.items() if target.exists()}
    unchanged: set[str] = set()
    differing: list[str] = []
    if there:
        for key, row in first_rows(store, paths, pictures=True):
            if key in there and same_bytes(targets[key], row["png"]):
                unchanged.add(key)
            elif key in there:
                differing.append(targets[key].relative_to(out.resolve()).as_posix())
    if differing and not overwrite:
        raise StoreError(f"--out {out} already holds {counted(len(differing), 'file')} that export would write, "
                         f"with other contents ({listing(differing)}): give --overwrite to replace them, or export "
                         f"into another folder (files with the same contents are left as they are)")
    if len(unchanged) == len(targets):
        return Exported(0, len(unchanged))
    written = 0
    for key, row in first_rows(store, paths, pictures=True, last=True):
        if key not in unchanged:
            targets[key].parent.mkdir(parents=True, exist_ok=True)
            write_whole(targets[key], row["png"])
            written += 1
    return Exported(written, len(unchanged), len(differing))
