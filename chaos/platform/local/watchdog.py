"""Starting and cancelling dead-man's switch processes (see ``_watchdog``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from chaos.platform.local import procs


@dataclass
class Watchdog:
    pid: int
    start_ticks: int
    process: subprocess.Popen[bytes] | None = None

    def state(self) -> dict[str, int]:
        return {"watchdog_pid": self.pid, "watchdog_start_ticks": self.start_ticks}

    def cancel(self) -> None:
        """Stop the watchdog (the fault was reverted normally); idempotent."""
        cancel_watchdog(self.pid, self.start_ticks)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)


def spawn_watchdog(deadline_in: float, *, tag: str, sigcont: list[procs.ProcInfo] | None = None,
                   netem: list[str] | None = None) -> Watchdog:
    """Start a detached watchdog that undoes the fault ``deadline_in`` seconds from now.

    ``tag`` (``run_id/fault``) is on its command line so recovery can find it even when the
    runner died before journaling its pid."""
    argv = [sys.executable, "-m", "chaos.platform.local._watchdog",
            "--at", f"{time.time() + deadline_in:.3f}", "--tag", tag]
    for info in sigcont or []:
        argv += ["--sigcont", f"{info.pid}:{info.start_ticks}"]
    for spec in netem or []:
        argv += ["--netem", spec]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outside the runner's process group and session
        close_fds=True,
    )
    started = procs.proc_info(process.pid)
    return Watchdog(process.pid, started.start_ticks if started else 0, process)


def cancel_watchdog(pid: int, start_ticks: int) -> None:
    info = procs.proc_info(pid)
    if info is None or info.start_ticks != start_ticks or "_watchdog" not in info.cmdline:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def cancel_tagged(tag: str) -> int:
    """Stop every watchdog started for ``tag`` (``run_id/fault``); returns how many."""
    stopped = 0
    for info in procs.find_by_name(r"chaos\.platform\.local\._watchdog"):
        args = info.cmdline.split()
        if "--tag" in args and args.index("--tag") + 1 < len(args) and \
                args[args.index("--tag") + 1] == tag:
            with contextlib.suppress(OSError):
                os.kill(info.pid, signal.SIGKILL)
                stopped += 1
    return stopped
