"""The command line interface (typer). Only this package imports typer."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    # Outside a run's fault window nothing needs undoing (faults are not injected yet, or all
    # reverted and journaled; reports are written via temp file + rename), so stop at once:
    # no exception that a library might swallow or turn into another exit code.
    name = signal.Signals(signum).name
    sys.stderr.write(f"interrupted ({name}) outside a run's fault window: no fault of this "
                     "command is active\n")
    sys.stderr.flush()
    os._exit(130)


def install_interrupt_handlers() -> None:
    """Outside a run (which installs its own, revert-first handlers) SIGINT and SIGTERM stop
    the command with exit 130."""
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)


def main() -> None:
    # Installed before anything heavy is imported, so a signal during start-up or loading is
    # exit 130, never a bare -15 (only the interpreter's own first ~50ms are not covered).
    install_interrupt_handlers()
    try:
        from chaos.cli.app import main as _main

        _main()
    finally:
        # The outcome is decided and written. Python resets its handlers to the default while
        # it shuts down, so a late SIGTERM would turn the exit code into -15: ignore instead.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
