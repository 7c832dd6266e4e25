"""The Parquet store: atomic writes, the exact schema, manifests and refusal of a different configuration."""
from __future__ import annotations

import io
import json
import os
import sys
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.kinds import JobResult, JobSpec
from sweep.driver import SweepConfig, prepare
from sweep.store import (FAILURE_SCHEMA, FAILURES, IMAGES, TEMP_DIR, TEMP_GRACE, ManifestMismatch, Store, StoreError,
                         damaged_as_invalid, decode_png, failures_table, frames_table, images_schema, images_table,
                         manifest_differences, manifest_json, new_manifest, unreadable)

NAMES = tuple(f"class {i}" for i in range(5))


def result(job="octave", target=1, partner=-1, variant="", seed=0, error=None, size=6) -> JobResult:
    rng = np.random.default_rng(target)
    image = None if error else rng.integers(0, 256, (size, size + 1, 3), dtype=np.uint8)
    logits = None if error else rng.normal(size=5).astype(np.float32)
    return JobResult(JobSpec(job, target, seed, variant, partner), model="m", weights="w", schedule_id="s",
                     image=image, logits=logits, label=-1 if error else int(np.argmax(logits)), margin_label=2,
                     target_logit=0.5, target_prob=0.25, partner_logit=float("nan"), seconds=0.1, error=error)


def test_keys_are_one_format():
    from jobs.catalog import key_of
    assert key_of("addition", "merge", 3, 7, 2) == "addition:merge:3:7:2"
    assert key_of("octave", "", 4, -1, 0) == "octave:-:4:-1:0"
    assert key_of("transfigure", "", 3, -1, 2, "flower.jpg") == "transfigure:-:3:-1:2:flower.jpg"
    spec = JobSpec("transfigure", 3, seed=2, source="flower.jpg")
    assert spec.key == "transfigure:-:3:-1:2:flower.jpg"
    assert JobSpec("addition", 3, 2, "merge", 7).key == "addition:merge:3:7:2"


def test_images_table_schema_and_values():
    results = [result(target=1), result("addition", 2, 4, "merge"), result(target=3, error="went NaN")]
    table = images_table(results, NAMES, "host/abc")
    assert table.schema == images_schema(5)
    assert table.schema.field("logits").type == pa.list_(pa.float32(), 5)
    assert table.num_rows == 2                                    # failed results are not images
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == ["octave:-:1:-1:0", "addition:merge:2:4:0"]
    assert rows[1]["partner_name"] == "class 4" and rows[1]["partner"] == 4
    # missing values are nulls (issue 10.9), not -1 / "" / NaN
    assert [rows[0][c] for c in ("partner", "partner_name", "partner_logit", "source")] == [None] * 4
    assert rows[0]["label_name"] == NAMES[results[0].label]
    assert (rows[0]["width"], rows[0]["height"]) == (7, 6)
    np.testing.assert_array_equal(decode_png(rows[0]["png"]), results[0].image)      # lossless round trip
    logits = table.column("logits").combine_chunks().flatten().to_numpy().reshape(-1, 5)
    np.testing.assert_array_equal(logits[1], results[1].logits)


def test_frames_table_has_one_row_per_kept_frame_scored_on_that_frame():
    from jobs.kinds import Frame, scores
    rng = np.random.default_rng(7)
    frames = [Frame(step=10 * k, image=rng.integers(0, 256, (4 + k, 5, 3), dtype=np.uint8),
                    logits=rng.normal(size=5).astype(np.float32)) for k in range(3)]
    moving = result("interpolate", 2, 3)
    moving.frames = frames
    results = [result(target=1), moving, result(target=4, error="went NaN")]
    table = frames_table(results, NAMES, "w")
    assert table.schema == images_schema(5) and table.num_rows == 3               # only the interpolation's frames
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == [f"interpolate:-:2:3:0#frame{k}" for k in range(3)]
    assert [(r["frame"], r["step"], r["seconds"]) for r in rows] == [(0, 0, 0.0), (1, 10, 0.0), (2, 20, 0.0)]
    for row, frame in zip(rows, frames):
        want = scores(moving.spec, frame.logits)                                    # recomputed on the frame
        assert (row["label"], row["margin_label"]) == (want["label"], want["margin_label"])
        assert row["partner_logit"] == pytest.approx(want["partner_logit"]) and row["partner_name"] == "class 3"
        np.testing.assert_array_equal(decode_png(row["png"]), frame.image)
    finals = images_table(results, NAMES, "w", total_steps=30).to_pylist()        # the final images only
    assert [(r["key"], r["frame"], r["step"]) for r in finals] == [("octave:-:1:-1:0", -1, 30),
                                                                    ("interpolate:-:2:3:0", -1, 30)]


def test_images_and_frames_pngs_are_encoded_on_several_threads_into_the_same_bytes():
    """As the trajectories' snapshots: with `threads`, that many PNGs encode at once (Pillow lets go of the GIL),
    and the table is the one-at-a-time table byte for byte. Two encoders meet at a barrier: one at a time, the
    first would wait there alone until the timeout broke it."""
    import io
    import itertools

    import sweep.store
    from jobs.kinds import Frame
    results = [result(target=t, size=6 + t) for t in range(4)] + [result(target=0, error="went NaN")]
    moving = result("interpolate", 2, 3)
    moving.frames = [Frame(step=k, image=np.full((5, 4 + k, 3), 40 * k, np.uint8), logits=np.zeros(5, np.float32))
                     for k in range(3)]
    results.append(moving)

    def parquet(table: pa.Table) -> bytes:                  # a table's file (NaN partner logits: `equals` says no)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()
    encode = sweep.store.encode_png
    expected = [encode(r.image) for r in results if r.error is None]          # the old per-image encoding
    one, two = images_table(results, NAMES, "w", threads=1), images_table(results, NAMES, "w", threads=2)
    assert one.column("png").to_pylist() == expected and parquet(one) == parquet(two)
    frames = frames_table(results, NAMES, "w", threads=1)
    assert frames.column("png").to_pylist() == [encode(f.image) for f in moving.frames]
    assert parquet(frames) == parquet(frames_table(results, NAMES, "w", threads=3))

    both_running, calls = threading.Barrier(2, timeout=30), itertools.count()

    def meeting(image):
        if next(calls) < 2:                                 # the first two wait for each other
            both_running.wait()
        return encode(image)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep.store, "encode_png", meeting)
        assert images_table(results, NAMES, "w", threads=2).column("png").to_pylist() == expected
        calls, both_running = itertools.count(), threading.Barrier(2, timeout=30)
        assert frames_table(results, NAMES, "w", threads=2).column("png").equals(frames.column("png"))


