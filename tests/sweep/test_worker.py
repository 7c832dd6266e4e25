"""The worker's batch method, in-process (no Ray): real engine, real files, idempotent re-runs, failures."""
from __future__ import annotations

import dataclasses
import threading
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import sweep_fakes
from jobs.kinds import feature_means
from jobs.schedules import load_schedule
from sweep.plan import make_plan
from sweep.store import FAILURES, IMAGES, Store, decode_png
from sweep.worker import SweepWorker, WorkerConfig


@pytest.fixture(scope="module")
def worker_factory():
    schedule = load_schedule("tiny")

    def make(store, engine="jobs.kinds:run_batch"):
        return SweepWorker(WorkerConfig(str(store), "digits", "random", schedule, engine))
    return make


def test_run_writes_one_file_per_batch_and_reruns_overwrite(tmp_path, worker_factory):
    worker = worker_factory(tmp_path)
    batch = make_plan(n_classes=10, jobs="octave", classes="0-2", batch_size=3).batches()[0]
    report = worker.run(batch, (1, 1, 1))
    assert report.done == batch.keys and report.failed == ()
    # The same batch again (an actor that died after writing, re-run by the driver): same file, no duplicate.
    worker.run(batch, (1, 1, 1))
    files = sorted(p.name for p in (tmp_path / IMAGES).iterdir())
    assert files == [f"{batch.name}.parquet"]
    frame = pd.read_parquet(tmp_path / IMAGES)
    assert sorted(frame.key) == sorted(batch.keys) and frame.key.is_unique
    assert (frame.model == "digits").all() and (frame.target_name == [f"digit {t}" for t in frame.target]).all()
    assert frame.logits.map(len).eq(10).all()
    assert not (tmp_path / FAILURES).exists()


def test_failed_items_are_recorded_not_stored(tmp_path, worker_factory):
    worker = worker_factory(tmp_path, "sweep_fakes:failing_run_batch")
    batch = make_plan(n_classes=10, jobs="octave", classes="2-4", batch_size=3).batches()[0]
    report = worker.run(batch, (1, 2, 1))
    bad = f"octave:-:{sweep_fakes.FAIL_TARGET}:-1:0"
    assert set(report.done) == set(batch.keys) - {bad}
    assert [key for key, _ in report.failed] == [bad] and "injected" in report.failed[0][1]
    failures = pd.read_parquet(tmp_path / FAILURES)
    assert failures.key.tolist() == [bad] and failures.attempt.tolist() == [2]
    assert Store.open(str(tmp_path)).done_keys() == set(report.done)


def test_a_raising_engine_fails_the_whole_batch(tmp_path, worker_factory):
    worker = worker_factory(tmp_path, "sweep_fakes:raising_run_batch")
    batch = make_plan(n_classes=10, jobs="octave", classes="5-7", batch_size=3).batches()[0]
    report = worker.run(batch, (1, 1, 1))
    assert report.done == () and len(report.failed) == 3
    assert all("engine exploded" in error for _, error in report.failed)
    assert not (tmp_path / IMAGES).exists()


def test_features_match_the_engine_on_decoded_pngs(tmp_path, worker_factory):
    worker = worker_factory(tmp_path)
    batch = make_plan(n_classes=10, jobs="octave,opposite", classes="0-2", batch_size=3).batches()[0]
    worker.run(batch, (1, 1, 1))
    path = Store.open(str(tmp_path)).files(IMAGES)[0]
    table = worker.features(path, "block2", (0, 5))
    assert table.column_names == ["key", "target", "target_name", "layer", "feature_size", "side", "map_0", "map_5"]
    assert set(table.column("feature_size").to_pylist()) == {"input"} and set(table.column("side").to_pylist()) == {32}
    frame = pd.read_parquet(path)
    images = np.stack([decode_png(p) for p in frame.png])
    expected = feature_means(worker.model, images, "block2", [0, 5], side=32)
    np.testing.assert_allclose(np.column_stack([table.column("map_0"), table.column("map_5")]), expected,
                               rtol=1e-5)


