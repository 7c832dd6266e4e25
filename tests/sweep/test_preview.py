"""`sweep run --dry-run` / `--calibrate`: the plan, the store's progress and a projection; no Ray, nothing written."""
from __future__ import annotations

import dataclasses
import re

import pytest
from click.testing import CliRunner

import sweep_fakes
from sweep.cli import main


def _run(*args):
    result = CliRunner().invoke(main, ["run", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _row(output: str, job: str) -> list[int]:
    line = next(line for line in output.splitlines() if line.startswith(job + " "))
    return [int(v) for v in line.split()[1:]]


def test_dry_run_of_the_demo_plan_writes_nothing(tmp_path):
    import ray
    store = tmp_path / "demo"
    code, out = _run("--store", str(store), "--model", "digits", "--schedule", "digits", "--pairs", "0+1,2+3",
                     "--batch-size", "16", "--dry-run")
    assert code == 0 and not store.exists() and not ray.is_initialized()
    assert _row(out, "octave")[:3] == [10, 1, 0] and _row(out, "addition")[:3] == [4, 2, 0]   # merge, juxtapose
    octave = _row(out, "octave")
    assert octave[4] == octave[0] * octave[3]             # image-iterations = items x steps per image
    assert "new store; left: 24 items" in out and "schedule digits, batch size 16\n" in out


def test_dry_run_shows_the_stores_progress_and_calibrates(tmp_path):
    store = tmp_path / "s"
    sweep_fakes.build_store(store, classes="0-3", jobs="octave,opposite")
    for part in (store / "images").glob("*-opposite-*.parquet"):
        part.unlink()                                      # as if the run had stopped after the octaves
    code, out = _run("--store", str(store), "--model", "digits", "--weights", "random", "--schedule", "tiny",
                     "--classes", "0-3", "--jobs", "octave,opposite", "--batch-size", "4",
                     "--dry-run", "--calibrate", "--workers", "4")
    assert code == 0, out
    assert _row(out, "octave")[:3] == [4, 1, 4] and _row(out, "opposite")[:3] == [4, 1, 0]
    assert "4/8 items already stored; left: 4 items, 16 image-iterations" in out
    assert re.search(r"calibration on cpu \(1 torch thread, as each CPU worker\): 4 images x 2 steps per octave in "
                     r"\S+ s, the median of \d+ runs", out)
    # one batch left: a run starts one worker whatever --workers asks (`cluster_plan`), and the projection said 4
    assert re.search(r"projected: (under 0.01|[0-9.]+) CPU-hours; wall time \d+s with 1 worker, plus start-up", out)


def test_a_calibration_for_a_cluster_says_it_timed_this_machine_not_the_clusters_workers(tmp_path):
    """With --address the dry run starts no Ray: it times this machine's device, which says nothing of the cluster's
    workers (a CPU head node driving GPU workers, say). The projection said "actors on other devices run at their
    own speed", as for a run on this machine."""
    import socket
    with socket.create_server(("127.0.0.1", 0)) as head:   # a head that takes connections (the dry run checks)
        code, out = _run("--store", str(tmp_path / "s"), "--model", "digits", "--weights", "random", "--schedule",
                         "tiny", "--classes", "0-1", "--jobs", "octave", "--dry-run", "--calibrate",
                         "--address", f"127.0.0.1:{head.getsockname()[1]}")
    assert code == 0, out
    projected = next(line for line in out.splitlines() if line.startswith("projected: "))
    assert "with 1 worker (--workers N for the cluster's)" in projected
    assert projected.endswith("(timed on this machine, not on the cluster's workers: run the dry run on one of their "
                              "nodes for their speed)") and not (tmp_path / "s").exists()


def test_the_projection_counts_no_more_workers_than_the_batches_left(tmp_path):
    """A run hands out the batches of its items left (with `--batch-size auto`, the items: the first worker cuts
    them), and starts no more workers than that: the projection counted one per item left."""
    from sweep.driver import SweepConfig, prepare
    from sweep.fleet import ClusterConfig
    from sweep.preview import preview, projected_workers
    store = tmp_path / "s"
    sweep_fakes.build_store(store, classes="0-3", jobs="octave,opposite")
    for part in (store / "images").glob("*-opposite-*.parquet"):
        part.unlink()
    config = SweepConfig(store=str(store), model="digits", weights="random", schedule="tiny", jobs="octave,opposite",
                         classes="0-3", batch_size=2)
    view = preview(prepare(config))
    assert (view.items - view.done, view.tasks_left) == (4, 2)
    assert projected_workers(ClusterConfig(workers=8), "cpu", view.tasks_left)[0] == 2
    assert preview(prepare(dataclasses.replace(config, batch_size=None))).tasks_left == 4


def test_dry_run_of_a_1000_class_model_with_random_weights(tmp_path):
    code, out = _run("--store", str(tmp_path / "g"), "--model", "googlenet", "--weights", "random", "--schedule",
                     "tiny", "--pairs", "random:10", "--dry-run")
    assert code == 0, out
    assert "googlenet (1000 classes)" in out
    # `--batch-size auto` (the default): the batches counted are a CPU worker's; a GPU worker measures its own
    assert "batch size auto: 8 on a CPU worker (the batches counted below), on a GPU the largest that fits" in out
    assert _row(out, "octave")[:2] == [1000, 125] and _row(out, "opposite")[:2] == [1000, 125]
    assert _row(out, "addition")[0] == 20 and "left: 2020 items, 8080 image-iterations" in out


def test_dry_run_refuses_bad_input_in_one_line(tmp_path):
    code, out = _run("--store", str(tmp_path / "x"), "--model", "digits", "--classes", "0-99", "--dry-run")
    assert code == 2 and out.startswith("Error: ") and len(out.strip().splitlines()) == 1


def test_calibration_on_a_gpu_runs_with_the_sweeps_speed_options(tmp_path, monkeypatch, random_digits_model):
    """On CUDA the timed batch runs as the GPU workers run it (bf16, channels_last, cuDNN benchmark, batch norms
    folded), not in plain float32. The GPU is faked: the model stays on the CPU (a copy each time it is loaded: a
    fold changes it) and the engine only records how it was called."""
    import copy

    import torch

    import jobs.kinds
    import jobs.models
    from sweep.driver import SweepConfig, prepare
    from sweep.preview import calibrate
    calls = []
    monkeypatch.setattr(jobs.models, "load_model", lambda *args, **kwargs: copy.deepcopy(random_digits_model))
    monkeypatch.setattr(jobs.kinds, "run_batch", lambda model, specs, schedule, **options: calls.append(
        {**options, "folded": len(model.folded)}))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="octave", classes="0-3", batch_size=4))
    calibration = calibrate(prepared, device="cuda")
    assert calibration.device == "cuda" and calibration.images == 4 and len(calls) >= 2   # warm-up, timed runs
    assert all(c["device"] == "cuda" and c["autocast_bf16"] and c["channels_last"] for c in calls)
    assert not any(c["autocast_fp16"] for c in calls)
    assert {c["folded"] for c in calls} == {6}          # the digits net's six conv + batch norm pairs
    assert torch.backends.cudnn.benchmark
    compiled = []
    monkeypatch.setattr(random_digits_model.net, "compile", lambda: compiled.append(True))
    calibrate(prepared, device="cuda")
    assert not compiled                                 # --compile not asked
    calibrate(dataclasses.replace(prepared, config=dataclasses.replace(prepared.config, compile=True)), device="cuda")
    assert compiled == [True]
    calls.clear()
    calibrate(prepared, device="cpu")                  # on the CPU the GPU options stay off, as on CPU workers
    assert all(not c["autocast_bf16"] and not c["channels_last"] and not c["folded"] for c in calls)
    calls.clear()
    fp16 = dataclasses.replace(prepared, config=dataclasses.replace(prepared.config, fp16=True))   # --fp16
    calibrate(fp16, device="cuda")                     # float16 in bf16's place (the config kept bf16's default)
    assert calls and all(c["autocast_fp16"] and not c["autocast_bf16"] for c in calls)
    calls.clear()
    calibrate(fp16, device="cpu")
    assert calls and all(not c["autocast_fp16"] and not c["autocast_bf16"] for c in calls)
    calls.clear()
    for fold, device in ((True, "cpu"), (False, "cuda")):   # --fold-batchnorm / --no-fold-batchnorm
        calibrate(dataclasses.replace(prepared, config=dataclasses.replace(prepared.config, fold_batchnorm=fold)),
                  device=device)
        assert {c["folded"] for c in calls} == {6 if fold else 0}
        calls.clear()