def test_failures_table_schema():
    table = failures_table([(JobSpec("octave", 3), 2, "boom")], "host/x")
    assert table.schema == FAILURE_SCHEMA
    assert table.to_pylist()[0]["key"] == "octave:-:3:-1:0" and table.to_pylist()[0]["attempt"] == 2


def test_atomic_write_leaves_only_the_final_file(tmp_path):
    store = Store.open(str(tmp_path / "s"))
    table = images_table([result(target=1)], NAMES, "w")
    store.write_table(f"{IMAGES}/part-1.parquet", table)
    store.write_table(f"{IMAGES}/part-1.parquet", table)          # a re-run of the same batch overwrites
    assert sorted(p.name for p in (tmp_path / "s" / IMAGES).iterdir()) == ["part-1.parquet"]
    stored = pq.ParquetFile(tmp_path / "s" / IMAGES / "part-1.parquet")
    # PNG bytes are stored uncompressed (they are compressed already), every other column zstd: the logits' values
    # too, a list's leaf `logits.list.element` (options keyed by "logits" left them uncompressed, 7% larger)
    group = stored.metadata.row_group(0)
    compression = {group.column(i).path_in_schema: group.column(i).compression for i in range(group.num_columns)}
    assert compression.pop("png") == "UNCOMPRESSED" and compression["logits.list.element"] == "ZSTD"
    assert set(compression.values()) == {"ZSTD"}
    assert store.done_keys() == {"octave:-:1:-1:0"}


def test_leftover_temp_files_are_invisible_and_cleaned(tmp_path):
    store = Store.open(str(tmp_path))
    store.write_table(f"{IMAGES}/part-1.parquet", images_table([result(target=1)], NAMES, "w"))
    half = tmp_path / IMAGES / "_part-2.parquet.1234.tmp"
    half.write_bytes(b"PAR1 truncated")                           # what a killed writer leaves behind
    assert store.files(IMAGES) == [str(tmp_path / IMAGES / "part-1.parquet")]
    assert len(pd.read_parquet(tmp_path / IMAGES)) == 1           # readers skip "_" names too
    assert store.cleanup_temp() == 0 and half.exists()            # young: another command may be writing it
    os.utime(half, (time.time() - TEMP_GRACE - 1,) * 2)
    assert store.cleanup_temp() == 1 and not half.exists()


def test_a_temporary_another_command_is_writing_now_is_left_alone(tmp_path):
    store = Store.open(str(tmp_path))
    (tmp_path / TEMP_DIR).mkdir()
    now, then = tmp_path / TEMP_DIR / "classes.parquet.1a2b3c4d", tmp_path / TEMP_DIR / "part-1.parquet.5e6f7a8b"
    now.write_bytes(b"being written"), then.write_bytes(b"killed writer")
    os.utime(then, (time.time() - 3600,) * 2)
    assert store.cleanup_temp() == 1 and now.exists() and not then.exists()
    assert store.cleanup_temp(keep_younger_than=0) == 1 and not now.exists()


def failure_file(store: Store, name: str) -> str:
    return store.write_table(f"{FAILURES}/{name}.parquet",
                             failures_table([(JobSpec("octave", 1), 1, "injected")], "w"))


def assert_delete_file_removes_a_listed_file_and_lets_one_already_gone_be(store: Store) -> None:
    """`Store.delete_file` on paths that `files` lists (test_object_stores runs this on S3 and GCS too)."""
    failure_file(store, "part-1-a1"), failure_file(store, "part-1-a2")
    first, second = store.files(FAILURES)
    store.delete_file(first)
    store.delete_file(first)                                      # gone already (another command took it): no error
    assert store.files(FAILURES) == [second]


def test_delete_file_removes_a_listed_file_and_lets_one_already_gone_be(tmp_path):
    assert_delete_file_removes_a_listed_file_and_lets_one_already_gone_be(Store.open(str(tmp_path)))


def test_delete_file_asks_nothing_before_it_deletes(tmp_path):
    """One call a file, where `delete(relative)` asks first whether it exists (a request more on an object store)."""
    from pyarrow.fs import LocalFileSystem
    fs, calls = LocalFileSystem(), []

    class Recording:                      # the local file system, with a record of the calls made on it
        def __getattr__(self, name):
            attribute = getattr(fs, name)
            return (lambda *args, **kwargs: calls.append(name) or attribute(*args, **kwargs)) if callable(attribute) \
                else attribute

    store = Store(str(tmp_path), Recording(), str(tmp_path))
    path = failure_file(store, "part-1-a1")
    calls.clear()
    store.delete_file(path)
    assert calls == ["delete_file"] and store.files(FAILURES) == []


def test_unreadable_file_is_named(tmp_path):
    store = Store.open(str(tmp_path))
    (tmp_path / IMAGES).mkdir()
    (tmp_path / IMAGES / "part-9.parquet").write_bytes(b"not parquet")
    with pytest.raises(StoreError, match="part-9.parquet"):
        store.done_keys()


def test_read_file_gives_the_asked_columns_as_pyarrow_reads_them_and_refuses_a_missing_one(tmp_path):
    import dataclasses
    store = Store.open(str(tmp_path))
    rows = [result(target=1), dataclasses.replace(result("addition", 2, 4, "merge"), partner_logit=1.5)]   # no NaN
    store.write_table(f"{IMAGES}/part-1.parquet", images_table(rows, NAMES, "w"))
    (path,) = store.files(IMAGES)
    for columns in (["key"], ["key", "logits", "partner"], None):
        assert store.read_file(path, columns).equals(pq.read_table(path, columns=columns))   # pyarrow's reference
    with pytest.raises(pa.ArrowInvalid, match="no column nope"):
        store.read_file(path, ["key", "nope"])


def test_a_parquet_file_without_a_key_column_is_quarantined(tmp_path):
    store = Store.open(str(tmp_path))
    store.write_table(f"{IMAGES}/part-1.parquet", images_table([result(target=1)], NAMES, "w"))
    store.write_table(f"{IMAGES}/part-2.parquet", pa.table({"other": [1, 2]}))   # Parquet, but not an images file
    with pytest.raises(StoreError, match="part-2.parquet"):
        store.done_keys()
    assert [path.rsplit("/", 1)[1] for path, _ in store.quarantine_unreadable().moved] == ["part-2.parquet"]
    assert store.done_keys() == {"octave:-:1:-1:0"}


