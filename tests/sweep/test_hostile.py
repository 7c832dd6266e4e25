"""Hostile and broken inputs (issues 15 and 18): every one ends in one `Error:` line with exit status 2 (130 for
an interruption), no traceback, nothing written to the store, and the bombs in bounded memory. Every hostile file
is made here. No Ray in this process; the interruption tests run `sweep run` as a subprocess."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import sweep_fakes
from sweep.cli import main
from sweep.lease import LEASE
from sweep.store import IMAGES, QUARANTINE, Store

ROOT = Path(__file__).parents[2]
RUN = ["--model", "digits", "--weights", "random", "--schedule", "tiny", "--classes", "0-3", "--pairs", "0+1,2+3",
       "--batch-size", "4"]   # the command `sweep_fakes.build_store` stands for


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, *fragments, status: int = 2) -> str:
    """The command ended with one `Error:` line holding every fragment, and no traceback."""
    assert result.exit_code == status, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tree(path: Path) -> dict[str, int]:
    """Every file under `path` and its size (what "nothing written" compares)."""
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def built(tmp_path):
    store = tmp_path / "store"
    sweep_fakes.build_store(store)
    return store


# ---- 15.1 schedule files ---------------------------------------------------------------------------------------

def alias_bomb() -> str:
    """Nine levels of nine aliases each: 9^9 (387 million) strings when expanded."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, content, fragment", [
    ("bomb.yaml", alias_bomb(), "aliases"),
    ("big.json", '{"name": "x", "octaves": []}' + " " * (2 << 20), "larger than"),
    ("deep.json", "[" * 200_000 + "]" * 200_000, "not valid JSON"),
    ("deep.yaml", "[" * 20_000 + "]" * 20_000, "nested more than"),
    ("wide.json", json.dumps({"name": "x", "octaves": [[0] * 200_000]}), "more than"),
    ("binary.json", b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not a text file"),
])
def test_hostile_schedule_files_are_refused_in_bounded_memory(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    store = tmp_path / "store"
    tracemalloc.start()
    try:
        result = invoke("run", "--store", store, *RUN[:4], "--schedule", path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    refused(result, fragment, str(path))
    assert peak < 200 * 2**20   # the bomb alone would need gigabytes
    assert not store.exists()


@pytest.mark.parametrize("octave, fragment", [
    ({"size": 100_000, "iterations": 2}, "octave size must be at most 2048"),
    ({"size": 32, "iterations": 10**9}, "octave iterations must be at most 100000"),
    ({"size": 32, "iterations": 2, "lr": 1e9}, "octave lr must be at most 1000"),
    ({"size": 32, "iterations": 2, "sigma": [1e6, 1]}, "octave sigma must be at most 100"),
    ({"size": 32, "iterations": 20_000, "pad": 1}, "more than the 2048 px bound"),
])
def test_absurd_schedules_are_refused_naming_the_field_and_the_bound(tmp_path, octave, fragment):
    path = tmp_path / "absurd.json"
    path.write_text(json.dumps({"octaves": [octave]}))
    store = tmp_path / "store"
    refused(invoke("run", "--store", store, *RUN[:4], "--schedule", path), fragment)
    assert not store.exists()


def test_the_presets_lie_within_the_bounds():
    from jobs.schedules import load_schedule, preset_names
    assert all(load_schedule(name).octaves for name in preset_names())


# ---- 15.2 images -----------------------------------------------------------------------------------------------

def png_header(width: int, height: int, rows: int = 4) -> bytes:
    """A PNG of one grey colour that claims width x height, with the data of its first `rows` rows (the rest a
    decoder would make, or refuse as truncated; `rows=height`: a whole image, `height` times `width` bytes decoded
    from a few kilobytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" * (width + 1)                         # filter type 0, then `width` grey pixels
    compressor = zlib.compressobj(1)                    # 500 rows at a time: never the whole image in memory
    data = b"".join(compressor.compress(row * min(500, rows - first)) for first in range(0, rows, 500))
    data += compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def resident_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, KiB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def peak_growth_kib(call):
    """`call()`'s result and how far this process's peak resident memory rose above the memory it held when the
    call began (KiB; None where the kernel cannot reset the peak). The peak is reset first (/proc/self/clear_refs,
    Linux 4.0+): the lifetime peak (`ru_maxrss`) of a test process that has loaded torch and Ray already lies far
    above anything one refusal could add."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return call(), None
    before = resident_kib("VmHWM")   # = VmRSS right after the reset
    result = call()
    return result, resident_kib("VmHWM") - before


# The largest image below is refused from its header. Decoded, the whole 9000 x 9000 one would take 81 MB as
# greyscale (and 243 MB more as RGB), bombs by Pillow's reckoning take more: a refusal must stay far below that.
REFUSAL_GROWTH_KIB = 40 * 1024


HOSTILE_IMAGES = [   # name, its bytes (made by the test that needs them), the refusal's fragment
    ("bomb.png", lambda: png_header(30_000, 30_000), "900000000 pixels"),          # Pillow: DecompressionBombError
    ("large.png", lambda: png_header(12_000, 12_000), "144000000 pixels"),         # Pillow's warning, made an error
    ("big.png", lambda: png_header(9_000, 9_000, rows=9_000), "9000 x 9000 pixels"),   # under Pillow's limits: ours
    ("truncated.png", lambda: png_header(64, 64)[:40], "not a readable image"),
    ("text.jpg", lambda: b"hello", "not a readable image"),
]


@pytest.mark.parametrize("name, data, fragment", HOSTILE_IMAGES, ids=[name for name, _, _ in HOSTILE_IMAGES])
def test_hostile_images_are_refused_in_one_line_before_anything_starts(tmp_path, name, data, fragment):
    path = tmp_path / name
    path.write_bytes(data())
    store = tmp_path / "store"
    run = lambda: invoke("run", "--store", store, *RUN[:4], "--jobs", "transfigure", "--images", path)  # noqa: E731
    run()   # unmeasured: the first refusal in a process imports torch and loads the model (~40 MB, whatever the file)
    result, grown = peak_growth_kib(run)
    refused(result, str(path), fragment)
    assert not store.exists()
    if grown is None:
        pytest.skip("this kernel cannot reset a process's peak memory (/proc/self/clear_refs): bound not checked")
    assert grown < REFUSAL_GROWTH_KIB, f"peak memory rose {grown} KiB refusing {name}"


# ---- 15.3 out of memory in a worker ----------------------------------------------------------------------------

def test_an_out_of_memory_render_is_reported_with_batch_and_image_size(tmp_path):
    from sweep.driver import SweepConfig, prepare
    from sweep.worker import SweepWorker, WorkerConfig

    def oom(model, specs, schedule, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 99999999999 bytes.")

    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="octave", classes="0-2", batch_size=3))
    prepared.store.write_manifest(prepared.manifest)
    worker = SweepWorker(WorkerConfig(prepared.store.uri, "digits", "random", prepared.schedule))
    worker.run_batch = oom
    batch = prepared.plan.batches()[0]
    report = worker.run(batch, (1,) * len(batch.items))
    side = max(prepared.schedule.for_job("octave").model_input_sizes())
    assert [key for key, _ in report.failed] == list(batch.keys)
    error = report.failed[0][1]
    assert error.startswith("out of memory") and f"batch of 3 images of up to {side} x {side} px" in error
    assert "--batch-size" in error


# ---- 15.4 a corrupt file: quarantine ---------------------------------------------------------------------------

def truncate_first_images_file(store: Path) -> Path:
    path = sorted((store / IMAGES).glob("*.parquet"))[0]
    path.write_bytes(path.read_bytes()[:100])
    return path


def test_a_truncated_file_is_refused_in_one_line_that_names_the_way_on(built, tmp_path):
    bad = truncate_first_images_file(built)
    before = tree(built)
    for command in (("status",), ("analyze",), ("figures",)):
        result = invoke(*command, "--store", built)
        if command == ("figures",):   # it says first why it analyses, then the analysis refuses the store
            note, _, rest = result.output.partition("\n")
            assert note == "no analysis yet: running `sweep analyze --metric euclidean` first", result.output
            result = SimpleNamespace(exit_code=result.exit_code, output=rest, exception=result.exception)
        refused(result, bad.name, "quarantine")
    out = tmp_path / "png"
    refused(invoke("export", "--store", built, "--out", out), bad.name, "quarantine")
    assert not out.exists() or not any(out.rglob("*.png"))   # refused before the first PNG
    assert tree(built) == before


def test_quarantine_moves_an_unreadable_file_aside_once_and_its_items_become_missing(built):
    from sweep.driver import pending_work
    from sweep.plan import Plan
    store = Store.open(str(built))
    keys_before = store.done_keys()
    bad = truncate_first_images_file(built)
    moved = store.quarantine_unreadable().moved
    assert [Path(path).name for path, _ in moved] == [bad.name]
    assert (built / QUARANTINE / IMAGES / bad.name).exists() and not bad.exists()
    assert store.quarantine_unreadable().moved == []            # once
    plan = Plan.from_options(store.manifest["options"])
    missing = pending_work(plan, store).items
    assert {i.key for i in missing} == {i.key for i in plan.items()} - store.done_keys()
    assert store.done_keys() < keys_before and len(missing) == len({i.key for i in missing})


# ---- 15.5 - 15.7 -----------------------------------------------------------------------------------------------

@pytest.fixture
def direction_store(tmp_path):
    from analysis.synthetic import Image, noise_png, write_store
    rng = np.random.default_rng(0)
    images = [Image("octave", t, rng.normal(size=4) + 5 * np.eye(4)[t], seed=s, png=noise_png(rng, 8))
              for t in range(4) for s in range(3)]
    return Path(write_store(str(tmp_path / "ds"), [f"c{i}" for i in range(4)], images))


def test_directions_refuses_a_binary_groups_file_and_an_unknown_start_before_writing(direction_store, tmp_path):
    binary = tmp_path / "groups.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 100)
    before = tree(direction_store)
    refused(invoke("directions", "--store", direction_store, "--groups", binary), str(binary))
    groups = tmp_path / "ok.csv"
    groups.write_text("class,group\n0,a\n1,a\n2,b\n3,b\n")
    refused(invoke("directions", "--store", direction_store, "--groups", groups, "--components", 2,
                   "--start", "nosuchkey"), "nosuchkey")
    assert tree(direction_store) == before


class Payload:
    """Stands for any object a pickle could run code to build."""


def test_a_pickle_that_is_not_a_state_dict_is_refused_without_unsafe_advice(tmp_path):
    import torch
    path = tmp_path / "evil.pt"
    torch.save({"weights": Payload()}, path)   # an object torch's safe loader refuses
    store = tmp_path / "store"
    line = refused(invoke("run", "--store", store, "--model", "digits", "--weights", path), str(path))
    assert "weights_only" not in line and "never unpickles" in line
    assert not store.exists()


@pytest.mark.parametrize("option", ["--jobs", "--variants"])
def test_an_empty_list_is_a_user_error(tmp_path, option):
    store = tmp_path / "store"
    refused(invoke("run", "--store", store, *RUN, option, ""), "no ")
    assert not store.exists()


# ---- 18.1 export: names from the store stay inside --out and unique ---------------------------------------------

def rewrite_images(store: Path, change) -> None:
    """Rewrite every images/ file with `change(row)` applied: a crafted store."""
    for path in (store / IMAGES).glob("*.parquet"):
        table = pq.read_table(path)
        rows = [change(row) for row in table.to_pylist()]
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


@pytest.mark.parametrize("job", ["../../ESCAPE_JOB", "/tmp/ESCAPE_ABS", "..", "a/../../b"])
def test_export_keeps_crafted_job_names_inside_the_output_folder(built, tmp_path, job):
    rewrite_images(built, lambda row: {**row, "job": job})
    out = tmp_path / "deep" / "out"
    result = invoke("export", "--store", built, "--out", out)
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.rglob("*.png")]
    assert written and all(out in p.resolve().parents for p in written)
    assert not list(Path("/tmp").glob("ESCAPE_ABS*"))
    rows = sum(pq.read_metadata(p).num_rows for p in (built / IMAGES).glob("*.parquet"))
    assert f"wrote {rows} PNG files" in result.output and len(written) == rows


