"""Probe drivers against real servers on loopback: outcomes, latencies, failure details."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from chaos.model.experiment import ProbeSpec
from chaos.probes.command import CommandProbeDriver
from chaos.probes.http import HttpProbeDriver
from chaos.probes.tcp import TcpProbeDriver


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        status = 503 if self.path == "/down" else 200
        body = json.dumps({"status": "ok", "checks": [{"ok": True}]}).encode()
        if self.path == "/text":
            body = b"not json"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up (timeout test)
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, **kw: object) -> ProbeSpec:
    return ProbeSpec.model_validate({"name": "p", "http": {"url": url, **kw}})


async def sample_http(spec: ProbeSpec) -> tuple[bool, float | None, str]:
    async with httpx.AsyncClient() as client:
        outcome = await HttpProbeDriver(spec, client).sample()
    return outcome.ok, outcome.latency, outcome.detail


def test_http_ok_records_latency(server: str) -> None:
    ok, latency, detail = asyncio.run(sample_http(http(server + "/health")))
    assert ok and detail == "200" and latency is not None and 0 < latency < 1


def test_http_unexpected_status(server: str) -> None:
    ok, _, detail = asyncio.run(sample_http(http(server + "/down")))
    assert not ok and detail == "status 503 (expected 200)"
    ok, _, _ = asyncio.run(sample_http(http(server + "/down", expect={"status": [503]})))
    assert ok


def test_http_body_and_json_checks(server: str) -> None:
    assert asyncio.run(sample_http(http(server + "/", expect={"bodyContains": "ok"})))[0]
    ok, _, detail = asyncio.run(sample_http(http(server + "/", expect={"bodyContains": "nope"})))
    assert not ok and "does not contain 'nope'" in detail
    good = {"json": {"path": "checks.0.ok", "equals": True}}
    assert asyncio.run(sample_http(http(server + "/", expect=good)))[0]
    bad = {"json": {"path": "status", "equals": "degraded"}}
    ok, _, detail = asyncio.run(sample_http(http(server + "/", expect=bad)))
    assert not ok and detail == "JSON status is 'ok', expected 'degraded'"
    ok, _, detail = asyncio.run(sample_http(http(server + "/text", expect=good)))
    assert not ok and detail == "body is not JSON"


def test_http_connection_refused_is_a_failed_sample() -> None:
    ok, _, detail = asyncio.run(sample_http(http(f"http://127.0.0.1:{closed_port()}/")))
    assert not ok and detail == "connection refused"


def test_http_timeout_is_a_failed_sample(server: str) -> None:
    started = time.monotonic()
    ok, _, detail = asyncio.run(sample_http(http(server + "/slow", timeout="200ms")))
    assert not ok and "timed out" in detail
    assert time.monotonic() - started < 0.9


def test_tcp_probe() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        spec = ProbeSpec.model_validate({"name": "t", "tcp": {"host": "127.0.0.1", "port": port}})
        outcome = asyncio.run(TcpProbeDriver(spec).sample())
        assert outcome.ok and outcome.detail == "connected"
    spec = ProbeSpec.model_validate(
        {"name": "t", "tcp": {"host": "127.0.0.1", "port": closed_port()}})
    outcome = asyncio.run(TcpProbeDriver(spec).sample())
    assert not outcome.ok and outcome.detail == "connection refused"


def command(argv: list[str], **kw: object) -> ProbeSpec:
    return ProbeSpec.model_validate({"name": "c", "command": {"argv": argv, **kw}})


def test_command_probe_exit_code_and_output() -> None:
    ok = asyncio.run(CommandProbeDriver(command([sys.executable, "-c", "print('healthy')"],
                                                expect={"stdoutContains": "healthy"})).sample())
    assert ok.ok
    bad = asyncio.run(CommandProbeDriver(command(
        [sys.executable, "-c", "import sys; print('db down', file=sys.stderr); sys.exit(3)"]
    )).sample())
    assert not bad.ok and bad.detail == "exit code 3 (expected 0) db down"


def test_command_probe_timeout_and_missing_program() -> None:
    started = time.monotonic()
    slow = asyncio.run(CommandProbeDriver(command(["sleep", "5"], timeout="200ms")).sample())
    assert not slow.ok and "timed out" in slow.detail
    assert time.monotonic() - started < 2
    missing = asyncio.run(CommandProbeDriver(command(["no-such-program-xyz"])).sample())
    assert not missing.ok and "not found" in missing.detail
