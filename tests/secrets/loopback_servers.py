"""Real servers on loopback for the secrets and network-limit tests.

- :func:`failing_server` fails every request (404 for ``.../api/v1/query``, 500 elsewhere) and, as a
  careless server does, echoes back the request line and headers it was sent;
- :func:`drip_server` answers one byte per second (``mode="headers"``: the status line itself
  drips; ``mode="body"``: the headers come at once, then the body drips), for at most
  ``max_seconds`` per connection;
- :func:`huge_server` answers ``status`` (200) with a body of ``size`` bytes, written as fast as
  loopback goes.

Shared with tests/probes and tests/platform (which put this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["closed_port", "drip_server", "failing_server", "huge_server"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


class _Failing(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _fail(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        echo = f"{self.requestline}\n{self.headers}".encode()
        status = 404 if "/api/v1/query" in self.path else 500
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(echo)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(echo)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _fail


@contextlib.contextmanager
def failing_server() -> Iterator[str]:
    with _serve(_Failing) as url:
        yield url


@contextlib.contextmanager
def huge_server(size: int, status: int = 200) -> Iterator[str]:
    chunk = b"x" * (1 << 20)

    class Huge(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.close_connection = True
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            with contextlib.suppress(OSError):  # the client stops reading and hangs up
                while sent < size:
                    part = chunk[: size - sent]
                    self.wfile.write(part)
                    sent += len(part)

        do_PUT = do_POST = do_GET

    with _serve(Huge) as url:
        yield url


@contextlib.contextmanager
def drip_server(mode: str = "headers", *, interval: float = 1.0,
                max_seconds: float = 30.0) -> Iterator[str]:
    """One byte per ``interval`` for at most ``max_seconds`` per connection, then hang up."""
    body = b"{" + b" " * 10_000 + b"}"
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head_len = response.index(b"\r\n\r\n") + 4
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stopping = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                conn.recv(65536)  # the request (not parsed)
            pos = 0
            if mode == "body":
                conn.sendall(response[:head_len])
                pos = head_len
            deadline = time.monotonic() + max_seconds
            while pos < len(response) and time.monotonic() < deadline and not stopping.is_set():
                conn.sendall(response[pos:pos + 1])
                pos += 1
                stopping.wait(interval)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while not stopping.is_set():
                conn, _ = listener.accept()
                threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