def test_a_damaged_frames_or_trajectories_file_sends_its_batch_to_run_again(tmp_path):
    """An image row implies its batch's frames/ and trajectories/ rows: with one of those files unreadable, the
    batch's images/ file and its other companion are moved aside too, so its items run again (else every reader
    would refuse the damaged file while `sweep run` found nothing to do)."""
    store = Store.open(str(tmp_path))
    for n in range(3):
        store.write_table(f"{IMAGES}/part-{n}.parquet", images_table([result(target=n)], NAMES, "w"))
    keyed = pa.table({"key": ["x"]})
    store.write_bytes("trajectories/part-0.parquet", b"truncated")                   # batch 0: trajectories lost
    store.write_bytes("frames/part-1.parquet", b"truncated")                         # batch 1: frames lost,
    store.write_table("trajectories/part-1.parquet", keyed)                          #   its trajectories readable
    store.write_table("trajectories/part-2.parquet", keyed)                          # batch 2: whole
    quarantine = store.quarantine_unreadable()
    moved = {"/".join(path.rsplit("/", 2)[1:]): why for path, why in quarantine.moved}
    assert moved["trajectories/part-0.parquet"].startswith("unreadable: ")
    assert moved["frames/part-1.parquet"].startswith("unreadable: ")
    assert moved[f"{IMAGES}/part-0.parquet"] == "readable, but its batch's trajectories/ file was not"
    assert moved[f"{IMAGES}/part-1.parquet"] == moved["trajectories/part-1.parquet"] == \
        "readable, but its batch's frames/ file was not"
    assert len(moved) == 5
    assert [path.rsplit("/", 1)[1] for path in quarantine.images] == ["part-2.parquet"]
    assert store.done_keys() == {"octave:-:2:-1:0"}
    assert sorted(p.name for p in (tmp_path / "quarantine" / IMAGES).iterdir()) == ["part-0.parquet", "part-1.parquet"]
    assert store.quarantine_unreadable().moved == []                                  # once


def test_a_frames_or_trajectories_file_whose_batch_wrote_no_images_file_is_set_aside(tmp_path):
    """A batch's frames/ and trajectories/ files are written before its images/ file: a run that stopped between
    them, resumed with batches cut otherwise, stores those items under other names, and the first file's rows (the
    steps of an image that was never stored) were taken by readers for the stored image's."""
    store = Store.open(str(tmp_path))
    keyed = pa.table({"key": ["octave:-:1:-1:0"]})
    store.write_table(f"{IMAGES}/part-new.parquet", images_table([result(target=1)], NAMES, "w"))
    for directory in ("trajectories", "frames"):
        store.write_table(f"{directory}/part-new.parquet", keyed)                       # the stored image's batch
        store.write_table(f"{directory}/part-old.parquet", keyed)                       # the stopped batch's
    store.write_bytes(f"{IMAGES}/part-bad.parquet", b"truncated")                       # unreadable images file,
    store.write_table("trajectories/part-bad.parquet", keyed)                           #   its companion readable
    moved = {"/".join(path.rsplit("/", 2)[1:]): why for path, why in store.quarantine_unreadable().moved}
    assert moved == {f"{IMAGES}/part-bad.parquet": moved[f"{IMAGES}/part-bad.parquet"],
                     "trajectories/part-old.parquet": "no images/ file of its batch: a run stopped before writing it",
                     "frames/part-old.parquet": "no images/ file of its batch: a run stopped before writing it",
                     "trajectories/part-bad.parquet": "readable, but its batch's images/ file was not"}
    assert store.files("trajectories") == [store.path("trajectories", "part-new.parquet")]
    assert store.files("frames") == [store.path("frames", "part-new.parquet")]
    assert store.quarantine_unreadable().moved == []                                    # once


def test_a_resume_says_it_set_an_orphaned_file_aside_without_saying_its_items_run_again(tmp_path):
    from sweep.driver import reconcile_store
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="octave", classes="0-1", batch_size=2))
    prepared.store.write_manifest(prepared.manifest)
    prepared.store.write_table(f"{IMAGES}/part-new.parquet", images_table([result(target=1)], NAMES, "w"))
    prepared.store.write_table("trajectories/part-old.parquet", pa.table({"key": ["octave:-:1:-1:0"]}))
    prepared.store.write_bytes(f"{IMAGES}/part-bad.parquet", b"truncated")
    out = io.StringIO()
    reconcile_store(prepared, out)
    lines = out.getvalue().splitlines()
    assert any(line.endswith("(no images/ file of its batch: a run stopped before writing it)") and
               "part-old.parquet" in line for line in lines), lines
    assert any("part-bad.parquet" in line and line.endswith(": its items run again") for line in lines), lines


def assert_one_pass_reads_each_key_column_once_and_the_next_only_new_files(store: Store) -> None:
    """What a resume reads of images/ (test_object_stores runs this on S3, where the reads run at once, and GCS):
    the quarantine pass reads each file's keys once, moves the unreadable file aside and gives the others' keys in
    the files' order; a later pass that knows them reads only the files added since, and drops a file gone."""
    names = [f"part-{n:02d}.parquet" for n in range(12)]
    for n, name in enumerate(names):
        store.write_table(f"{IMAGES}/{name}", images_table([result(target=n % 5, seed=n)], NAMES, "w"))
    store.write_bytes(f"{IMAGES}/part-05x.parquet", b"not parquet")
    reads, read_file = [], Store.read_file

    def counted(self, path, columns=None):
        reads.append(path.rsplit("/", 1)[1])
        return read_file(self, path, columns)

    def by_name(files: dict) -> dict:
        return {path.rsplit("/", 1)[1]: keys for path, keys in files.items()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "read_file", counted)
        quarantine = store.quarantine_unreadable()
        assert [path.rsplit("/", 1)[1] for path, _ in quarantine.moved] == ["part-05x.parquet"]
        expected = {name: [f"octave:-:{n % 5}:-1:{n}"] for n, name in enumerate(names)}
        assert list(by_name(quarantine.images).items()) == list(expected.items())     # in the files' order
        assert sorted(reads) == sorted([*names, "part-05x.parquet"])                   # each file once
        reads.clear()
        store.write_table(f"{IMAGES}/part-99.parquet", images_table([result(target=4, seed=99)], NAMES, "w"))
        store.delete(f"{IMAGES}/{names[0]}")
        later = by_name(store.keys_by_file(known=quarantine.images))
        assert later == {**{name: expected[name] for name in names[1:]}, "part-99.parquet": ["octave:-:4:-1:99"]}
        assert reads == ["part-99.parquet"]
        reads.clear()
        assert by_name(store.keys_by_file(known={**quarantine.images, store.path(IMAGES, names[1]): []})) == later
        assert sorted(reads) == [names[1], "part-99.parquet"]                           # known to hold no key: read


