"""The Parquet store: a directory or an `s3://` / `gs://` URI holding a sweep's manifest, images and failures.

```
{store}/manifest.json          what the store holds (model, weights, schedule, options, package version)
{store}/images/part-*.parquet  one file per engine batch: one row per work item, its final image (`images_schema`)
{store}/frames/part-*.parquet  an interpolation's kept frames, one row each (same schema, key `{item key}#frame{k}`),
                               in a file named like its batch's images file and written before it: an item's row in
                               images/ implies its frames are stored
{store}/trajectories/part-*.parquet  with `sweep run --trajectory`: one row per image and recorded step
                               (`trajectories_schema`), named like the batch's images file, written before it
{store}/sources/NAME.png       the real images the image jobs start from, written once by the driver (workers on
                               any node read them from here; the manifest keeps a hash of each)
{store}/failures/*.parquet     one row per failed attempt (FAILURE_SCHEMA)
{store}/analysis/              tables written by `sweep analyze`
{store}/.tmp/                  files being written, renamed into place when whole (`cleanup_temp` clears old ones)
{store}/quarantine/            unreadable files `sweep run` moved aside (their items are run again)
{store}/lease.json             the running driver's lease (`sweep.lease`)
{store}/leases/RUN.json        on an object store, the lease as one claim object per driver (`sweep.lease`)
```
A missing value is a null: `partner`, `partner_name` and `partner_logit` for a job without a second class, `source`
for a job from noise.
Every file is written whole and atomically: on a file system to `{store}/.tmp/` and then renamed into place (a crash
leaves no half file where any reader looks, `cleanup_temp` removes it), on an object store as a single PUT of the
complete bytes (the object appears only when the upload completes). A batch's file name is derived from the set of
keys it ran (`Batch.name`), so running the same batch again overwrites the same file: an actor that dies after
writing but before reporting cannot make an item appear twice.

Object stores (`s3://BUCKET/PATH`, `gs://BUCKET/PATH`) take their settings from the standard places, never from
the URI: credentials from the SDKs' own chains (environment, config files, instance metadata), an S3-compatible
endpoint from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, the region from `AWS_REGION` / `AWS_DEFAULT_REGION` (else
the bucket's own, asked once), a GCS emulator from `CLOUD_STORAGE_EMULATOR_ENDPOINT` / `STORAGE_EMULATOR_HOST`.
Every call is bounded (`ObjectStoreLimits`: the SDKs' own timeouts and retries, and `call_seconds` over each call
as a whole), and a failure becomes one `StoreError` line naming the store and what is wrong (unreachable or silent
endpoint, missing bucket, missing or refused credentials), with no secret in it. A Parquet file that a reader wants
whole or in parts (`parquet_file`) is fetched with one GET and read from memory; a reader of the numbers beside
the PNGs reads a large file on S3 by ranges instead (`read_chosen`); a pass over a folder's files reads
READ_THREADS of them at once on S3 (`each_file`, and `stream_files` for results read one at a time). A command that
reads a file again (its numbers, then its pictures) keeps the objects it fetched whole (`Store.keeping_objects`).
"""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.catalog import JobSpec   # the work item, whose `key` names it here (the table of jobs is light: no torch)
from jobs.text import first_line, utf8_prefix

FORMAT = 1
T = TypeVar("T")
IMAGES, FAILURES, ANALYSIS, SOURCES = "images", "failures", "analysis", "sources"
FRAMES = "frames"                     # interpolation frames: their own table, so that images/ is one row per item
TRAJECTORIES = "trajectories"        # recorded generation steps (`sweep run --trajectory`), their own table
SCORES = "scores"                    # `sweep score`: one folder per scoring model (written by sweep.score)
FRAME_SUFFIX = "#frame"               # an interpolation frame's key: f"{item key}#frame{k}"
FRAME_KEY = re.compile(re.escape(FRAME_SUFFIX) + r"\d+$")
MANIFEST = "manifest.json"
QUARANTINE = "quarantine"             # unreadable files moved aside by `sweep run` (never read again)
ORPHANED = "no images/ file of its batch: a run stopped before writing it"   # a frames/ or trajectories/ file
                                      #   `quarantine_unreadable` sets aside (its items are stored or run again)
TEMP_DIR = ".tmp"                     # temporaries, beside the tables: no reader of images/ ever lists them
TEMP_GRACE = 600.0                    # seconds a temporary is left alone, as another command may be writing it
TEMP_PREFIX = "_"                     # pyarrow's dataset reader skips names starting with "_" or "."
TEMP_NAME_BYTES = 200                 # of a file's name kept in its temporary's (+ 9 for its random tail)
MAX_NAME_BYTES = 255                  # one file name, in UTF-8 bytes, on ext4, APFS, XFS (and NTFS's 255 UTF-16 units)
# What a file written on one node and missing on another means of a local store (the driver's check of its
# workers' first batches, a worker's read of a file the driver listed).
UNSHARED_STORE = "a local --store must be a path every node shares (NFS, a cluster file system), or use s3:// or gs://"
OBJECT_STORES = ("s3", "gcs")         # pyarrow file system type names without an atomic rename
READ_THREADS = 8                      # files read at once from S3, where a read mostly waits on the network
SOURCE_PNG_LEVEL = 1                  # zlib level of sources/*.png: a 1000 x 750 photograph in 0.05 s, not 0.13 s
                                      #   at Pillow's 6, 7% larger (written once; the manifest hashes the pixels)
# S3: a file this large or larger is read by ranges when a reader wants its small columns only (`read_chosen`): a
# smaller one costs less time whole, in one GET, than in the two or three requests of ranged reads (the footer's
# alone reads the last 64 KB).
RANGED_READ_BYTES = 1 << 20
KEPT_SHARE = 0.5   # the share of the temporary folder's free space that a command's kept objects may take at most,
KEPT_MAX_BYTES = 8 << 30   # and 8 GiB at most whatever the free space (a researcher's disk is not a cache)
# Manifest fields that must match for a run to write into an existing store (package_version and created may differ).
COMPARED_FIELDS = ("format", "model", "weights", "schedule_id", "n_classes")
# Fields every manifest has (a hand-edited one without them is refused in one line, not deep in a command).
MANIFEST_FIELDS = ("format", "model", "weights", "schedule_id", "n_classes", "options")


class StoreError(ValueError):
    """A store that cannot be used as asked; the message is one line meant for the user."""


class ManifestMismatch(StoreError):
    """The store was written with a different configuration than this run's: `differences` as
    `manifest_differences` words them."""

    def __init__(self, uri: str, differences: list[str]) -> None:
        self.uri, self.differences = uri, differences
        super().__init__(f"store {uri} holds a different sweep: {'; '.join(differences)} (use another --store, or the "
                         f"store's own settings)")

    def __reduce__(self):   # pickled (a Ray task's error) with the arguments it was made from, not its message
        return type(self), (self.uri, self.differences)


@dataclass(frozen=True)
class ObjectStoreLimits:
    """Bounds on every object-store call: a wrong endpoint, a missing credential or a dead network fails in
    seconds with one line instead of hanging (google-cloud-cpp alone retries for 15 minutes)."""
    connect_timeout: float = 5.0    # seconds to open a connection (S3)
    request_timeout: float = 20.0   # seconds an S3 request may wait for data: a stalled PUT fails, a slow one not
    retries: int = 3                # attempts of a failed S3 request (the AWS standard strategy's own default)
    retry_seconds: float = 20.0     # seconds GCS may spend retrying one call (not a stalled attempt: see below)
    # Seconds one call (a read, a listing, an upload) may take in all, on a watchdog (`within`): google-cloud-cpp
    # gives a stalled transfer 2 minutes per attempt whatever the retry limit, and pyarrow cannot set that. About
    # retries x request_timeout, so that a stalled S3 call also ends by itself when the watchdog gives up on it:
    # pyarrow waits for S3 calls still running before a process exits, and before it makes another S3 client.
    call_seconds: float = 60.0


