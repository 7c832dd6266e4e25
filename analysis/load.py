"""The analysis's readers of a store (`sweep.store.Store`, the one store layer): the images/ rows (only the columns a
stage needs), PNGs on demand, and one representative image per class; and where the analysis commands write
(`output_folder`, `write_outputs`: through the same layer, so that `--out` takes a local folder or a URI).

Numeric work reads `NUMERIC_COLUMNS` only: the PNG bytes, by far the largest column, are read by `iter_pngs` for
the rows a figure shows and never otherwise, from the files that hold those rows only: the store's key index
({path: keys}, from the numeric pass itself, `read_rows_and_keys`, or from the key columns, `key_index`) says which.
Every reader takes an opened `Store` (or a URI, opened once at the top); everything that can go wrong for a user
raises `sweep.store.StoreError` with a one-line message.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.outputs import finite_rows, label_probs
from sweep.lease import LEASES
from sweep.store import ANALYSIS, FAILURES, FRAMES, IMAGES, MANIFEST, QUARANTINE, SCORES, SOURCES, TEMP_DIR, \
    TRAJECTORIES, Store, StoreError, is_frame_key, no_images_yet, open_store, same_store, unreadable

# Columns of the jobs from real images, and their values in stores written before those jobs existed.
OPTIONAL_COLUMNS = {"source": "", "frame": -1, "step": -1}
OPTIONAL_TYPES = {"source": pa.string(), "frame": pa.int32(), "step": pa.int32()}   # as `images_schema` has them
# How the tables see a missing value, stored as a null (partner: no second class; source: a noise job).
NULL_AS = {"partner": -1, "source": ""}
# Every column numeric analysis reads from images/ (never `png`).
NUMERIC_COLUMNS = ("key", "job", "variant", "target", "partner", "seed", "label", "margin_label",
                   "target_logit", "target_prob", "logits", "source", "frame")
# What a file must hold to count as a classweep images file: what the analysis reads, PNGs included.
REQUIRED_COLUMNS = (*(c for c in NUMERIC_COLUMNS if c not in OPTIONAL_COLUMNS), "png")
# Sort order of rows: stable across runs and independent of which worker wrote which file.
ROW_ORDER = ["job", "variant", "target", "partner", "seed", "source", "frame"]
LABEL_PROB = "label_prob"   # a column `read_rows` computes: each row's probability of its label (`label_probs`)
OUTPUTS_FINITE = "outputs_finite"   # one more: whether each row's outputs are all finite (`finite_rows`)
DERIVED = (LABEL_PROB, OUTPUTS_FINITE)   # the columns `read_rows` computes from each file's outputs
FIGURES = "figures"   # the default output folder of `sweep figures` and `sweep directions`, inside the store


@dataclass(frozen=True)
class Rows:
    """Images of a store, one row each: scalar columns in `meta`, the model outputs in `logits` (same order)."""
    meta: pd.DataFrame            # NUMERIC_COLUMNS without logits, index 0..N-1
    logits: np.ndarray            # N x n_classes float32

    def __len__(self) -> int:
        return len(self.meta)

    def select(self, mask: np.ndarray | pd.Series) -> "Rows":
        mask = np.asarray(mask, dtype=bool)
        return Rows(self.meta[mask].reset_index(drop=True), self.logits[mask])

    def job(self, job: str) -> "Rows":
        return self.select(self.meta["job"].to_numpy() == job)


def _check_schema(schema: pa.Schema, name: str, n_classes: int) -> None:
    """Refuse a file (`name`: where it is, `Store.location_of`, as every reader's refusal names it) that is not a
    classweep images file, or whose output vectors do not match the manifest."""
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise StoreError(f"{name} is not a classweep images file (missing columns: {', '.join(missing)})")
    logits = schema.field("logits").type
    if not (pa.types.is_fixed_size_list(logits) or pa.types.is_list(logits) or pa.types.is_large_list(logits)):
        raise StoreError(f"{name}: column logits is {logits}, not a list of floats")
    if pa.types.is_fixed_size_list(logits) and logits.list_size != n_classes:
        raise StoreError(f"{name}: logits hold {logits.list_size} values per image but the manifest "
                         f"says {n_classes} classes")


def _open_parquet(store: Store, path: str) -> pq.ParquetFile:
    name = store.location_of(path)
    try:
        pf = store.parquet_file(path)   # an object: fetched whole, with one bounded GET
    except (pa.ArrowInvalid, OSError) as err:
        raise StoreError(unreadable(name, err)) from None   # the one refusal, with the way on
    _check_schema(pf.schema_arrow, name, store.n_classes)
    return pf


def _logits_array(column: pa.ChunkedArray, n_classes: int, name: str) -> np.ndarray:
    flat = column.combine_chunks()
    if flat.null_count:
        raise StoreError(f"{name}: some rows have no logits")
    values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if values.size != len(flat) * n_classes:
        raise StoreError(f"{name}: logits do not hold {n_classes} values per image")
    return values.reshape(len(flat), n_classes)


def read_rows(store: Store | str, columns: Sequence[str] = NUMERIC_COLUMNS, frames: bool = False,
              logits: bool = True) -> Rows:
    """Every image row of the store, reading only `columns` (key, frame and logits always; never png).

    Rows are de-duplicated by key (the first file in name order wins) and sorted by ROW_ORDER, so the result does
    not depend on which worker wrote what, or when. An interpolation's kept frames (frame >= 0, the `frames/`
    table, or extra rows of images/ in older stores) are left out unless `frames`, so that every other row is one
    job's final image. Files of older stores lack the image jobs' columns: they read as OPTIONAL_COLUMNS says (no
    source, final images).

    `logits=False` keeps no output vectors (`Rows.logits` is N x 0): a reader of every frame needs a few numbers
    per row, not 4 KB of outputs. Among `columns`, LABEL_PROB is each final image's probability of its label,
    computed from each images/ file's outputs as the file is read; an interpolation frame's is nan (no figure shows
    it), so that with `logits=False` no frames/ file's outputs are read (1 GB of them at 10^5 images). Likewise
    OUTPUTS_FINITE says whether a row's outputs are all finite (`sweep analyze` leaves the others out; the report
    captions them so): true for a frame of a frames/ file whose outputs were not read. Each file's
    rows are kept as Arrow columns and converted to pandas once, for the whole store. On S3 the files are read
    READ_THREADS at once, a large one by ranges (`Store.read_chosen`).
    """
    return read_rows_and_keys(store, columns, frames, logits)[0]


def read_rows_and_keys(store: Store | str, columns: Sequence[str] = NUMERIC_COLUMNS, frames: bool = False,
                       logits: bool = True) -> tuple[Rows, dict[str, list[str]]]:
    """`read_rows`, and the key index of the files it read ({path: keys}, as `Store.keys_by_file` gives them:
    images/, then frames/ with `frames`), from the same reads: a reader of PNGs given it (`iter_image_rows`) opens
    only the files that hold the keys it wants, without reading every file's keys again."""
    (rows, index), = read_rows_for(store, [RowsWanted(tuple(columns), frames, logits)])
    return rows, index