def test_features_resize_to_the_models_input_size_unless_asked_for_the_stored_size(tmp_path, worker_factory):
    """The tiny schedule's images are stored at 40 px, larger than the model's 32 px input (as the googlenet
    preset's are at 490 px, which the article would evaluate at 299 px)."""
    worker = worker_factory(tmp_path)
    worker.run(make_plan(n_classes=10, jobs="octave", classes="0-1", batch_size=2).batches()[0], (1, 1))
    path = Store.open(str(tmp_path)).files(IMAGES)[0]
    images = np.stack([decode_png(p) for p in pd.read_parquet(path).png])              # 2 x 40 x 40 x 3
    resized, stored = (worker.features(path, "block2", (0,), size=size) for size in ("input", "stored"))
    assert resized.column("side").to_pylist() == [32, 32] and stored.column("side").to_pylist() == [40, 40]
    assert stored.column("feature_size").to_pylist() == ["stored"] * 2
    for table, side in ((resized, 32), (stored, None)):
        np.testing.assert_allclose(table.column("map_0"),
                                   feature_means(worker.model, images, "block2", [0], side=side)[:, 0], rtol=1e-5)
    assert not np.allclose(resized.column("map_0"), stored.column("map_0"), rtol=1e-3)
    with pytest.raises(ValueError, match="'huge'"):
        worker.features(path, "block2", (0,), size="huge")


def test_features_resize_as_the_jobs_own_schedule_resized(tmp_path, worker_factory):
    """A store made with `antialias: false` (its octaves shrink without antialiasing) has its images shrunk to the
    input size the same way; a schedule that antialiases, or a manifest that does not say, gives today's values."""
    worker = worker_factory(tmp_path)
    worker.run(make_plan(n_classes=10, jobs="octave", classes="0-1", batch_size=2).batches()[0], (1, 1))
    store = Store.open(str(tmp_path))
    path = store.files(IMAGES)[0]
    images = np.stack([decode_png(p) for p in pd.read_parquet(path).png])              # 2 x 40 x 40 x 3

    def features_under(schedule, contents: bool = True) -> np.ndarray:
        store.write_manifest({"job_schedules": {"octave": {"schedule": schedule.name, "schedule_id": schedule.id,
                                                           "input": schedule.input}},
                              "schedule_contents": {schedule.id: schedule.to_dict()} if contents else {}})
        return worker.features(path, "block2", (0,)).column("map_0").to_numpy()

    tiny = load_schedule("tiny")
    plain = features_under(dataclasses.replace(tiny, antialias=False))
    np.testing.assert_allclose(plain, feature_means(worker.model, images, "block2", [0], input=tiny.input, side=32,
                                                    antialias=False)[:, 0], rtol=1e-5)
    antialiased = features_under(tiny)
    assert not np.allclose(plain, antialiased, rtol=1e-4)
    unrecorded = features_under(tiny, contents=False)      # a store written before manifests kept schedules
    np.testing.assert_array_equal(antialiased, unrecorded)
    np.testing.assert_array_equal(unrecorded, feature_means(worker.model, images, "block2", [0], input=tiny.input,
                                                            side=32)[:, 0])