LIMITS = ObjectStoreLimits()
S3_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")                  # the AWS SDKs' own names
GCS_ENDPOINT_VARIABLES = ("CLOUD_STORAGE_EMULATOR_ENDPOINT", "STORAGE_EMULATOR_HOST")   # google-cloud-cpp, Python
SECRET_VARIABLE = re.compile(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY|CREDENTIAL")          # values never shown


# The store settings a driver hands to the workers of a cluster it joins (never a credential: each node takes its
# own from the standard chains, and a runtime_env is stored in the cluster's job table).
STORE_SETTING_VARIABLES = (*S3_ENDPOINT_VARIABLES, "AWS_REGION", "AWS_DEFAULT_REGION", *GCS_ENDPOINT_VARIABLES)


def store_settings(environ: dict | None = None) -> dict[str, str]:
    """The store settings set in `environ` (default: this process's environment), for the workers' environment."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in STORE_SETTING_VARIABLES
            if environ.get(name) and not SECRET_VARIABLE.search(name)}


def first_variable(names: Sequence[str]) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def open_object_store(uri: str, limits: ObjectStoreLimits | None = None) -> tuple[pafs.FileSystem, str]:
    """(file system, root) of an `s3://` or `gs://` store, its settings from the environment (module docstring)."""
    limits = limits or LIMITS
    parts = urllib.parse.urlsplit(uri)
    if "@" in parts.netloc:
        raise StoreError(f"{redacted_uri(uri)}: credentials do not belong in the store URI (it is printed and handed "
                         f"to every worker); use the environment or the SDK's config files")
    if parts.query or parts.fragment:
        raise StoreError(f"{uri}: a store URI takes no ?options; set the endpoint in the environment "
                         f"({' or '.join(S3_ENDPOINT_VARIABLES if parts.scheme == 's3' else GCS_ENDPOINT_VARIABLES)})")
    bucket = parts.netloc
    if not bucket:
        raise StoreError(f"{uri}: no bucket in the store URI ({parts.scheme}://BUCKET/PATH)")
    root = f"{bucket}{parts.path}".rstrip("/")
    if parts.scheme == "s3":
        options = {"connect_timeout": limits.connect_timeout, "request_timeout": limits.request_timeout,
                   "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=limits.retries)}
        endpoint = first_variable(S3_ENDPOINT_VARIABLES)
        region = first_variable(("AWS_REGION", "AWS_DEFAULT_REGION"))
        if endpoint:
            options["endpoint_override"] = endpoint   # pyarrow's constructor reads no endpoint variable itself
        if not region and not endpoint:   # what pyarrow's from_uri does: AWS knows where a bucket is
            region = within(limits.call_seconds, pafs.resolve_s3_region, bucket)
        return pafs.S3FileSystem(region=region, **options), root
    options = {"retry_time_limit": dt.timedelta(seconds=limits.retry_seconds)}
    emulator = first_variable(GCS_ENDPOINT_VARIABLES)
    if emulator:   # an emulator wants no credentials (the Python client's rule for STORAGE_EMULATOR_HOST too)
        scheme, _, host = emulator.rpartition("://")
        options.update(endpoint_override=host.rstrip("/"), scheme=scheme or "http", anonymous=True)
    return pafs.GcsFileSystem(**options), root


def within(seconds: float, call: Callable[..., T], *args, **kwargs) -> T:
    """`call(*args, **kwargs)`, or TimeoutError once it has run `seconds`. It runs on a daemon thread: pyarrow
    cannot cancel a request, so a stalled one is left to end on its own while the caller goes on (an object
    store writes an object whole or not at all, so an upload that ends late leaves no partial object). `call`
    must not hold the GIL while it waits for the network (pyarrow's file system calls and stream reads do not)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as error:   # handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=run, name="classweep-store-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer in {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def redacted(text: str) -> str:
    """`text` with the value of every secret-looking environment variable replaced by `***`."""
    for name, value in os.environ.items():
        if SECRET_VARIABLE.search(name) and len(value) >= 6:
            text = text.replace(value, "***")
    return text


def redacted_uri(uri: str) -> str:
    """A URI with any user:password@ part hidden."""
    parts = urllib.parse.urlsplit(uri)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else uri


def object_store_problem(uri: str, error: BaseException) -> str:
    """One line: which store, what is wrong (and what to set), from an error of pyarrow's S3 or GCS file system."""
    text = str(error)
    scheme, bucket = urllib.parse.urlsplit(uri).scheme, urllib.parse.urlsplit(uri).netloc
    endpoint = first_variable(S3_ENDPOINT_VARIABLES if scheme == "s3" else GCS_ENDPOINT_VARIABLES)
    where = endpoint or ("AWS S3" if scheme == "s3" else "Google Cloud Storage")
    detail = re.search(r"Details: (.*)", text) or re.search(r"CURL error \[\d+\]=([^ {}]*[^{}]*?)( error_info|$)", text)
    if isinstance(error, TimeoutError):   # `within` gave up on a call (a silent endpoint, a stalled transfer)
        why = (f"{first_line(error)} from {where}" +
               (f"; check {' / '.join(S3_ENDPOINT_VARIABLES)} and the network" if scheme == "s3" else
                f"; check {' / '.join(GCS_ENDPOINT_VARIABLES)} and the network"))
    elif "OAuth2 access token" in text or "Could not load default credentials" in text:
        why = ("no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a key file, run `gcloud auth "
               "application-default login`, or run on GCE/GKE with a service account")
    elif "NO_SUCH_BUCKET" in text or "bucket does not exist" in text.lower() or "NoSuchBucket" in text:
        why = f"bucket {bucket} does not exist at {where} (create it first)"
    elif "NETWORK_CONNECTION" in text or "curlCode" in text or "CURL error" in text or "UNAVAILABLE" in text:
        why = (f"cannot reach {where}" + (f" ({detail.group(1).strip()})" if detail else "") +
               (f"; check {' / '.join(S3_ENDPOINT_VARIABLES)} and the network" if scheme == "s3" else
                f"; check {' / '.join(GCS_ENDPOINT_VARIABLES)}, the credentials and the network"))
    elif re.search(r"PermanentRedirect|AuthorizationHeaderMalformed|region", text, re.IGNORECASE):
        why = (f"the request went to the wrong region or endpoint for bucket {bucket}: set AWS_REGION to the "
               f"bucket's region (or {S3_ENDPOINT_VARIABLES[1]} to the right endpoint)")
    elif re.search(r"ACCESS_DENIED|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|Forbidden|"
                   r"PERMISSION_DENIED|UNAUTHENTICATED|HTTP status code: 40[13]", text):
        why = (f"access refused at {where}: check the credentials "
               + ("(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, the instance profile)"
                  if scheme == "s3" else "(GOOGLE_APPLICATION_CREDENTIALS or the service account)")
               + f" and their rights on {bucket}")
    else:
        why = first_line(error).split(" error_info=")[0][:300]
    return redacted(f"{scheme} store {uri}: {why}")


def object_store_errors(method):
    """A `Store` method whose object-store failures (OSError from pyarrow) become one-line `StoreError`s."""
    @functools.wraps(method)
    def wrapper(self: "Store", *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as error:
            if not self.is_object_store:
                raise
            raise StoreError(object_store_problem(self.uri, error)) from None
    return wrapper


def images_schema(n_classes: int) -> pa.Schema:
    """Columns of `images/`: one row per generated image, with the model's full output on the stored PNG."""
    return pa.schema([
        ("key", pa.string()), ("job", pa.string()), ("variant", pa.string()),
        ("model", pa.string()), ("weights", pa.string()), ("schedule_id", pa.string()),
        ("target", pa.int32()),
        ("partner", pa.int32()),      # the second class of an addition or interpolation (null for other jobs)
        ("seed", pa.int32()),
        ("label", pa.int32()), ("margin_label", pa.int32()),
        ("target_name", pa.string()), ("label_name", pa.string()), ("partner_name", pa.string()),   # null: no partner
        ("target_logit", pa.float32()), ("target_prob", pa.float32()), ("partner_logit", pa.float32()),  # idem
        ("logits", pa.list_(pa.float32(), n_classes)),
        ("png", pa.binary()), ("width", pa.int32()), ("height", pa.int32()),
        ("seconds", pa.float32()), ("worker", pa.string()),
        ("source", pa.string()),      # the real image a job started from (null for the noise jobs)
        ("frame", pa.int32()),        # -1: a job's final image; 0..F-1: an interpolation's kept frames
        ("step", pa.int32()),         # optimisation steps done when the image was taken (final image: all)
    ])


def trajectories_schema(k: int, n_classes: int) -> pa.Schema:
    """Columns of `trajectories/`: one row per image and recorded step (`sweep run --trajectory every:N`). A row
    of step t is the state after t updates: the outputs the t-th step's forward pass computed on its crop."""
    return pa.schema([
        ("key", pa.string()), ("job", pa.string()), ("target", pa.int32()),
        ("step", pa.int32()), ("octave", pa.int32()),
        ("target_logit", pa.float32()),   # null for a job without a target class (dream)
        ("target_rank", pa.int32()),      # 1 + classes with a higher output (1: top-1); null without a target
        ("label", pa.int32()),            # argmax of the outputs
        ("loss", pa.float32()),
        ("topk_classes", pa.list_(pa.int32(), k)), ("topk_logits", pa.list_(pa.float32(), k)),   # highest first
        ("logits", pa.list_(pa.float32(), n_classes)),   # all outputs, on snapshot rows only (null elsewhere)
        ("png", pa.binary()),             # the image the step cropped from (uint8 PNG), on snapshot rows only
    ])


def trajectories_table(results: Sequence, n_classes: int, threads: int = 1) -> pa.Table:
    """The recorded steps of successful `jobs.JobResult`s (those with a `trajectory`) -> a `trajectories/` table.
    Each column is built at once from the records' arrays; the snapshot rows' PNGs are nearly all of its time
    (Pillow: about 15 ms for a 299-px image, 40 ms at 490 px, on one core), encoded `threads` at a time."""
    recorded = [r for r in results if r.error is None and getattr(r, "trajectory", None) is not None]
    k = recorded[0].trajectory.topk_classes.shape[1] if recorded else 5
    schema = trajectories_schema(k, n_classes)
    if not recorded:
        return schema.empty_table()
    records = [r.trajectory for r in recorded]
    counts = [len(t.steps) for t in records]
    image = pa.array(np.repeat(np.arange(len(records)), counts))          # N: the image each row belongs to
    no_target = np.repeat([r.spec.target < 0 for r in recorded], counts)   # N
    logits, no_snapshot, png = _snapshot_columns(records, counts, n_classes, threads)

    def joined(field: str, dtype) -> np.ndarray:                            # N, or N x k: the records' rows
        return np.concatenate([np.asarray(getattr(t, field), dtype) for t in records])

    def lists(name: str, values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:   # N x size -> N lists
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), type=schema.field(name).type,
                                                 mask=None if null is None else pa.array(null))
    columns = {
        "key": pa.array([r.spec.key for r in recorded], pa.string()).take(image),
        "job": pa.array([r.spec.job for r in recorded], pa.string()).take(image),
        "target": pa.array(np.repeat([r.spec.target for r in recorded], counts).astype(np.int32), mask=no_target),
        "step": pa.array(joined("steps", np.int32)),
        "octave": pa.array(joined("octaves", np.int32)),
        "target_logit": pa.array(joined("target_logit", np.float32), mask=no_target),
        "target_rank": pa.array(joined("target_rank", np.int32), mask=no_target),
        "label": pa.array(joined("labels", np.int32)),
        "loss": pa.array(joined("losses", np.float32)),
        "topk_classes": lists("topk_classes", joined("topk_classes", np.int32)),
        "topk_logits": lists("topk_logits", joined("topk_logits", np.float32)),
        "logits": lists("logits", logits, no_snapshot),
        "png": pa.array(png, pa.binary()),
    }
    return pa.table([columns[name] for name in schema.names], schema=schema)


def _snapshot_columns(records: Sequence, counts: Sequence[int], n_classes: int, threads: int
                      ) -> tuple[np.ndarray, np.ndarray, list]:
    """What the snapshot rows add: N x n_classes outputs (zeros elsewhere), N flags of the rows without a
    snapshot (their `logits` and `png` are null), N PNG bytes (None elsewhere)."""
    logits = np.zeros((sum(counts), n_classes), np.float32)                  # N x n_classes
    no_snapshot = np.ones(len(logits), bool)                                 # N
    rows, pictures = [], []
    first = 0                                                                # the record's first row
    for t, count in zip(records, counts):
        row_of = {step: first + r for r, step in enumerate(np.asarray(t.steps).tolist())}
        for step, (picture, values) in t.snapshots.items():
            row = row_of[int(step)]
            logits[row], no_snapshot[row] = values, False
            rows.append(row)
            pictures.append(picture)
        first += count
    png: list = [None] * len(logits)
    for row, data in zip(rows, encode_pngs(pictures, threads)):
        png[row] = data
    return logits, no_snapshot, png


FAILURE_SCHEMA = pa.schema([
    ("key", pa.string()), ("job", pa.string()), ("variant", pa.string()), ("target", pa.int32()),
    ("partner", pa.int32()), ("seed", pa.int32()), ("attempt", pa.int32()), ("error", pa.string()),
    ("worker", pa.string()), ("time", pa.timestamp("ms", tz="UTC")),
])


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """H x W x 3 uint8 RGB -> PNG bytes (zlib at `compress_level`: Pillow's default 6)."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB").save(buffer, format="PNG",
                                                                                   compress_level=compress_level)
    return buffer.getvalue()


def encode_pngs(images: Sequence[np.ndarray], threads: int = 1) -> list[bytes]:
    """`encode_png` of each image, in order, `threads` at a time: Pillow lets go of the GIL while it compresses,
    so the encoders run on as many cores (and leave the GIL to the render thread)."""
    if threads <= 1 or len(images) < 2:
        return [encode_png(image) for image in images]
    with ThreadPoolExecutor(min(threads, len(images)), thread_name_prefix="classweep-png") as pool:
        return list(pool.map(encode_png, images))


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> H x W x 3 uint8 RGB."""
    from PIL import Image
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class _ImageRow:
    """One row of `images/` or `frames/`: the successful `jobs.JobResult` it belongs to and what the row stores."""
    result: object          # its spec, model, weights and schedule id fill the row's other columns
    key: str
    image: np.ndarray       # H x W x 3 uint8: the stored PNG's pixels
    logits: np.ndarray      # n_classes: the model's output on that image
    frame: int              # -1: a job's final image; k: an interpolation's k-th kept frame
    step: int               # optimisation steps done when the image was taken
    scores: dict            # label, margin_label, target_logit, target_prob, partner_logit (`jobs.kinds.scores`)
    seconds: float          # the render's time (a frame's is on its final image's row: 0)


def images_table(results: Sequence, class_names: Sequence[str], worker: str, total_steps: int = -1,
                 threads: int = 1) -> pa.Table:
    """Successful `jobs.JobResult`s -> an `images/` table, one row per result (frame -1, step `total_steps`): the
    PNG is what is stored, and the logits were taken on it. The PNGs are encoded `threads` at a time."""
    rows = []
    for r in _succeeded(results):
        scores = {"label": r.label, "margin_label": r.margin_label, "target_logit": r.target_logit,
                  "target_prob": r.target_prob, "partner_logit": r.partner_logit}
        rows.append(_ImageRow(r, r.spec.key, r.image, r.logits, -1, total_steps, scores, r.seconds))
    return _image_rows(rows, class_names, worker, threads)


def frames_table(results: Sequence, class_names: Sequence[str], worker: str, threads: int = 1) -> pa.Table:
    """Successful `jobs.JobResult`s -> a `frames/` table (the `images/` schema): one row per kept frame of each
    interpolation, keyed `{key}#frame{k}`, with the model's output on that frame (PNGs `threads` at a time)."""
    from jobs.kinds import scores
    rows = []
    for r in _succeeded(results):
        for k, frame in enumerate(getattr(r, "frames", ())):
            values = np.asarray(frame.logits, dtype=np.float32)
            rows.append(_ImageRow(r, f"{r.spec.key}{FRAME_SUFFIX}{k}", frame.image, values, k,
                                  int(frame.step), scores(r.spec, values), 0.0))
    return _image_rows(rows, class_names, worker, threads)


def _succeeded(results: Sequence) -> list:
    return [r for r in results if r.error is None]


def _image_rows(rows: Sequence[_ImageRow], class_names: Sequence[str], worker: str, threads: int = 1) -> pa.Table:
    """The `images/`-schema table of `rows`, in their order (a missing partner, source or name is a null); the
    PNGs, nearly all of its time, are encoded `threads` at a time."""
    n_classes = len(class_names)
    schema = images_schema(n_classes)
    columns: dict[str, list] = {name: [] for name in schema.names if name != "logits"}
    pngs = encode_pngs([row.image for row in rows], threads)
    for row, png in zip(rows, pngs):
        r, spec = row.result, row.result.spec
        label = row.scores["label"]
        values = {
            "key": row.key, "job": spec.job, "variant": spec.variant,
            "model": r.model, "weights": r.weights, "schedule_id": r.schedule_id,
            "target": spec.target, "partner": spec.partner if spec.partner >= 0 else None, "seed": spec.seed,
            "label": label, "margin_label": row.scores["margin_label"],
            "target_name": class_names[spec.target] if spec.target >= 0 else "",
            "label_name": class_names[label] if 0 <= label < n_classes else "",
            "partner_name": class_names[spec.partner] if spec.partner >= 0 else None,
            "target_logit": row.scores["target_logit"], "target_prob": row.scores["target_prob"],
            "partner_logit": row.scores["partner_logit"] if spec.partner >= 0 else None,
            "png": png, "width": int(row.image.shape[1]), "height": int(row.image.shape[0]),
            "seconds": row.seconds, "worker": worker, "source": spec.source or None,
            "frame": row.frame, "step": row.step}
        for name, value in values.items():
            columns[name].append(value)
    logits = np.stack([np.asarray(row.logits, dtype=np.float32) for row in rows]) if rows else \
        np.zeros((0, n_classes), np.float32)                                                   # N x n_classes
    arrays = {name: pa.array(column, type=schema.field(name).type) for name, column in columns.items()}
    arrays["logits"] = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), n_classes)
    return pa.table({name: arrays[name] for name in schema.names}, schema=schema)