def test_one_pass_reads_each_key_column_once_and_the_next_only_new_files(tmp_path):
    assert_one_pass_reads_each_key_column_once_and_the_next_only_new_files(Store.open(str(tmp_path)))


def test_relative_and_file_uri_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Store.open("rel/store").root == str(tmp_path / "rel" / "store")
    store = Store.open(f"file://{tmp_path}/u")
    store.write_manifest({"format": 1})
    assert json.loads((tmp_path / "u" / "manifest.json").read_text()) == {"format": 1}


def test_manifest_differences_name_the_fields():
    stored = {"format": 1, "model": "digits", "weights": "shipped", "schedule_id": "a", "n_classes": 10,
              "options": {"jobs": ["octave"], "classes": list(range(10)), "seeds": 1}}
    wanted = json.loads(json.dumps(stored))
    assert manifest_differences(stored, wanted) == []
    wanted["schedule_id"] = "b"
    wanted["options"]["classes"] = [0, 1]
    differences = manifest_differences(stored, wanted)
    assert len(differences) == 2
    # the schedule by name (issue 10, "Smaller"), with the ids when one name holds two contents
    assert differences[0] == 'schedule is null (id a) in the store, null (id b) here'
    assert differences[1].startswith("classes")
    stored["schedule"], wanted["schedule"] = "googlenet", "tiny"
    assert manifest_differences(stored, wanted)[0] == 'schedule is "googlenet" in the store, "tiny" here'


def test_checked_manifest_reads_the_file_again_only_when_asked(tmp_path):
    store = Store.open(str(tmp_path / "s"))
    good = {"format": 1, "model": "digits", "weights": "w", "schedule_id": "a", "n_classes": 10, "options": {}}
    store.write_manifest(good)
    assert store.checked_manifest() == good
    store.write_manifest({**good, "n_classes": 0})                  # damaged after the first read
    assert store.checked_manifest() == good                          # the copy read before
    with pytest.raises(StoreError, match="not a classweep manifest"):
        store.checked_manifest(fresh=True)


def test_prepare_refuses_another_configuration_and_writes_nothing(tmp_path):
    config = SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                         jobs="octave", classes="0-4", batch_size=2)
    prepared = prepare(config)
    assert not (tmp_path / "s").exists()                          # prepare only checks
    prepared.store.write_manifest(prepared.manifest)
    # a store whose run wrote an image is held to its settings (one with none takes a corrected command: test_cli)
    prepared.store.write_bytes(f"{IMAGES}/part-000000-octave-0.parquet", b"PAR1")
    before = (tmp_path / "s" / "manifest.json").read_bytes()
    assert prepare(config).plan == prepared.plan                  # the same command is welcome
    with pytest.raises(ManifestMismatch, match=r"classes is .* in the store, \[0, 1, 2\] here") as error:
        prepare(SweepConfig(**{**config.__dict__, "classes": "0-2"}))
    assert "\n" not in str(error.value)
    with pytest.raises(ManifestMismatch, match='schedule is "tiny" in the store, "digits" here'):
        prepare(SweepConfig(**{**config.__dict__, "schedule": "digits"}))
    assert (tmp_path / "s" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name != TEMP_DIR) == [IMAGES, "manifest.json"]
    assert not any((tmp_path / "s" / TEMP_DIR).iterdir())         # temporaries live in .tmp/ (issue 10.7)


def test_another_spelling_of_the_same_schedules_resumes_and_other_schedules_are_still_refused(tmp_path):
    """The schedule set's id hashes how the command spelled it: `--job-schedule octave=tiny` repeating `--schedule
    tiny`, or a `--schedule` no job runs, was refused with the same schedule named on both sides."""
    config = SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                         jobs="octave,opposite", classes="0-1", batch_size=2)
    prepared = prepare(config)
    prepared.store.write_manifest(prepared.manifest)
    prepared.store.write_bytes(f"{IMAGES}/part-000000-octave-0.parquet", b"PAR1")      # held to its settings
    for spelled in (("octave=tiny",), ("octave=tiny", "opposite=tiny")):
        resumed = prepare(SweepConfig(**{**config.__dict__, "job_schedules": spelled}))
        assert resumed.manifest == prepared.manifest and resumed.plan == prepared.plan
    with pytest.raises(ManifestMismatch, match=r'octave: .* -> '):                       # another schedule for one job
        prepare(SweepConfig(**{**config.__dict__, "job_schedules": ("octave=digits",)}))
    every_job_its_own = SweepConfig(**{**config.__dict__, "store": str(tmp_path / "t"), "schedule": "digits",
                                       "job_schedules": ("octave=tiny", "opposite=tiny")})
    first = prepare(every_job_its_own)
    first.store.write_manifest(first.manifest)
    first.store.write_bytes(f"{IMAGES}/part-000000-octave-0.parquet", b"PAR1")
    assert prepare(SweepConfig(**{**every_job_its_own.__dict__, "schedule": "tiny", "job_schedules": ()})).manifest \
        == first.manifest
    # A store written before manifests kept each job's schedule is compared by the set's id, as then.
    older = {k: v for k, v in prepared.manifest.items() if k not in ("job_schedules", "schedule_contents")}
    prepared.store.write_manifest(older)
    assert prepare(config).manifest == older
    with pytest.raises(ManifestMismatch, match=r'schedule is "tiny" \(id \w+\) in the store, "tiny" \(id'):
        prepare(SweepConfig(**{**config.__dict__, "job_schedules": ("octave=tiny",)}))


