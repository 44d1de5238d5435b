"""Keeps the demo service running: restarts it when it exits, like a tiny systemd unit.

``python -m chaos.demo.supervisor --port 18080 --state-dir DIR`` writes ``DIR/service.pid`` (the
current service process) and ``DIR/supervisor.pid``. SIGTERM or SIGINT stops both. The
process-kill experiment kills the service; the supervisor brings it back within a fraction of a
second, which is what that experiment checks.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

_stop: list[bool] = []


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop.append(True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="supervise the chaos demo service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--restart-delay", type=float, default=0.05)
    args = parser.parse_args(argv)
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    (state / "supervisor.pid").write_text(f"{os.getpid()}\n")
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