def test_overlapped_calls_render_one_at_a_time_and_write_each_batch_once_in_render_order(tmp_path, worker_factory):
    """Two calls at once (as a Ray actor with max_concurrency=2 gets them): renders never run together, the writer
    takes batches in the order they were rendered, and every batch is written exactly once."""
    worker = worker_factory(tmp_path)
    events, active, most = [], [0], [0]
    real_engine, real_write = worker.run_batch, worker.write

    def engine(model, specs, schedule, **kwargs):
        active[0] += 1
        most[0] = max(most[0], active[0])
        events.append(("render", specs[0].target))
        time.sleep(0.05)
        active[0] -= 1
        return real_engine(model, specs, schedule, **kwargs)

    def write(batch, attempts, results, errors):
        events.append(("write", batch.items[0].target))
        time.sleep(0.1)                              # a slow writer: the next render goes on meanwhile
        return real_write(batch, attempts, results, errors)

    worker.run_batch, worker.write = engine, write
    batches = make_plan(n_classes=10, jobs="octave", classes="all", batch_size=2).batches()
    reports = {}

    def call(batch):
        reports[batch.index] = worker.run(batch, (1,) * len(batch.items))

    threads = [threading.Thread(target=call, args=(b,)) for b in batches[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for batch in batches[2:]:                       # and sequentially, as in-process callers do
        call(batch)
    assert most[0] == 1
    renders = [t for kind, t in events if kind == "render"]
    writes = [t for kind, t in events if kind == "write"]
    assert writes == renders and sorted(writes) == [b.items[0].target for b in batches]
    files = sorted(p.name for p in (tmp_path / IMAGES).iterdir())
    assert files == sorted(f"{b.name}.parquet" for b in batches)
    frame = pd.read_parquet(tmp_path / IMAGES)
    assert len(frame) == 10 and frame.key.is_unique
    assert all(r.render_seconds > 0 and r.waited_seconds >= 0 for r in reports.values())


def test_a_failing_write_is_recorded_as_the_batch_failure(tmp_path, worker_factory):
    worker = worker_factory(tmp_path)
    store = worker.store
    real = store.write_table

    class Flaky:      # the store, but writing images/ fails (a full disk, a lost bucket permission)
        fs = store.fs

        def __getattr__(self, name):
            return getattr(store, name)

        def write_table(self, relative, table):
            if relative.startswith(IMAGES):
                raise OSError("disk full")
            return real(relative, table)

    worker.store = Flaky()
    batch = make_plan(n_classes=10, jobs="octave", classes="0-2", batch_size=3).batches()[0]
    report = worker.run(batch, (1, 1, 1))
    assert report.done == () and [k for k, _ in report.failed] == list(batch.keys)
    assert all("writing the batch failed: OSError: disk full" in e for _, e in report.failed), report.failed
    assert not (tmp_path / IMAGES).exists()
    assert sorted(pd.read_parquet(tmp_path / FAILURES).key) == sorted(batch.keys)


def test_setup_on_the_cpu_keeps_a_small_batch_unless_told(tmp_path, worker_factory):
    from sweep.worker import CPU_BATCH
    worker = worker_factory(tmp_path)
    assert worker.setup(None)["batch_size"] == CPU_BATCH and worker.setup(5)["batch_size"] == 5
    assert worker.setup(None)["device"] == "cpu" and not worker.setup(None)["bf16"]


def test_the_automatic_batch_is_sized_for_the_largest_image_any_job_feeds_the_network():
    from jobs.schedules import default_schedules, schedule_set
    from sweep.worker import largest_input
    googlenet = default_schedules("googlenet", ("octave", "opposite", "dream"))
    assert largest_input(googlenet, 224) == 470              # octave 2's crops, not the model's 224 px
    assert largest_input(schedule_set(googlenet, "googlenet-pad"), 224) == 737   # the image grows 2 px a step
    assert largest_input(default_schedules("inception_v3", ("octave",)), 299) == 390
    tiny = load_schedule("tiny")
    assert largest_input(tiny, 1000) == max(tiny.model_input_sizes()) and largest_input(None, 224) == 224
    # a job's schedule named like the default (an edited copy of a preset) still counts: by job, not by name
    big = dataclasses.replace(load_schedule("googlenet-pad"), name="googlenet")
    from jobs.schedules import ScheduleSet
    assert largest_input(ScheduleSet("s", load_schedule("googlenet"), (("dream", big),)), 224) == 737


def test_setup_on_a_gpu_probes_at_the_largest_input_of_every_job(tmp_path, monkeypatch):
    """The worker gets the sweep's ScheduleSet; the probe must see its largest input (googlenet-pad: 737 px)."""
    import torch
    import sweep.worker as worker_module
    from jobs.schedules import default_schedules, schedule_set
    schedules = schedule_set(default_schedules("digits"), "googlenet-pad")
    worker = SweepWorker(WorkerConfig(str(tmp_path), "digits", "random", schedules))
    probed = []
    monkeypatch.setattr(worker, "on_gpu", True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a fake GPU")
    monkeypatch.setattr(worker_module, "probe_batch_size",
                        lambda model, side, device, **options: probed.append((side, options)) or 12)
    setup = worker.setup(None)
    assert probed == [(737, {"bf16": True, "fp16": False, "channels_last": True, "cap": worker_module.AUTO_CAP})]
    assert (setup["batch_size"], setup["gpu"], setup["bf16"], setup["fp16"]) == (12, "a fake GPU", True, False)
    assert worker.setup(5)["batch_size"] == 5 and len(probed) == 1      # a given batch size is not probed


@pytest.mark.parametrize("bf16", [True, False])
def test_fp16_takes_bf16s_place_on_a_gpu_and_the_cpu_never_autocasts(tmp_path, monkeypatch, bf16):
    """`--fp16`: the engine, the memory probe and the options the run records get float16 autocast on a GPU, and
    bf16 is off then (even when the config kept bf16's default); on the CPU neither is on, as with bf16."""
    import sweep.worker as worker_module
    worker = SweepWorker(WorkerConfig(str(tmp_path), "digits", "random", load_schedule("tiny"), bf16=bf16, fp16=True))
    engine, probed = [], []
    monkeypatch.setattr(worker, "run_batch", lambda model, specs, schedule, **options: engine.append(options) or [])
    monkeypatch.setattr(worker_module, "probe_batch_size",
                        lambda model, side, device, **options: probed.append(options) or 12)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a fake GPU")
    batch = make_plan(n_classes=10, jobs="octave", classes="0-1", batch_size=2).batches()[0]
    for on_gpu in (False, True):
        monkeypatch.setattr(worker, "on_gpu", on_gpu)
        worker.render(batch, None)
        setup = worker.setup(None)
        assert (engine[-1]["autocast_bf16"], engine[-1]["autocast_fp16"]) == (False, on_gpu)
        assert (setup["bf16"], setup["fp16"]) == (False, on_gpu)
    assert [(p["bf16"], p["fp16"]) for p in probed] == [(False, True)]   # the CPU has no probe


def test_an_fp16_worker_on_the_cpu_renders_the_float32_images_bit_for_bit(tmp_path):
    """fp16 is a GPU option, like bf16: a CPU worker asked for it renders exactly what a float32 worker does."""
    schedule = load_schedule("tiny")
    batch = make_plan(n_classes=10, jobs="octave", classes="0-2", batch_size=3).batches()[0]
    images = {}
    for fp16 in (False, True):
        store = tmp_path / str(fp16)
        worker = SweepWorker(WorkerConfig(str(store), "digits", "random", schedule, bf16=False, fp16=fp16))
        assert worker.run(batch, (1, 1, 1)).done == batch.keys
        images[fp16] = pd.read_parquet(store / IMAGES).sort_values("key").png.tolist()
    assert images[True] == images[False]


def test_float32_on_a_gpu_is_float32_not_tf32():
    """A --no-bf16 run, the stored logits and the scores compute in float32 as the articles did: PyTorch's default
    TF32 convolutions on GPUs are turned off in every GPU worker."""
    from sweep.worker import ready_for_gpu
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32
    compiled = []
    model = SimpleNamespace(net=SimpleNamespace(compile=lambda: compiled.append(True)))
    try:
        cudnn.benchmark = cudnn.allow_tf32 = matmul.allow_tf32 = True
        ready_for_gpu(model, cudnn_benchmark=False, compile=False)
        assert not cudnn.benchmark and not cudnn.allow_tf32 and not matmul.allow_tf32 and not compiled
        ready_for_gpu(model, cudnn_benchmark=True, compile=True)       # --compile
        assert cudnn.benchmark and compiled == [True]
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


class SumOfPixels(torch.nn.Module):
    """A network whose output needs the input gradient; it records the batches it was given."""
    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x):                               # B x 3 x S x S -> B x 10
        self.batches.append(tuple(x.shape))
        return x.sum((1, 2, 3))[:, None].expand(-1, 10)


def fake_cuda_memory(monkeypatch, net: SumOfPixels, fixed: int, per_image: int, free: int) -> None:
    """torch.cuda's memory calls, on the CPU: the peak of a step is `fixed` + `per_image` x its batch."""
    import torch
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated",
                        lambda device=None: 1000 + fixed + per_image * net.batches[-1][0])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 4 * free))