def test_an_older_store_listing_every_pair_resumes_and_other_pairs_are_refused_in_one_short_line(tmp_path):
    """F8: a store written before "all" lists every pair; the same command resumes it, other pairs are refused."""
    config = SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                         jobs="addition", classes="0-4", variants="merge", batch_size=2)
    prepared = prepare(config)
    assert prepared.manifest["options"]["pairs"] == "all"
    older = {**prepared.manifest, "options": {**prepared.manifest["options"],
                                              "pairs": [list(p) for p in prepared.plan.pairs]}}
    prepared.store.write_manifest(older)
    prepared.store.write_bytes(f"{IMAGES}/part-000000-addition-0.parquet", b"PAR1")   # held to its settings
    assert prepare(config).plan == prepared.plan
    typed = ",".join(f"{a}+{b}" for a, b in prepared.plan.pairs)                        # every pair, typed out
    assert prepare(SweepConfig(**{**config.__dict__, "pairs": typed})).plan == prepared.plan
    with pytest.raises(ManifestMismatch) as error:
        prepare(SweepConfig(**{**config.__dict__, "pairs": "0+1,2+3"}))
    assert 'sweep: pairs is "all" in the store, [[0, 1], [2, 3]] here (use' in str(error.value)   # the list read so


def test_a_run_on_an_older_store_listing_every_pair_writes_all_in_its_place(tmp_path):
    """An older store's list of every pair (6 MB at 1000 classes) was written back as a list by each run."""
    from sweep.driver import record_run
    config = SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                         jobs="addition", classes="0-4", variants="merge", batch_size=2)
    prepared = prepare(config)
    listed = [list(p) for p in prepared.plan.pairs]
    prepared.store.write_manifest({**prepared.manifest, "options": {**prepared.manifest["options"], "pairs": listed}})
    record_run(prepared.store, {"batch_size": 2})
    manifest = prepared.store.read_manifest()
    assert manifest["options"]["pairs"] == "all" and manifest["runs"][-1] == {"batch_size": 2}
    assert prepare(config).plan == prepared.plan
    some = {**prepared.manifest, "options": {**prepared.manifest["options"], "pairs": listed[:3]}}
    prepared.store.write_manifest(some)                                     # a selection stays the list it is
    record_run(prepared.store, {"batch_size": 2})
    assert prepared.store.read_manifest()["options"]["pairs"] == listed[:3]


def test_a_refusal_summarises_a_long_pair_list():
    stored = {"options": {"classes": list(range(1000)), "pairs": "all"}}
    wanted = {"options": {"classes": list(range(1000)), "pairs": [[b, a] for a in range(1000) for b in range(a)]}}
    assert manifest_differences(stored, wanted) == [
        'pairs is "all" in the store, 499500 pairs [0+1, 0+2, 1+2, ..., 998+999] here']


def test_a_manifest_of_all_pairs_of_1000_classes_is_small_and_reads_back(tmp_path):
    """F8: 14 MB and two million lines with the pairs listed and json.dumps(indent=1)."""
    from sweep.plan import Plan, make_plan
    plan = make_plan(n_classes=1000, pairs="all")
    manifest = new_manifest(model="m", weights="w", weights_source="DEFAULT", schedule="s", schedule_id="s0",
                            class_names=[f"class number {c}" for c in range(1000)], options=plan.options(),
                            schedule_contents={"s0": {"octaves": [{"lr": [1.5, 1.0], "crop": None}], "C": 200.0}})
    store = Store.open(str(tmp_path / "s"))
    store.write_manifest(manifest)
    text = (tmp_path / "s" / "manifest.json").read_text()
    assert len(text) < 100_000 and len(text.splitlines()) < 500
    assert store.read_manifest() == manifest and Plan.from_options(store.read_manifest()["options"]) == plan
    assert '     "lr": [1.5, 1.0],\n' in text                                           # the schedule stays readable


@pytest.mark.parametrize("value", [
    {"a": [], "b": {}, "c": [1, "two", None, True, 2.5], "d": [[0, 1], [2, 3]], "e": [{"f": [1, 2]}, 3, [[4]]]},
    {"long": list(range(500)), "names": ["x" * 200, "y, z"], "pairs": [[a, a + 1] for a in range(300)]},
    {1: "an int key", "nested": {"deeper": {"list": [{"x": 1}, {"y": [2, 3]}]}}, "tuple": (1, 2)},
    [], "text", 3,
])
def test_manifest_json_is_json_laid_out_in_lines_of_at_most_120_characters(value):
    text = manifest_json(value)
    assert json.loads(text) == json.loads(json.dumps(value))
    assert all(len(line) <= 120 for line in text.splitlines() if "x" * 200 not in line)


def test_parquet_without_manifest_is_refused(tmp_path):
    Store.open(str(tmp_path)).write_table(f"{IMAGES}/foreign.parquet", pa.table({"x": [1]}))
    with pytest.raises(StoreError, match="no manifest"):
        prepare(SweepConfig(store=str(tmp_path), model="digits", weights="random", schedule="tiny"))


def test_object_store_writes_are_single_puts(monkeypatch):
    """On an object store (here pyarrow's in-memory mock file system, treated like S3) nothing is renamed."""
    from pyarrow.fs import FileSelector, _MockFileSystem
    import sweep.store as store_module
    monkeypatch.setattr(store_module, "OBJECT_STORES", ("mock",))
    fs = _MockFileSystem()
    calls = []

    class Recording:                      # the mock file system, with a record of the write calls made on it
        def __getattr__(self, name):
            attribute = getattr(fs, name)
            if callable(attribute) and name in ("move", "open_output_stream", "create_dir"):
                return lambda *args, **kwargs: calls.append((name, args[0])) or attribute(*args, **kwargs)
            return attribute

    writer = Store("mock://bucket/run", Recording(), "bucket/run")
    writer.write_table(f"{IMAGES}/part-1.parquet", images_table([result(target=1)], NAMES, "w"))
    writer.write_manifest({"format": 1})
    assert "move" not in {name for name, _ in calls}       # no temp name, no rename: the final key only
    assert {path for name, path in calls if name == "open_output_stream"} == {
        "bucket/run/images/part-1.parquet", "bucket/run/manifest.json"}
    written = sorted(info.path for info in fs.get_file_info(FileSelector("bucket", recursive=True))
                     if info.type.name == "File")
    assert written == ["bucket/run/images/part-1.parquet", "bucket/run/manifest.json"]
    reader = Store("mock://bucket/run", fs, "bucket/run")
    assert reader.done_keys() == {"octave:-:1:-1:0"} and reader.read_manifest() == {"format": 1}