def failures_table(failures: Iterable[tuple[JobSpec, int, str]], worker: str) -> pa.Table:
    """(work item, attempt, error) triples -> a `failures/` table."""
    now = datetime.now(timezone.utc)
    rows = [{"key": item.key, "job": item.job, "variant": item.variant, "target": item.target,
             "partner": item.partner, "seed": item.seed, "attempt": attempt, "error": error, "worker": worker,
             "time": now} for item, attempt, error in failures]
    return pa.Table.from_pylist(rows, schema=FAILURE_SCHEMA)


def is_frame_key(key: str) -> bool:
    """Whether a stored key is an interpolation frame's (a row of `frames/`, or of `images/` in stores written before
    frames had their own table)."""
    return FRAME_KEY.search(key) is not None


def source_hash(pixels: np.ndarray) -> str:
    """A content hash of a source image's pixels (shape included): what the manifest keeps for each source, so
    that a re-run with other pictures under the same names is refused."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    digest = hashlib.sha256(f"{pixels.shape}".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()[:16]


def source_file(name: str) -> str:
    """Relative path of a source image in the store."""
    return f"{SOURCES}/{name}.png"


def table_bytes(table: pa.Table) -> bytes:
    """A Parquet file in memory: PNG bytes stored uncompressed (already compressed) and without min/max statistics
    (kilobytes of footer no reader can use), the rest zstd, a list column's values included (`leaf_paths`: the
    logits were left uncompressed until 2026-12-01; zstd takes about 7% off their bytes, little beside the PNGs)."""
    buffer = pa.BufferOutputStream()
    names = table.schema.names
    leaves = {name: leaf_paths(name, table.schema.field(name).type) for name in names}   # logits: logits.list.element
    compression = {leaf: ("NONE" if name == "png" else "zstd") for name in names for leaf in leaves[name]}
    dictionary = [name for name in names if pa.types.is_string(table.schema.field(name).type)]
    pq.write_table(table, buffer, compression=compression, use_dictionary=dictionary,
                   write_statistics=[leaf for name in names if name != "png" for leaf in leaves[name]])
    return buffer.getvalue().to_pybytes()


def leaf_paths(name: str, kind: pa.DataType) -> list[str]:
    """The Parquet column paths of an Arrow column, as per-column writer options must name them: a list's values
    are `NAME.list.element` (options keyed by the top-level name alone leave them uncompressed)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return leaf_paths(f"{name}.list.element", kind.value_type)
    if pa.types.is_struct(kind):
        return [path for child in kind for path in leaf_paths(f"{name}.{child.name}", child.type)]
    return [name]