def test_calibration_on_a_gpu_with_an_automatic_batch_times_the_probes_batch(tmp_path, monkeypatch,
                                                                             random_digits_model):
    """`--batch-size auto` on a GPU: the timed batch is the one the workers' memory probe will choose for the
    sweep's largest input, not the CPU's 8 (a GPU's speed per image depends on the batch)."""
    import torch

    import jobs.kinds
    import jobs.models
    import sweep.worker
    from sweep.driver import SweepConfig, prepare
    from sweep.preview import calibrate
    import copy
    probed, timed = [], []
    monkeypatch.setattr(jobs.models, "load_model", lambda *args, **kwargs: copy.deepcopy(random_digits_model))
    monkeypatch.setattr(jobs.kinds, "run_batch", lambda model, specs, schedule, **options: timed.append(len(specs)))
    monkeypatch.setattr(sweep.worker, "probe_batch_size", lambda model, side, device, **options: probed.append(
        (side, options)) or 11)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="octave", classes="0-9", seeds=2))
    assert prepared.plan.batch_size == sweep.worker.CPU_BATCH
    calibration = calibrate(prepared, device="cuda")
    side = sweep.worker.largest_input(prepared.schedule, random_digits_model.input_size)
    assert probed == [(side, {"bf16": True, "fp16": False, "channels_last": True, "cap": sweep.worker.AUTO_CAP})]
    assert calibration.images == 11 and len(timed) >= 2 and set(timed) == {11}
    probed.clear()
    calibrate(dataclasses.replace(prepared, config=dataclasses.replace(prepared.config, bf16=False, fp16=True)),
              device="cuda")                                             # --fp16: the probe steps in float16
    assert probed == [(side, {"bf16": False, "fp16": True, "channels_last": True, "cap": sweep.worker.AUTO_CAP})]