def test_the_memory_probe_fits_the_largest_batch_in_the_free_memory_with_headroom(monkeypatch):
    """Two short steps (batches 2 and 4) give the fixed and per-image memory; the batch is what fits in the
    headroom's share of the free memory, at least 1 and at most the cap; a probe that runs out of memory gives 1."""
    import torch
    from sweep.worker import probe_batch_size
    net = SumOfPixels()
    fake_cuda_memory(monkeypatch, net, fixed=500, per_image=100, free=5000)
    options = dict(bf16=False, channels_last=False)
    assert probe_batch_size(net, 48, "cpu", cap=64, headroom=0.7, **options) == (5000 * 0.7 - 500) // 100 == 30
    assert list(dict.fromkeys(net.batches)) == [(2, 3, 48, 48), (4, 3, 48, 48)]
    assert probe_batch_size(net, 48, "cpu", cap=16, headroom=0.7, **options) == 16
    fake_cuda_memory(monkeypatch, net, fixed=500, per_image=100, free=600)
    assert probe_batch_size(net, 48, "cpu", cap=64, headroom=0.7, **options) == 1

    def out_of_memory(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(net, "forward", out_of_memory)
    assert probe_batch_size(net, 48, "cpu", cap=64, headroom=0.7, **options) == 1


def test_the_memory_probe_steps_under_the_renders_autocast(monkeypatch):
    """The probe measures the render's steps: under float16 autocast with `fp16` (in bf16's place), bf16 autocast
    with `bf16`, none without (the autocast context is recorded: this machine may have no GPU to run it)."""
    import contextlib
    from sweep.worker import probe_batch_size
    net = SumOfPixels()
    fake_cuda_memory(monkeypatch, net, fixed=500, per_image=100, free=5000)
    entered = []
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype=None, enabled=True: entered.append(
        (device_type, dtype, enabled)) or contextlib.nullcontext())
    for bf16, fp16, expected in ((False, True, torch.float16), (True, True, torch.float16),
                                 (True, False, torch.bfloat16), (False, False, None)):
        entered.clear()
        assert probe_batch_size(net, 48, "cpu", bf16=bf16, fp16=fp16, channels_last=False) == 30
        assert {(device, dtype if on else None) for device, dtype, on in entered} == {("cuda", expected)}