def test_an_object_stores_parquet_file_is_fetched_whole_never_opened_for_random_access(monkeypatch):
    """pyarrow's GCS random-access file opens its download holding the GIL (no other thread, no timeout runs):
    `parquet_file` reads an object through one stream instead, then from memory."""
    from pyarrow.fs import _MockFileSystem
    import sweep.store as store_module
    monkeypatch.setattr(store_module, "OBJECT_STORES", ("mock",))
    fs, opened = _MockFileSystem(), []

    class Recording:                      # the mock file system, with a record of the files opened for reading
        def __getattr__(self, name):
            attribute = getattr(fs, name)
            if name in ("open_input_file", "open_input_stream"):
                return lambda *args, **kwargs: opened.append(name) or attribute(*args, **kwargs)
            return attribute

    store = Store("mock://bucket/run", Recording(), "bucket/run")
    store.write_table(f"{IMAGES}/part-1.parquet", images_table([result(target=1), result(target=2)], NAMES, "w"))
    (path,) = store.files(IMAGES)
    parquet = store.parquet_file(path)
    assert parquet.read(columns=["target"]).column("target").to_pylist() == [1, 2]
    assert opened == ["open_input_stream"]


def test_within_returns_raises_or_gives_up_on_a_call_that_does_not_end():
    from sweep.store import within
    assert within(5, divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        within(5, divmod, 1, 0)
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError, match="no answer in 0.1 s"):
            within(0.1, release.wait)
    finally:
        release.set()


def test_cleanup_removes_only_temporaries_not_sources_named_with_an_underscore(tmp_path):
    store = Store.open(str(tmp_path / "s"))
    pixels = np.zeros((4, 4, 3), np.uint8)
    kept = store.write_source("_cat.jpg", pixels)
    leftover = tmp_path / "s" / "images" / "_part-000001.parquet.1a2b3c4d.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    assert store.cleanup_temp(keep_younger_than=0) == 1
    assert not leftover.exists() and os.path.exists(kept)
    np.testing.assert_array_equal(store.read_source("_cat.jpg"), pixels)


def test_a_killed_write_leaves_its_temporary_where_no_reader_looks(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    store = Store.open(str(tmp_path))
    store.write_table(f"{IMAGES}/part-1.parquet", images_table([result(target=1), result("addition", 2, 4, "merge")],
                                                               NAMES, "w"))
    blocker = tmp_path / IMAGES / "part-2.parquet" / "x"
    blocker.mkdir(parents=True)                                   # the rename into place fails: a killed writer
    with pytest.raises(OSError):
        store.write_table(f"{IMAGES}/part-2.parquet", images_table([result(target=3)], NAMES, "w"))
    blocker.rmdir(), blocker.parent.rmdir()
    assert [p.name for p in (tmp_path / IMAGES).iterdir()] == ["part-1.parquet"]
    frame = pd.read_parquet(tmp_path / IMAGES)
    table = ds.dataset(tmp_path / IMAGES, format="parquet").to_table()
    assert len(frame) == table.num_rows == 2
    # nulls, not -1 / "" / NaN: an average over the column skips the images without a partner (issue 10.9)
    assert pc.mean(table["partner"]).as_py() == 4 and table["partner_logit"].null_count == 1
    assert frame["partner"].isna().tolist() == [True, False] and frame["source"].isna().all()
    # A write that fails (here the rename; disk full alike) removes its own temporary (issue 18.3); only a killed
    # writer leaves one, for `cleanup_temp`.
    assert not any((tmp_path / ".tmp").iterdir()) and store.cleanup_temp() == 0


def test_png_column_has_no_statistics(tmp_path):
    store = Store.open(str(tmp_path))
    path = store.write_table(f"{IMAGES}/part-1.parquet", images_table([result(target=1)], NAMES, "w"))
    metadata = pq.ParquetFile(path).metadata
    columns = {metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i)
               for i in range(metadata.num_columns)}
    assert not columns["png"].is_stats_set and columns["key"].is_stats_set


def test_the_manifest_keeps_each_schedule_and_an_edited_schedule_file_is_refused_naming_what_changed(tmp_path):
    """A walk-through edited a schedule file and was told only that the ids differ: the store now keeps every
    schedule's content, so the refusal names the changed fields (and the store says what it was made with)."""
    from jobs.schedules import load_schedule
    schedule_file = tmp_path / "fast.json"
    original = load_schedule("tiny").to_dict()
    schedule_file.write_text(json.dumps({**original, "name": "fast"}))
    config = SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule=str(schedule_file),
                         jobs="octave", classes="0-1", batch_size=2)
    prepared = prepare(config)
    (job_schedule,) = prepared.manifest["job_schedules"].values()
    kept = prepared.manifest["schedule_contents"][job_schedule["schedule_id"]]
    assert kept == {**original, "name": "fast"}                    # the whole schedule, as the file said
    prepared.store.write_manifest(prepared.manifest)
    prepared.store.write_bytes(f"{IMAGES}/part-000000-octave-0.parquet", b"PAR1")
    edited = json.loads(json.dumps(kept))
    edited["octaves"][0]["lr"] = [x * 2 for x in edited["octaves"][0]["lr"]]
    edited["init_std"] = kept["init_std"] + 1
    schedule_file.write_text(json.dumps(edited))
    with pytest.raises(ManifestMismatch) as error:
        prepare(config)
    message = str(error.value)
    assert 'schedule is "fast" (id ' in message and "changed: " in message
    assert f"octave: init_std {json.dumps(kept['init_std'])} -> {json.dumps(edited['init_std'])}" in message
    assert f"octave: octaves[0].lr {json.dumps(kept['octaves'][0]['lr'])} -> " in message


def test_changed_fields_walks_nested_schedules_and_says_nothing_for_older_stores():
    from sweep.store import changed_fields, schedule_changes
    before = {"name": "a", "octaves": [{"lr": [1, 2], "size": 8}], "init_std": 0.1}
    after = {"name": "b", "octaves": [{"lr": [1, 3], "size": 8}], "init_std": 0.1, "jitter": 0.5}
    assert changed_fields(before, after) == ["jitter null -> 0.5", "octaves[0].lr [1, 2] -> [1, 3]"]
    assert changed_fields(before, {**before, "octaves": []}) == ['octaves [{"lr": [1, 2], "size": 8}] -> []']
    older = {"job_schedules": {"octave": {"schedule_id": "x"}}}   # written before manifests kept contents
    newer = {"job_schedules": {"octave": {"schedule_id": "y"}}, "schedule_contents": {"y": after}}
    assert schedule_changes(older, newer) == ""