def test_calibration_on_the_cpu_runs_on_as_many_threads_as_a_cpu_worker(tmp_path, monkeypatch, request,
                                                                         random_digits_model):
    """A worker runs one torch thread per CPU it reserves (`--cpus-per-worker`), where the dry run's process took
    every core: on a busy 2-core machine the demo's steps timed 22 times as long as the workers' own."""
    import torch

    import jobs.kinds
    import jobs.models
    from sweep.driver import SweepConfig, prepare
    from sweep.fleet import ClusterConfig
    from sweep.preview import calibrate, preview
    seen = []
    monkeypatch.setattr(jobs.models, "load_model", lambda *args, **kwargs: random_digits_model)
    monkeypatch.setattr(jobs.kinds, "run_batch", lambda *args, **kwargs: seen.append(torch.get_num_threads()))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    before = torch.get_num_threads()
    torch.set_num_threads(3)                                      # this process's own (the suite runs on one)
    request.addfinalizer(lambda: torch.set_num_threads(before))
    for cpus, threads in ((1.0, 1), (2.0, 2), (0.5, 1)):
        seen.clear()
        prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random",
                                       schedule="tiny", jobs="octave", classes="0-3", batch_size=4,
                                       cluster=ClusterConfig(cpus_per_worker=cpus)))
        calibration = calibrate(prepared, device="cpu")
        assert seen and set(seen) == {threads} and calibration.threads == threads
        assert torch.get_num_threads() == 3                      # the command's own threads given back
    seen.clear()
    on_gpu = calibrate(prepared, device="cuda")                   # a GPU worker's threads do not count
    assert set(seen) == {3} and on_gpu.threads == 0 and "thread" not in on_gpu.lines(preview(prepared), 1)[0]


def test_calibration_with_device_cpu_times_the_cpu_on_a_machine_with_a_gpu(tmp_path, monkeypatch,
                                                                           random_digits_model):
    """`--device cpu` on a GPU machine: the run starts CPU workers, but the calibration timed the GPU and projected
    GPU-hours for one worker per GPU."""
    import torch

    import jobs.kinds
    import jobs.models
    from sweep.driver import SweepConfig, prepare
    from sweep.fleet import ClusterConfig
    from sweep.preview import calibrate
    devices = []
    monkeypatch.setattr(jobs.models, "load_model", lambda *args, **kwargs: random_digits_model)
    monkeypatch.setattr(jobs.kinds, "run_batch", lambda *args, device, **kwargs: devices.append(device))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="octave", classes="0-3", batch_size=4, cluster=ClusterConfig(device="cpu")))
    assert calibrate(prepared).device == "cpu" and set(devices) == {"cpu"}


