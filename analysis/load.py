"""Store access for the analysis: the manifest, the images/ table (only the columns a stage needs), PNGs on demand,
and atomic writes of derived files.

A store is a local directory or an `s3://` / `gs://` URI, opened with pyarrow's filesystems; its layout is the
sweep's (README, "Store layout"). Numeric work reads `NUMERIC_COLUMNS` only: the PNG bytes, by far the largest
column, are read by `iter_pngs` for the rows a figure shows and never otherwise. Everything that can go wrong for a
user raises `StoreError` with a one-line message.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Columns of the jobs from real images, and their values in stores written before those jobs existed.
OPTIONAL_COLUMNS = {"source": "", "frame": -1, "step": -1}
# Every column numeric analysis reads from images/ (never `png`).
NUMERIC_COLUMNS = ("key", "job", "variant", "target", "partner", "seed", "label", "margin_label",
                   "target_logit", "target_prob", "logits", "source", "frame")
# What a file must hold to count as a classweep images file: what the analysis reads, PNGs included.
REQUIRED_COLUMNS = (*(c for c in NUMERIC_COLUMNS if c not in OPTIONAL_COLUMNS), "png")
# Sort order of rows: stable across runs and independent of which worker wrote which file.
ROW_ORDER = ["job", "variant", "target", "partner", "seed", "source", "frame"]


class StoreError(Exception):
    """A store that cannot be analysed; the message is one line that says why."""


@dataclass(frozen=True)
class Store:
    """An opened store: its filesystem, root path, manifest, and the images/ part files (sorted by name)."""
    uri: str                      # as the user gave it (for messages)
    fs: pafs.FileSystem
    root: str                     # path of the store inside `fs`
    manifest: dict
    files: tuple[str, ...]        # images/part-*.parquet paths inside `fs`, sorted

    @property
    def n_classes(self) -> int:
        return int(self.manifest["n_classes"])

    @functools.cached_property
    def class_names(self) -> tuple[str, ...]:
        names = self.manifest.get("class_names")
        if isinstance(names, list) and len(names) == self.n_classes:
            return tuple(str(n) for n in names)
        return tuple(f"class {i}" for i in range(self.n_classes))

    def path(self, *parts: str) -> str:
        """Path inside `fs` of a file under the store."""
        return posixpath.join(self.root, *parts)

    def fingerprint(self) -> str:
        """A short hash of the images/ file names and sizes: changes whenever the sweep adds a file."""
        infos = self.fs.get_file_info(list(self.files))
        text = "\n".join(f"{posixpath.basename(i.path)} {i.size}" for i in infos)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path for a local path (relative or absolute) or a URI such as s3://bucket/store."""
    if "://" in uri:
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
            raise StoreError(f"cannot open {uri}: {_one_line(err)}") from None
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def join_uri(uri: str, *parts: str) -> str:
    """`uri` with path parts appended, for local paths and URIs alike."""
    if "://" in uri:
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def open_store(uri: str) -> Store:
    """Open a store: check it exists, read its manifest, list its images/ part files (temporary names skipped)."""
    fs, root = resolve(uri)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        raise StoreError(f"no store at {uri}")
    manifest = _read_manifest(fs, root, uri)
    selector = pafs.FileSelector(posixpath.join(root, "images"), allow_not_found=True)
    files = sorted(info.path for info in fs.get_file_info(selector)
                   if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
                   and not info.base_name.startswith(("_", ".")))
    if not files:
        raise StoreError(f"store {uri} is empty: no images yet (run `sweep run` first)")
    return Store(uri=uri, fs=fs, root=root, manifest=manifest, files=tuple(files))


def _read_manifest(fs: pafs.FileSystem, root: str, uri: str) -> dict:
    path = posixpath.join(root, "manifest.json")
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise StoreError(f"{uri} has no manifest.json: not a classweep store")
    try:
        with fs.open_input_stream(path) as f:
            manifest = json.loads(f.read().decode("utf-8"))
        n = int(manifest["n_classes"])
        if n < 1:
            raise ValueError("n_classes < 1")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise StoreError(f"{uri}/manifest.json is not a classweep manifest ({_one_line(err)})") from None
    return manifest


def _check_schema(schema: pa.Schema, name: str, n_classes: int) -> None:
    """Refuse a file that is not a classweep images file, or whose output vectors do not match the manifest."""
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise StoreError(f"images/{name} is not a classweep images file (missing columns: {', '.join(missing)})")
    logits = schema.field("logits").type
    if not (pa.types.is_fixed_size_list(logits) or pa.types.is_list(logits) or pa.types.is_large_list(logits)):
        raise StoreError(f"images/{name}: column logits is {logits}, not a list of floats")
    if pa.types.is_fixed_size_list(logits) and logits.list_size != n_classes:
        raise StoreError(f"images/{name}: logits hold {logits.list_size} values per image but the manifest "
                         f"says {n_classes} classes")


def _open_parquet(store: Store, path: str) -> pq.ParquetFile:
    name = posixpath.basename(path)
    try:
        pf = pq.ParquetFile(store.fs.open_input_file(path))
    except (pa.ArrowInvalid, OSError) as err:
        raise StoreError(f"images/{name} is not a readable Parquet file ({_one_line(err)})") from None
    _check_schema(pf.schema_arrow, name, store.n_classes)
    return pf