def test_a_fingerprint_changes_with_the_parquet_files_below_its_directory_only(tmp_path):
    """`sweep figures` compares the images/ and scores/ fingerprints with the analysis's (audit #6)."""
    st = Store.open(str(tmp_path / "s"))
    table = pa.table({"x": [1]})
    st.write_table(f"{IMAGES}/part-0.parquet", table)
    images, scores = st.fingerprint(), st.fingerprint("scores")
    st.write_table("scores/other.w/part-0.parquet", table)                 # a scorer's part, one folder down
    st.write_bytes("scores/other.w/_scorer.json", b"{}")                   # not a Parquet part: not counted
    after = st.fingerprint("scores")
    assert st.fingerprint() == images and after != scores
    st.write_bytes("scores/other.w/_scorer.json", b"{\"changed\": 1}")
    assert st.fingerprint("scores") == after
    st.write_table("scores/other.w/part-1.parquet", table)
    assert st.fingerprint("scores") != after and st.fingerprint() == images


def test_a_store_that_recorded_variants_no_job_reads_resumes_without_the_option(tmp_path):
    """A regression walk-through: a store made by an earlier version with `--jobs octave --variants merge` (which
    `sweep run` now refuses) recorded the variants, and could then be resumed neither with the option nor without."""
    config = SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                         jobs="octave", classes="0-1", batch_size=2)
    prepared = prepare(config)
    manifest = {**prepared.manifest, "options": {**prepared.manifest["options"], "variants": ["merge"]}}
    prepared.store.write_manifest(manifest)
    prepared.store.write_bytes(f"{IMAGES}/part-000000-octave-0.parquet", b"PAR1")   # the store holds images
    assert prepare(config).manifest["options"]["variants"] == ["merge"]             # resumed: the store's manifest
    with pytest.raises(ManifestMismatch, match=r'jobs is \["octave"\] in the store'):      # another sweep still
        prepare(SweepConfig(**{**config.__dict__, "jobs": "octave,addition", "pairs": "0+1"}))


# Errors as pyarrow words them (the service ones from arrow's S3 and GCS clients, seen on moto and the GCS emulator).
SERVICE = "google::cloud::Status(UNAVAILABLE: Retry policy exhausted, with a last message of PerformWork() - CURL"
DAMAGED = ("Couldn't deserialize thrift: TProtocolException: Invalid data", "Corrupt snappy compressed data.")


@pytest.mark.parametrize("raised, taken_as", [
    *[(OSError(message), pa.ArrowInvalid) for message in DAMAGED],
    (OSError("When reading information for key 'b/x' in bucket 'b': AWS Error NETWORK_CONNECTION during HeadObject "
             "operation: curlCode: 7, Couldn't connect to server"), OSError),
    (OSError(SERVICE), OSError),
    (FileNotFoundError("b/x.parquet"), FileNotFoundError),
    (pa.ArrowInvalid("Parquet magic bytes not found in footer"), pa.ArrowInvalid),
    (pa.ArrowInvalid("google::cloud::Status(INVALID_ARGUMENT: a refused request)"), OSError),
])
def test_a_read_error_on_an_object_store_is_the_files_unless_the_service_marked_it(raised, taken_as):
    """The file's errors come out as ArrowInvalid (refused or set aside by name), the store's as OSError (the
    command stops as the store's failure): the S3 and GCS clients mark each of theirs, Parquet's readers none."""
    with pytest.raises(Exception) as caught:
        with damaged_as_invalid():
            raise raised
    assert type(caught.value) is taken_as


def test_a_refusal_names_the_file_once():
    error = OSError("Could not open Parquet input source 'b/s/images/part-1.parquet': Couldn't deserialize thrift")
    assert unreadable("images/part-1.parquet", error).startswith(
        "unreadable file images/part-1.parquet: Couldn't deserialize thrift (`sweep run --check-files` with the "
        "store's command")


def test_a_corrected_command_with_another_picture_under_the_same_name_stores_the_new_picture(tmp_path):
    """A first run that stored no image takes a corrected command (test_cli), and the manifest then keeps the new
    picture's hash: the picture the workers read from sources/ must be the new one too, not the first run's."""
    import io
    from PIL import Image
    from sweep.driver import reconcile_store
    picture = tmp_path / "cat.png"
    store = str(tmp_path / "s")
    config = SweepConfig(store=store, model="digits", weights="random", schedule="tiny", jobs="transfigure",
                         classes="0-1", images=(str(picture),))
    for value in (0, 200):                          # the wrong picture first, then the right one
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(picture)
        prepared = prepare(config)
        reconcile_store(prepared, io.StringIO())    # the first run stops before any image is stored
    st = Store.open(store)
    (name,) = prepared.sources
    assert st.read_manifest()["sources"] == prepared.manifest["sources"]
    assert (st.read_source(name) == prepared.sources[name].read()).all()


def test_a_corrected_command_drops_what_the_first_command_left_beside_its_missing_images(tmp_path):
    """A batch writes its frames/ and trajectories/ files before its images/ file: a first run stopped between them
    leaves the first command's frames and steps in a store that then takes a corrected command (another schedule
    here). They go with the first command's failures, or the readers (first file by name) would take them for the
    new sweep's."""
    import io
    from sweep.driver import reconcile_store
    from sweep.store import FRAMES, TRAJECTORIES
    config = SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="digits",
                         jobs="interpolate", classes="0-1", pairs="0+1", images=("noise:1",), batch_size=1)
    first = prepare(config)
    first.store.write_manifest(first.manifest)
    key = first.plan.items()[0].key
    for directory, rows in ((FRAMES, [f"{key}#frame0"]), (TRAJECTORIES, [key]), (FAILURES, [key])):
        first.store.write_table(f"{directory}/part-000000-old.parquet", pa.table({"key": rows}))
    corrected = prepare(SweepConfig(**{**config.__dict__, "schedule": "tiny"}))
    reconcile_store(corrected, io.StringIO())
    assert [corrected.store.files(d) for d in (FRAMES, TRAJECTORIES, FAILURES)] == [[], [], []]
    assert corrected.store.read_manifest()["schedule"] == "tiny"


@pytest.mark.parametrize("uri", ["abfs://container@account.dfs.core.windows.net/run", "mock:///run"])
def test_a_store_on_a_file_system_with_no_lease_of_its_own_is_refused(tmp_path, monkeypatch, uri):
    """pyarrow opens more file systems than the store knows: on Azure the lease (only a disk's or S3/GCS's) was a
    lease.json on this machine's disk, under the working directory, which no other driver sees."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"a directory, a file:// path, or an s3:// or gs:// URI") as refused:
        Store.open(uri)
    assert "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def damaged_column(path: str, column: str) -> None:
    """Overwrite the page header of one column's chunk in a Parquet file on disk: the other columns still read."""
    metadata = pq.read_metadata(path)
    chunk = next(metadata.row_group(0).column(i) for i in range(metadata.num_columns)
                 if metadata.row_group(0).column(i).path_in_schema == column)
    with open(path, "r+b") as handle:
        handle.seek(chunk.data_page_offset)
        handle.write(b"\xff" * 16)