class CachingAllocator:
    """torch.cuda's memory calls on the CPU, as a GPU process with cuDNN benchmarking sees them: a step's peak is
    `fixed` + `per_image` x its batch, plus `autotune` the first time a shape runs (cuDNN's trial workspaces, lazy
    library handles); what a step used stays reserved by the cache (not free to the driver) until `empty_cache`."""

    def __init__(self, monkeypatch, net: SumOfPixels, fixed: int, per_image: int, autotune: int, free: int):
        self.net, self.fixed, self.per_image, self.autotune, self.free = net, fixed, per_image, autotune, free
        self.cached = 0
        for name in ("synchronize", "reset_peak_memory_stats"):
            monkeypatch.setattr(torch.cuda, name, lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1000)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", self.max_memory_allocated)
        monkeypatch.setattr(torch.cuda, "empty_cache", self.empty_cache)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (self.free - self.cached, 4 * self.free))

    def max_memory_allocated(self, device=None) -> int:
        shape = self.net.batches[-1]
        peak = self.fixed + self.per_image * shape[0] + (self.autotune if self.net.batches.count(shape) == 1 else 0)
        self.cached = max(self.cached, peak)
        return 1000 + peak

    def empty_cache(self) -> None:
        self.cached = 0


def test_the_memory_probe_measures_steady_steps_and_the_memory_the_cache_would_give_back(monkeypatch):
    """With cuDNN benchmarking on (as every GPU worker has it), a shape's first step tries kernels with large
    workspaces: the probe must not take that for the render's memory (it gave batch 1 on a GPU with room for 30).
    And the probe's own steps leave their memory in PyTorch's cache, free for the render: it counts as free."""
    from sweep.worker import probe_batch_size
    options = dict(cap=64, headroom=0.7, bf16=False, channels_last=False)
    net = SumOfPixels()
    CachingAllocator(monkeypatch, net, fixed=500, per_image=100, autotune=0, free=5000)
    assert probe_batch_size(net, 48, "cpu", **options) == (5000 * 0.7 - 500) // 100 == 30
    net = SumOfPixels()
    CachingAllocator(monkeypatch, net, fixed=500, per_image=100, autotune=10_000, free=5000)
    assert probe_batch_size(net, 48, "cpu", **options) == 30