def test_export_gives_names_that_reduce_to_the_same_file_their_own_files(built, tmp_path):
    names = iter(["日本", "中国", "Ab", "aB", "x/y", "x y"] * 100)
    rewrite_images(built, lambda row: {**row, "target_name": next(names), "job": "octave", "variant": "",
                                       "partner": -1, "seed": 0, "target": 1})
    out = tmp_path / "out"
    result = invoke("export", "--store", built, "--out", out)
    rows = sum(pq.read_metadata(p).num_rows for p in (built / IMAGES).glob("*.parquet"))
    assert result.exit_code == 0 and f"wrote {rows} PNG files" in result.output
    files = list(out.rglob("*.png"))
    assert len(files) == rows and len({p.name.casefold() for p in files}) == rows
    assert any("日本" in p.name for p in files) and any("中国" in p.name for p in files)


def test_the_safe_name_rule_keeps_one_component():
    from sweep.export import safe_name, slug
    for text in ("..", ".", "", "/", "../../x", "a/b", "\x00", "." * 300, "日" * 300):
        name = safe_name(text)
        assert name and "/" not in name and not name.startswith(".") and len(name.encode()) <= 100
    assert slug("great white shark") == "great-white-shark" and slug("日本") == "日本" and slug("???") == "class"


# ---- 18.3 file-system faults and crafted stores ----------------------------------------------------------------