def manifest_differences(stored: dict, wanted: dict) -> list[str]:
    """Human-readable differences between two manifests, on the fields that define what a store holds."""
    def show(value) -> str:   # a long list (1000 classes, 499500 pairs) by its count and ends, on one line
        if isinstance(value, list) and len(value) > 6:
            pairs = all(isinstance(v, list) and len(v) == 2 for v in value)
            ends = [f"{v[0]}+{v[1]}" if pairs else json.dumps(v) for v in (*value[:3], value[-1])]
            return f"{len(value)} {'pairs' if pairs else 'entries'} [{', '.join(ends[:3])}, ..., {ends[-1]}]"
        return json.dumps(value)

    def schedule(manifest: dict) -> str:   # by name, with the id only to tell two contents of one name apart
        name, ident = manifest.get("schedule"), manifest.get("schedule_id")
        return json.dumps(name) + (f" (id {ident})" if stored.get("schedule") == wanted.get("schedule") else "")

    differences = [f"schedule is {schedule(stored)} in the store, {schedule(wanted)} here"
                   f"{schedule_changes(stored, wanted)}" if field == "schedule_id"
                   else f"{field} is {show(stored.get(field))} in the store, {show(wanted.get(field))} here"
                   for field in COMPARED_FIELDS if stored.get(field) != wanted.get(field)]
    stored_sources, wanted_sources = stored.get("sources", {}), wanted.get("sources", {})
    changed = [name for name in wanted_sources if name in stored_sources
               and stored_sources[name] != wanted_sources[name]]
    if changed:   # same names, other pictures (the names themselves are compared with the options)
        differences.append(f"source image{'s' if len(changed) > 1 else ''} {', '.join(changed)} "
                           f"{'have' if len(changed) > 1 else 'has'} other pixels than the store's "
                           f"({', '.join(f'{stored_sources[n]} there, {wanted_sources[n]} here' for n in changed)})")
    stored_options, wanted_options = stored.get("options", {}), wanted.get("options", {})
    for option in sorted(set(stored_options) | set(wanted_options)):
        if stored_options.get(option) != wanted_options.get(option):
            differences.append(f"{option} is {show(stored_options.get(option))} in the store, "
                               f"{show(wanted_options.get(option))} here")
    return differences


def schedule_changes(stored: dict, wanted: dict, at_most: int = 4) -> str:
    """" (changed: octave: octaves[0].lr [6, 5] -> [6, 4], ...)" from the schedules' contents the manifests keep
    (stores written before they kept them: ""), per job whose schedule differs, so that an edited schedule file
    says what changed and for which job."""
    contents = stored.get("schedule_contents", {}), wanted.get("schedule_contents", {})
    jobs = stored.get("job_schedules", {}), wanted.get("job_schedules", {})
    changes = []
    for job in sorted(set(jobs[0]) & set(jobs[1])):
        ids = jobs[0][job].get("schedule_id"), jobs[1][job].get("schedule_id")
        if ids[0] != ids[1] and ids[0] in contents[0] and ids[1] in contents[1]:
            changes += [f"{job}: {change}" for change in changed_fields(contents[0][ids[0]], contents[1][ids[1]])]
    if not changes:
        return ""
    more = f", and {len(changes) - at_most} more" if len(changes) > at_most else ""
    return f" (changed: {', '.join(changes[:at_most])}{more})"


def changed_fields(before, after, path: str = "") -> list[str]:
    """`path value -> value` for every leaf that differs between two JSON-like values (a schedule's name aside)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [change for key in sorted(set(before) | set(after)) if not (key == "name" and not path)
                for change in changed_fields(before.get(key), after.get(key), f"{path}.{key}" if path else key)]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and \
            any(isinstance(v, (dict, list)) for v in before):
        return [change for i, (b, a) in enumerate(zip(before, after))
                for change in changed_fields(b, a, f"{path}[{i}]")]
    return [] if before == after else [f"{path} {json.dumps(before)} -> {json.dumps(after)}"]


def manifest_json(value, width: int = 120, level: int = 0, column: int = 0) -> str:
    """`value` as JSON laid out for reading: a mapping one entry a line and a list of mappings one a line, indented
    one space a level (as `json.dumps(indent=1)`), but a list of numbers, strings or pairs on one line, or when
    longer than `width` (from `column`, where the value starts) packed into lines of at most `width` characters
    (indent=1 gave each of 1000 classes a line of its own, each of 499500 pairs four)."""
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(value, dict) and value:
        entries = [f"{inner}{key}: {manifest_json(v, width, level + 1, len(inner) + len(key) + 2)}"
                   for key, v in zip(map(json_key, value), value.values())]
        return "{\n" + ",\n".join(entries) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)) and not is_flat(value):
        return "[\n" + ",\n".join(inner + manifest_json(v, width, level + 1, len(inner)) for v in value) + \
            f"\n{pad}]"
    text = json.dumps(value)
    if not isinstance(value, (list, tuple)) or column + len(text) <= width:
        return text
    lines = packed_lines(list(map(json.dumps, value)), width - len(inner))
    return "[\n" + ",\n".join(inner + line for line in lines) + f"\n{pad}]"


def packed_lines(tokens: Sequence[str], width: int) -> list[str]:
    """`tokens` joined by ", " into lines of at most `width` characters (a longer token alone on its line); the
    lines end without the comma that joins them."""
    lines, line = [], ""
    for token in tokens:
        if line and len(line) + len(", ") + len(token) + len(",") > width:   # the comma that will end the line
            lines.append(line)
            line = token
        else:
            line = f"{line}, {token}" if line else token
    lines.append(line)
    return lines


def json_key(key) -> str:
    """A mapping's key as `json.dumps` writes it (a number or None as a string)."""
    return json.dumps(key if isinstance(key, str) else json.dumps(key))


def is_flat(values: Sequence) -> bool:
    """A list of scalars or of short lists of scalars (pairs): `manifest_json` packs it into lines."""
    return not any(isinstance(v, dict) or isinstance(v, (list, tuple)) and
                   any(isinstance(w, (dict, list, tuple)) for w in v) for v in values)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("classweep")
    except PackageNotFoundError:
        return "0+unknown"