def test_a_file_damaged_in_its_pictures_is_set_aside_by_the_whole_file_check_only(tmp_path):
    """The resume's pass reads the keys only, so a file whose PNG column cannot be decoded passes it, while `export`
    and `figures` refuse the file: `sweep run --check-files` reads every column and sets it aside, and the readers'
    refusal names that option."""
    store = Store.open(str(tmp_path))
    for n in range(2):
        store.write_table(f"{IMAGES}/part-{n}.parquet", images_table([result(target=n)], NAMES, "w"))
    damaged_column(store.files(IMAGES)[1], "png")
    assert store.quarantine_unreadable().moved == []                                 # the keys read fine
    with pytest.raises(StoreError) as refused:
        store.read(IMAGES)                                                            # every column, as export
    assert str(refused.value).startswith(f"unreadable file {store.files(IMAGES)[1]}: ") and \
        "(`sweep run --check-files` with the store's command moves it into quarantine/" in str(refused.value)
    checked = store.quarantine_unreadable(whole_files=True)
    assert [(path.rsplit("/", 1)[1], why.split(":")[0]) for path, why in checked.moved] == [
        ("part-1.parquet", "unreadable")]
    assert store.done_keys() == {"octave:-:0:-1:0"}


def test_sweep_run_check_files_reaches_the_resume_s_pass(tmp_path, monkeypatch):
    import io
    from click.testing import CliRunner
    import sweep.cli as cli_module
    from sweep.driver import reconcile_store
    from sweep.store import Quarantine
    configs = []
    monkeypatch.setattr(cli_module, "run_sweep", lambda config: configs.append(config) or sys.exit(0))
    for flag in ([], ["--check-files"]):
        CliRunner().invoke(cli_module.main, ["run", "--store", str(tmp_path / "s"), "--model", "digits", "--weights",
                                             "random", "--schedule", "tiny", "--classes", "0-1", "--jobs", "octave",
                                             *flag])
    assert [config.check_files for config in configs] == [False, True]
    passes = []
    monkeypatch.setattr(Store, "quarantine_unreadable",
                        lambda self, *a, whole_files=False: passes.append(whole_files) or Quarantine([], {}))
    for config in configs:
        reconcile_store(prepare(config), io.StringIO())
    assert passes == [False, True]


def test_kept_objects_keep_what_fits_in_their_budget(tmp_path):
    """`Store.keeping_objects`' local copies: an object is kept while it fits in what is left of the budget (one that
    does not fit is fetched again when read again), each once, and let go when read for the last time (its bytes
    back in the budget); a local store is read where it is."""
    from sweep.store import KeptObjects
    kept = KeptObjects(str(tmp_path), budget=10)
    kept.keep("b/images/a", b"123456")
    kept.keep("b/images/a", b"123456")                     # kept already: nothing more taken of the budget
    kept.keep("b/images/b", b"12345")                      # 5 > the 4 bytes left
    kept.keep("b/images/c", b"1234")
    assert [kept.read(f"b/images/{name}") for name in "abc"] == [b"123456", None, b"1234"]
    assert kept.budget == 0 and len(os.listdir(tmp_path)) == 2
    kept.drop("b/images/a")                                # read for the last time: its bytes back in the budget
    kept.drop("b/images/b")                                # never kept: nothing to do
    assert kept.read("b/images/a") is None and kept.budget == 6 and len(os.listdir(tmp_path)) == 1
    from sweep.store import KEPT_MAX_BYTES, kept_budget
    assert kept_budget(1000) == 500 and kept_budget(100 * KEPT_MAX_BYTES) == KEPT_MAX_BYTES == 8 << 30
    store = Store.open(str(tmp_path / "s"))
    with store.keeping_objects() as same:
        assert same is store and same.kept is None
        same.let_go(same.path("images", "part-1.parquet"))   # nothing kept, nothing to let go


def test_kept_objects_keep_one_copy_of_an_object_two_threads_keep_at_once(tmp_path, monkeypatch):
    """Two threads fetching one object both kept it: the budget paid for it twice and the first copy stayed on disk,
    unnamed, until the command ended. Here the other thread keeps it while this one names its copy."""
    import uuid

    import sweep.store as store_module
    from sweep.store import KeptObjects
    kept, real = KeptObjects(str(tmp_path), budget=100), uuid.uuid4

    def other_thread_first():
        monkeypatch.setattr(store_module.uuid, "uuid4", real)
        kept.keep("b/images/a", b"123456")
        return real()
    monkeypatch.setattr(store_module.uuid, "uuid4", other_thread_first)
    kept.keep("b/images/a", b"123456")
    assert kept.read("b/images/a") == b"123456" and kept.budget == 94 and len(os.listdir(tmp_path)) == 1


def test_kept_objects_never_fail_the_read_they_save(tmp_path):
    """A copy that cannot be written (a full disk; here its folder is gone) raised OSError out of the read that had
    fetched the object, which the store's readers took for a failure of the object store; and a copy let go on
    another thread between the lookup and the open raised FileNotFoundError. Keeping only saves fetches."""
    from sweep.store import KeptObjects
    kept = KeptObjects(str(tmp_path / "gone"), budget=100)
    kept.keep("b/images/a", b"123456")
    assert kept.read("b/images/a") is None and kept.budget == 100
    kept = KeptObjects(str(tmp_path), budget=100)
    kept.keep("b/images/a", b"123456")
    os.remove(kept.files["b/images/a"])   # as `drop` on another thread does after the lookup
    assert kept.read("b/images/a") is None


def test_same_store_tells_one_bucket_name_on_two_endpoints_apart(monkeypatch):
    """`s3://b/x` on two S3-compatible endpoints is two stores; `same_store` compared the bucket and path alone. The
    command line opens every store under one environment (so one endpoint); a library caller may open them under
    two. Two openings under one endpoint are still one store."""
    from sweep.store import same_store
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    first, again = Store.open("s3://b/x"), Store.open("s3://b/x/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.2:9")
    elsewhere = Store.open("s3://b/x")
    assert same_store(first, again)
    assert not same_store(first, elsewhere)