def failing_write(error_number: int):
    def write_bytes(self, relative, data):
        raise OSError(error_number, os.strerror(error_number), self.path(relative))
    return write_bytes


def test_a_full_disk_while_writing_a_store_record_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setattr(Store, "write_bytes", failing_write(errno.ENOSPC))
    refused(invoke("run", "--store", store, *RUN), "No space left on device", "manifest.json")
    assert tree(store) == {} if store.exists() else True    # no manifest, no lease, no temporary


def test_the_driver_writing_a_failure_record_on_a_full_disk_raises_the_os_error(built, monkeypatch):
    from sweep.driver import SweepConfig, SweepDispatch, Task, prepare
    from sweep.progress import Progress
    prepared = prepare(SweepConfig(store=str(built), model="digits", weights="random", schedule="tiny",
                                   classes="0-3", pairs="0+1,2+3", batch_size=4))
    monkeypatch.setattr(Store, "write_bytes", failing_write(errno.ENOSPC))
    dispatch = SweepDispatch(prepared.config, prepared.store, prepared.schedule, Progress(1, 0), None)
    batch = prepared.plan.batches()[0]
    with pytest.raises(OSError) as caught:   # the CLI turns it into one line (test above)
        dispatch.on_failed(Task(batch, (1,) * len(batch.items)), "boom")
    assert caught.value.errno == errno.ENOSPC
    assert not list((built / ".tmp").glob("*")) if (built / ".tmp").exists() else True


