"""The store on real object-store protocols: a sweep into `s3://` (moto's S3 server) and `gs://` (gcp-storage-emulator),
both started here on a free 127.0.0.1 port with dummy credentials (issue 17, issue 18 item 2).

Each server runs in a thread of this process, once per module (`gcs` says why). The commands run in-process on the
module's local Ray (started once, after both servers: its workers inherit their endpoint settings from the
environment, as on a cluster node): `sweep run` into a bucket, the read commands, `sweep score`, and the actor-fault
tests, which check the store with the same code as their local twins (`sweep_fakes`). Only the killed-driver test
(slow) runs `sweep run` as a subprocess, to SIGKILL it.
"""
from __future__ import annotations

import collections
import http.server
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner

import sweep.store as store_module
from sweep.cli import main
from sweep.driver import SweepConfig, run_sweep
from sweep.fleet import ClusterConfig
from sweep.store import ObjectStoreLimits, Store, StoreError, TEMP_DIR
from tests.sweep import sweep_fakes
from tests.sweep.sweep_fakes import start_local_ray
from tests.sweep.test_faults import end_session
from tests.sweep.test_store import assert_delete_file_removes_a_listed_file_and_lets_one_already_gone_be, \
    assert_one_pass_reads_each_key_column_once_and_the_next_only_new_files

pytest.importorskip("ray")
ROOT = Path(__file__).parents[2]
BUCKET = "classweep-test"
SECRET = "cw-dummy-secret-9f41c2e7"        # a dummy secret: it must appear in no object, output or error
CLASSES, JOBS = "0-3", ("octave", "opposite")
ITEMS = 4 * len(JOBS)                       # one seed
# The shipped digits weights: random ones give nearly equal output vectors, too flat for `directions`.
SWEEP = ["--model", "digits", "--schedule", "tiny", "--jobs", ",".join(JOBS), "--classes",
         CLASSES, "--batch-size", "2", "--workers", "1"]


@dataclass(frozen=True)
class Server:
    scheme: str                # s3 | gs
    fs: pafs.FileSystem        # a client of the server, made by the test (not by the code under test)
    env: dict                  # what a user sets to reach it

    def uri(self, name: str) -> str:
        return f"{self.scheme}://{BUCKET}/{name}"

    def objects(self, name: str) -> list[str]:
        selector = pafs.FileSelector(f"{BUCKET}/{name}", recursive=True, allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install '.[test]')")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)   # one log line per request otherwise
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "cw-dummy-key-id", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
            patch.delenv(name, raising=False)
        fs = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield Server("s3", fs, env)
    server.stop()