@dataclass(frozen=True)
class RowsWanted:
    """What one reader wants of a store's image rows: `read_rows`' arguments, and only the rows of `jobs`."""
    columns: tuple[str, ...] = NUMERIC_COLUMNS
    frames: bool = False                    # with the interpolations' kept frames (frames/ files too)
    logits: bool = True                     # with the output vectors (else `Rows.logits` is N x 0)
    jobs: tuple[str, ...] | None = None     # only these jobs' rows (None: every job's)

    @property
    def derived(self) -> list[str]:
        """The DERIVED columns wanted, computed from each file's outputs as it is read."""
        return [c for c in DERIVED if c in self.columns]

    @property
    def kept(self) -> list[str]:
        """The stored columns the rows keep (key and frame always; logits and DERIVED apart)."""
        return [c for c in dict.fromkeys(["key", *self.columns, "frame"]) if c not in ("logits", *DERIVED)]

    @property
    def stored(self) -> list[str]:
        """The stored columns read for them (a label probability needs the label)."""
        return [*self.kept, *(["label"] if LABEL_PROB in self.derived and "label" not in self.kept else [])]

    def reads(self, frames_file: bool) -> bool:
        return self.frames or not frames_file

    def reads_outputs(self, frames_file: bool) -> bool:
        """A frames/ file holds frames only: its outputs are read when the rows keep them, never for DERIVED."""
        return self.logits or (bool(self.derived) and not frames_file)

    def part(self, table: pa.Table, values: np.ndarray, frames_file: bool) -> tuple[pa.Table, np.ndarray]:
        """One file's rows as this reader keeps them, from its read (`values`: N x C, or N x 0 unless
        `reads_outputs`): its columns, DERIVED computed, its outputs (a new N x 0 array without them: a slice of
        `values` would keep every file's outputs until `gathered`)."""
        if LABEL_PROB in self.derived:
            table = table.append_column(LABEL_PROB, final_label_probs(table, None if frames_file else values))
        if OUTPUTS_FINITE in self.derived:
            # a file whose outputs were not read (N x 0 values): true, nothing known to be wrong
            table = table.append_column(OUTPUTS_FINITE, pa.array(finite_rows(values), pa.bool_()))
        return (table.select([*self.kept, *self.derived]),
                values if self.logits else np.zeros((len(values), 0), np.float32))


