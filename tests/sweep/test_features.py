"""The feature pass's wording: the size the model saw the images at, one phrase for its line and the scatter."""
from __future__ import annotations

from jobs.text import size_note
from sweep.features import FeatureSummary


def test_the_size_note_names_the_pixels_and_whose_size_they_are():
    assert size_note("input", [299, 299]) == "at 299 px (resized, --feature-size input)"
    assert size_note("stored", [490]) == "at the stored size (490 px)"
    assert size_note("stored", [490, 380, 490]) == "at the stored sizes (380-490 px)"
    assert size_note(None, []) == "at the stored size (computed before --feature-size)"


def test_the_summary_line_says_at_what_size_the_features_were_computed():
    article = FeatureSummary("s/analysis/features.parquet", 1000, "inception5a", (0, 4), "input", (299,))
    assert article.lines() == ["wrote s/analysis/features.parquet: 1000 images, inception5a maps 0,4, "
                               "at 299 px (resized, --feature-size input)"]
    ours = FeatureSummary("f.parquet", 3, "block3", (4,), "stored", (490,))
    assert ours.lines() == ["wrote f.parquet: 3 images, block3 maps 4, at the stored size (490 px)"]


def test_a_damaged_images_file_is_refused_in_one_line_naming_it_before_ray(tmp_path):
    """The feature pass lists the files holding its job's images before any worker starts: a file that is not
    Parquet is named, with the way on, as every other reader of the store names it."""
    import pytest
    from sweep.features import FeatureConfig, run_features
    from sweep.store import IMAGES, StoreError
    from sweep_fakes import build_store
    build_store(tmp_path / "store", classes="0-1", jobs="octave")
    damaged = sorted((tmp_path / "store" / IMAGES).iterdir())[0]
    damaged.write_bytes(b"not parquet at all")
    with pytest.raises(StoreError, match=f"unreadable file .*{damaged.name}.*--check-files"):
        run_features(FeatureConfig(store=str(tmp_path / "store"), layer="block1", maps=(0,)))


def test_a_key_held_by_two_images_files_gives_one_row(tmp_path, monkeypatch):
    """images/ may hold a key twice (a hung batch's late write landing after its rerun): one image, one row of
    features.parquet, the first file's in name order as the readers take it, whatever order the workers finish in.
    The fleet is replaced by one in-process worker (no Ray), which finishes the files last first."""
    import shutil
    import types
    import pyarrow.parquet as pq
    import sweep.features
    from sweep.features import FeatureConfig, run_features
    from sweep.store import IMAGES
    from sweep.worker import SweepWorker
    from sweep_fakes import build_store

    def one_local_worker(cluster, config, tasks, *, submit, on_done, **_):
        worker = SweepWorker(config)
        actor = types.SimpleNamespace(features=types.SimpleNamespace(remote=worker.features))
        for task in reversed(tasks):
            on_done(task, submit(actor, task))

    monkeypatch.setattr(sweep.features, "run_on_fleet", one_local_worker)
    build_store(tmp_path / "store", classes="0-2", jobs="octave")
    first = sorted((tmp_path / "store" / IMAGES).iterdir())[0]
    shutil.copy(first, first.with_name("zz-late-write.parquet"))
    summary = run_features(FeatureConfig(store=str(tmp_path / "store"), layer="block1", maps=(0,)))
    keys = pq.read_table(summary.path).column("key").to_pylist()
    assert sorted(keys) == sorted(set(keys)) and len(keys) == summary.images == 3


def test_input_size_is_where_the_jobs_images_started_the_articles_299_for_googlenet():
    """The article evaluates its GoogLeNet class images at 299 x 299 (Latent space, "Feature latent space"); the
    feature pass took torchvision's input size, 224, instead. `input_side` reads the job's first octave."""
    from jobs.schedules import load_schedule
    from sweep.features import input_side
    googlenet = load_schedule("googlenet")
    manifest = {"job_schedules": {"octave": {"schedule_id": googlenet.id}},
                "schedule_contents": {googlenet.id: googlenet.to_dict()}}
    assert input_side(manifest, "octave", 224) == 299 == googlenet.octaves[0].size
    assert input_side({}, "octave", 224) == 224   # a manifest without schedule contents: the model's input size


def test_a_worker_resizes_a_jobs_images_to_the_side_its_schedule_started_at(tmp_path):
    """The store's manifest says the octave job started at 36 px (the digits model's input size is 32): the
    worker's feature pass resizes each image to 36 and records it."""
    import json
    from sweep.store import IMAGES, Store
    from sweep.worker import SweepWorker, WorkerConfig
    from sweep_fakes import build_store
    build_store(tmp_path / "store", classes="0-1", jobs="octave")
    manifest_path = tmp_path / "store" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    schedule_id = manifest["job_schedules"]["octave"]["schedule_id"]
    manifest["schedule_contents"][schedule_id]["octaves"][0]["size"] = 36
    manifest_path.write_text(json.dumps(manifest))
    store = Store.open(str(tmp_path / "store"))
    worker = SweepWorker(WorkerConfig(store.uri, "digits", "random", None))
    table = worker.features(store.files(IMAGES)[0], "block1", (0,), size="input")
    assert table.column("side").to_pylist() == [36] * table.num_rows and table.num_rows > 0
    stored = worker.features(store.files(IMAGES)[0], "block1", (0,), size="stored")
    assert set(stored.column("side").to_pylist()) == {40}   # the tiny schedule's last octave


def test_a_file_missing_on_a_workers_node_says_the_local_store_is_not_shared(tmp_path):
    """A local --store on a cluster without a shared file system: the driver lists images/ on its disk, a worker on
    another node finds no such file. The read named the missing file only ("Failed to open local file"); the
    feature pass and `sweep score` (both read through `read_listed`) now say what it means."""
    import socket
    from pathlib import Path
    import pytest
    from sweep.store import IMAGES, Store, StoreError
    from sweep.worker import SweepWorker, WorkerConfig
    from sweep_fakes import build_store
    build_store(tmp_path / "store", classes="0-1", jobs="octave", pairs=None)
    store = Store.open(str(tmp_path / "store"))
    listed = store.files(IMAGES)[0]
    worker = SweepWorker(WorkerConfig(store.uri, "digits", "random", None))
    Path(listed).unlink()                                 # as on a node that never had the driver's disk
    with pytest.raises(StoreError) as refused:
        worker.features(listed, "block1", (0,))
    assert str(refused.value) == (f"{store.location_of(listed)} is not on this worker's node ({socket.gethostname()}), "
                                  f"though the driver listed it: a local --store must be a path every node shares "
                                  f"(NFS, a cluster file system), or use s3:// or gs://")