def test_steps_within_a_batch_are_reported_while_it_renders(tmp_path, worker_factory, monkeypatch):
    import sweep.worker as worker_module
    from sweep.worker import StepCounter
    monkeypatch.setattr(worker_module, "REPORT_EVERY", 0.0)
    counter, seen = StepCounter(), []

    class Handle:                 # stands for the StepCounter actor's handle: `.report.remote(...)`
        class report:
            @staticmethod
            def remote(token, steps):
                seen.append(steps)
                counter.report(token, steps)

    worker = worker_factory(tmp_path)
    worker.config = dataclasses.replace(worker.config, steps=Handle())
    batch = make_plan(n_classes=10, jobs="octave", classes="0-2", batch_size=3).batches()[0]
    worker.run(batch, (1, 1, 1), token="t1")
    total = 3 * worker.config.schedule.total_iterations            # image-steps of the batch
    assert seen and seen == sorted(seen) and seen[-1] == total and 0 < seen[0] < total
    assert counter.snapshot() == {"t1": total}
    counter.forget(["t1"])
    assert counter.snapshot() == {}


def test_interpolation_frames_go_to_their_own_table_first(tmp_path, worker_factory, monkeypatch):
    """Issue 10.8: frames in frames/{batch}.parquet, written before the batch's images file (a row in images/
    implies its frames); a re-run overwrites both, and a failed frames write stores no image."""
    from sweep.store import FRAMES
    Store.open(str(tmp_path)).write_source("photo", np.full((20, 20, 3), 90, np.uint8))
    batch = make_plan(n_classes=10, jobs="interpolate", pairs="0+1,2+3", sources=("photo",),
                      batch_size=2).batches()[0]
    written = []
    original = Store.write_table
    monkeypatch.setattr(Store, "write_table", lambda self, relative, table: written.append(relative)
                        or original(self, relative, table))
    worker = worker_factory(tmp_path)
    assert worker.run(batch, (1, 1)).done == batch.keys
    worker.run(batch, (1, 1))
    assert written == [f"{FRAMES}/{batch.name}.parquet", f"{IMAGES}/{batch.name}.parquet"] * 2
    images, frames = pd.read_parquet(tmp_path / IMAGES), pd.read_parquet(tmp_path / FRAMES)
    assert sorted(images.key) == sorted(batch.keys) and (images.frame == -1).all()
    assert frames.key.is_unique and (frames.frame >= 0).all()
    assert {k.split("#frame")[0] for k in frames.key} == set(batch.keys)

    def failing(self, relative, table):
        if relative.startswith(FRAMES):
            raise OSError("disk full")
        return original(self, relative, table)
    monkeypatch.setattr(Store, "write_table", failing)
    other = tmp_path / "other"
    Store.open(str(other)).write_source("photo", np.full((20, 20, 3), 90, np.uint8))
    report = worker_factory(other).run(batch, (1, 1))
    assert report.done == () and all("disk full" in error for _, error in report.failed)
    assert not (other / IMAGES).exists()


def test_recent_sources_keep_the_recently_used_within_the_budget_and_always_the_batch_s_own():
    from sweep.worker import RecentSources
    picture = {name: np.full((10, 10, 3), i, np.uint8) for i, name in enumerate("abcde")}   # 300 bytes each
    reads = []
    cache = RecentSources(budget=700)

    def read(name):
        reads.append(name)
        return picture[name]
    assert cache.get({"a", "b"}, read).keys() == {"a", "b"} and reads == ["a", "b"]
    assert cache.get(["a"], read)["a"] is picture["a"] and reads == ["a", "b"]        # kept: not read again
    cache.get({"c"}, read)                          # 900 bytes: b, the least recently used, goes
    assert list(cache.pictures) == ["a", "c"] and reads == ["a", "b", "c"]
    got = cache.get({"b", "d", "e"}, read)          # a batch over the budget keeps its own three, drops the rest
    assert got.keys() == {"b", "d", "e"} and set(cache.pictures) == {"b", "d", "e"}
    assert all(got[name] is picture[name] for name in got)


