"""The benchmark scripts run to the end on tiny settings (a GPU session has one call to run them: a crash there
costs the session's device time). Figures are not checked: they are what the scripts print."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def run_in_process(name: str, *args: str, monkeypatch, capsys) -> str:
    """A benchmark script's `main()` with `args`, in this test process: what it prints. For the runs after the one
    that checks the script runs as a script (`run_script`), without a new interpreter importing torch and
    torchvision again (about 4 s of CPU each on the suite's busy cores)."""
    import importlib
    script = importlib.import_module(f"benchmarks.{name.removesuffix('.py')}")
    monkeypatch.setattr(sys, "argv", [name, *args])
    capsys.readouterr()
    script.main()
    return capsys.readouterr().out


def test_bench_engine_runs_every_cpu_section_on_tiny_settings():
    # One torch thread, as every test process and worker of the suite has (tests/conftest.py): beside the other test
    # process, a second thread makes the script twice as slow (13 s instead of 6.5 s on two busy cores).
    out = run_script("bench_engine.py", "--iterations", "2", "--batch", "4", "--batches", "2", "--single", "1",
                     "--repeats", "1", "--worker-batches", "2", "--worker-steps", "2", "--trajectory-iterations", "2",
                     "--skip", "e", "--threads", "1")
    for section in ("(a) batch 4", "(b) one image at a time", "engine batch   2", "(d)", "(f) trajectories",
                    "(h) batch norms folded into 6 convolutions, batch 4"):
        assert section in out, out
    assert "the smallest batch within 5% of the best rate: 2" in out, out     # one batch timed: it is the best


def test_bench_engine_skips_each_section_it_is_told_to(monkeypatch, capsys):
    """The GPU session's compile run skips (b) (a one-image loop and three more batch sizes: each a new torch.compile
    of the network) so that the preset's figure is reached within its time; --skip b alone used to be ignored."""
    out = run_in_process("bench_engine.py", "--iterations", "2", "--batch", "4", "--single", "1", "--repeats", "1",
                         "--skip", "b,d,e,f,h", "--threads", "1", monkeypatch=monkeypatch, capsys=capsys)
    assert "(a) batch 4" in out and "(b)" not in out and "engine batch" not in out and "(h)" not in out, out


def test_bench_engine_profiles_a_step_when_asked(monkeypatch, capsys):
    """(g), which a GPU session runs to see where GoogLeNet's step time goes, runs on the CPU when named."""
    out = run_in_process("bench_engine.py", "--only", "g", "--profile-batch", "2", "--profile-size", "32",
                         "--threads", "1", monkeypatch=monkeypatch, capsys=capsys)
    assert "(g) profile, batch 2, 32 px, 5 steps" in out and "(a)" not in out and "(f)" not in out, out
    shares = [float(line.split("%")[0]) for line in out.splitlines() if line.startswith("    ") and "calls" in line]
    assert 1 <= len(shares) <= 15 and shares == sorted(shares, reverse=True) and sum(shares) <= 100.5, out


@pytest.mark.slow
def test_bench_sweep_runs_to_the_end_on_tiny_settings():
    """It starts its own Ray with fake GPUs (about a minute here)."""
    out = run_script("bench_sweep.py", "--batches", "4", "--seconds", "0.05", "--overhead-batches", "4",
                     "--actors", "1,2", "--overlap-batches", "2", "--write-seconds", "0.05", timeout=600)
    assert "efficiency" in out and "overlap" in out, out


def test_bench_driver_runs_both_sections_on_tiny_settings():
    out = run_script("bench_driver.py", "--classes", "10", "--seeds", "1,2", "--memory")
    for line in ("plan: 242 items", "plan: 484 items", "resume: pending_work", "sweep status"):
        assert line in out, out


def test_bench_sources_prints_the_driver_s_time_and_memory_for_a_folder(monkeypatch, capsys):
    out = run_in_process("bench_sources.py", "--count", "3", "--side", "48", monkeypatch=monkeypatch, capsys=capsys)
    for line in ("3 pictures of 48 x 48", "peak RSS before prepare", "prepare: ", "sources written: "):
        assert line in out, out


def test_bench_manifest_runs_on_tiny_settings():
    out = run_script("bench_manifest.py", "--classes", "12")
    assert "66 pairs, kept as \"all\"" in out and "manifest.json" in out and "older stores" in out, out


@pytest.mark.slow
def test_bench_analysis_runs_every_workload_stage_on_tiny_settings():
    """Four classes, their six pairs and one photograph: 30 images and 48 frames, with their steps recorded every
    10 (72 rows an image), through every analysis command (about 17 s: seven fresh processes, each importing the
    analysis stack)."""
    out = run_script("bench_analysis.py", "--workload", "--classes", "0-3", "--sources", "1",
                     "--trajectory-every", "10")
    assert "workload store: 30 images and 48 interpolation frames in 6 batch files with 2160 recorded steps" in out, out
    assert "stability (transfigure, octave 2, 4 images)" in out, out   # among analyze's last summary lines
    for stage in ("status", "analyze", "figures", "export", "directions"):
        assert f"\n{stage} " in out, out
    assert "78 PNG files" in out, out


def test_bench_gif_runs_on_tiny_settings(monkeypatch, capsys):
    out = run_in_process("bench_gif.py", "--frames", "3", "--side", "24", "--repeats", "1", monkeypatch=monkeypatch,
                         capsys=capsys)
    assert "own palette per frame" in out and "one palette per GIF" in out and "speed-up" in out, out


def test_the_bare_loop_is_timed_around_what_the_engine_does_besides_its_steps(monkeypatch):
    """(a) compares the engine with a bare loop. A render's time includes drawing its start images on the CPU (about
    0.2 s for 64 images of 299 px), moving them to the device and its result back: on a GPU, at (a)'s 20 steps, a
    fifth of the render. The bare loop's time must include the same, and the network must be fed the same memory
    format (channels_last on CUDA), or the ratio measures the set-up and a layout conversion, not the steps."""
    import torch
    import benchmarks.bench_engine as bench
    events = []
    clock = iter(range(100))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: events.append("clock") or next(clock))
    draw = bench.initial_images
    monkeypatch.setattr(bench, "initial_images", lambda *args: events.append("draw") or draw(*args))

    class Net(torch.nn.Module):
        n_classes = 10

        def forward(self, x):                           # B x 3 x S x S -> B x 10
            events.append("channels_last" if x.is_contiguous(memory_format=torch.channels_last) else "contiguous")
            return x.mean((2, 3)).repeat(1, 4)[:, :10]
    bench.time_bare(Net(), 2, 8, 2, torch.device("cpu"), channels_last=True)
    assert events == ["clock", "draw", "channels_last", "channels_last", "clock"]
