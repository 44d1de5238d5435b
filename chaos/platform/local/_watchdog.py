"""The dead-man's switch program: undo a fault at a deadline, whether or not the runner lives.

``python -m chaos.platform.local._watchdog --at EPOCH [--sigcont PID:TICKS]...
[--netem [HANDLE/]IF[@NS]]
[--tag RUN_ID/FAULT]``

It runs in its own session (so a SIGKILL to the runner's process group does not reach it) and
depends on nothing but the standard library, /proc and tc. At the deadline it resumes each
paused process that is still the same process (same start time) and removes a netem root qdisc
if it is still there (by its handle). A runner that reverts normally kills its watchdog first.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()
    return int(fields[19])


def _resume(spec: str) -> None:
    pid_text, ticks_text = spec.split(":", 1)
    pid = int(pid_text)
    if _start_ticks(pid) != int(ticks_text):
        return  # gone, or the pid now belongs to another process
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        return


def _tc(netns: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["tc", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


def _remove_netem(spec: str) -> None:
    handle, _, where = spec.rpartition("/")
    interface, _, netns = where.partition("@")
    if handle:
        # The kernel deletes the root qdisc only if its handle is this one: never another
        # run's qdisc that replaced ours since.
        _tc(netns or None, "qdisc", "del", "dev", interface, "root", "handle", f"{handle}:")
        return
    shown = _tc(netns or None, "qdisc", "show", "dev", interface, "root")
    if shown.returncode == 0 and " netem " in f" {shown.stdout} ":
        _tc(netns or None, "qdisc", "del", "dev", interface, "root")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="undo a chaos fault at a deadline")
    parser.add_argument("--at", type=float, required=True, help="deadline, epoch seconds")
    parser.add_argument("--sigcont", action="append", default=[], metavar="PID:TICKS")
    parser.add_argument("--netem", action="append", default=[], metavar="[HANDLE/]IF[@NETNS]")
    parser.add_argument("--tag", default="", help="run_id/fault, so recovery can find it")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while (left := args.at - time.time()) > 0:
        time.sleep(min(left, 1.0))
    for spec in args.sigcont:
        _resume(spec)
    for spec in args.netem:
        _remove_netem(spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
