"""Driver-side progress: items done / total, rate, ETA, failures; with `work_total`, the rate and ETA count work
(image-steps), which moves within a batch, not only when a batch ends.

On a terminal one line is redrawn in place (at most a few times a second); in a log file (stdout not a TTY) a
plain line is printed every `interval` seconds, so `ray job logs` and CI logs stay readable. It is advanced by the
driver as reports arrive, never by the workers (a driver-side bar survives workers dying and Ray job logs).
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

TTY_INTERVAL = 0.25   # seconds between redraws on a terminal
LOG_INTERVAL = 10.0   # seconds between lines in a log file


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts items of a run that started with `done` of `total` already in the store, and, when `work_total` is
    given, units of work (image-steps), `work` of them already done."""

    def __init__(self, total: int, done: int = 0, *, work_total: int | None = None, work: int = 0,
                 stream: TextIO | None = None, interval: float | None = None, clock=time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (TTY_INTERVAL if self.tty else LOG_INTERVAL)
        self.total, self.done, self.failed = total, done, 0
        self.start_done = done
        self.work_total, self.work, self.start_work = work_total, work, work
        self.clock = clock
        self.started = clock()
        self.last_shown = self.started
        self.note = ""

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        if self.work_total:
            rate = (self.work - self.start_work) / elapsed
            percent = 100.0 * min(self.work, self.work_total) / self.work_total
            left, unit = max(self.work_total - self.work, 0), "steps/s"
        else:
            rate = (self.done - self.start_done) / elapsed
            percent = 100.0 * self.done / self.total if self.total else 100.0
            left, unit = self.total - self.done, "items/s"
        eta = format_duration(left / rate) if rate > 0 else "?"
        parts = [f"{self.done}/{self.total} items ({percent:.1f}%)", f"{rate:.2f} {unit}", f"ETA {eta}",
                 f"{self.failed} failed", f"elapsed {format_duration(elapsed)}"]
        if self.note:
            parts.append(self.note)
        return " | ".join(parts)

    def update(self, done: int = 0, failed: int = 0, work: int = 0, *, force: bool = False) -> None:
        """Add `done` items finished, `failed` items that failed for good and `work` units done; show a line when
        it is time."""
        self.done += done
        self.failed += failed
        self.work += work
        now = self.clock()
        if force or now - self.last_shown >= self.interval:
            self.last_shown = now
            self._show()

    def _show(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._show()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