def test_a_worker_keeps_a_bounded_number_of_source_pictures_between_batches(tmp_path, worker_factory, monkeypatch):
    """A transfiguration sweep over many photographs: the actor reads each batch's sources from the store and
    keeps the recent ones within SOURCE_CACHE_BYTES, instead of every picture it has seen (which, over a folder
    of thousands, fills its memory)."""
    import sweep.worker as worker_module
    store = Store.open(str(tmp_path))
    names = [f"photo{i}" for i in range(4)]
    for i, name in enumerate(names):
        store.write_source(name, np.full((20, 20, 3), 40 * i, np.uint8))              # 1200 bytes each
    monkeypatch.setattr(worker_module, "SOURCE_CACHE_BYTES", 2500)                      # two pictures
    read = []
    original = Store.read_source
    monkeypatch.setattr(Store, "read_source", lambda self, name: read.append(name) or original(self, name))
    worker = worker_factory(tmp_path)
    plan = make_plan(n_classes=10, jobs="transfigure", classes="0-1", sources=tuple(names), batch_size=1)
    assert [batch.items[0].source for batch in plan.batches()] == [name for name in names for _ in range(2)]
    for batch in plan.batches() * 2:                # every photograph twice, the second time long after the first
        assert worker.run(batch, (1,)).done == batch.keys
        assert sum(p.nbytes for p in worker.sources.pictures.values()) <= 2500
    assert read == names * 2                        # once per pass: its second batch, next, found it kept


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_source_in_the_store_fails_its_own_items_by_name_and_the_batch_s_others_are_stored(
        tmp_path, worker_factory, damage):
    """Hunt: a truncated sources/rgb.png.png failed every item of its batch (those of rgba.png too), each with
    "OSError: image file is truncated", which named neither the file nor the way on."""
    store = Store.open(str(tmp_path))
    for name in ("good.png", "bad.png"):
        store.write_source(name, np.full((12, 12, 3), 90, np.uint8))
    bad = tmp_path / "sources" / "bad.png.png"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    else:
        bad.unlink()
    batch, = make_plan(n_classes=10, jobs="transfigure", classes="0-1", sources=("bad.png", "good.png"),
                       batch_size=4).batches()
    report = worker_factory(tmp_path).run(batch, (1, 1, 1, 1))
    assert sorted(report.done) == sorted(key for key in batch.keys if key.endswith(":good.png"))
    assert sorted(key for key, _ in report.failed) == sorted(key for key in batch.keys if key.endswith(":bad.png"))
    assert all(f"{tmp_path}/sources/bad.png.png is" in error for _, error in report.failed)
    assert store.done_keys() == set(report.done)


def test_the_steps_reported_count_only_the_items_that_render(tmp_path, worker_factory, monkeypatch):
    """The items of a source that cannot be read never render: their steps are not reported as done."""
    import sweep.worker as worker_module
    monkeypatch.setattr(worker_module, "REPORT_EVERY", 0.0)
    seen = []
    store = Store.open(str(tmp_path))
    store.write_source("good.png", np.full((12, 12, 3), 90, np.uint8))    # bad.png: never stored
    worker = worker_factory(tmp_path)
    worker.config = dataclasses.replace(worker.config, steps=SimpleNamespace(report=SimpleNamespace(
        remote=lambda token, steps: seen.append(steps))))
    batch, = make_plan(n_classes=10, jobs="transfigure", classes="0-1", sources=("bad.png", "good.png"),
                       batch_size=4).batches()
    worker.run(batch, (1, 1, 1, 1), token="t1")
    assert seen[-1] == 2 * worker.config.schedule.total_iterations