@pytest.mark.parametrize("command", ["run", "analyze", "figures"])
def test_a_read_only_store_is_one_line(built, tmp_path, monkeypatch, command):
    if command == "figures":
        assert invoke("analyze", "--store", built).exit_code == 0
    store = tmp_path / "new" if command == "run" else built   # a run into a complete store writes nothing
    store.mkdir(exist_ok=True)
    monkeypatch.setattr(Store, "write_bytes", failing_write(errno.EROFS))   # every write, the report's included
    before = tree(store)
    refused(invoke(command, "--store", store, *(RUN if command == "run" else ())), "Read-only file system")
    assert tree(store) == before


@pytest.mark.parametrize("command", ["run", "status", "export", "analyze", "figures"])
def test_a_store_path_that_is_a_file_is_one_line(tmp_path, command):
    path = tmp_path / "afile"
    path.write_text("x")
    args = {"run": ("run", "--store", path, *RUN), "export": ("export", "--store", path, "--out", tmp_path / "o")}
    refused(invoke(*args.get(command, (command, "--store", path))), str(path))
    assert path.read_text() == "x"


@pytest.mark.parametrize("content", [b"PAR1garbagePAR1", None])
def test_export_of_a_truncated_or_foreign_parquet_file_writes_nothing(built, tmp_path, content):
    foreign = built / IMAGES / "zz-foreign.parquet"
    if content is None:
        pq.write_table(pa.table({"a": [1, 2]}), foreign)
    else:
        foreign.write_bytes(content)
    out = tmp_path / "png"
    refused(invoke("export", "--store", built, "--out", out), "zz-foreign.parquet")
    assert not out.exists() or not any(out.rglob("*.png"))


@pytest.mark.parametrize("manifest, fragment", [
    ([1, 2, 3], "a JSON list"),
    ("drop-options", "no options"),
    ({"n_classes": "many"}, "not a classweep manifest"),
])
@pytest.mark.parametrize("command", ["status", "run"])
def test_a_hand_edited_manifest_is_one_line(built, manifest, fragment, command):
    path = built / "manifest.json"
    if manifest == "drop-options":
        data = json.loads(path.read_text())
        del data["options"]
        manifest = data
    path.write_text(json.dumps(manifest))
    before = tree(built)
    args = ("run", "--store", built, *RUN) if command == "run" else ("status", "--store", built)
    refused(invoke(*args), "manifest")
    assert tree(built) == before


def test_reading_only_the_data_files_skips_a_foreign_file(built):
    """18.6: the README's recipe for reading images/ when someone put another file there."""
    import pyarrow.dataset as ds
    (built / IMAGES / "README.txt").write_text("notes")
    rows = sum(pq.read_metadata(p).num_rows for p in (built / IMAGES).glob("*.parquet"))
    table = ds.dataset(built / IMAGES, format="parquet", exclude_invalid_files=True).to_table(columns=["key"])
    assert table.num_rows == rows
    status = invoke("status", "--store", built)                     # the tool ignores it: complete, all counted
    assert status.exit_code == 0 and re.search(r"total\s+12/12", status.output), status.output


