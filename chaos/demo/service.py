"""A small HTTP service to practise on: ``/health`` answers JSON, ``/work`` does a little CPU work.

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
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.time()


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
        if path == "/health":
            self._send(200, {"status": "ok", "pid": os.getpid(),
                             "uptime": round(time.time() - STARTED, 3)})
        elif path == "/work":
            digest = b"chaos"
            for _ in range(2000):  # about a millisecond of CPU
                digest = hashlib.sha256(digest).digest()
            self._send(200, {"status": "ok", "digest": digest.hex()[:16]})
        elif path == "/":
            self._send(200, {"service": "chaos demo", "endpoints": ["/health", "/work"]})
        else:
            self._send(404, {"error": f"no route {path}"})

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
        with open(args.pidfile + ".tmp", "w") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(args.pidfile + ".tmp", args.pidfile)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