def test_a_worker_encodes_its_images_and_frames_pngs_on_its_cpus(tmp_path, worker_factory, monkeypatch):
    """`--cpus-per-worker 3`: the images' and frames' PNG encoders get the actor's three CPUs, as the
    trajectories' do."""
    import sweep.store
    import sweep.worker
    given = []

    def counting(table):
        def build(*args, threads=1, **options):
            given.append((table.__name__, threads))
            return table(*args, threads=threads, **options)
        return build
    for table in (sweep.store.images_table, sweep.store.frames_table):
        monkeypatch.setattr(sweep.worker, table.__name__, counting(table))
    Store.open(str(tmp_path)).write_source("photo", np.full((20, 20, 3), 90, np.uint8))
    batch = make_plan(n_classes=10, jobs="interpolate", pairs="0+1", sources=("photo",), batch_size=1).batches()[0]
    worker = worker_factory(tmp_path)
    worker.config = dataclasses.replace(worker.config, threads=3)
    report = worker.run(batch, (1,))
    assert sorted(given) == [("frames_table", 3), ("images_table", 3)] and report.done == batch.keys


def test_a_worker_folds_batch_norms_when_asked_and_on_the_cpu_only_then(tmp_path):
    """`--fold-batchnorm` reaches the worker's network (the digits net: six conv + batch norm pairs) and its setup
    report; by default (None) a CPU worker keeps the network as loaded, and so do the score and feature workers,
    whose configs do not ask. The folded worker's images are the unfolded one's up to float rounding."""
    schedule = load_schedule("tiny")
    batch = make_plan(n_classes=10, jobs="octave", classes="0-2", batch_size=3).batches()[0]
    images = {}
    for fold in (False, None, True):
        store = tmp_path / str(fold)
        worker = SweepWorker(WorkerConfig(str(store), "digits", "random", schedule, fold_batchnorm=fold))
        batch_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in worker.model.modules())
        assert (len(worker.model.folded), batch_norms) == ((6, 0) if fold else (0, 6))
        assert worker.setup(None)["fold_batchnorm"] is bool(fold)
        assert worker.run(batch, (1, 1, 1)).done == batch.keys
        images[fold] = np.stack([decode_png(p) for p in pd.read_parquet(store / IMAGES).sort_values("key").png])
    np.testing.assert_array_equal(images[None], images[False])           # the CPU default: unchanged, bit for bit
    assert np.abs(images[True].astype(int) - images[False]).max() <= 2   # 8-bit pixels, float rounding apart
    assert not SweepWorker(WorkerConfig(str(tmp_path / "scores"), "digits", "random")).model.folded


def test_a_layer_the_run_reads_keeps_its_batch_norm(tmp_path):
    """A dream on a convolution (`--layers block2.0`) reads that convolution's own output: folding would make it
    the batch norm's, so the driver names the run's layers and the worker leaves that pair alone (the dream
    renders); every other pair is folded."""
    from sweep.worker import layers_read
    Store.open(str(tmp_path)).write_source("photo", np.full((20, 20, 3), 90, np.uint8))
    plan = make_plan(n_classes=10, jobs="dream", sources=("photo",), layers=("block2.0+block3:1",), batch_size=2)
    schedule = load_schedule("tiny")
    assert layers_read(plan.layers, schedule) == ("block2.0", "block3")
    worker = SweepWorker(WorkerConfig(str(tmp_path), "digits", "random", schedule, fold_batchnorm=True,
                                      read_layers=layers_read(plan.layers, schedule)))
    assert "block2.0" not in worker.model.folded and len(worker.model.folded) == 5
    assert isinstance(worker.model.net.block2[1], torch.nn.BatchNorm2d)
    batch = plan.batches()[0]
    assert worker.run(batch, (1,) * len(batch.items)).done == batch.keys


def test_batch_norms_are_folded_by_default_on_gpus_only():
    from sweep.worker import folds_batchnorm
    assert folds_batchnorm(None, on_gpu=True) and not folds_batchnorm(None, on_gpu=False)
    assert folds_batchnorm(True, on_gpu=False) and not folds_batchnorm(False, on_gpu=True)


def test_the_layers_a_run_reads_are_its_dream_layers_and_tapped_heads():
    from jobs.schedules import ScheduleSet
    from sweep.worker import layers_read
    tiny = load_schedule("tiny")
    aux = dataclasses.replace(tiny, output="AuxLogits")
    assert layers_read((), tiny) == ()
    assert layers_read(("Mixed_6e:0,4", "Mixed_5d+Mixed_6a"), ScheduleSet("s", tiny, (("octave", aux),))) == (
        "AuxLogits", "Mixed_5d", "Mixed_6a", "Mixed_6e")