def _logits_array(column: pa.ChunkedArray, n_classes: int, name: str) -> np.ndarray:
    flat = column.combine_chunks()
    if flat.null_count:
        raise StoreError(f"images/{name}: some rows have no logits")
    values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if values.size != len(flat) * n_classes:
        raise StoreError(f"images/{name}: logits do not hold {n_classes} values per image")
    return values.reshape(len(flat), n_classes)


def read_rows(store: Store, columns: Sequence[str] = NUMERIC_COLUMNS, frames: bool = False) -> Rows:
    """Every image row of the store, reading only `columns` (which must include key and logits, never png).

    Rows are de-duplicated by key (the first file in name order wins) and sorted by ROW_ORDER, so the result does
    not depend on which worker wrote what, or when. An interpolation's kept frames are extra rows (frame >= 0):
    left out unless `frames`, so that every other row is one job's final image. Files of older stores lack the
    image jobs' columns: they read as OPTIONAL_COLUMNS says (no source, final images).
    """
    if "png" in columns:
        raise ValueError("numeric reads never load PNG bytes; use iter_pngs")
    columns = list(dict.fromkeys(["key", *columns, "frame", "logits"]))
    metas, logits = [], []
    for path in store.files:
        name = posixpath.basename(path)
        try:
            parquet = _open_parquet(store, path)
            present = set(parquet.schema_arrow.names)
            table = parquet.read(columns=[c for c in columns if c in present or c not in OPTIONAL_COLUMNS])
        except (pa.ArrowInvalid, OSError) as err:
            raise StoreError(f"images/{name} cannot be read ({_one_line(err)})") from None
        logits.append(_logits_array(table.column("logits"), store.n_classes, name))
        meta = table.drop_columns(["logits"]).to_pandas()
        for column in columns:
            if column not in meta.columns and column in OPTIONAL_COLUMNS:
                meta[column] = OPTIONAL_COLUMNS[column]
        metas.append(meta[[c for c in columns if c != "logits"]])
    meta = pd.concat(metas, ignore_index=True)
    values = np.concatenate(logits) if logits else np.zeros((0, store.n_classes), np.float32)
    if meta.empty:
        raise StoreError(f"store {store.uri} is empty: its images files hold no rows")
    keep = ~meta["key"].duplicated(keep="first").to_numpy()
    if not frames:
        keep &= meta["frame"].to_numpy() < 0
    meta, values = meta[keep], values[keep]
    meta = meta.reset_index(drop=True)
    sort_by = [c for c in ROW_ORDER if c in meta.columns] or ["key"]
    order = meta.sort_values(sort_by, kind="mergesort").index.to_numpy()
    return Rows(meta.iloc[order].reset_index(drop=True), np.ascontiguousarray(values[order]))


def require_job(rows: Rows, job: str, store_uri: str, why: str = "") -> Rows:
    """The rows of `job`, or StoreError naming the jobs the store does hold."""
    selected = rows.job(job)
    if len(selected) == 0:
        present = ", ".join(sorted(set(rows.meta["job"]))) or "none"
        raise StoreError(f"store {store_uri} has no {job} images{why} (jobs present: {present})")
    return selected


def representatives(rows: Rows) -> Rows:
    """One image per class for `rows` of one job: the lowest seed of each target (seed 0 when there is one)."""
    meta = rows.meta
    order = np.lexsort([meta["seed"].to_numpy(), meta["target"].to_numpy()])
    first = ~meta["target"].iloc[order].duplicated(keep="first").to_numpy()
    return Rows(meta.iloc[order[first]].reset_index(drop=True), rows.logits[order[first]])


def iter_pngs(store: Store, keys: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """PNG bytes of the images with these keys, file by file (reads only key and png, keeps one file in memory)."""
    wanted = set(keys)
    for path in store.files:
        if not wanted:
            return
        pf = _open_parquet(store, path)
        key_column = pf.read(columns=["key"]).column("key").to_pylist()
        rows = [i for i, k in enumerate(key_column) if k in wanted]
        if not rows:
            continue
        try:
            table = pf.read(columns=["key", "png"]).take(rows)
        except (pa.ArrowInvalid, OSError) as err:
            raise StoreError(f"images/{posixpath.basename(path)}: the png column cannot be read "
                             f"({_one_line(err)})") from None
        for key, png in zip(table.column("key").to_pylist(), table.column("png").to_pylist()):
            if key in wanted:
                wanted.discard(key)
                yield key, png


# --- derived files: written atomically, so a reader never sees half a table --------------------------------------

def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write `data` to `path`: a temporary name then a rename on local disks; one PUT on object stores."""
    parent = posixpath.dirname(path)
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = posixpath.join(parent, f"_tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    else:
        with fs.open_output_stream(path) as f:
            f.write(data)


def write_frame(fs: pafs.FileSystem, path: str, frame: pd.DataFrame) -> None:
    """A DataFrame as one Parquet file, written atomically."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    write_bytes(fs, path, sink.getvalue().to_pybytes())


def read_frame(fs: pafs.FileSystem, path: str) -> pd.DataFrame | None:
    """A Parquet table as a DataFrame, or None when the file does not exist."""
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_file(path) as f:
        return pq.read_table(f).to_pandas()


def read_text(fs: pafs.FileSystem, path: str) -> str | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def delete_if_exists(fs: pafs.FileSystem, path: str) -> None:
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
