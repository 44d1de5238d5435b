"""A loopback HTTP service for the benchmarks, and the two Chaos Toolkit actions that go with it.

``Service`` answers every GET with 200 until the instant set by ``fail_at`` (a ``time.time()``
value), and with 500 from then on, so "when did the service start failing" is known exactly,
not inferred from a probe. It runs on threads inside the benchmark process, so none of its CPU
or memory is charged to the runner being measured. It counts requests per path, which shows how
often each runner really probed.

``ctk_pause`` / ``ctk_resume`` are what a Chaos Toolkit experiment calls through its ``python``
provider (the benchmark puts this folder on the peer's PYTHONPATH; stdlib only, so it imports in
any venv): the same SIGSTOP / SIGCONT fault our runner's ``processPause`` applies, with the resume
instant written to a file, because Chaos Toolkit's journal has no revert timestamp of its own.
"""

from __future__ import annotations

import collections
import math
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Service:
    """200 until ``fail_at``, 500 after; on 127.0.0.1, an ephemeral port, daemon threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadline = math.inf
        self.hits: collections.Counter[str] = collections.Counter()
        self.failures_served = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                failing = time.time() >= service._deadline
                with service._lock:
                    service.hits[self.path] += 1
                    service.failures_served += failing
                body = b"failing\n" if failing else b"ok\n"
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: thousands of probe requests per benchmark

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.5}, daemon=True,
                                        name="bench-service")
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_at(self, instant: float) -> None:
        """Answer 500 from ``instant`` (wall clock, ``time.time()``) on."""
        self._deadline = instant

    @property
    def deadline(self) -> float:
        return self._deadline

    def reset(self) -> None:
        """Healthy again, counters cleared: the state at the start of a trial."""
        with self._lock:
            self._deadline = math.inf
            self.hits.clear()
            self.failures_served = 0

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ctk_pause(pid: int) -> None:
    """Chaos Toolkit action: the fault (SIGSTOP a dummy process)."""
    os.kill(pid, signal.SIGSTOP)


def ctk_resume(pid: int, stamp: str) -> None:
    """Chaos Toolkit rollback: revert the fault, then record the revert instant."""
    os.kill(pid, signal.SIGCONT)
    Path(stamp).write_text(repr(time.time()))
