"""A small HTTP service to practise on: ``/health`` answers JSON, ``/work`` does a little CPU work,
``/metrics`` exposes request counts and latencies of both in the Prometheus text format.

Run it with ``python -m chaos.demo.service --port 18080``. It is deliberately plain (standard
library only) so that what the experiments observe is the fault, not the framework.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.time()

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INSTRUMENTED = ("/health", "/work")
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def _fmt(value: float) -> str:
    return repr(float(value))  # 1 -> "1.0", as the official client libraries write le


class Metrics:
    """Request counter and latency histogram of the instrumented paths; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._buckets: dict[str, list[int]] = {p: [0] * len(BUCKETS) for p in INSTRUMENTED}
        self._sum: dict[str, float] = dict.fromkeys(INSTRUMENTED, 0.0)
        self._count: dict[str, int] = dict.fromkeys(INSTRUMENTED, 0)

    def observe(self, path: str, code: int, seconds: float) -> None:
        with self._lock:
            key = (path, str(code))
            self._requests[key] = self._requests.get(key, 0) + 1
            counts = self._buckets[path]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self._sum[path] += seconds
            self._count[path] += 1

    def render(self) -> str:
        with self._lock:
            requests = sorted(self._requests.items())
            buckets = {p: list(c) for p, c in self._buckets.items()}
            sums = dict(self._sum)
            counts = dict(self._count)
        lines = [
            "# HELP chaos_demo_requests_total Requests answered, by path and status code.",
            "# TYPE chaos_demo_requests_total counter",
        ]
        lines += [f'chaos_demo_requests_total{{path="{p}",code="{c}"}} {n}'
                  for (p, c), n in requests]
        lines += [
            "# HELP chaos_demo_request_duration_seconds Time to answer a request, by path.",
            "# TYPE chaos_demo_request_duration_seconds histogram",
        ]
        for path in INSTRUMENTED:
            for bound, n in zip(BUCKETS, buckets[path], strict=True):
                lines.append(f'chaos_demo_request_duration_seconds_bucket{{path="{path}",'
                             f'le="{_fmt(bound)}"}} {n}')
            lines.append(f'chaos_demo_request_duration_seconds_bucket{{path="{path}",le="+Inf"}} '
                         f"{counts[path]}")
            lines.append(f'chaos_demo_request_duration_seconds_sum{{path="{path}"}} '
                         f"{sums[path]!r}")
            lines.append(f'chaos_demo_request_duration_seconds_count{{path="{path}"}} '
                         f"{counts[path]}")
        return "\n".join(lines) + "\n"


METRICS = Metrics()


class Handler(BaseHTTPRequestHandler):
    server_version = "chaos-demo/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: the runner logs
        return

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        started = time.perf_counter()
        status = self._route(path)
        if path in INSTRUMENTED:
            METRICS.observe(path, status, time.perf_counter() - started)

    def _route(self, path: str) -> int:
        if path == "/metrics":
            data = METRICS.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", TEXT_FORMAT)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return 200
        if path == "/health":
            self._send(200, {"status": "ok", "pid": os.getpid(),
                             "uptime": round(time.time() - STARTED, 3)})
            return 200
        if path == "/work":
            digest = b"chaos"
            for _ in range(2000):  # about a millisecond of CPU
                digest = hashlib.sha256(digest).digest()
            self._send(200, {"status": "ok", "digest": digest.hex()[:16]})
            return 200
        if path == "/":
            self._send(200, {"service": "chaos demo",
                             "endpoints": ["/health", "/work", "/metrics"]})
            return 200
        self._send(404, {"error": f"no route {path}"})
        return 404

    do_HEAD = do_GET


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="chaos demo HTTP service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--pidfile")
    args = parser.parse_args(argv)
    server = Server((args.host, args.port), Handler)
    if args.pidfile:
        from pathlib import Path

        from chaos.demo.supervisor import write_pidfile

        write_pidfile(Path(args.pidfile), os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