def read_rows_for(store: Store | str, wants: Sequence[RowsWanted]) -> list[tuple[Rows, dict[str, list[str]]]]:
    """`read_rows_and_keys` for each of several readers (`wants`), in their order, from one pass over the files:
    each file is read once, with every column one of them wants of it, and each reader's rows and key index are
    made from that read as its own pass would have made them (`sweep figures` running the analysis: the analysis'
    final images with their outputs and the image jobs' numbers with their frames, one read of each file)."""
    if any("png" in want.columns for want in wants):
        raise ValueError("numeric reads never load PNG bytes; use iter_pngs")
    store = open_store(store)
    files = store.files(IMAGES)
    frame_files = set(store.files(FRAMES)) if files and any(want.frames for want in wants) else set()
    files += sorted(frame_files)
    if not files:
        raise no_images_yet(store)

    def read(path: str) -> list[tuple[pa.Table, np.ndarray] | None]:
        frames_file = path in frame_files
        readers = [want for want in wants if want.reads(frames_file)]
        outputs = any(want.reads_outputs(frames_file) for want in readers)
        stored = list(dict.fromkeys(c for want in readers for c in want.stored))
        table, values = _read_images_file(store, path, [*stored, *(["logits"] if outputs else [])])
        return [want.part(table, values if want.reads_outputs(frames_file) else values[:, :0], frames_file)
                if want.reads(frames_file) else None for want in wants]
    held: list[tuple[list, list, dict]] = [([], [], {}) for _ in wants]   # per reader: tables, outputs, index
    for path, parts in zip(files, store.each_file(read, files)):
        for (metas, outputs, index), part in zip(held, parts):
            if part is not None:
                metas.append(part[0])
                outputs.append(part[1])
                index[path] = part[0].column("key").to_pylist()
    read_rows = []
    for want in wants:
        metas, outputs, index = held.pop(0)   # let go here: `_assembled` empties its lists as it goes
        read_rows.append((_assembled(store, metas, outputs, want), index))
    return read_rows


def _assembled(store: Store, metas: list[pa.Table], outputs: list[np.ndarray], want: RowsWanted) -> Rows:
    """One reader's rows from its files' parts, in file order (`metas`, `outputs`: emptied): de-duplicated by key
    (the first wins), final images only unless `want.frames`, of `want.jobs`, sorted by ROW_ORDER."""
    meta = _with_defaults(pa.concat_tables(metas, promote_options="permissive")).to_pandas()
    metas.clear()
    if meta.empty:
        raise StoreError(f"store {store.uri} is empty: its images files hold no rows")
    keep = ~meta["key"].duplicated(keep="first").to_numpy()
    if not want.frames:
        keep &= meta["frame"].to_numpy() < 0
    meta = meta[keep].reset_index(drop=True)
    sort_by = [c for c in ROW_ORDER if c in meta.columns] or ["key"]
    order = meta.sort_values(sort_by, kind="mergesort").index.to_numpy()
    rows = Rows(meta.iloc[order].reset_index(drop=True), gathered(outputs, np.flatnonzero(keep)[order]))
    return rows if want.jobs is None else rows.select(rows.meta["job"].isin(want.jobs).to_numpy())