@pytest.fixture(scope="module")
def gcs():
    emulator = pytest.importorskip("gcp_storage_emulator.server",
                                   reason="gcp-storage-emulator is not installed (pip install '.[test]')")
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    with pytest.MonkeyPatch.context() as patch:
        # The emulator's HTTPServer serves one connection at a time; a real GCS serves many. pyarrow's GCS
        # random-access file keeps the whole-object download it opens while its ranged reads go on other
        # connections (the dataset readers of `Store.read_file` use it), so an object larger than the socket
        # buffers would stall them for google-cloud-cpp's 2 minutes: serve each connection in its own thread.
        patch.setattr(http.server, "HTTPServer", http.server.ThreadingHTTPServer)
        server.start()                                     # returns once the server is listening
    # In this process on purpose: a read that holds the GIL while it waits for GCS (pyarrow's Python file objects
    # do, on a random-access GCS file: see `Store.parquet_file`) cannot be answered here and stalls the test, as it
    # would stall a command's other threads and its `within` watchdog on a real GCS.
    env = {"CLOUD_STORAGE_EMULATOR_ENDPOINT": f"http://127.0.0.1:{port}"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", env["CLOUD_STORAGE_EMULATOR_ENDPOINT"])
        patch.delenv("STORAGE_EMULATOR_HOST", raising=False)
        yield Server("gs", pafs.GcsFileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", anonymous=True),
                     env)
    server.stop()


@pytest.fixture(params=["s3", "gcs"])
def server(request) -> Server:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def module_ray(s3, gcs, tmp_path_factory):
    """The module's local Ray for in-process commands, started once both servers run: its workers get their
    settings, and a fault-marker directory of this module's own (`sweep_fakes` markers are local files: one machine
    here)."""
    ray = pytest.importorskip("ray")
    markers = str(tmp_path_factory.mktemp("markers"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLASSWEEP_TEST_MARKERS", markers)   # for `sweep_fakes.happened` in this process
        start_local_ray(**s3.env, **gcs.env, CLASSWEEP_TEST_MARKERS=markers)
        yield
        ray.shutdown()


def sweep_process(uri: str, *extra: str, schedule: str = "tiny") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CLASSWEEP_OFFLINE": "1"}
    args = [a if a != "tiny" else schedule for a in SWEEP]
    return subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", "--store", uri, *args, *extra], cwd=ROOT,
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        end_session(process.pid)
    return output


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


# The S3 sweep runs by default, its GCS twin (5 s more) with --run-slow; GCS's own failure modes are tested below
# either way.
@pytest.mark.parametrize("server", ["s3", pytest.param("gcs", marks=pytest.mark.slow)], indirect=True)
def test_a_sweep_into_a_bucket_and_every_command_on_it(server, module_ray, tmp_path):
    uri = server.uri("run")
    run = invoke("run", "--store", uri, *SWEEP)
    output = run.output
    assert run.exit_code == 0 and f"{ITEMS}/{ITEMS} items done" in output, output
    objects = server.objects("run")
    images = [o for o in objects if "/images/" in o]
    assert len(images) == ITEMS // 2 and all(o.rsplit("/", 1)[1].startswith("part-") for o in images)
    assert not [o for o in objects if f"/{TEMP_DIR}/" in o]            # written in place: no temporaries
    frame = pd.read_parquet(f"{BUCKET}/run/images", filesystem=server.fs, columns=["key", "job"])
    assert len(frame) == ITEMS and frame.key.is_unique and set(frame.job) == set(JOBS)

    status = invoke("status", "--store", uri)
    assert status.exit_code == 0 and f"{ITEMS}" in status.output, status.output
    analyzed = invoke("analyze", "--store", uri)
    assert analyzed.exit_code == 0, analyzed.output
    assert any("/analysis/" in o for o in server.objects("run"))
    figures = invoke("figures", "--store", uri, "--out", str(tmp_path / "figures"))
    assert figures.exit_code == 0 and (tmp_path / "figures" / "index.html").is_file(), figures.output
    exported = invoke("export", "--store", uri, "--out", str(tmp_path / "png"))
    assert exported.exit_code == 0 and len(list((tmp_path / "png").rglob("*.png"))) == ITEMS, exported.output
    groups = tmp_path / "groups.csv"
    groups.write_text("group,class\nlow,0\nlow,1\nhigh,2\nhigh,3\n")
    directions = invoke("directions", "--store", uri, "--groups", str(groups), "--components", "3",
                        "--out", str(tmp_path / "directions"))
    assert directions.exit_code == 0, directions.output
    scored = invoke("score", "--store", uri, "--model", "digits-resnet", "--workers", "1", "--device", "cpu")
    assert scored.exit_code == 0, scored.output
    parts = [o for o in server.objects("run") if "/scores/" in o and o.endswith(".parquet")]
    scores = pd.concat([pd.read_parquet(o, filesystem=server.fs, columns=["key"]) for o in parts])
    assert len(scores) == ITEMS and scores.key.is_unique
    resumed = invoke("score", "--store", uri, "--model", "digits-resnet")   # the parts read back from the bucket
    assert resumed.exit_code == 0 and f"all {ITEMS} images already scored" in resumed.output, resumed.output

    seen = [output, status.output, analyzed.output, figures.output, exported.output, directions.output, scored.output]
    seen += [server.fs.open_input_stream(o).read().decode("latin-1") for o in server.objects("run")]
    assert not [text for text in seen if SECRET in text]


@pytest.mark.slow   # 20-40 s: the local twin is tests/sweep/test_faults.py; run with --run-slow
def test_a_killed_driver_resumes_exactly_once_on_s3(s3):
    """test_faults' SIGKILL, against S3: whatever the kill interrupts, no partial object is ever listed."""
    uri, name = s3.uri("killed"), "killed"
    first = sweep_process(uri, schedule="digits")        # slow enough to be killed in the middle
    try:
        deadline = time.monotonic() + 180
        while not [o for o in s3.objects(name) if "/images/" in o]:
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        end_session(first.pid)
    killed_at = len([o for o in s3.objects(name) if "/images/" in o])
    assert 1 <= killed_at < ITEMS // 2
    output = finish(sweep_process(uri, schedule="digits"))
    assert f"resuming: {2 * killed_at}/{ITEMS}" in output and f"{ITEMS}/{ITEMS} items done" in output, output
    sweep_fakes.assert_exactly_once(uri, ITEMS)            # every object whole, every item once
    assert not sweep_fakes.temporaries(uri)


def test_a_bucket_stores_class_images_are_sources_of_another_sweep(s3):
    """`--images store:s3://...` reads through the store layer: the images, their names, and the refusal of the
    store being written, on S3 as on a local disk (tests/sweep/test_sources.py)."""
    import numpy as np
    from analysis.synthetic import Image, noise_png, write_store
    from sweep.driver import load_sources
    from sweep.plan import PlanError
    from sweep.store import decode_png
    rng = np.random.default_rng(0)
    images = [Image("octave", c, np.zeros(3), png=noise_png(rng, 8)) for c in range(3)]
    write_store(s3.uri("classes"), ("cat", "dog", "sea lion"), images)
    got = load_sources(SweepConfig(store=s3.uri("dreams"), images=(f"store:{s3.uri('classes')}",)))
    assert list(got) == ["octave-0000-cat", "octave-0001-dog", "octave-0002-sea-lion"]
    np.testing.assert_array_equal(got["octave-0002-sea-lion"].read(), decode_png(images[2].png))
    with pytest.raises(PlanError, match="that is the store this sweep writes"):
        load_sources(SweepConfig(store=s3.uri("classes") + "/", images=(f"store:{s3.uri('classes')}",)))
    with pytest.raises(PlanError, match="no store at"):
        load_sources(SweepConfig(store=s3.uri("dreams"), images=(f"store:{s3.uri('nothing')}:octave",)))


def test_sources_written_on_several_threads_land_whole_in_a_bucket(server, tmp_path):
    """`reconcile_store` writes sources/NAME.png on the driver's threads: each a PUT of its own object, every one
    whole and as the picture encodes, on S3 and GCS as on a local disk."""
    import numpy as np
    from PIL import Image as PILImage
    from jobs.images import read_image
    from sweep.driver import prepare, reconcile_store
    from sweep.store import SOURCE_PNG_LEVEL, SOURCES, encode_png
    rng = np.random.default_rng(4)
    (tmp_path / "photos").mkdir()
    for index in range(8):
        PILImage.fromarray(rng.integers(0, 256, (20 + index, 30, 3), dtype=np.uint8)).save(
            tmp_path / "photos" / f"photo-{index}.{'png' if index % 2 else 'jpg'}")
    uri = server.uri(f"threaded-sources-{server.scheme}")
    prepared = prepare(SweepConfig(store=uri, model="digits", weights="random", schedule="tiny", jobs="transfigure",
                                   classes="0", images=(str(tmp_path / "photos"),), source_threads=3))
    reconcile_store(prepared, io.StringIO())
    prefix = f"{BUCKET}/threaded-sources-{server.scheme}/{SOURCES}/"
    assert [path for path in server.objects(f"threaded-sources-{server.scheme}") if path.startswith(prefix)] == \
        [f"{prefix}photo-{index}.{'png' if index % 2 else 'jpg'}.png" for index in range(8)]
    for path in sorted((tmp_path / "photos").iterdir()):
        with server.fs.open_input_stream(f"{prefix}{path.name}.png") as stored:
            assert stored.read() == encode_png(read_image(path), SOURCE_PNG_LEVEL)


def test_compare_and_stability_write_into_a_bucket_and_create_no_local_folder(s3, tmp_path, monkeypatch):
    """`sweep compare --out` and `sweep stability --out` take a URI as `figures --out` does: the files land in the
    bucket, written through the store layer, and no local folder named after the URI (./s3:/...) appears."""
    import pyarrow as pa
    from jobs.catalog import key_of
    from sweep.store import TRAJECTORIES
    from tests.analysis.handmade import make_small_store
    stores = [make_small_store(tmp_path / name) for name in ("a", "b")]
    keys = [key_of("octave", "", c, -1, 0) for c in (0, 1)]
    recorded = pa.table({"key": [k for k in keys for _ in range(2)], "job": ["octave"] * 4, "target": [0, 0, 1, 1],
                         "step": [0, 10, 0, 10], "octave": [0] * 4, "label": [1, 0, 1, 1]})
    for path in stores:
        Store.open(path).write_table(f"{TRAJECTORIES}/part-0.parquet", recorded)
    monkeypatch.chdir(tmp_path)
    compared = invoke("compare", *stores, "--out", s3.uri("compare"))
    assert compared.exit_code == 0 and s3.uri("compare/compare.parquet") in compared.output, compared.output
    steady = invoke("stability", *stores, "--out", s3.uri("stability"))
    assert steady.exit_code == 0 and s3.uri("stability/stability_compare.png") in steady.output, steady.output
    assert s3.objects("compare") == [f"{BUCKET}/compare/compare.parquet", f"{BUCKET}/compare/compare.png"]
    assert s3.objects("stability") == [f"{BUCKET}/stability/stability_compare.parquet",
                                       f"{BUCKET}/stability/stability_compare.png"]
    table = pd.read_parquet(f"{BUCKET}/stability/stability_compare.parquet", filesystem=s3.fs)
    assert len(set(table.model)) == 2 and set(table.job) == {"octave"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]     # nothing local beside the two stores


def test_delete_file_removes_a_listed_object_and_lets_one_already_gone_be(server):
    assert_delete_file_removes_a_listed_file_and_lets_one_already_gone_be(Store.open(server.uri("deleting")))


def test_one_pass_reads_each_key_column_once_and_the_next_only_new_files(server):
    assert_one_pass_reads_each_key_column_once_and_the_next_only_new_files(Store.open(server.uri("keys")))


def test_figures_download_each_object_s_pictures_at_most_once(s3, monkeypatch, tmp_path):
    """Scale audit A9 on S3: `sweep figures` downloaded every images/ object three or four times whole (the image
    jobs' numbers, the page images, the grids' other images, the interpolations' key columns) and every frames/
    object twice. Now the numbers of a large object come by ranged reads (their pass gives the key index), and each
    reader of pictures downloads only the objects holding its keys, each once: counted here as the bytes moto's
    server sends for each object."""
    import dataclasses

    import numpy as np
    from moto.moto_server import werkzeug_app
    from analysis import analyze_store, write_figures
    from analysis.synthetic import Image, noise_png, write_batch, write_store
    from sweep.store import source_file
    from tests.analysis.handmade import NAMES, OPTIONS, small_images
    monkeypatch.setattr(store_module, "RANGED_READ_BYTES", 256 * 1024)   # these objects count as large
    rng, uri = np.random.default_rng(0), s3.uri("figures-reads")
    pngs = [noise_png(rng, 200) for _ in range(4)]   # 85 KB each: every object is over 256 KB
    write_store(uri, NAMES, [dataclasses.replace(image, png=pngs[n % 4]) for n, image in enumerate(small_images())],
                options={**OPTIONS, "jobs": [*OPTIONS["jobs"], "transfigure", "interpolate"], "sources": ["photo"],
                         "interpolate_pairs": [[0, 1]]})
    logits = np.eye(len(NAMES))[[0, 0, 1, 1, 1]] * 9
    write_batch(Store.open(uri), "part-jobs", [   # every class's transfiguration; an interpolation and its frames
        *(Image("transfigure", c, np.eye(len(NAMES))[c] * 9, source="photo", png=pngs[c % 4]) for c in range(6)),
        *(Image("interpolate", 0, v, partner=1, source="photo", frame=k, png=pngs[k]) for k, v in
          enumerate(logits[:4])),
        Image("interpolate", 0, logits[4], partner=1, source="photo", png=pngs[0])], NAMES)
    Store.open(uri).write_bytes(source_file("photo"), noise_png(rng, 40))
    analyze_store(uri)
    sizes = {info.path: info.size for info in s3.fs.get_file_info(pafs.FileSelector(f"{BUCKET}/figures-reads",
             recursive=True)) if "/images/" in info.path or "/frames/" in info.path}
    assert len(sizes) == 4 and min(sizes.values()) > store_module.RANGED_READ_BYTES
    sent, serve = {path: 0 for path in sizes}, werkzeug_app.DomainDispatcherApplication.__call__

    def counting(self, environ, start_response):
        body = b"".join(serve(self, environ, start_response))
        path = environ.get("PATH_INFO", "").lstrip("/")
        if path in sent:
            sent[path] += len(body)
        return [body]
    monkeypatch.setattr(werkzeug_app.DomainDispatcherApplication, "__call__", counting)
    write_figures(uri, str(tmp_path / "report"))
    for path, size in sizes.items():   # the pictures once (each object holds one shown), the numbers by ranges
        assert size <= sent[path] < 1.25 * size, (path, sent[path] / size)


def objects_sent(server: Server, monkeypatch) -> collections.Counter:
    """From now on, the bytes of object contents the server sends, per object path ("BUCKET/NAME/images/...", as
    `Server.fs` lists it): moto's responses (S3), or the emulator's media downloads (GCS; not its metadata)."""
    sent = collections.Counter()
    if server.scheme == "s3":
        from moto.moto_server import werkzeug_app
        serve = werkzeug_app.DomainDispatcherApplication.__call__

        def counting(self, environ, start_response):
            body = b"".join(serve(self, environ, start_response))
            sent[environ.get("PATH_INFO", "").lstrip("/")] += len(body)
            return [body]
        monkeypatch.setattr(werkzeug_app.DomainDispatcherApplication, "__call__", counting)
        return sent
    from gcp_storage_emulator import server as emulator
    close = emulator.Response.close

    def counting_gcs(self):
        path, _, query = self._handler.path.partition("?")
        if "alt=media" in query.split("&"):   # /storage/v1/b/BUCKET/o/NAME%2F...: an object's contents
            bucket, _, name = path.removeprefix("/storage/v1/b/").partition("/o/")
            sent[f"{bucket}/{urllib.parse.unquote(name)}"] += len(self._content)
        return close(self)
    monkeypatch.setattr(emulator.Response, "close", counting_gcs)
    return sent


@pytest.mark.parametrize("analysed", [True, False], ids=["analysed", "analysis-in-figures"])
def test_figures_fetch_each_small_object_once(server, monkeypatch, tmp_path, analysed):
    """`sweep figures` on GCS fetched every images/ object shown two or three times whole (its numbers or keys,
    then its pictures), on S3 one under RANGED_READ_BYTES twice when the analysis ran in the command: now an object
    fetched whole is kept for the command (`Store.keeping_objects`), counted here as the bytes the server sends of
    each (objects of about 250 KB, each holding a picture shown)."""
    import dataclasses

    import numpy as np
    from analysis import analyze_store, write_figures
    from analysis.synthetic import noise_png, write_store
    from tests.analysis.handmade import NAMES, OPTIONS, small_images
    rng, name = np.random.default_rng(0), f"figures-once-{analysed}"
    pngs = [noise_png(rng, 120) for _ in range(4)]
    write_store(server.uri(name), NAMES, [dataclasses.replace(image, png=pngs[n % 4])
                                          for n, image in enumerate(small_images())], options=OPTIONS)
    if analysed:
        analyze_store(server.uri(name))
    sizes = {info.path: info.size for info in server.fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{name}/images"))}
    assert len(sizes) == 2 and max(sizes.values()) < store_module.RANGED_READ_BYTES
    sent = objects_sent(server, monkeypatch)
    write_figures(server.uri(name), str(tmp_path / "report"), stream=io.StringIO())
    for path, size in sizes.items():   # once whole (on S3, beside the analysis, the keys by ranges)
        assert size <= sent[path] < 1.3 * size, (path, sent[path] / size)


def store_of_shown_objects(server: Server, name: str) -> dict[str, int]:
    """The analysis tests' small store at `server.uri(name)`, its pictures noise of 120 px: two images/ objects of
    about 250 KB (under RANGED_READ_BYTES), the first holding every octave image. Returns {object path: size}."""
    import dataclasses

    import numpy as np
    from analysis.synthetic import noise_png, write_store
    from tests.analysis.handmade import NAMES, OPTIONS, small_images
    rng = np.random.default_rng(0)
    pngs = [noise_png(rng, 120) for _ in range(4)]
    write_store(server.uri(name), NAMES, [dataclasses.replace(image, png=pngs[n % 4])
                                          for n, image in enumerate(small_images())], options=OPTIONS)
    sizes = {info.path: info.size for info in server.fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{name}/images"))}
    assert len(sizes) == 2 and max(sizes.values()) < store_module.RANGED_READ_BYTES
    return sizes


def test_export_fetches_each_object_once(server, monkeypatch, tmp_path):
    """`sweep export` reads every file's names (to refuse a clash before writing), then its pictures: on GCS each
    object came two or three times whole (the footer's check through pyarrow's random-access file, the names, the
    pictures), on S3 a small one twice. Now a whole object is kept for the pictures' pass and let go after it
    (`Store.keeping_objects`, `Store.let_go`), counted here as the bytes the server sends of each."""
    from sweep.export import export_pngs
    sizes = store_of_shown_objects(server, "export-once")
    dropped, drop = [], store_module.KeptObjects.drop
    monkeypatch.setattr(store_module.KeptObjects, "drop", lambda kept, path: (dropped.append(path), drop(kept, path)))
    sent = objects_sent(server, monkeypatch)
    assert export_pngs(server.uri("export-once"), tmp_path / "png").written == 16
    for path, size in sizes.items():
        assert size <= sent[path] < 1.1 * size, (path, sent[path] / size)
    assert dropped == sorted(sizes)   # each let go once its PNGs were written


def test_directions_fetch_each_small_object_once(server, monkeypatch, tmp_path):
    """`sweep directions` reads every file's numbers, then the pictures of its strip: on GCS, and on S3 for a small
    object, the files holding the strip's images came twice whole. Now once (`Store.keeping_objects`)."""
    from analysis.directions import run_directions
    sizes = store_of_shown_objects(server, "directions-once")
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n0,low\n1,low\n2,low\n3,high\n4,high\n5,high\n")
    sent = objects_sent(server, monkeypatch)
    run_directions(server.uri("directions-once"), str(groups), n_components=3, out=str(tmp_path / "figures"))
    for path, size in sizes.items():   # the first holds the strip's octave images
        assert size <= sent[path] < 1.1 * size, (path, sent[path] / size)


def test_a_bucket_stores_images_as_sources_fetch_each_object_once(server, monkeypatch, tmp_path):
    """`sweep run --images store:URI` checks every images/ file's columns, reads its rows, then the PNGs of the
    class images: on GCS an object came three times whole. Now once (`Store.keeping_objects`)."""
    from sweep.export import UniqueNames
    from sweep.sources import store_images
    sizes = store_of_shown_objects(server, "sources-once")
    sent = objects_sent(server, monkeypatch)
    images = store_images(f"store:{server.uri('sources-once')}", Store.open(str(tmp_path / "new")), UniqueNames())
    assert len(images) == 6   # the six classes' octave images, all in the first object
    first = min(sizes)
    assert sizes[first] <= sent[first] < 1.1 * sizes[first], sent[first] / sizes[first]


def test_kept_objects_go_when_the_command_leaves_them_even_on_an_error(server):
    """`Store.keeping_objects`' local copies are the command's own: its temporary folder goes when the command
    leaves it, whether it ended or failed (no test looked at the folder)."""
    store_of_shown_objects(server, "kept-go")
    folders = []
    with pytest.raises(RuntimeError, match="the command failed"):
        with Store.open(server.uri("kept-go")).keeping_objects() as store:
            store.read_file(store.files("images")[0], ["key"])
            folders.append(store.kept.folder)
            assert len(os.listdir(folders[0])) == 1   # the object, fetched whole, kept
            raise RuntimeError("the command failed")
    assert not os.path.exists(folders[0])


def damaged_footer(data: bytes) -> bytes:
    """A Parquet file's bytes with its footer's metadata overwritten: pyarrow refuses it with an OSError ("Couldn't
    deserialize thrift"), as a damaged file's pages, not the ArrowInvalid of a file that is not Parquet at all."""
    import struct
    data = bytearray(data)
    length = struct.unpack("<i", data[-8:-4])[0]
    data[-8 - length:-8] = b"\xff" * length
    return bytes(data)


def small_store_with_a_damaged_file(uri: str) -> tuple[Store, str]:
    """The analysis tests' small store at `uri`, its second images/ file's footer damaged (`damaged_footer`)."""
    from tests.analysis.handmade import make_small_store
    make_small_store(uri)
    store = Store.open(uri)
    path = store.files("images")[1]
    with store.fs.open_input_stream(path) as stream:
        data = stream.read()
    with store.fs.open_output_stream(path) as stream:
        stream.write(damaged_footer(data))
    return store, path


@pytest.mark.parametrize("server, ranged", [("s3", False), ("s3", True), ("gcs", False)], indirect=["server"])
def test_a_damaged_file_is_refused_naming_it_and_the_way_on_as_on_a_local_disk(server, ranged, monkeypatch,
                                                                                 tmp_path):
    """A damaged images/ file on S3 was refused as "s3 store URI: Couldn't deserialize thrift", naming neither the
    file nor the way on: `read_chosen` parsed it inside the object store's own failures. Small objects (read whole)
    and large ones (by ranges) are refused as a local disk's."""
    from analysis.load import read_rows
    if ranged:
        monkeypatch.setattr(store_module, "RANGED_READ_BYTES", 0)   # every object counts as large

    def refusal(uri: str) -> str:
        store, _ = small_store_with_a_damaged_file(uri)
        with pytest.raises(StoreError) as refused:
            read_rows(uri)
        return str(refused.value).replace(store.uri, "STORE")
    local = refusal(str(tmp_path / "local"))
    assert local.startswith("unreadable file STORE/images/part-000001.parquet: Couldn't deserialize thrift")
    assert refusal(server.uri(f"damaged-{ranged}")) == local


def test_a_damaged_file_is_set_aside_and_refused_by_name_as_on_a_local_disk(server, tmp_path):
    """`sweep run`'s quarantine, and every reader of key columns (`status`, `export`, the figures' key index), took a
    damaged object (an OSError of its footer) for the store's failure: the run stopped with "s3 store URI: Couldn't
    deserialize thrift" and nothing was set aside. Now as on a local disk, on S3 and on GCS."""
    refusals, moved = [], []
    for uri in (str(tmp_path / "local"), server.uri("damaged-keys")):
        store, path = small_store_with_a_damaged_file(uri)
        with pytest.raises(StoreError) as refused:
            store.keys_by_file()
        refusals.append(str(refused.value).replace(store.location_of(path), "PATH"))
        moved.append([(file.replace(store.root, "ROOT"), why) for file, why in store.quarantine_unreadable().moved])
        assert store.files("images") and path not in store.files("images")
    assert refusals[0].startswith("unreadable file PATH: Couldn't deserialize thrift") and refusals[1] == refusals[0]
    assert moved[0] == moved[1] and moved[0][0][0] == "ROOT/images/part-000001.parquet"


@pytest.mark.parametrize("reader", ["numbers", "pictures", "status", "export"])
def test_every_reader_names_an_unreadable_file_by_its_full_location(server, reader, tmp_path):
    """The readers named an unreadable images/ file three ways: `images/part-...` (analyze and figures, by its
    folder), `BUCKET/PATH/images/part-...` (status and export on an object store: the file system's path, no
    scheme) or the whole path (the same two on a local disk). Now every one names it where it is, as the user
    would write it (`Store.location_of`): a reader of each kind, on a local disk and on an object store."""
    from analysis.load import iter_pngs, read_rows
    from sweep.export import export_pngs
    from sweep.status import store_status
    read = {"numbers": read_rows,                                                  # analyze, figures, directions
            "pictures": lambda store, path: dict(iter_pngs(store, ["k"], {path: ["k"]})),   # figures, directions
            "status": store_status, "export": lambda store: export_pngs(store, tmp_path / "png")}[reader]
    for uri in (str(tmp_path / "local"), server.uri(f"named-{reader}")):
        store, path = small_store_with_a_damaged_file(uri)
        with pytest.raises(StoreError) as refused:
            read(store, path) if reader == "pictures" else read(store)
        assert str(refused.value).startswith(f"unreadable file {uri}/images/part-000001.parquet: "), refused.value
        assert "(`sweep run --check-files` with the store's command moves it into quarantine/" in str(refused.value)


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert SECRET not in result.output
    return lines[0]


@pytest.fixture
def quick_retries(monkeypatch):
    # GCS retries for LIMITS.retry_seconds; the failure tests need the bound, not its length.
    monkeypatch.setattr(store_module, "LIMITS", ObjectStoreLimits(connect_timeout=1, retries=1, retry_seconds=1))


def test_unreachable_endpoint_fails_with_one_line(server, monkeypatch, quick_retries):
    variable = "AWS_ENDPOINT_URL" if server.scheme == "s3" else "CLOUD_STORAGE_EMULATOR_ENDPOINT"
    monkeypatch.setenv(variable, f"http://127.0.0.1:{free_port()}")          # nothing listens there
    for command in ("status", "analyze"):
        line = one_error_line(invoke(command, "--store", server.uri("run")))
        assert server.uri("run") in line and "cannot reach" in line and variable in line


@pytest.fixture
def silent_endpoint():
    """An endpoint that takes connections and never answers (a stalled server, a hung proxy)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)   # the kernel completes the connections; nothing ever reads or answers them
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_silent_endpoint_fails_with_one_line_after_the_call_limit(server, monkeypatch, silent_endpoint):
    # Left to themselves the SDKs wait out a stalled request: google-cloud-cpp 2 minutes a try whatever its retry
    # limit, the AWS SDK request_timeout a try. LIMITS.call_seconds bounds every call of the store (S3's own
    # timeout is longer here, so that the watchdog answers first; it ends the abandoned call soon after).
    monkeypatch.setattr(store_module, "LIMITS", ObjectStoreLimits(connect_timeout=1, request_timeout=1, retries=1,
                                                                  retry_seconds=1, call_seconds=0.5))
    variable = "AWS_ENDPOINT_URL" if server.scheme == "s3" else "CLOUD_STORAGE_EMULATOR_ENDPOINT"
    monkeypatch.setenv(variable, silent_endpoint)
    for command in ("status", "analyze", "export"):
        args = ["--out", "unused"] if command == "export" else []
        line = one_error_line(invoke(command, "--store", server.uri("run"), *args))
        assert server.uri("run") in line and "no answer in 0.5 s" in line and silent_endpoint in line, line


def test_a_missing_bucket_fails_with_one_line_before_anything_runs(server, quick_retries):
    uri = f"{server.scheme}://no-such-bucket-{server.scheme}/run"
    line = one_error_line(invoke("run", "--store", uri, *SWEEP))
    assert uri in line and "no-such-bucket" in line and "does not exist" in line
    assert server.fs.get_file_info(f"no-such-bucket-{server.scheme}").type == pafs.FileType.NotFound   # none made
    assert uri in one_error_line(invoke("status", "--store", uri))


def test_credentials_and_options_in_the_uri_are_refused():
    with pytest.raises(StoreError, match="credentials do not belong") as error:
        Store.open(f"s3://KEYID:{SECRET}@bucket/run")
    assert SECRET not in str(error.value)
    with pytest.raises(StoreError, match="AWS_ENDPOINT_URL"):
        Store.open("s3://bucket/run?endpoint_override=127.0.0.1:9000")


def s3_sweep(uri: str, **changes) -> SweepConfig:
    """An in-process sweep into `uri` on the module's Ray (CPU actors), the tiny schedule on random digits."""
    return SweepConfig(**{**dict(store=uri, model="digits", weights="random", schedule="tiny", cluster=ClusterConfig(
        cpus_per_worker=0.5, progress_every=1.0, in_flight=2)), **changes})


@pytest.mark.slow   # 20-40 s with Ray's start: the local twin is tests/sweep/test_driver.py; run with --run-slow
def test_a_killed_actor_is_replaced_and_every_item_lands_once_on_s3(s3, module_ray):
    """test_driver's actor kill, against S3: an actor killed mid-sweep (perhaps mid-upload) leaves no partial
    object, its batches run again, and every item is stored exactly once."""
    name, killed = "actor-killed", []
    killer = sweep_fakes.kill_an_actor_once(lambda: any("/images/" in o for o in s3.objects(name)), killed)
    summary = run_sweep(s3_sweep(s3.uri(name), jobs="octave,opposite", batch_size=2,
                                 engine="sweep_fakes:slow_run_batch"), stream=io.StringIO())
    killer.join()
    assert killed and summary.actors_replaced >= 1
    assert summary.complete and summary.failed == () and summary.done == 20
    sweep_fakes.assert_exactly_once(s3.uri(name), 20)      # every object whole, every item once
    assert not sweep_fakes.temporaries(s3.uri(name))       # an upload cut short leaves no object


@pytest.fixture(scope="module")
def actor_deaths_on_s3(s3, module_ray):
    """test_driver's `actor_deaths` against S3: one sweep whose actors die twice, between a batch's render and its
    write, and after another batch's write (its upload complete) but before its report."""
    uri = s3.uri("actor-deaths")
    return uri, run_sweep(s3_sweep(uri, **sweep_fakes.ACTOR_DEATHS), stream=io.StringIO())


@pytest.mark.slow   # 15 s with Ray's start, for both (one sweep): the local twins are in test_driver; --run-slow
def test_an_actor_dying_after_writing_before_reporting_leaves_no_duplicate_on_s3(actor_deaths_on_s3):
    """The batch runs again and its second upload replaces the first object under the same name."""
    sweep_fakes.assert_a_death_after_writing_left_no_duplicate(*actor_deaths_on_s3)


@pytest.mark.slow
def test_an_actor_dying_between_render_and_write_reruns_the_batch_on_s3(actor_deaths_on_s3):
    sweep_fakes.assert_a_death_before_writing_reran_the_batch(*actor_deaths_on_s3)
