"""Driver-side progress: a tqdm bar on a terminal, plain timed lines in a log file, ETA from work when known."""
from __future__ import annotations

import io
import os
import select
import struct
import sys

import pytest

from sweep.progress import Progress, bar_columns, bar_rows, format_duration


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


def test_the_bar_is_as_wide_as_the_terminal_or_columns_or_80_when_it_reports_none():
    assert bar_columns(120, {"COLUMNS": "60"}) == 119                 # the terminal's own width wins (tqdm's margin)
    assert bar_columns(0, {"COLUMNS": "100"}) == 99                   # 0 columns (`stty size` 0 0): COLUMNS
    assert bar_columns(0, {}) == bar_columns(0, {"COLUMNS": "0"}) == bar_columns(0, {"COLUMNS": "wide"}) == 79
    assert bar_columns(None, {"COLUMNS": "100"}) is None              # no terminal to ask: tqdm's own


def bar_lines_on_a_pseudo_terminal(columns: int, rows: int = 0, monkeypatch=None) -> list[str]:
    """What a half-done Progress draws on a real pseudo-terminal whose size is set to `columns` x `rows`: each
    redraw of the bar line, as the terminal received it. With `monkeypatch`, the terminal is `sys.stderr`, the
    commands' stream (tqdm asks the screen's size itself only of sys.stderr and sys.stdout)."""
    fcntl, termios = pytest.importorskip("fcntl"), pytest.importorskip("termios")
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    with open(follower, "w", encoding="utf-8", closefd=True) as terminal:
        if monkeypatch is not None:
            monkeypatch.setattr(sys, "stderr", terminal)
        progress = Progress(10, stream=None if monkeypatch is not None else terminal, interval=0)
        progress.update(done=5, force=True)
        progress.close()
        if monkeypatch is not None:
            monkeypatch.undo()
    received = b""
    while select.select([leader], [], [], 0.5)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:        # Linux: the other end is closed and everything was read
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    return [line for line in received.decode("utf-8").replace("\r\n", "\r").split("\r") if "5/10 items" in line]


def test_a_terminal_that_reports_0_columns_still_shows_the_bar(monkeypatch):
    """Some CI pseudo-terminals report 0 x 0; tqdm then drew a bar of one cell, one character cut off."""
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = bar_lines_on_a_pseudo_terminal(0)
    assert lines and all(len(line) == 79 for line in lines), lines           # 80 columns, less tqdm's margin
    bar = lines[-1].split("|")[1]                                              # the cells between the pipes
    # Half of the cells full; a bar of an odd width (the rate's digits vary the text beside it) adds a half cell.
    drawn, half = bar.rstrip(), "\u2588" * (len(bar) // 2)
    assert len(bar) >= 10 and drawn in (half, half + "\u258c") and lines[-1].endswith("0 failed]"), lines
    monkeypatch.setenv("COLUMNS", "100")
    assert {len(line) for line in bar_lines_on_a_pseudo_terminal(0)} == {99}
    assert {len(line) for line in bar_lines_on_a_pseudo_terminal(60, 20)} == {59}   # a reported width is kept


def test_the_bar_shows_on_stderr_of_a_terminal_that_reports_0_rows(monkeypatch):
    """Walk: `script` and some CI pseudo-terminals report 0 rows (`stty size` 0 0, or 0 120): on sys.stderr tqdm
    took -1 rows from the screen and drew nothing at all, whatever the width."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    assert {len(line) for line in bar_lines_on_a_pseudo_terminal(120, 0, monkeypatch)} == {119}
    assert {len(line) for line in bar_lines_on_a_pseudo_terminal(0, 0, monkeypatch)} == {79}
    assert {len(line) for line in bar_lines_on_a_pseudo_terminal(60, 20, monkeypatch)} == {59}


def test_the_bar_rows_are_the_terminals_or_lines_or_24_when_it_reports_none():
    assert bar_rows(40, {"LINES": "10"}) == 39                        # the terminal's own, less one as tqdm counts
    assert bar_rows(0, {"LINES": "30"}) == 29 and bar_rows(0, {}) == bar_rows(0, {"LINES": "x"}) == 23
    assert bar_rows(None, {"LINES": "30"}) is None                    # no terminal to ask: tqdm's own
