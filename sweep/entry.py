"""The `sweep` console command. It takes SIGTERM and SIGINT over before it loads the command line (click, pyarrow
and numpy take a quarter of a second to import): an interruption at any moment after Python starts ends with the
same line and exit status as one in the middle of a sweep."""
from __future__ import annotations

import sys

from sweep.interrupts import INTERRUPTED, INTERRUPTED_STATUS, install_interrupt_handlers


def main() -> None:
    install_interrupt_handlers()
    try:
        from sweep.cli import main as command_line
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
    command_line()