def final_label_probs(table: pa.Table, values: np.ndarray | None) -> pa.Array:
    """LABEL_PROB of one file's rows (`table`: its label and frame columns; `values`: its N x C outputs, None for a
    file of frames only): each final image's probability of its label, nan for an interpolation frame."""
    if values is None:
        return pa.array(np.full(table.num_rows, np.nan), pa.float64())
    frame = table.column("frame").to_numpy(zero_copy_only=False)
    return pa.array(np.where(frame >= 0, np.nan, label_probs(values, table.column("label").to_numpy())),
                    pa.float64())


def gathered(parts: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """np.concatenate(parts)[rows] (`parts`: each file's N_f x C outputs; `rows`: indices into them all), without
    the concatenation: each part's rows are put in place and the part dropped, so the outputs are held once and a
    half at most, not three times (10^5 images: 400 MB each). Empties `parts`."""
    width = parts[0].shape[1] if parts else 0
    out = np.empty((len(rows), width), parts[0].dtype if parts else np.float32)   # len(rows) x C
    sizes = np.array([len(part) for part in parts], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    which = np.searchsorted(starts + sizes, rows, side="right")                    # the part of each wanted row
    by_part = np.argsort(which, kind="stable")                                     # positions in `out`, by part
    bounds = np.searchsorted(which[by_part], np.arange(len(parts) + 1))
    for index in range(len(parts)):
        part, parts[index] = parts[index], None   # dropped once its rows are copied out
        placed = by_part[bounds[index]:bounds[index + 1]]
        out[placed] = part[rows[placed] - starts[index]]
        del part
    parts.clear()
    return out


def _read_images_file(store: Store, path: str, columns: Sequence[str]) -> tuple[pa.Table, np.ndarray]:
    """One images/ (or frames/) file's `columns`: all but logits as an Arrow table (an older file's missing
    OPTIONAL_COLUMNS at their defaults), and the outputs as N x n_classes float32 (N x 0 when logits is not
    among the columns). On S3 a large file's chosen columns only are fetched, not its PNGs (`Store.read_chosen`:
    one under RANGED_READ_BYTES comes whole, in one GET)."""
    name = store.location_of(path)

    def choose(schema: pa.Schema) -> list[str]:
        _check_schema(schema, name, store.n_classes)
        return [c for c in columns if c in schema.names or c not in OPTIONAL_COLUMNS]
    try:
        table = store.read_chosen(path, choose)
    except (pa.ArrowInvalid, OSError) as err:
        raise StoreError(unreadable(name, err)) from None   # the store's one wording, with the way on
    if "logits" in columns:
        values = _logits_array(table.column("logits"), store.n_classes, name)
        table = table.drop_columns(["logits"])
    else:
        values = np.zeros((table.num_rows, 0), np.float32)
    for column in columns:
        if column not in table.column_names and column in OPTIONAL_COLUMNS:
            table = table.append_column(column, pa.array([OPTIONAL_COLUMNS[column]] * table.num_rows,
                                                         OPTIONAL_TYPES[column]))
    return table, values


def _with_defaults(table: pa.Table) -> pa.Table:
    """The null cells of NULL_AS's columns as their values there (no partner: -1; no source: "")."""
    for column, value in NULL_AS.items():
        if column in table.column_names and table.column(column).null_count:
            filled = pc.fill_null(table.column(column), pa.scalar(value, table.schema.field(column).type))
            table = table.set_column(table.column_names.index(column), column, filled)
    return table


def representatives(rows: Rows) -> Rows:
    """One image per class for `rows` of one job: the lowest seed of each target (seed 0 when there is one)."""
    meta = rows.meta
    order = np.lexsort([meta["seed"].to_numpy(), meta["target"].to_numpy()])
    first = ~meta["target"].iloc[order].duplicated(keep="first").to_numpy()
    return Rows(meta.iloc[order[first]].reset_index(drop=True), rows.logits[order[first]])


def iter_pngs(store: Store | str, keys: Iterable[str], files: Mapping[str, Sequence[str]] | None = None
              ) -> Iterator[tuple[str, bytes]]:
    """PNG bytes of the images (or interpolation frames) with these keys, file by file (reads only key and png of
    the files holding them, keeps one file in memory; `files`: the key index, as `iter_image_rows` takes it)."""
    for row in iter_image_rows(store, keys, ["png"], files):
        yield row["key"], row["png"]


def iter_image_rows(store: Store | str, keys: Iterable[str], columns: Sequence[str],
                    files: Mapping[str, Sequence[str]] | None = None) -> Iterator[dict]:
    """The rows of the images (or interpolation frames) with these keys, as {key, *columns} dicts, file by file in
    name order: only the files that hold a wanted key are opened, each once (keeps one file in memory; on S3
    READ_THREADS files are fetched ahead). Each key comes once, from the first file in name order (as in
    `read_rows`); a column an older file lacks reads as OPTIONAL_COLUMNS says.

    `files`: the store's key index ({path: keys} of images/, and of frames/ for frame keys: `Store.keys_by_file`,
    `read_rows_and_keys`), when the caller has it; without it, the key columns are read first (`key_index`)."""
    store, wanted = open_store(store), list(dict.fromkeys(keys))
    if files is None:
        files = key_index(store, frames=any(is_frame_key(k) for k in wanted)) if wanted else {}
    holders = first_holders(files, wanted)
    given: set[str] = set()
    for rows in store.stream_files(lambda path: _rows_of(store, path, holders[path], columns), list(holders)):
        for row in rows:
            if row["key"] not in given:   # once, should a file hold a key twice
                given.add(row["key"])
                yield row


def key_index(store: Store, frames: bool = False) -> dict[str, list[str]]:
    """The store's key index: {path: keys} of images/ (and then of frames/), in name order (`Store.keys_by_file`)."""
    return {**store.keys_by_file(), **(store.keys_by_file(directory=FRAMES) if frames else {})}


def first_holders(files: Mapping[str, Sequence[str]], keys: Iterable[str]) -> dict[str, list[str]]:
    """{path: the keys to take from it}: each of `keys` from the first file of the key index `files` (in its order)
    that holds it, and only the files that give one, in the index's order."""
    wanted, holders = set(keys), {}
    for path, held in files.items():
        if not wanted:
            break
        mine = [key for key in held if key in wanted]
        if mine:
            holders[path] = mine
            wanted.difference_update(mine)
    return holders


def _rows_of(store: Store, path: str, keys: Sequence[str], columns: Sequence[str]) -> list[dict]:
    """The rows of `keys` in one images/ (or frames/) file, as {key, *columns} dicts in the file's order: one whole
    read of the file (one GET on an object store), its key column read again to pick the rows (the index may be
    older than the file)."""
    pf = _open_parquet(store, path)
    present = [c for c in columns if c in pf.schema_arrow.names or c not in OPTIONAL_COLUMNS]
    try:
        table = pf.read(columns=["key", *present])
    except (pa.ArrowInvalid, OSError) as err:   # damaged pictures: the file `sweep run --check-files` sets aside
        raise StoreError(unreadable(store.location_of(path), err)) from None
    table = table.filter(pc.is_in(table.column("key"), value_set=pa.array(keys, pa.string())))
    defaults = {c: OPTIONAL_COLUMNS[c] for c in columns if c not in present}
    return [{**defaults, **row} for row in table.to_pylist()]


# ---- naming several stores side by side (`sweep compare`, `sweep stability`) ------------------------------------
def distinct_labels(names: Sequence[str], stores: Sequence[Store]) -> list[str]:
    """Each store's name (its model, or its generator id), made distinct: with the store's folder name where two
    stores share a name, and with its whole location where their folders have one name too (runs/a/store and
    runs/b/store): one label, one store. Stores given twice are the caller's to refuse."""
    folders = [f"{name} ({os.path.basename(st.uri.rstrip('/'))})" for name, st in zip(names, stores)]
    return [name if names.count(name) == 1 else folder if folders.count(folder) == 1 else f"{name} ({st.uri})"
            for name, folder, st in zip(names, folders, stores)]


def refuse_repeated_stores(stores: Sequence[Store]) -> None:
    """StoreError for a store given twice, also under two spellings (a link to it, its file:// URI: `same_store`):
    its rows would be counted twice under two labels."""
    for i, st in enumerate(stores):
        earlier = next((other for other in stores[:i] if same_store(other, st)), None)
        if earlier is not None:
            spelled = "" if earlier.uri == st.uri else f" (also as {st.uri})"
            raise StoreError(f"store {earlier.uri} is given twice{spelled}: compare each store once")


# ---- where the analysis commands write -------------------------------------------------------------------------
def output_folder(out: str | None, store: Store | None = None) -> Store:
    """The folder a command writes to: `out` (a local folder or a URI, opened as a store location is), else
    {store}/figures on the store's own file system (also one no URI names, as in tests). StoreError when a file
    is there already (before anything is written)."""
    if out:
        folder = Store.open(out)
    elif store is None:
        raise ValueError("no output folder: give `out` or the store whose figures folder to use")
    else:
        folder = Store(store.location(FIGURES), store.fs, store.path(FIGURES))
    if folder.file_type() == pafs.FileType.File:
        raise StoreError(f"{folder.uri} is a file, not a folder (the output goes into a directory)")
    refuse_store_folder(folder)
    return folder


STORE_FOLDERS = (IMAGES, FRAMES, TRAJECTORIES, FAILURES, ANALYSIS, SOURCES, SCORES, QUARANTINE, LEASES,
                 TEMP_DIR)   # a store's own folders


def refuse_store_folder(folder: Store, levels: int = 8) -> None:
    """StoreError when `folder` is a store's root or lies in one of its own folders (images/, analysis/, ...; the
    nearest `levels` folders above it are looked at): the figures would lie among its tables, and readers of
    `{store}/images` would meet PNGs. A folder of its own inside a store (the default {store}/figures) is fine."""
    if folder.exists(MANIFEST):
        raise StoreError(f"--out {folder.uri} is a store's root: write into a folder of its own, such as "
                         f"{folder.location(FIGURES)}")
    uri, root, below = folder.uri.rstrip("/"), folder.root.rstrip("/"), ""
    for _ in range(levels):
        if "/" not in root.strip("/") or "/" not in uri:   # the file system's top (a bucket): no store above
            return
        (uri, _, name), root = uri.rpartition("/"), root.rpartition("/")[0]
        below = name if not below else f"{name}/{below}"
        if Store(uri, folder.fs, root).exists(MANIFEST):
            own = below.split("/")[0]
            if own in STORE_FOLDERS:
                where = "is the store's own" if below == own else "is inside the store's own"
                raise StoreError(f"--out {folder.uri} {where} {own}/ folder: write into a folder of its own, such "
                                 f"as {uri}/{FIGURES}")
            return


def write_outputs(folder: Store, files: Mapping[str, bytes]) -> list[str]:
    """Write each file under `folder` (atomically, through `Store.write_bytes`); returns their locations as the user
    would write them. Nothing is created before the first write."""
    written = []
    try:
        for name, data in files.items():
            folder.write_bytes(name, data)
            written.append(folder.location(name))
    finally:
        drop_temp_folder(folder)
    return written


def drop_temp_folder(folder: Store) -> None:
    """Remove a local folder's temporary folder of the atomic writes: an output folder is no store (os.rmdir refuses
    while it still holds a file, another writer's; an object store has none)."""
    if isinstance(folder.fs, pafs.LocalFileSystem):
        with contextlib.suppress(OSError):
            os.rmdir(folder.path(TEMP_DIR))