def new_manifest(*, model: str, weights: str, weights_source: str, schedule: str, schedule_id: str,
                 class_names: Sequence[str], options: dict, sources: dict[str, str] | None = None,
                 job_schedules: dict | None = None, schedule_contents: dict | None = None) -> dict:
    """`weights` identifies the weights (`Classifier.weights_id`); `weights_source` is how they were asked for
    (e.g. DEFAULT), so that later passes over the store (features) can load the same model. `sources`: name ->
    `source_hash` of each real image the image jobs start from (kept only when there are some). `job_schedules`:
    job -> schedule name, id and input convention (`ScheduleSet.job_ids`). `schedule_contents`: schedule id -> the
    whole schedule (`Schedule.to_dict`), so that a store says what it was made with even when the schedule file is
    gone or edited (and a refusal names the fields that changed)."""
    manifest = {"format": FORMAT, "model": model, "weights": weights, "weights_source": weights_source,
                "schedule": schedule, "schedule_id": schedule_id, "n_classes": len(class_names),
                "class_names": list(class_names), "options": options, "package_version": package_version(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if sources:
        manifest["sources"] = dict(sources)
    if job_schedules:   # job -> {schedule, schedule_id, input}: what each job ran, and how the network was fed
        manifest["job_schedules"] = dict(job_schedules)
    if schedule_contents:
        manifest["schedule_contents"] = dict(schedule_contents)
    return manifest


def job_schedule(manifest: dict, job: str) -> dict:
    """The whole schedule `job` ran (`Schedule.to_dict`: the manifest's `schedule_contents` of the id its
    `job_schedules` entry names); {} where the manifest does not record it (stores written before manifests kept
    schedule contents), so that a caller falls back to the schedule field's default."""
    entry = (manifest.get("job_schedules") or {}).get(job) or {}
    return (manifest.get("schedule_contents") or {}).get(entry.get("schedule_id")) or {}


def kept_budget(free: int) -> int:
    """The bytes a command may keep of the objects it fetched (`Store.keeping_objects`), with `free` bytes free in
    its temporary folder: KEPT_SHARE of them, at most KEPT_MAX_BYTES."""
    return min(int(free * KEPT_SHARE), KEPT_MAX_BYTES)


class KeptObjects:
    """Whole objects of an object store that one command fetched, kept as files of a local temporary folder for its
    later reads of them (`Store.keeping_objects`): `sweep figures` reads the numbers of every images/ and frames/
    file, then the pictures of those holding an image shown, and where the numbers' read fetched an object whole
    (every object on GCS, one under RANGED_READ_BYTES on S3) the pictures' read takes the local copy. Objects are
    kept while they fit in `budget` bytes; one that does not fit is fetched again when read again. A command that
    reads a file for the last time lets its copy go (`drop`: `sweep export`, which writes as much again to local
    disk, keeps only the objects whose PNGs it has not written yet). Safe for the threads of `Store.each_file`."""

    def __init__(self, folder: str, budget: int) -> None:
        self.folder = folder
        self.budget = budget                  # bytes left
        self.files: dict[str, str] = {}       # object path -> its local copy
        self.lock = threading.Lock()

    def read(self, path: str) -> bytes | None:
        """The kept bytes of the object at `path`, None when it is not kept (or was let go meanwhile, by `drop` on
        another thread)."""
        with self.lock:
            local = self.files.get(path)
        if local is None:
            return None
        try:
            with open(local, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def keep(self, path: str, data: bytes) -> None:
        """Keep the whole object at `path` (its `data`) when it fits in what is left of the budget, once: a copy
        another thread kept meanwhile stays, this one goes. Keeping only saves a later fetch: a copy that cannot be
        written (a full disk) is not kept, and the read that fetched the object goes on (its OSError would have
        been taken for the store's)."""
        with self.lock:
            if path in self.files or len(data) > self.budget:
                return
            self.budget -= len(data)
        local = os.path.join(self.folder, uuid.uuid4().hex)
        try:
            with open(local, "wb") as f:
                f.write(data)
        except OSError:
            self._discard(local, len(data))
            return
        with self.lock:
            if path not in self.files:
                self.files[path] = local
                return
        self._discard(local, len(data))

    def _discard(self, local: str, size: int) -> None:
        """Remove a copy `keep` did not keep (`size` bytes), its bytes back in the budget."""
        with self.lock:
            self.budget += size
        with contextlib.suppress(OSError):
            os.remove(local)

    def drop(self, path: str) -> None:
        """Remove the kept copy of the object at `path`, if any, its bytes back in the budget."""
        with self.lock:
            local = self.files.pop(path, None)
            if local is None:
                return
            self.budget += os.path.getsize(local)
        os.remove(local)


@dataclass(frozen=True)
class Store:
    """A store location: `uri` as given, the pyarrow file system and the root path inside it; `kept`: the objects
    this command fetched whole, kept for its later reads of them (`keeping_objects`)."""
    uri: str
    fs: pafs.FileSystem
    root: str
    kept: KeptObjects | None = field(default=None, compare=False, repr=False)

    @classmethod
    def open(cls, uri: str) -> "Store":
        """A local directory (relative paths allowed) or a URI pyarrow understands (`s3://`, `gs://`, `file://`)."""
        if "://" not in uri:
            root = os.path.abspath(os.path.expanduser(uri))
            return cls(root, pafs.LocalFileSystem(), root)
        scheme = uri.split("://", 1)[0].lower()
        if scheme not in ("s3", "gs", "gcs", "file"):   # the lease and the atomic writes know no other
            raise StoreError(f"cannot open store {redacted_uri(uri)}: a store is a directory, a file:// path, or an "
                             f"s3:// or gs:// URI")
        try:
            if scheme in ("s3", "gs", "gcs"):
                fs, root = open_object_store(uri)
            else:
                fs, root = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise StoreError(redacted(f"cannot open store {redacted_uri(uri)}: {first_line(error)}")) from None
        except OSError as error:
            raise StoreError(object_store_problem(uri, error) if scheme in ("s3", "gs", "gcs") else
                             redacted(f"cannot open store {redacted_uri(uri)}: {first_line(error)}")) from None
        return cls(uri.rstrip("/"), fs, root.rstrip("/"))

    @functools.cached_property
    def manifest(self) -> dict:
        """The manifest, read once; StoreError when there is none or it is not a classweep manifest."""
        manifest = self.read_manifest()
        if manifest is None:
            raise StoreError(f"{self.uri} has no manifest.json: not a classweep store (or nothing was run yet)")
        try:
            if int(manifest["n_classes"]) < 1:
                raise ValueError("n_classes < 1")
            missing = [name for name in MANIFEST_FIELDS if name not in manifest]
            if missing:
                raise KeyError(f"no {', '.join(missing)}")
            if not isinstance(manifest["options"], dict):
                raise TypeError("options is not a mapping")
        except (ValueError, KeyError, TypeError) as error:
            raise StoreError(f"{self.uri}/{MANIFEST} is not a classweep manifest ({first_line(error)})") from None
        return manifest

    def checked_manifest(self, fresh: bool = False) -> dict:
        """`manifest`, so that a damaged one fails here rather than deep in a command; `fresh`: read and check the
        file as it is now, not the copy read before."""
        if fresh:
            self.__dict__.pop("manifest", None)   # `manifest` is a cached_property: forget the copy
        return self.manifest

    @property
    def n_classes(self) -> int:
        return int(self.manifest["n_classes"])

    @functools.cached_property
    def class_names(self) -> tuple[str, ...]:
        names = self.manifest.get("class_names")
        if isinstance(names, list) and len(names) == self.n_classes:
            return tuple(str(n) for n in names)
        return tuple(f"class {i}" for i in range(self.n_classes))

    def fingerprint(self, directory: str = IMAGES) -> str:
        """A short hash of the names and sizes of the finished Parquet files in `directory` and its subdirectories
        (images/ by default; scores/ holds one per scorer): changes whenever a file is added there."""
        text = "\n".join(f"{i.path.rsplit(directory + '/', 1)[-1]} {i.size}"   # the path below `directory`
                         for i in self._finished(directory, recursive=True))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def is_object_store(self) -> bool:
        return self.fs.type_name in OBJECT_STORES

    @contextlib.contextmanager
    def keeping_objects(self) -> Iterator["Store"]:
        """This store, which on an object store keeps each object it fetches whole in a local temporary folder for
        later reads in the same command (`KeptObjects`; removed on leaving), so that a file whose numbers and then
        pictures are read is fetched once; at most `kept_budget` of that folder's free space. A local store is
        read where it is: this store as it is."""
        if not self.is_object_store:
            yield self
            return
        with tempfile.TemporaryDirectory(prefix="classweep-kept-", ignore_cleanup_errors=True) as folder:
            budget = kept_budget(shutil.disk_usage(folder).free)
            yield replace(self, kept=KeptObjects(folder, budget))

    def let_go(self, path: str) -> None:
        """This command reads the file at `path` no more: its kept copy (`keeping_objects`), if any, is removed."""
        if self.kept is not None:
            self.kept.drop(path)

    def bounded(self, call: Callable[..., T], *args, **kwargs) -> T:
        """`call(*args, **kwargs)`: on an object store given up after `LIMITS.call_seconds` (TimeoutError, which
        `object_store_errors` turns into one line), on a local disk called as it is."""
        if not self.is_object_store:
            return call(*args, **kwargs)
        return within(LIMITS.call_seconds, call, *args, **kwargs)

    def path(self, *parts: str) -> str:
        """Path of a file of the store inside `fs`."""
        return "/".join([self.root, *parts])

    def location(self, *parts: str) -> str:
        """Where a file of the store is, as the user would write it (`uri` with the parts appended)."""
        return "/".join([self.uri, *parts])

    def location_of(self, path: str) -> str:
        """A file's path inside `fs` (as `files` gives them) as the user would write it (`location`)."""
        return self.location(path[len(self.root) + 1:]) if path.startswith(f"{self.root}/") else path

    @object_store_errors
    def file_type(self, *parts: str) -> pafs.FileType:
        """What is at `parts` (the store's root when none): a file, a directory, or nothing."""
        return self.bounded(self.fs.get_file_info, self.path(*parts) if parts else self.root).type

    def exists(self, *parts: str) -> bool:
        return self.file_type(*parts) != pafs.FileType.NotFound

    # ---- writing --------------------------------------------------------------------------------------------
    @object_store_errors
    def write_bytes(self, relative: str, data: bytes) -> str:
        """Write a whole file atomically (temp name + rename, or one PUT on object stores); returns its path."""
        final = self.path(relative)
        directory, name = final.rsplit("/", 1)
        if self.is_object_store:
            self.bounded(self._put_object, final, data)
            return final
        self.fs.create_dir(directory, recursive=True)
        self.fs.create_dir(self.path(TEMP_DIR), recursive=True)
        # same file system: the rename is atomic; the name cut, so that any name that fits its folder fits here too
        kept = utf8_prefix(name, TEMP_NAME_BYTES)
        temp = self.path(TEMP_DIR, f"{kept}.{uuid.uuid4().hex[:8]}")
        try:
            with self.fs.open_output_stream(temp) as out:
                out.write(data)
            self.fs.move(temp, final)   # rename(2): replaces an older file of the same name in one step
        except BaseException:           # disk full, interrupted: leave no temporary behind
            try:
                self.fs.delete_file(temp)
            except OSError:
                pass
            raise
        return final

    def _put_object(self, path: str, data: bytes) -> None:
        """One upload of the complete bytes: the object appears only when the upload completes."""
        try:
            with self.fs.open_output_stream(path) as out:
                out.write(data)
        except FileNotFoundError:                             # stores with real directories want them first
            bucket = self.root.split("/", 1)[0]
            if self.fs.type_name in ("s3", "gcs") and \
                    self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:   # never create a bucket
                raise StoreError(object_store_problem(self.uri, OSError("NO_SUCH_BUCKET"))) from None
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(path) as out:
                out.write(data)

    def delete(self, relative: str) -> None:
        """Remove a file if it is there."""
        self.delete_file(self.path(relative))

    @object_store_errors
    def delete_file(self, path: str) -> None:
        """Remove a file by its path in `fs` (a path from `files` or `listing`), without first asking whether it is
        there (a request per file on an object store): a file already gone is no error."""
        with contextlib.suppress(FileNotFoundError):
            self.bounded(self.fs.delete_file, path)

    def write_table(self, relative: str, table: pa.Table) -> str:
        return self.write_bytes(relative, table_bytes(table))

    def write_manifest(self, manifest: dict) -> None:
        self.write_bytes(MANIFEST, manifest_json(manifest).encode())

    def write_source(self, name: str, pixels: np.ndarray) -> str:
        """Keep a real image (H x W x 3 uint8) in the store as a lossless PNG, for the workers to read (zlib level
        SOURCE_PNG_LEVEL: a folder of photographs is encoded before the first batch)."""
        return self.write_bytes(source_file(name), encode_png(pixels, SOURCE_PNG_LEVEL))

    @object_store_errors
    def cleanup_temp(self, keep_younger_than: float | None = None) -> int:
        """Remove temporary files that an interrupted writer left behind; returns how many. A temporary written in
        the last `keep_younger_than` seconds (default `TEMP_GRACE`) stays: the commands that write into a store
        without its lease (`analyze`, `score`, `directions`) may be writing it now."""
        keep_younger_than = TEMP_GRACE if keep_younger_than is None else keep_younger_than
        removed = 0
        for directory in (TEMP_DIR, IMAGES, FRAMES, TRAJECTORIES, FAILURES, ANALYSIS, SOURCES, ""):
            for info in self.listing(directory):
                # Besides .tmp/, only the names older versions gave temporaries: a source may start with "_".
                if info.type == pafs.FileType.File and (directory == TEMP_DIR or info.base_name.startswith(
                        TEMP_PREFIX) and (info.base_name.endswith(".tmp") or info.base_name.startswith("_tmp-"))) \
                        and (info.mtime is None or time.time() - info.mtime.timestamp() >= keep_younger_than):
                    self.delete_file(info.path)
                    removed += 1
        return removed

    # ---- reading --------------------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        """The manifest as it is now (None when there is none yet); `manifest` reads and checks it once."""
        data = self.read_bytes(MANIFEST)
        try:
            manifest = None if data is None else json.loads(data)
        except (ValueError, RecursionError):
            raise StoreError(f"{self.uri}/{MANIFEST} is not valid JSON") from None
        if manifest is not None and not isinstance(manifest, dict):
            raise StoreError(f"{self.uri}/{MANIFEST} is not a classweep manifest (a JSON {type(manifest).__name__}, "
                             f"not an object)")
        return manifest

    @object_store_errors
    def read_bytes(self, relative: str) -> bytes | None:
        """A whole file, or None when it is not there."""
        return self.bounded(self._whole_file, self.path(relative), missing_ok=True)

    def _whole_file(self, path: str, missing_ok: bool = False) -> bytes | None:
        if missing_ok and self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    @object_store_errors
    def listing(self, directory: str = "", recursive: bool = False) -> list[pafs.FileInfo]:
        """What `directory` holds (the store's root when ""), [] when it does not exist."""
        selector = pafs.FileSelector(self.path(directory) if directory else self.root, allow_not_found=True,
                                     recursive=recursive)
        return self.bounded(self.fs.get_file_info, selector)

    def files(self, directory: str) -> list[str]:
        """Paths of the finished Parquet files in `directory` (images, failures, ...), sorted."""
        return [info.path for info in self._finished(directory)]

    def _finished(self, directory: str, recursive: bool = False) -> list[pafs.FileInfo]:
        """The listing's entries of the finished Parquet files in `directory`, sorted by path (one listing request
        per page of entries, where a FileInfo per path would be a request per file)."""
        return sorted((info for info in self.listing(directory, recursive) if info.type == pafs.FileType.File
                       and info.base_name.endswith(".parquet") and not info.base_name.startswith((TEMP_PREFIX, "."))),
                      key=lambda info: info.path)

    @contextlib.contextmanager
    def _object_failures(self) -> Iterator[None]:
        """On an object store, a failure of the store (`from_the_store`: the service, the network, a stalled call)
        becomes a one-line StoreError, and a damaged file's error ArrowInvalid (`damaged_as_invalid`), for the
        caller to refuse or set the file aside by name; on a local disk errors pass as they are."""
        if not self.is_object_store:
            yield
            return
        try:
            with damaged_as_invalid():
                yield
        except OSError as error:
            raise StoreError(object_store_problem(self.uri, error)) from None

    def read_file(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Only `columns` of one Parquet file of the store (a path from `files`), with ranged reads; within
        `keeping_objects` an object a reader would fetch whole anyway is fetched whole and kept (`_kept_parquet`).
        A file that is not Parquet raises pa.ArrowInvalid (on a local disk OSError too; on an object store a
        damaged one's OSError becomes ArrowInvalid) for the caller to refuse or set aside; on an object store every
        failure of the store, a stalled call included, is a StoreError (`_object_failures`)."""
        with self._object_failures():
            return self.bounded(self._read_columns, path, columns)

    def _read_columns(self, path: str, columns: Sequence[str] | None) -> pa.Table:
        """One file's `columns` through its ParquetFile: `pq.read_table` builds a dataset per call, four times the
        time on a local disk and five requests a file instead of three on S3, for the tens of thousands of files of
        a full sweep that each resume, `status` and `score` read. ParquetFile skips a column the file lacks, where
        the dataset refused it: refused here too, with the dataset's error (ArrowInvalid). On GCS, outside
        `keeping_objects`, the dataset reader stays: a ParquetFile opens pyarrow's GCS random-access file, which
        starts its download holding the GIL (`parquet_file`), where the dataset reader opens it without."""
        kept = self._kept_parquet(path)   # whole, kept for this command's next read
        if kept is None and self.fs.type_name == "gcs":
            return pq.read_table(path, columns=columns, filesystem=self.fs)
        with kept or pq.ParquetFile(path, filesystem=self.fs, pre_buffer=self.is_object_store) as parquet:
            missing = [name for name in columns or () if name not in parquet.schema_arrow.names]
            if missing:
                raise pa.ArrowInvalid(f"no column {', '.join(missing)} in {path.rsplit('/', 1)[-1]}")
            return parquet.read(columns=columns)

    def _kept_parquet(self, path: str) -> pq.ParquetFile | None:
        """Within `keeping_objects`: the object's ParquetFile from its kept copy, fetched whole and kept first where
        a reader would fetch it whole anyway (every object on GCS, whose reader downloads the whole object; one
        under RANGED_READ_BYTES on S3). None outside `keeping_objects`, on a local disk, and for a large S3 object
        not kept (read by ranges)."""
        if self.kept is None:
            return None
        data = self._kept_copy(path)
        if data is None and self.fs.type_name == "s3":
            with self.fs.open_input_file(path) as file:   # its size, from the HEAD request a ranged read makes anyway
                data = self._small_object(path, file)
            if data is None:
                return None
        elif data is None:
            data = self._kept(path, self._whole_file(path))
        return pq.ParquetFile(pa.BufferReader(data))

    def _kept_copy(self, path: str) -> bytes | None:
        """The kept copy of the object at `path` (`keeping_objects`); None outside it, or when none is kept."""
        return self.kept.read(path) if self.kept is not None else None

    def _kept(self, path: str, data: bytes) -> bytes:
        """`data`, the whole object at `path` just fetched, kept for this command's next read of it when the
        command keeps objects (`keeping_objects`)."""
        if self.kept is not None:
            self.kept.keep(path, data)
        return data

    def _small_object(self, path: str, file) -> bytes | None:
        """The whole of the S3 object at `path`, open as `file`, when it is under RANGED_READ_BYTES (kept: `_kept`);
        None for a larger one, read by ranges."""
        return self._kept(path, file.read()) if file.size() < RANGED_READ_BYTES else None

    def parquet_file(self, path: str) -> pq.ParquetFile:
        """One Parquet file of the store (a path from `files`), for readers that want its schema before choosing
        columns or rows, and errors as `read_file`. An object is fetched whole with one bounded GET and read from
        memory: a batch file is a few MB, which one GET brings faster than the several requests of random-access
        reads, and pyarrow's GCS random-access file starts its download while holding the GIL, where neither this
        process's other threads nor any timeout could run."""
        if not self.is_object_store:
            return pq.ParquetFile(path, filesystem=self.fs)
        with self._object_failures():
            return self._parquet_of_whole_object(path)

    def _parquet_of_whole_object(self, path: str) -> pq.ParquetFile:
        """An object's ParquetFile, read from memory: its kept copy (`keeping_objects`), else one bounded GET of
        the whole (then kept)."""
        data = self._kept_copy(path)
        if data is None:
            data = self._kept(path, self.bounded(self._whole_file, path))
        return pq.ParquetFile(pa.BufferReader(data))

    def read_chosen(self, path: str, choose: Callable[[pa.Schema], Sequence[str]]) -> pa.Table:
        """The columns `choose(schema)` picks of one Parquet file of the store (a path from `files`), for a reader
        that looks at the file's schema first (the columns it has, whether it is the kind of file it expects; a
        `choose` may raise) and wants its small columns only: the numbers beside a batch's PNGs. On S3 a file of
        RANGED_READ_BYTES or more is read by ranges (its footer, then the chosen column chunks, coalesced: a few
        requests, where `parquet_file`'s GET of the whole would bring the PNGs too, most of its bytes), a smaller
        one whole; on GCS every file is fetched whole (`parquet_file` says why). Errors as `read_file`."""
        if self.fs.type_name != "s3":
            parquet = self.parquet_file(path)
            return parquet.read(columns=choose(parquet.schema_arrow))
        with self._object_failures():
            return self.bounded(self._read_chosen_on_s3, path, choose)

    def _read_chosen_on_s3(self, path: str, choose: Callable[[pa.Schema], Sequence[str]]) -> pa.Table:
        data = self._kept_copy(path)
        if data is None:
            with self.fs.open_input_file(path) as file:   # its size, from the HEAD request a ranged read makes anyway
                data = self._small_object(path, file)
                if data is None:   # a large object: its chosen columns only, by ranges
                    parquet = pq.ParquetFile(file, pre_buffer=True)
                    return parquet.read(columns=choose(parquet.schema_arrow))
        parquet = pq.ParquetFile(pa.BufferReader(data))
        return parquet.read(columns=choose(parquet.schema_arrow))

    def file_schema(self, path: str) -> pa.Schema:
        """The Arrow schema of one Parquet file of the store, from its footer only; within `keeping_objects` an
        object a reader would fetch whole anyway (`_kept_parquet`) from the whole, kept for that read. Errors as
        `read_file`."""
        def footer() -> pa.Schema:
            kept = self._kept_parquet(path)
            return kept.schema_arrow if kept is not None else \
                ds.ParquetFileFormat().make_fragment(path, filesystem=self.fs).physical_schema
        with self._object_failures():
            return self.bounded(footer)

    def read_checked(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        """`read_file`, with a file that cannot be read (not Parquet, a column missing) refused as one StoreError
        line naming it (`location_of`) and the way on."""
        try:
            return self.read_file(path, columns)
        except (pa.ArrowInvalid, OSError, KeyError) as error:
            raise StoreError(unreadable(self.location_of(path), error)) from None

    def each_file(self, call: Callable[[str], T], paths: Sequence[str]) -> list[T]:
        """`call(path)` for each of `paths`, the results in their order. On S3 READ_THREADS at once: each read waits
        on the network for most of its time (~20 ms a request), and a full sweep's ten thousand files one after
        another take minutes. Elsewhere one after another: a local disk's reads are CPU-bound under the GIL, and
        pyarrow's GCS reads may hold the GIL while they wait (`parquet_file`, `_read_columns`). The first error in
        `paths`' order is raised once the calls already running have ended (each is `bounded`); no other starts."""
        return list(self.stream_files(call, paths))

    def stream_files(self, call: Callable[[str], T], paths: Sequence[str]) -> Iterator[T]:
        """`each_file` one result at a time, for results too large to hold all at once (a file's PNGs): on S3 up to
        READ_THREADS calls run ahead of the one whose result is taken (their results wait in memory), elsewhere
        each call runs when its result is wanted. Errors as `each_file` (which is this, listed); a consumer that
        stops early waits for the calls already running."""
        if self.fs.type_name != "s3" or len(paths) < 2:
            yield from (call(path) for path in paths)
            return
        pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="classweep-read")
        try:
            ahead: collections.deque = collections.deque()
            for path in paths:
                ahead.append(pool.submit(call, path))
                if len(ahead) == READ_THREADS:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            pool.shutdown(cancel_futures=True)

    def read(self, directory: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The finished files of `directory`, only `columns` (never read `png` unless you need the pictures)."""
        tables = self.each_file(lambda path: self.read_checked(path, columns), self.files(directory))
        if not tables:
            return pa.table({}) if columns is None else pa.table({c: pa.array([], pa.string()) for c in columns})
        return pa.concat_tables(tables, promote_options="permissive")

    def read_source(self, name: str) -> np.ndarray:
        """A real image the driver stored (H x W x 3 uint8); StoreError, naming the file, when it is not there or
        does not decode (a resume writes only the missing ones again)."""
        data = self.read_bytes(source_file(name))
        if data is None:
            raise StoreError(f"{self.uri}/{source_file(name)} is missing: run the sweep again with its --images")
        try:
            return decode_png(data)
        except Exception as error:   # whatever a damaged PNG makes the decoder raise
            raise StoreError(f"{self.uri}/{source_file(name)} is not a readable PNG ({type(error).__name__}: "
                             f"{first_line(error)}): delete it and run the sweep again with its --images, which "
                             f"writes it anew") from None

    def done_keys(self) -> set[str]:
        """Keys of every stored image, reading only the `key` column."""
        return all_keys(self.keys_by_file())

    def keys_by_file(self, known: Mapping[str, Sequence[str]] | None = None, directory: str = IMAGES
                     ) -> dict[str, list[str]]:
        """{path: keys} of every file `directory` (images/, or frames/) lists now, in name order, reading only the
        `key` column, and only of the files that `known` lacks: {path: keys} an earlier pass read, of files not
        written since (a run never writes a file that its resume's pass saw holding keys: `run_leased`); a file
        known to hold no key is read again. An unreadable file is refused as by `read_checked`. Each file's keys are
        in its rows' order: the store's key index, which tells a reader of PNGs which files to open."""
        known = known or {}
        paths = self.files(directory)
        new = [path for path in paths if not known.get(path)]
        read = dict(zip(new, self.each_file(lambda path: key_column(self.read_checked(path, ["key"])), new)))
        return {path: read[path] if path in read else list(known[path]) for path in paths}

    @object_store_errors
    def quarantine_unreadable(self, directories: Sequence[str] = (FRAMES, TRAJECTORIES, IMAGES, FAILURES), *,
                              whole_files: bool = False) -> Quarantine:
        """Move every file of `directories` whose `key` column cannot be read into `{store}/quarantine/`, so that
        its items count as missing and are run again (an object store that fails to answer is a StoreError, not a
        damaged file). A batch's frames/ and trajectories/ files carry its images/ file's name (an image row implies
        them): when one of them is unreadable, the batch's images/ file is moved aside too, or its items would count
        as done without them. One read of each file: the keys of the images/ files it could read come back with
        what it moved, for the resume's `pending_work`. `whole_files` (`sweep run --check-files`): every column is
        read, so that a file damaged only in its pictures or outputs is set aside too, at the cost of reading the
        whole store. A readable frames/ or trajectories/ file whose batch has no images/ file (a run stopped, or its
        images/ write failed, between the two; the resume's batches may be cut otherwise, under other names) is moved
        aside as well: its items' images, stored by another batch, are not the ones it recorded, and readers would
        take its rows for theirs. Only `sweep run` calls this, under its lease (it changes the store)."""
        moved, images, companions_lost, companions, images_set_aside = [], {}, {}, [], set()
        keys_or_why = functools.partial(self._keys_or_why, whole_file=whole_files)
        for directory in directories:
            paths = self.files(directory)
            for path, keys in zip(paths, self.each_file(keys_or_why, paths)):
                name = path.rsplit("/", 1)[1]
                if isinstance(keys, Exception):
                    why = f"unreadable: {why_unreadable(keys)}"
                    if directory in (FRAMES, TRAJECTORIES):
                        companions_lost.setdefault(name, directory)
                elif directory == IMAGES and name in companions_lost:
                    why = f"readable, but its batch's {companions_lost[name]}/ file was not"
                else:
                    if directory == IMAGES:
                        images[path] = keys
                    elif directory in (FRAMES, TRAJECTORIES):
                        companions.append((directory, name))
                    continue
                self._set_aside(directory, path)
                moved.append((path, why))
                if directory == IMAGES:
                    images_set_aside.add(name)
        for name, lost in companions_lost.items():   # the batch's readable companion goes too: its items run again
            for directory in (FRAMES, TRAJECTORIES):
                if directory != lost and self.exists(directory, name):
                    self._set_aside(directory, self.path(directory, name))
                    moved.append((self.path(directory, name), f"readable, but its batch's {lost}/ file was not"))
        if IMAGES in directories:
            stored = {path.rsplit("/", 1)[1] for path in images}
            for directory, name in companions:
                if name not in stored and name not in companions_lost:
                    self._set_aside(directory, self.path(directory, name))
                    moved.append((self.path(directory, name), "readable, but its batch's images/ file was not"
                                  if name in images_set_aside else ORPHANED))
        return Quarantine(moved, images)

    def _set_aside(self, directory: str, path: str) -> None:
        """Move one file of `directory` into `{store}/quarantine/{directory}/` (a new name if one is there)."""
        target = f"{QUARANTINE}/{directory}/{path.rsplit('/', 1)[1]}"
        if self.exists(target):   # quarantined before
            target += f".{uuid.uuid4().hex[:8]}"
        self.bounded(self._move, path, self.path(target))

    def _keys_or_why(self, path: str, whole_file: bool = False) -> list[str] | Exception:
        """One file's keys, or why they cannot be read (not Parquet, no `key` column; with `whole_file`, any column
        that cannot be decoded): a file to set aside."""
        try:
            return key_column(self.read_file(path, None if whole_file else ["key"]))
        except (pa.ArrowInvalid, OSError, KeyError) as error:
            return error

    def _move(self, path: str, target: str) -> None:
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        self.fs.move(path, target)


@dataclass(frozen=True)
class Quarantine:
    """What `Store.quarantine_unreadable` did in its one read of each file's `key` column."""
    moved: list[tuple[str, str]]       # (file, why) of each file moved aside
    images: dict[str, list[str]]       # {path: keys} of the images/ files it could read


def key_column(table: pa.Table) -> list[str]:
    return table.column("key").to_pylist()


def all_keys(files: Mapping[str, Sequence[str]]) -> set[str]:
    """The keys of `files` ({path: keys}, as `Store.keys_by_file` gives them) together."""
    return {key for keys in files.values() for key in keys}


def no_images_yet(store: "Store") -> StoreError:
    """The error of a command that needs stored images on a store that has none, saying why there are none: a
    sweep running on it has not stored its first batch yet, every item tried so far failed, or nothing ran."""
    from sweep.lease import running_sweep   # here: sweep.lease imports this module
    running = running_sweep(store)
    if running is not None:
        why = f"a sweep is running on it ({running}) and has not stored its first batch yet: wait for it"
    elif store.files(FAILURES):
        why = f"every item tried so far failed (`sweep status --store {store.uri}` says why)"
    else:
        why = "run `sweep run` first"
    return StoreError(f"store {store.uri} holds no images yet: {why}")


def require_images(store: "Store") -> None:
    """Refuse a store whose images/ lists no finished file (`no_images_yet`): before a reader says anything else of
    it (that its analysis is older than its images, say)."""
    if not store.files(IMAGES):
        raise no_images_yet(store)


def same_store(a: Store, b: Store) -> bool:
    """Whether two opened stores are one place (a local directory compared after resolving links, so that a link
    to a store, or its file:// URI, is that store; on S3 or GCS one bucket and path on one endpoint: pyarrow's
    `equals` compares the file systems' options, the endpoint among them)."""
    if type(a.fs) is not type(b.fs):
        return False
    if a.is_object_store:
        return a.root.rstrip("/") == b.root.rstrip("/") and a.fs.equals(b.fs)
    return os.path.realpath(a.root) == os.path.realpath(b.root)


def open_store(store: "Store | str") -> Store:
    """An existing store with a manifest, for the commands that read a finished sweep (a `Store` passes through,
    so that a command opens its store once and hands it down)."""
    if isinstance(store, Store):
        return store
    opened = Store.open(store)
    kind = opened.file_type()
    if kind == pafs.FileType.NotFound:
        raise StoreError(f"no store at {store} (no manifest.json there)")
    if kind == pafs.FileType.File:
        raise StoreError(f"{store} is a file, not a store (a store is a directory)")
    opened.checked_manifest()   # a bad store fails before any work
    return opened


# What pyarrow puts in the message of every error an object store's service or network gives (arrow's S3 errors,
# and its GCS errors, `ToArrowStatus`: "google::cloud::Status(NOT_FOUND: ...)"), and no Parquet reader's error does.
SERVICE_MARKS = ("AWS Error", "google::cloud::Status(")


def from_the_store(error: Exception) -> bool:
    """Whether an error of a read from S3 or GCS is the store's (the network, the service, a missing object), not
    the data's: pyarrow marks every error of either service (`SERVICE_MARKS`; a missing object is also
    FileNotFoundError), where a Parquet reader meeting a damaged footer or page raises a plain OSError ("Couldn't
    deserialize thrift", "Corrupt snappy compressed data") too."""
    return (isinstance(error, (FileNotFoundError, TimeoutError, ConnectionError))
            or any(mark in str(error) for mark in SERVICE_MARKS))


@contextlib.contextmanager
def damaged_as_invalid() -> Iterator[None]:
    """Around a read from an object store (`Store._object_failures`): an OSError that is not the store's
    (`from_the_store`) is the file's, raised as ArrowInvalid, as a file that is not Parquet is, for the caller to
    refuse or set aside by name. The reverse too: GCS words a refused request (INVALID_ARGUMENT) as ArrowInvalid,
    which is the store's, raised as OSError."""
    try:
        yield
    except OSError as error:
        if from_the_store(error):
            raise
        raise pa.ArrowInvalid(str(error)) from None
    except pa.ArrowInvalid as error:
        if from_the_store(error):
            raise OSError(str(error)) from None
        raise


# pyarrow's dataset reader (GCS's reads) opens its message with the path, which the refusal already names.
OPENING_A_SOURCE = re.compile(r"^Could not open Parquet input source '[^']*': ")


def why_unreadable(error: BaseException) -> str:
    """What was wrong with a file that could not be read, in one line, without the path."""
    return OPENING_A_SOURCE.sub("", first_line(error))


def unreadable(location: str, error: BaseException) -> str:
    """The one-line refusal of a store file that cannot be read, saying how to go on; `location`: where the file is,
    as the user would write it (`Store.location_of`), the same in every reader's refusal."""
    return (f"unreadable file {location}: {why_unreadable(error)} (`sweep run --check-files` with the store's command "
            f"moves it into {QUARANTINE}/ and runs its items again)")


