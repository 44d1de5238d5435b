"""A CPU burner process: the worker behind :class:`chaos.platform.local.stress.CpuBurners`.

Run as ``python -m chaos.platform.local._burner --load L --until EPOCH --parent PID``. It makes
itself the lowest-priority work on the machine (nice 19, SCHED_IDLE) so the runner's own SLO guard
keeps its CPU, and it cannot outlive the runner: the kernel kills it when the runner dies
(PR_SET_PDEATHSIG), it checks its parent every slice in case that was missed, and it exits by
itself at the deadline even if nobody ever stops it.

It prints ``ready`` once set up, so the starter knows it is really burning.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1
_SLICE_S = 0.1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")


def _lowest_priority() -> None:
    os.nice(19)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def burn(load: float, until: float, parent: int) -> int:
    busy = _SLICE_S * load
    while True:
        now = time.time()
        if now >= until or os.getppid() != parent:
            return 0
        start = time.monotonic()
        end_busy = start + busy
        while time.monotonic() < end_busy:
            pass
        rest = _SLICE_S - (time.monotonic() - start)
        if rest > 0:
            time.sleep(rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos-burner")
    parser.add_argument("--load", type=float, required=True, help="busy fraction 0..1")
    parser.add_argument("--until", type=float, required=True, help="epoch seconds to exit at")
    parser.add_argument("--parent", type=int, required=True, help="pid of the runner")
    args = parser.parse_args(argv)
    _die_with_parent()
    if os.getppid() != args.parent:
        # The runner died before PDEATHSIG was armed; nobody would ever stop us.
        return 0
    _lowest_priority()
    print("ready", flush=True)
    return burn(min(max(args.load, 0.0), 1.0), args.until, args.parent)


if __name__ == "__main__":
    sys.exit(main())