# ---- 18.4 interruptions at start-up ----------------------------------------------------------------------------

def sigterm_caught(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (its SigCgt mask in /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


def start_run(store: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CLASSWEEP_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", "--store", str(store), *RUN, "--workers", "1"],
                            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def ray_started(sid: int) -> bool:
    """Whether a Ray process (GCS server or raylet) of session `sid` is running."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[3]) == sid and (b"gcs_server" in command or b"raylet" in command):
            return True
    return False


def end_session(sid: int) -> None:
    """SIGKILL whatever of the run's session is left (Ray processes of a run that went wrong)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


# Each signal and each stage once by default; the other two pairs with --run-slow (5 s).
@pytest.mark.parametrize("sig, stage", [(signal.SIGTERM, "start-up"), (signal.SIGINT, "ray"),
                                        pytest.param(signal.SIGINT, "start-up", marks=pytest.mark.slow),
                                        pytest.param(signal.SIGTERM, "ray", marks=pytest.mark.slow)])
def test_a_signal_during_start_up_exits_130_with_the_interruption_line(tmp_path, sig, stage):
    store = tmp_path / "store"
    process = start_run(store)
    ready = (lambda: sigterm_caught(process.pid)) if stage == "start-up" else (lambda: ray_started(process.pid))
    try:
        with sweep_fakes.failing_if_stuck(120):   # a run that never gets there fails this test instead of hanging all
            while process.poll() is None and not ready():
                time.sleep(0.05)                  # ray_started reads every process's /proc entries: not too often
        process.send_signal(sig)
        output, _ = process.communicate(timeout=120)
    finally:
        end_session(process.pid)
    assert process.returncode == 130, output
    assert output.strip().splitlines()[-1] == "interrupted: run the same command again to resume"
    assert "Traceback" not in output
    assert not (store / LEASE).exists()
    dry = invoke("run", "--store", store, *RUN, "--dry-run")   # resumable: the same command is accepted
    assert dry.exit_code == 0, dry.output


SIGNAL_WHILE_IMPORTING = """
import importlib.abc, os, signal, sys
class SignalOnImport(importlib.abc.MetaPathFinder):   # the signal arrives while the command line is being imported
    def find_spec(self, name, path=None, target=None):
        if name == "sweep.cli":
            os.kill(os.getpid(), signal.{sig})
        return None
sys.meta_path.insert(0, SignalOnImport())
from sweep.entry import main
sys.argv = ["sweep", "status", "--store", "/nonexistent"]
main()
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_console_command_imports_exits_130_with_the_interruption_line(sig):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SIGNAL_WHILE_IMPORTING.format(sig=sig)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["interrupted: run the same command again to resume"]
    assert "sweep.cli" not in done.stdout


def test_the_console_command_is_the_early_entry():
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"sweep": "sweep.entry:main"}


def test_python_dash_m_sweep_is_the_same_early_entry():
    """`python -m sweep` (the package on PYTHONPATH only, as on the GPU machine) runs the console command."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "sweep", "status", "--store", "/nonexistent/store"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "/nonexistent/store" in done.stderr, done.stderr


def test_directions_refuses_keys_and_classes_the_store_lacks_in_one_line(direction_store, tmp_path):
    """Walk-through audit #1: a typo'd key, or a class without images, was dropped without a word (rc 0)."""
    before = tree(direction_store)
    keys = tmp_path / "keys.csv"
    keys.write_text("group,key\na,octave:-:0:-1:0\nb,octave:-:1:-1:0\nb,nokey\n")
    refused(invoke("directions", "--store", direction_store, "--groups", keys), "key matches no image", "'nokey'")
    classes = tmp_path / "classes.csv"
    classes.write_text("class,group\n0,a\n1,b\nc3,b\n")
    classes_0_to_2 = tmp_path / "ds3"
    from analysis.synthetic import Image, noise_png, write_store
    rng = np.random.default_rng(0)
    write_store(str(classes_0_to_2), [f"c{i}" for i in range(4)],
                [Image("octave", t, rng.normal(size=4), seed=s, png=noise_png(rng, 8)) for t in range(3)
                 for s in range(2)])
    refused(invoke("directions", "--store", classes_0_to_2, "--groups", classes),
            "class c3 has no octave/transfigure images in the store")
    assert tree(direction_store) == before
