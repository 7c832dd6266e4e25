"""The images the image jobs start from, as `--images` names them: files and folders (`jobs.images.load_images`),
`noise:N[:SIZE]` (`jobs.images.noise_images`), and `store:URI[:JOB]`, the final images of a job of another,
finished store, one per item (its lowest seed), read through the one store layer (`sweep.store`, so a local
directory, s3:// or gs://).

Deep dream, "Enhancements with Dreams": "these generated representative images will be used as initial
inputs a_0": a dream on GoogLeNet's class images is `sweep run --jobs dream --images store:CLASS_STORE`.
A store source is named after its item, made safe by `sweep.export.slug`: `octave-0042-goldfish`,
`addition-merge-0001-bear-0002-cat`, `dream-block2-china-jpg`; names that would clash get a hash (`UniqueNames`).
"""
from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from jobs.catalog import ALL_JOBS
from jobs.images import ImageInputError, SourceImage, Track, in_order, is_noise_spec, load_images, noise_images, \
    parse_noise, read_image, untracked
from jobs.text import utf8_prefix
from sweep.export import MISSING, UniqueNames, checked_files, slug
from sweep.plan import PlanError
from sweep.lease import running_sweep
from sweep.store import IMAGES, MANIFEST, MAX_NAME_BYTES, Store, StoreError, is_frame_key, open_store, same_store, \
    source_hash

STORE_PREFIX = "store:"
DEFAULT_STORE_JOB = "octave"      # Deep dream dreams on the class images ("representative images")


def is_store_spec(value: str) -> bool:
    return str(value).startswith(STORE_PREFIX)


def parse_store_spec(value: str) -> tuple[str, str]:
    """`store:URI[:JOB]` -> (URI, JOB). The text after the last ':' is the job unless it holds a '/' (as the
    ':' of `s3://bucket/x` does); PlanError for an unknown job or an empty URI."""
    rest = str(value)[len(STORE_PREFIX):]
    uri, sep, job = rest.rpartition(":")
    if not sep or "/" in job:
        uri, job = rest, DEFAULT_STORE_JOB
    if not uri:
        raise PlanError(f"--images {value}: write store:URI or store:URI:JOB, e.g. store:./classes:octave")
    if job not in ALL_JOBS:
        raise PlanError(f"--images {value}: no job named {job!r} (jobs: {', '.join(ALL_JOBS)}; a store path "
                        f"holding ':' needs its job after it, store:PATH:octave)")
    return uri, job


def check_finished(store: Store, writing: Store, value: str) -> None:
    """PlanError unless `store` is another store than the one this sweep writes, and no sweep writes it now (its
    images, and so this sweep's sources and their hashes in the manifest, would change under a resume)."""
    if same_store(store, writing):
        raise PlanError(f"--images {value}: that is the store this sweep writes ({writing.uri}); start from another, "
                        f"finished store")
    running = running_sweep(store)
    if running:
        raise PlanError(f"--images {value}: a sweep is writing {store.uri} now ({running}); start "
                        f"from it once that run has finished")


def final_rows(store: Store, job: str) -> list[dict]:
    """The final images of `job` (no interpolation frames), one per item (job, variant, classes, source): its
    lowest seed, seed 0 when there is one; sorted by item. Reads every column but `png`."""
    chosen: dict[tuple, dict] = {}
    for path, columns in checked_files(store, (IMAGES,)):
        for row in store.read_checked(path, [c for c in columns if c != "png"]).to_pylist():
            row = {**MISSING, **{name: value for name, value in row.items() if value is not None}}
            if row["job"] != job or row["frame"] >= 0 or is_frame_key(row["key"]):
                continue
            item = (row["variant"], row["target"], row["partner"], row["source"])
            if item not in chosen or row["seed"] < chosen[item]["seed"]:
                chosen[item] = row
    return [chosen[item] for item in sorted(chosen)]


def stored_pngs(store: Store, keys: Sequence[str]) -> dict[str, bytes]:
    """key -> PNG bytes of the images/ rows with these keys (reads key and png, one file at a time)."""
    wanted, found = set(keys), {}
    for path in store.files(IMAGES):
        if len(found) == len(wanted):
            break
        table = store.read_checked(path, ["key", "png"])
        for key, png in zip(table.column("key").to_pylist(), table.column("png").to_pylist()):
            if key in wanted and key not in found:   # the first file in name order wins, as the readers do
                found[key] = png
    return found


def item_name(row: dict) -> str:
    """A source's name, after the stored item it is: `octave-0042-goldfish`, `dream-block2-china-jpg` (made unique,
    then fitted to a file name: `fitted_name`)."""
    parts = [slug(row["job"])] + ([slug(row["variant"])] if row["variant"] else [])
    for index, name in ((row["target"], row["target_name"]), (row["partner"], row["partner_name"])):
        if index >= 0:
            parts += [f"{index:04d}", slug(name)]
    if row["source"]:
        parts.append(slug(row["source"]))
    return "-".join(parts)


