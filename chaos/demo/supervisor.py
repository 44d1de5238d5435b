"""Keeps the demo service running: restarts it when it exits, like a tiny systemd unit.

``python -m chaos.demo.supervisor --port 18080 --state-dir DIR`` writes ``DIR/service.pid`` (the
current service process) and ``DIR/supervisor.pid`` into a private folder (0700, refused when
another user owns it or can write it). SIGTERM or SIGINT stops both. The
process-kill experiment kills the service; the supervisor brings it back within a fraction of a
second, which is what that experiment checks.
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

_stop: list[bool] = []


def private_dir(path: Path) -> None:
    """Create ``path`` 0700, or accept it only if it is a real folder of ours (or root's) that
    no one else can write: a local user who created it first could otherwise swap the pidfiles
    and have a run signal a process of their choosing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"state folder {path} is not a folder (a symlink?)")
    if st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o022:
        raise ValueError(f"state folder {path} is owned by uid {st.st_uid} or writable by others "
                         f"(mode {st.st_mode & 0o7777:o}); use a private folder (--state-dir)")


def write_pidfile(path: Path, pid: int) -> None:
    """Write a pidfile atomically: a fresh temporary file (never following a symlink) renamed
    over the old one (a rename replaces a symlink itself, never what it points to)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop.append(True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="supervise the chaos demo service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--restart-delay", type=float, default=0.05)
    args = parser.parse_args(argv)
    state = Path(os.path.expanduser(args.state_dir))
    try:
        private_dir(state)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_pidfile(state / "supervisor.pid", os.getpid())
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    restarts = 0
    child: subprocess.Popen[bytes] | None = None
    try:
        while not _stop:
            child = subprocess.Popen(
                [sys.executable, "-m", "chaos.demo.service", "--host", args.host,
                 "--port", str(args.port), "--pidfile", str(state / "service.pid")],
            )
            while not _stop and child.poll() is None:
                time.sleep(0.02)
            if _stop:
                break
            restarts += 1
            print(f"supervisor: service pid {child.pid} exited with {child.returncode}; "
                  f"restart #{restarts}", file=sys.stderr, flush=True)
            time.sleep(args.restart_delay)
    finally:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGCONT)  # a paused child cannot handle SIGTERM
            child.terminate()
            try:
                child.wait(timeout=3)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for name in ("service.pid", "supervisor.pid"):
            (state / name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
