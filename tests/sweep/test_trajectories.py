"""`sweep run --trajectory`: the worker writes trajectories/ with the batch (before its images), exactly once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from jobs.render import TrajectoryOptions
from jobs.schedules import load_schedule
from sweep.cli import main
from sweep.driver import SweepConfig, prepare
from sweep.plan import make_plan
from sweep.store import IMAGES, TRAJECTORIES, ManifestMismatch, Store, decode_png
from sweep.worker import SweepWorker, WorkerConfig
from sweep_fakes import build_store

HERE = Path(__file__).parent
EVERY = TrajectoryOptions(every=1, snapshots=2)


def worker(store, trajectory=EVERY, engine="jobs.kinds:run_batch"):
    return SweepWorker(WorkerConfig(str(store), "digits", "random", load_schedule("tiny"), engine,
                                    trajectory=trajectory))


def test_worker_writes_one_trajectory_row_per_image_and_step_and_reruns_overwrite(tmp_path):
    batch = make_plan(n_classes=10, jobs="octave", classes="0-2", batch_size=3).batches()[0]
    w = worker(tmp_path)
    w.run(batch, (1, 1, 1))
    first = (tmp_path / TRAJECTORIES / f"{batch.name}.parquet").stat().st_mtime_ns
    w.run(batch, (1, 1, 1))                                  # the driver re-runs a batch whose report was lost
    assert sorted(p.name for p in (tmp_path / TRAJECTORIES).iterdir()) == [f"{batch.name}.parquet"]
    assert (tmp_path / TRAJECTORIES / f"{batch.name}.parquet").stat().st_mtime_ns >= first
    rows = pd.read_parquet(tmp_path / TRAJECTORIES)
    assert sorted(set(rows.key)) == sorted(batch.keys) and not rows.duplicated(["key", "step"]).any()
    assert rows.groupby("key").step.apply(list).map(lambda s: sorted(s) == [0, 1, 2, 3]).all()
    assert (rows.octave == (rows.step >= 2)).all()           # tiny: 2 steps per octave
    assert (rows.target_rank >= 1).all() and rows.topk_classes.map(len).eq(5).all()
    snaps = rows[rows.png.notna()]
    assert sorted(set(snaps.step)) == [0, 2] and snaps.logits.map(len).eq(10).all()
    assert rows[rows.png.isna()].logits.isna().all()
    assert decode_png(snaps.png.iloc[0]).shape in {(32, 32, 3), (40, 40, 3)}
    top1 = rows.topk_classes.map(lambda c: int(c[0]))
    assert (top1 == rows.label).all() and ((rows.target_rank == 1) == (rows.label == rows.target)).all()


def test_trajectories_are_written_before_images(tmp_path, monkeypatch):
    order = []
    original = Store.write_table
    monkeypatch.setattr(Store, "write_table", lambda self, rel, table: (order.append(rel.split("/")[0]),
                                                                        original(self, rel, table))[1])
    batch = make_plan(n_classes=10, jobs="octave", classes="3-4", batch_size=2).batches()[0]
    worker(tmp_path).run(batch, (1, 1))
    assert order == [TRAJECTORIES, IMAGES]


def test_without_the_option_no_trajectories_are_written(tmp_path):
    batch = make_plan(n_classes=10, jobs="octave", classes="5", batch_size=1).batches()[0]
    worker(tmp_path, trajectory=None).run(batch, (1,))
    assert (tmp_path / IMAGES).exists() and not (tmp_path / TRAJECTORIES).exists()


def test_the_option_is_recorded_in_the_manifest_and_a_run_without_it_is_refused(tmp_path):
    store = tmp_path / "s"
    base = dict(store=str(store), model="digits", weights="random", schedule="tiny", jobs="octave", classes="0-1")
    prepared = prepare(SweepConfig(**base, trajectory=TrajectoryOptions(every=10, snapshots=50)))
    assert prepared.manifest["options"]["trajectory"] == {"every": 10, "snapshots": 50, "k": 5}
    assert "trajectory" not in prepare(SweepConfig(**base)).manifest["options"]
    Store.open(str(store)).write_manifest(prepared.manifest)
    Store.open(str(store)).write_table(f"{IMAGES}/part-x.parquet", pa.table({"key": ["octave:-:0:-1:0"]}))
    with pytest.raises(ManifestMismatch, match="trajectory"):
        prepare(SweepConfig(**base))


@pytest.mark.parametrize("value", ["every:0", "every:3,snapshots:4", "sometimes"])
def test_bad_trajectory_option_is_one_line_and_writes_nothing(tmp_path, value):
    result = CliRunner().invoke(main, ["run", "--store", str(tmp_path / "s"), "--model", "digits", "--weights",
                                       "random", "--trajectory", value])
    first = result.output.splitlines()[0]     # one Error line (then click's hint)
    assert result.exit_code == 2 and first.startswith("Error:") and "--trajectory" in first
    assert not (tmp_path / "s").exists()


def test_a_sweeps_trajectories_feed_the_analysis_and_the_videos(tmp_path):
    """A sweep's store with trajectories (written in-process, as its workers write them; test_driver resumes one through
    the driver and Ray): the stability table, and the video of a key with snapshots but none of a key without."""
    store = tmp_path / "s"
    build_store(store, jobs="octave", classes="0-5", pairs=None, batch_size=2,
                trajectory=TrajectoryOptions(every=2, snapshots=2))
    images = pd.read_parquet(store / IMAGES, columns=["key"])
    assert len(images) == 6

    from analysis import analyze_store
    summary = analyze_store(str(store))
    assert [s["octave"] for s in summary.stability] == [1, 2] and summary.stability[0]["images"] == 6
    key = sorted(images.key)[0]
    missing = CliRunner().invoke(main, ["figures", "--store", str(store), "--trajectories", "octave:-:9:-1:0"])
    assert missing.exit_code == 2 and "no snapshots of octave:-:9:-1:0" in missing.output
    assert not (store / "figures").exists()
    made = CliRunner().invoke(main, ["figures", "--store", str(store), "--trajectories", key])
    assert made.exit_code == 0, made.output
    gif = store / "figures" / f"trajectory-{key.replace(':', '_')}.gif"
    from PIL import Image
    assert Image.open(gif).n_frames == 3                         # snapshots at steps 0 and 2, the final image
    page = (store / "figures" / "classes" / f"{int(key.split(':')[2]):04d}.html").read_text()
    assert f"../{gif.name}" in page and (store / "figures" / "stability.png").exists()


def test_stability_command_refuses_a_store_without_trajectories(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE.parent / "analysis"))
    from handmade import make_small_store
    store = make_small_store(tmp_path / "s")
    result = CliRunner().invoke(main, ["stability", store, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "no trajectories" in result.output
    assert not (tmp_path / "out").exists()


def test_an_additions_snapshots_carry_its_partner_for_the_video(tmp_path):
    """The video marks an addition's second class: `read_snapshots` takes it from the stored image's row."""
    from analysis.report import read_snapshots
    from jobs.catalog import key_of
    build_store(tmp_path / "s", jobs="octave,addition", classes="2,4,7", pairs="7+2", variants="merge",
                trajectory=TrajectoryOptions(every=2, snapshots=2))
    addition, octave = key_of("addition", "merge", 7, 2, 0), key_of("octave", "", 4, -1, 0)
    shots = read_snapshots(Store.open(str(tmp_path / "s")), [addition, octave])
    assert set(shots[addition]["partner"]) == {2} and shots[addition]["final"].iloc[-1]
    assert set(shots[octave]["partner"]) == {-1}


def reference_trajectories_table(results, n_classes: int) -> pa.Table:
    """`trajectories_table` as it was written row by row with Python values (the format's reference)."""
    from sweep.store import encode_png, trajectories_schema
    recorded = [r for r in results if r.error is None and getattr(r, "trajectory", None) is not None]
    k = recorded[0].trajectory.topk_classes.shape[1] if recorded else 5
    schema = trajectories_schema(k, n_classes)
    columns: dict[str, list] = {name: [] for name in schema.names}
    for r in recorded:
        t, key, has_target = r.trajectory, r.spec.key, r.spec.target >= 0
        for row, step in enumerate(t.steps.tolist()):
            shot = t.snapshots.get(step)
            columns["key"].append(key)
            columns["job"].append(r.spec.job)
            columns["target"].append(r.spec.target if has_target else None)
            columns["step"].append(step)
            columns["octave"].append(int(t.octaves[row]))
            columns["target_logit"].append(float(t.target_logit[row]) if has_target else None)
            columns["target_rank"].append(int(t.target_rank[row]) if has_target else None)
            columns["label"].append(int(t.labels[row]))
            columns["loss"].append(float(t.losses[row]))
            columns["topk_classes"].append(t.topk_classes[row].tolist())
            columns["topk_logits"].append(t.topk_logits[row].tolist())
            columns["logits"].append(shot[1].tolist() if shot is not None else None)
            columns["png"].append(encode_png(shot[0]) if shot is not None else None)
    return pa.table({name: pa.array(values, type=schema.field(name).type) for name, values in columns.items()},
                    schema=schema)


def random_results(rng: np.random.Generator, n_classes: int = 7, k: int = 3) -> list:
    """Results as the engine gives them, with random records: images of 1-5 recorded steps (two renders' worth:
    their step counts differ), a dream without a target, snapshots on some steps, a nan among the outputs, a
    failed image and one recorded without a trajectory (neither has rows)."""
    from types import SimpleNamespace
    from jobs.catalog import JobSpec
    from jobs.kinds import TrajectoryRecord
    specs = [JobSpec("octave", 3, seed=0), JobSpec("dream", -1, seed=1, variant="mixed4a"),
             JobSpec("addition", 2, seed=2, variant="merge", partner=5), JobSpec("octave", 6, seed=3),
             JobSpec("octave", 1, seed=4), JobSpec("opposite", 0, seed=5)]
    results = []
    for j, spec in enumerate(specs):
        steps = np.sort(rng.choice(50, size=1 + j % 5, replace=False)).astype(np.int32)    # T
        t = len(steps)
        outputs = rng.normal(size=(t, n_classes)).astype(np.float32)                         # T x n_classes
        outputs[0, 0] = np.nan if j == 3 else outputs[0, 0]
        order = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
        shots = {int(s): (rng.integers(0, 256, (5 + j, 4 + j, 3), dtype=np.uint8), outputs[r])
                 for r, s in enumerate(steps) if r % 2 == 0}
        record = TrajectoryRecord(
            steps=steps, octaves=(steps >= 25).astype(np.int32), losses=rng.normal(size=t).astype(np.float32),
            target_logit=(outputs[:, spec.target] if spec.target >= 0 else np.full(t, np.nan)).astype(np.float32),
            target_rank=rng.integers(1 if spec.target >= 0 else -1, n_classes, t).astype(np.int32),
            labels=order[:, 0].astype(np.int32), topk_classes=order.astype(np.int32),
            topk_logits=np.take_along_axis(outputs, order, 1), snapshots=shots)
        results.append(SimpleNamespace(spec=spec, trajectory=None if j == 5 else record,
                                       error="non-finite loss" if j == 4 else None))
    return results


@pytest.mark.parametrize("seed, threads", [(0, 1), (1, 1), (2, 3)])
def test_the_trajectories_table_is_the_reference_tables_value_for_value(seed, threads):
    """Built column by column from arrays, the table is the row-by-row one: same schema, values, nulls and file
    (its PNGs encoded one at a time or several at once)."""
    import io
    import pyarrow.parquet as pq
    from sweep.store import trajectories_table
    results = random_results(np.random.default_rng(seed))
    table, reference = trajectories_table(results, 7, threads=threads), reference_trajectories_table(results, 7)
    assert table.schema == reference.schema and table.num_rows == reference.num_rows == 1 + 2 + 3 + 4
    others = [name for name in table.schema.names if name != "logits"]
    assert table.select(others).equals(reference.select(others))
    logits, expected = table.column("logits").combine_chunks(), reference.column("logits").combine_chunks()
    assert logits.is_null().equals(expected.is_null())               # null on the rows without a snapshot
    np.testing.assert_array_equal(logits.drop_null().flatten().to_numpy(), expected.drop_null().flatten().to_numpy())
    files = []
    for written in (table, reference):
        buffer = io.BytesIO()
        pq.write_table(written, buffer)
        files.append(buffer.getvalue())
    assert files[0] == files[1]                                       # the very same Parquet file
    empty = trajectories_table(results[4:], 7)                        # nothing recorded: no rows, the same columns
    assert empty.num_rows == 0 and empty.schema == reference_trajectories_table(results[4:], 7).schema


def test_snapshot_pngs_are_encoded_on_several_threads_with_the_workers_cpus(tmp_path, monkeypatch):
    """The snapshot PNGs are nearly all of the table's time: with `threads`, that many encode at once (Pillow lets
    go of the GIL), and a worker gives its CPU reservation. Two encoders meet at a barrier: one at a time, the
    first would wait there alone until the timeout broke it."""
    import dataclasses
    import itertools
    import threading

    import sweep.store
    import sweep.worker
    from sweep.store import trajectories_table
    both_running, calls = threading.Barrier(2, timeout=30), itertools.count()
    encode = sweep.store.encode_png

    def meeting(image):
        if next(calls) < 2:                                 # the first two wait for each other
            both_running.wait()
        return encode(image)
    results = random_results(np.random.default_rng(0))
    expected = reference_trajectories_table(results, 7).column("png")
    monkeypatch.setattr(sweep.store, "encode_png", meeting)
    assert trajectories_table(results, 7, threads=2).column("png").equals(expected)   # each on its own row
    monkeypatch.setattr(sweep.store, "encode_png", encode)

    given = []
    monkeypatch.setattr(sweep.worker, "trajectories_table",
                        lambda results, n_classes, threads=1: (given.append(threads),
                                                               trajectories_table(results, n_classes, threads))[1])
    w = worker(tmp_path)
    w.config = dataclasses.replace(w.config, threads=3)    # as `--cpus-per-worker 3` (torch's own threads untouched)
    w.run(make_plan(n_classes=10, jobs="octave", classes="1-2", batch_size=2).batches()[0], (1, 1))
    assert given == [3]