def test_the_projection_counts_the_workers_a_run_on_this_machine_would_start(monkeypatch):
    """Without --workers the projection divided by one worker, where a run on an 8-GPU machine starts eight."""
    import torch

    import sweep.fleet
    from sweep.fleet import ClusterConfig
    from sweep.preview import projected_workers
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(sweep.fleet, "local_cpus", lambda: 16.0)
    assert projected_workers(ClusterConfig(), "cuda", 1000) == (8, ", as this machine would start them (one per GPU)")
    assert projected_workers(ClusterConfig(), "cuda", 3)[0] == 3                     # never more than the items left
    assert projected_workers(ClusterConfig(cpus_per_worker=4), "cpu", 1000) == (
        4, ", as this machine would start them (16 CPUs, 4 a worker)")
    assert projected_workers(ClusterConfig(workers=5), "cuda", 1000) == (5, "")         # --workers
    assert projected_workers(ClusterConfig(address="auto"), "cuda", 1000) == (1, " (--workers N for the cluster's)")


def test_the_projection_counts_the_cpus_a_local_ray_would_offer_not_the_machines(monkeypatch):
    """A container given 4 of a 64-core host's CPUs (its quota, which Ray's count heeds): a run starts 4 CPU workers,
    and the projection counted 64 (os.cpu_count), its wall time 16 times too short; likewise a library caller's
    `num_cpus` (and `num_gpus`)."""
    import os

    import sweep.fleet
    from sweep.fleet import ClusterConfig
    from sweep.preview import projected_workers
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(sweep.fleet, "local_cpus", lambda: 4.0)
    assert projected_workers(ClusterConfig(), "cpu", 1000) == (4, ", as this machine would start them (4 CPUs, 1 a "
                                                                  "worker)")
    assert projected_workers(ClusterConfig(num_cpus=2), "cpu", 1000)[0] == 2
    assert projected_workers(ClusterConfig(num_gpus=2), "cuda", 1000)[0] == 2


def test_calibration_takes_the_median_of_runs_repeated_until_a_second_is_measured(tmp_path, monkeypatch,
                                                                                   random_digits_model):
    """A walk-through's first calibration after a busy moment took 72 ms per image-iteration where the others took
    1-2 ms (one run of 0.02 s): the timed batch now runs at least MIN_TIMED_RUNS times and until
    MIN_TIMED_SECONDS are measured, and the median run counts. The clock is faked: each run takes the next of
    `durations`."""
    import jobs.kinds
    import jobs.models
    import sweep.preview
    from sweep.driver import SweepConfig, prepare
    from sweep.preview import MAX_TIMED_RUNS, MIN_TIMED_RUNS, calibrate
    now = [0.0]
    durations = iter([])

    def engine(model, specs, schedule, **options):
        now[0] += next(durations)
    monkeypatch.setattr(jobs.models, "load_model", lambda *args, **kwargs: random_digits_model)
    monkeypatch.setattr(jobs.kinds, "run_batch", engine)
    monkeypatch.setattr(sweep.preview, "clock", lambda: now[0])
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="octave", classes="0-3", batch_size=4))
    durations = iter([9.0, 0.5] + [0.01] * 100)                # warm-up, one slow timed run, then quick ones
    assert calibrate(prepared, device="cpu").seconds == pytest.approx(0.01)    # not 0.5, and not the mean
    assert now[0] == pytest.approx(9.0 + 0.5 + 0.01 * (MAX_TIMED_RUNS - 1))    # 0.74 s in 25 runs: stopped there
    now[0], durations = 0.0, iter([9.0, 3.6, 2.5, 2.4, 7.0])   # slow runs: MIN_TIMED_RUNS of them are enough
    assert calibrate(prepared, device="cpu").seconds == pytest.approx(2.5)
    assert now[0] == pytest.approx(9.0 + 3.6 + 2.5 + 2.4)
    assert MIN_TIMED_RUNS == 3
