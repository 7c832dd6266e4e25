"""Interruptions: SIGTERM (e.g. `ray job stop`, a scheduler's kill) and SIGINT (Ctrl-C) stop every command the same
way, at any stage: a KeyboardInterrupt, the line `INTERRUPTED` and exit status 130, leaving a resumable store.

Imports nothing heavy: the console command (`sweep.entry`) takes the signals over before it loads anything else.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

INTERRUPTED = "interrupted: run the same command again to resume"   # every interruption ends with this line
INTERRUPTED_STATUS = 130


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def install_interrupt_handlers() -> dict:
    """From now on SIGTERM (e.g. `ray job stop`, a scheduler's kill) and SIGINT (Ctrl-C) raise KeyboardInterrupt:
    every interruption, at any stage, stops the command the same way. The CLI calls this before it does anything;
    `ray_session` keeps it in place while Ray starts. Returns the handlers it replaced (`restore_handlers`)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {number: signal.signal(number, _interrupt) for number in (signal.SIGTERM, signal.SIGINT)}


def restore_handlers(previous: dict) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def own_sigterm_kept() -> Iterator[None]:
    """Keep this process's SIGTERM handler while `ray.init` runs. ray.init installs one of its own that calls
    `sys.exit(15)` (exit status 15, or an interruption lost in start-up); here a SIGTERM in that window is an
    interruption like any other, and the handler in place before is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    except SystemExit as exit_:      # ray's handler ran before ours was back
        if exit_.code == signal.SIGTERM:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. `ray job stop`, a scheduler's kill) stops the run like Ctrl-C: cleanly, resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
