"""Driver-side progress: items done / total, rate, ETA, failures.

On a terminal (the stream's `isatty()`; stderr by default) a tqdm bar is redrawn in place; in a log file (`ray job
submit`, CI, `2> log`) a plain line is printed every `interval` seconds, so logs stay readable. When the run knows
its work in image-steps (`work_total`), the ETA comes from the work rate, since items of different jobs cost very
different amounts. It is advanced by the driver as reports arrive, never by the workers (a driver-side bar survives
workers dying and Ray job logs).
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
    given, units of work (image-steps), `work` of them already done; `update(work=...)` adds work done."""

    def __init__(self, total: int, done: int = 0, *, work_total: float | None = None, work: float = 0,
                 stream: TextIO | None = None, interval: float | None = None, unit: str = "items",
                 clock=time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (TTY_INTERVAL if self.tty else LOG_INTERVAL)
        self.total, self.done, self.failed = total, done, 0
        self.start_done = done
        self.work_total, self.work, self.start_work = work_total, float(work), float(work)
        self.unit = unit
        self.clock = clock
        self.started = clock()
        self.last_shown = self.started
        self.note = ""
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, file=self.stream, unit=unit.rstrip("s") or "it",
                            mininterval=self.interval, dynamic_ncols=True, disable=False, leave=True,
                            bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + unit
                                       + " [{elapsed}, {rate_fmt}{postfix}]")
            self.bar.set_postfix_str(self._postfix(), refresh=False)

    def eta(self) -> str:
        """Time left, from the work rate when `work_total` is set, else from the item rate of this run."""
        elapsed = max(self.clock() - self.started, 1e-9)
        if self.work_total is not None:
            rate, left = (self.work - self.start_work) / elapsed, self.work_total - self.work
        else:
            rate, left = (self.done - self.start_done) / elapsed, self.total - self.done
        if left <= 0:
            return format_duration(0)
        return format_duration(left / rate) if rate > 0 else "?"

    def _postfix(self) -> str:
        return ", ".join([f"ETA {self.eta()}", f"{self.failed} failed"] + ([self.note] if self.note else []))

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        if self.work_total:   # work moves within items: the percentage and rate count it
            rate, rate_unit = (self.work - self.start_work) / elapsed, "steps/s"
            percent = 100.0 * min(self.work, self.work_total) / self.work_total
        else:
            rate, rate_unit = (self.done - self.start_done) / elapsed, f"{self.unit}/s"
            percent = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.done}/{self.total} {self.unit} ({percent:.1f}%)", f"{rate:.2f} {rate_unit}",
                 f"ETA {self.eta()}", f"{self.failed} failed", f"elapsed {format_duration(elapsed)}"]
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
            self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.update(done)
            if force:
                self.bar.refresh()
            return
        now = self.clock()
        if force or now - self.last_shown >= self.interval:
            self.last_shown = now
            self._show()

    def message(self, text: str) -> None:
        """A line of its own between the progress lines (above the bar on a terminal, without breaking it)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _show(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.close()
            return
        self._show()
