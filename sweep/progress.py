"""Driver-side progress: items done / total, rate, ETA, failures.

On a terminal (the stream's `isatty()`; stderr by default) a tqdm bar is redrawn in place; in a log file (`ray job
submit`, CI, `2> log`) a plain line is printed every `interval` seconds, so logs stay readable. When the run knows
its work in image-steps (`work_total`), the bar, the percentage and the ETA count that work, since items of different
jobs cost very different amounts and a batch's items all finish at its end. The rate counts from `workers_ready()`
(Ray's start and the first model load are not work, and counted in they made a first ETA many times too long);
the elapsed time counts from the start. It is advanced by the driver as reports arrive, never by the workers (a
driver-side bar survives workers dying and Ray job logs). A terminal that reports no width (0 columns: some CI
pseudo-terminals, `stty size` 0 0) gets a bar as wide as `COLUMNS` says, else 80 columns, not a bar of nothing; one
that reports 0 rows gets `LINES` rows, else 24 (tqdm takes the rows less one, and on stderr with -1 it draws nothing).
"""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO

TTY_INTERVAL = 0.25   # seconds between redraws on a terminal
LOG_INTERVAL = 10.0   # seconds between lines in a log file
FALLBACK_COLUMNS = 80   # a terminal's width when it reports 0 columns and COLUMNS says nothing
FALLBACK_ROWS = 24      # a terminal's height when it reports 0 rows and LINES says nothing


def terminal_size(stream: TextIO) -> os.terminal_size | None:
    """The size the stream's terminal reports (0 x 0 on some pseudo-terminals); None where there is none to ask."""
    try:
        return os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):   # no fileno (io.UnsupportedOperation), not a terminal, closed
        return None


def terminal_columns(stream: TextIO) -> int | None:
    """The width the stream's terminal reports (0 on some pseudo-terminals); None where there is none to ask."""
    size = terminal_size(stream)
    return None if size is None else size.columns


def terminal_rows(stream: TextIO) -> int | None:
    """The height the stream's terminal reports (0 on some pseudo-terminals); None where there is none to ask."""
    size = terminal_size(stream)
    return None if size is None else size.lines


def _less_one(reported: int | None, variable: str, fallback: int, environ: dict | None) -> int | None:
    """A reported terminal dimension less one, as tqdm counts it; 0 (not reported) as a positive `variable` of
    the environment says, else `fallback`; None where no terminal was asked."""
    if reported is None:
        return None
    if reported <= 0:
        given = (os.environ if environ is None else environ).get(variable, "").strip()
        reported = int(given) if given.isdigit() and int(given) > 0 else fallback
    return reported - 1


def bar_columns(reported: int | None, environ: dict | None = None) -> int | None:
    """The width tqdm draws the whole bar line in: one less than the terminal's (tqdm's own margin, so that a full
    line does not wrap); a terminal that reports 0 columns as wide as a positive `COLUMNS`, else 80; None (tqdm's
    own, unbounded) where no terminal was asked."""
    return _less_one(reported, "COLUMNS", FALLBACK_COLUMNS, environ)