def fitted_name(name: str) -> str:
    """`name`, or, when its copy sources/NAME.png would pass MAX_NAME_BYTES (an interpolation between two long
    class names, from a photograph with a long name), its start and a hash of the whole: the same name in every
    run, as a resume needs. Names that fit are kept as they are (stores hold them). Applied to a name once it is
    unique (`UniqueNames.claim_stem`), whose hash of the key would otherwise take a cut name past the limit."""
    room = MAX_NAME_BYTES - len(".png")
    if len(name.encode()) <= room:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return utf8_prefix(name, room - len(digest) - 1).rstrip("-") + "-" + digest


def check_given_once(store: Store, job: str, value: str, given: list[tuple[Store, str, str]]) -> None:
    """PlanError when an earlier `--images` value in `given` ((store, job, value), appended to here) names the same
    job of the same store under another spelling (`store:a`, `store:a/`, `store:a:octave`, a link to `a`): its
    images would be sources twice, the second time under hashed names."""
    for other, other_job, other_value in given:
        if other_job == job and same_store(other, store):
            raise PlanError(f"--images {value} is given more than once (as {other_value} too)")
    given.append((store, job, value))


def hashed_png(png: bytes, name: str) -> str:
    """`source_hash` of a stored PNG's pixels (ImageInputError naming it `name` when it does not decode)."""
    return source_hash(read_image(png, name))


def store_images(value: str, writing: Store, names: UniqueNames, given: list[tuple[Store, str, str]] | None = None,
                 *, threads: int = 1, track: Track = untracked) -> list[SourceImage]:
    """The images `store:URI[:JOB]` names, each checked and hashed (its `digest`; `threads` at a time, `track`
    seeing them), or PlanError in one line (no store there, the store this sweep writes, a store being written,
    one given already in `given` (`check_given_once`), no image of JOB)."""
    uri, job = parse_store_spec(value)
    try:
        store = open_store(uri)
        check_finished(store, writing, value)
        check_given_once(store, job, value, [] if given is None else given)
        with store.keeping_objects() as kept:   # an object's columns, rows and PNGs from one fetch
            rows = final_rows(kept, job)
            if not rows:
                present = sorted({job for path in kept.files(IMAGES)
                                  for job in kept.read_checked(path, ["job"]).column("job").to_pylist()})
                raise PlanError(f"--images {value}: store {store.uri} has no {job} images "
                                f"(jobs present: {', '.join(present) or 'none'})")
            by_key = stored_pngs(kept, [row["key"] for row in rows])
        pngs = [by_key[row["key"]] for row in rows]
        # each checked as a file is, its pixels dropped: the PNG bytes are what a source keeps
        named = [(png, f"--images {value}: image {row['key']} of {store.uri}") for row, png in zip(rows, pngs)]
        hashes = list(track(in_order(lambda pair: hashed_png(*pair), named, threads), len(pngs)))
        return [SourceImage(fitted_name(names.claim_stem(item_name(row), f"{store.uri}|{row['key']}")),
                            partial(read_image, png), digest) for row, png, digest in zip(rows, pngs, hashes)]
    except StoreError as error:
        raise PlanError(f"--images {value}: {error}") from None


def file_values(values: Sequence[str]) -> list[str]:
    """The `--images` values that name files and folders (neither `noise:` nor `store:`)."""
    return [v for v in values if not is_noise_spec(v) and not is_store_spec(v)]


def source_images(values: Sequence[str], writing_store: str, noise_side: Callable[[], int], *, threads: int = 1,
                  track: Track = untracked) -> list[SourceImage]:
    """Every `--images` value checked, as images that read their pixels when wanted: `noise:N[:SIZE]` (at most
    once; SIZE defaults to `noise_side()`), `store:URI[:JOB]` (each at most once), and files and folders.
    ImageInputError lists the bad files together; PlanError names a bad noise or store value. The files' and
    stores' pictures are checked and hashed in one decode, `threads` at a time (their `digest`, `source_hash`);
    `track` sees each of those passes."""
    noise = [v for v in values if is_noise_spec(v)]
    stores = [v for v in values if is_store_spec(v)]
    files = file_values(values)
    if len(noise) > 1:
        raise PlanError(f"--images {', '.join(noise)}: give noise:N once (it names its images noise-000, ...)")
    repeated = sorted({v for v in stores if stores.count(v) > 1})
    if repeated:
        raise PlanError(f"--images {repeated[0]} is given more than once")
    stores_given = [f for f in files if Path(f).is_dir() and (Path(f) / MANIFEST).is_file()]
    if stores_given:   # its pictures are in its Parquet files: as a folder it gives none, beside others unnoticed
        raise ImageInputError(f"no image files found in {stores_given[0]}: a classweep store; start from its images "
                              f"with --images store:{stores_given[0]}")
    images = load_images(files, threads=threads, digest=source_hash, track=track) if files else []
    if noise:
        count, side = parse_noise(noise[0])
        images += noise_images(count, side or noise_side())
    if stores:
        writing, names, given = Store.open(writing_store), UniqueNames(), []
        for value in sorted(stores):   # whichever order they are given in, the same store takes the plain names
            images += store_images(value, writing, names, given, threads=threads, track=track)
    return images
