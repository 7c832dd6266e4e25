"""Driver-side progress: a tqdm bar on a terminal, plain timed lines in a log file, ETA from work when known."""
from __future__ import annotations

import io

from sweep.progress import Progress, format_duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_file_gets_one_plain_line_per_interval():
    clock, out = Clock(), io.StringIO()
    progress = Progress(100, done=20, stream=out, interval=10, clock=clock)
    for _ in range(8):                 # 8 updates over 40 s: a line at 10, 20, 30, 40 s
        clock.now += 5
        progress.update(done=5)
    progress.update(failed=1, force=True)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 5
    assert lines[-1].startswith("60/100 items (60.0%) | 1.00 items/s | ETA 40s | 1 failed")


def test_terminal_gets_a_bar_redrawn_in_place():
    out = Terminal()
    progress = Progress(10, done=2, stream=out, interval=0)
    progress.update(done=4, failed=1)
    progress.close()
    text = out.getvalue()
    assert "\r" in text and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert "6/10 items" in last and "|" in last and "1 failed" in last and "ETA" in last and "item/s" in last


def test_eta_comes_from_the_work_when_the_run_knows_it():
    clock = Clock()
    progress = Progress(4, stream=io.StringIO(), work_total=1000, clock=clock)
    clock.now = 10
    progress.update(done=2, work=100)   # half the items but a tenth of the work: 90 s left, not 10 s
    assert "ETA 1m30s" in progress.line()
    plain = Progress(4, stream=io.StringIO(), clock=clock)
    clock.now = 20
    plain.update(done=2)
    assert "ETA 10s" in plain.line()


def test_eta_unknown_before_the_first_item_and_durations():
    progress = Progress(10, stream=io.StringIO(), clock=Clock())
    assert "ETA ?" in progress.line()
    assert [format_duration(s) for s in (5, 65, 3700)] == ["5s", "1m05s", "1h01m"]


def test_with_work_the_rate_and_eta_count_work_within_items():
    clock, out = Clock(), io.StringIO()
    progress = Progress(10, done=2, work_total=1000, work=200, stream=out, interval=10, clock=clock)
    clock.now = 10
    progress.update(work=100)                          # no item finished yet, but the bar and ETA move
    assert progress.done == 2
    assert progress.line().startswith("2/10 items (30.0%) | 10.00 steps/s | ETA 1m10s")


def test_the_rate_counts_from_when_the_workers_are_ready_not_from_the_start():
    """A walk-through saw a first ETA of 43m58s for a 47 s run: Ray's start and the model load were counted as a
    time in which no work was done."""
    clock = Clock()
    progress = Progress(10, stream=io.StringIO(), work_total=1000, clock=clock)
    clock.now = 30                       # Ray and the first actor took 30 s
    progress.workers_ready()
    clock.now = 40
    progress.update(work=100)            # 10 steps/s since the workers were ready: 90 s left
    assert "10.00 steps/s | ETA 1m30s" in progress.line() and "elapsed 40s" in progress.line()


def test_on_a_terminal_with_work_the_bar_counts_steps_and_moves_within_a_batch():
    out = Terminal()
    progress = Progress(4, done=1, work_total=400, work=100, stream=out, interval=0)
    progress.update(work=100)            # no item finished, half the work done
    progress.update(work=500)            # more than is left (reports can overshoot): the bar stops at its total
    progress.update(done=1, force=True)
    assert progress.bar.n == 400
    progress.close()
    frames = out.getvalue().split("\r")
    assert any(frame.lstrip().startswith("50%") and "1/4 items" in frame for frame in frames)
    assert "2/4 items" in frames[-1] and "steps/s" in frames[-1]
    assert all("| , " not in frame for frame in frames)   # the text is the bar's own, not tqdm's ", "-led postfix


def test_a_message_goes_to_the_stream_asked_for():
    out, log = Terminal(), io.StringIO()
    progress = Progress(4, stream=out, interval=0)
    progress.message("no GPUs in the cluster: 2 CPU workers", log)
    assert log.getvalue() == "no GPUs in the cluster: 2 CPU workers\n"
    plain = Progress(4, stream=io.StringIO(), interval=10)
    plain.message("line", log)
    assert log.getvalue().endswith("line\n") and plain.stream.getvalue() == ""