def bar_rows(reported: int | None, environ: dict | None = None) -> int | None:
    """The rows tqdm may draw bars in: one less than the terminal's, as tqdm reckons them itself; a terminal that
    reports 0 rows as many as a positive `LINES`, else 24 (tqdm's own -1 would hide the bar: it draws none at or
    below the last row); None (tqdm's own) where no terminal was asked."""
    return _less_one(reported, "LINES", FALLBACK_ROWS, environ)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts items of a run that started with `done` of `total` already in the store, and, when `work_total` is
    given, units of work (image-steps), `work` of them already done; `update(work=...)` adds work done."""

    def __init__(self, total: int, done: int = 0, *, work_total: float | None = None, work: float = 0,
                 stream: TextIO | None = None, interval: float | None = None, unit: str = "items",
                 failures: bool = True, clock=time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (TTY_INTERVAL if self.tty else LOG_INTERVAL)
        self.total, self.done, self.failed = total, done, 0
        self.start_done = done
        self.work_total, self.work, self.start_work = work_total, float(work), float(work)
        self.unit = unit
        self.failures = failures   # whether its work can fail (a sweep's items): else no "0 failed" is shown
        self.clock = clock
        self.started = clock()
        self.rate_since, self.rate_done, self.rate_work = self.started, done, float(work)   # see workers_ready
        self.last_shown = self.started
        self.note = ""
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            if self.counts_work:   # the bar counts steps (it moves within a batch); items are in its text, which
                # is its description: tqdm would put ", " before a {postfix}
                self.bar = tqdm(total=work_total, initial=work, file=self.stream, mininterval=self.interval,
                                ncols=self._columns(), nrows=self._rows(), disable=False, leave=True,
                                bar_format="{percentage:3.0f}%|{bar}| {desc} [{elapsed}]")
            else:
                self.bar = tqdm(total=total, initial=done, file=self.stream, unit=unit.rstrip("s") or "it",
                                mininterval=self.interval, ncols=self._columns(), nrows=self._rows(), disable=False,
                                leave=True,
                                bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + unit
                                           + " [{elapsed}, {rate_fmt}{postfix}]")
            self._caption()

    def _columns(self) -> int | None:
        """The bar's width now (asked again at each redraw, so that it follows a resized window, as tqdm's
        `dynamic_ncols` would, without its blank bar on a terminal of 0 columns)."""
        return bar_columns(terminal_columns(self.stream))

    def _rows(self) -> int | None:
        """The rows tqdm may draw in (given, so that a terminal of 0 rows still shows the bar)."""
        return bar_rows(terminal_rows(self.stream))

    def _caption(self) -> None:
        """The bar's text: the description of a bar that counts work, the postfix of one that counts items."""
        if self.counts_work:
            self.bar.set_description_str(self._postfix(), refresh=False)
        else:
            self.bar.set_postfix_str(self._postfix(), refresh=False)

    @property
    def counts_work(self) -> bool:
        return bool(self.work_total)

    def workers_ready(self) -> None:
        """The first worker can take work: the rate (and so the ETA) counts from now."""
        self.rate_since, self.rate_done, self.rate_work = self.clock(), self.done, self.work

    def rate(self) -> float:
        """Steps (with `work_total`) or items per second since `workers_ready()` (or the start)."""
        elapsed = max(self.clock() - self.rate_since, 1e-9)
        return (self.work - self.rate_work if self.counts_work else self.done - self.rate_done) / elapsed

    def eta(self) -> str:
        """Time left, from the work rate when `work_total` is set, else from the item rate of this run."""
        left = self.work_total - self.work if self.counts_work else self.total - self.done
        if left <= 0:
            return format_duration(0)
        rate = self.rate()
        return format_duration(left / rate) if rate > 0 else "?"

    def _postfix(self) -> str:
        counts = [f"{self.done}/{self.total} {self.unit}", f"{self.rate():.2f} steps/s"] if self.counts_work else []
        return ", ".join(counts + [f"ETA {self.eta()}", *self._failed()] + ([self.note] if self.note else []))

    def _failed(self) -> list[str]:
        return [f"{self.failed} failed"] if self.failures else []

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        if self.counts_work:   # work moves within items: the percentage and rate count it
            rate_unit, percent = "steps/s", 100.0 * min(self.work, self.work_total) / self.work_total
        else:
            rate_unit, percent = f"{self.unit}/s", 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.done}/{self.total} {self.unit} ({percent:.1f}%)", f"{self.rate():.2f} {rate_unit}",
                 f"ETA {self.eta()}", *self._failed(), f"elapsed {format_duration(elapsed)}"]
        if self.note:
            parts.append(self.note)
        return " | ".join(parts)

    def update(self, done: int = 0, failed: int = 0, work: float = 0, *, force: bool = False) -> None:
        """Add `done` items finished, `failed` items that failed for good and `work` units of work done; show a
        line (or redraw the bar) when it is time."""
        self.done += done
        self.failed += failed
        self.work += work
        if self.bar is not None:
            self.bar.ncols = self._columns()
            self._caption()
            self.bar.update(min(work, self.work_total - self.bar.n) if self.counts_work else done)
            if force:
                self.bar.refresh()
            return
        now = self.clock()
        if force or now - self.last_shown >= self.interval:
            self.last_shown = now
            self._show()

    def message(self, text: str, stream: TextIO | None = None) -> None:
        """A line of its own between the progress lines (above the bar on a terminal, without breaking it), on
        `stream` (default: the progress stream)."""
        stream = stream if stream is not None else self.stream
        if self.bar is not None:
            self.bar.write(text, file=stream)
        else:
            stream.write(text + "\n")
            stream.flush()

    def _show(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.ncols = self._columns()
            self._caption()
            self.bar.close()
            return
        self._show()
