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
