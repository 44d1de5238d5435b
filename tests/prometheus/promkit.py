"""Helpers shared by tests/prometheus: free ports, the servers' handles, probe sampling and a
parser of the Prometheus text format. The fixtures that start the servers are in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos.engine.protocols import Outcome
from chaos.model.experiment import ProbeSpec
from chaos.probes.prometheus import PrometheusProbeDriver

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_INTERVAL = "1s"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed: run tests/prometheus/setup.sh (as root)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {message}")
        warnings.warn(f"tests/prometheus: {message}; these tests are SKIPPED", stacklevel=2)
        pytest.skip(f"SKIPPED LOUDLY: {message}")
    return path


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this fixture started, by its own pid."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer in time:\n{log_tail(log)}")


@dataclass(frozen=True)
class Demo:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Prometheus:
    url: str
    demo: Demo


@dataclass(frozen=True)
class Pushgateway:
    url: str


def probe_spec(url: str, query: str, expect: str = "== 1", **extra: Any) -> ProbeSpec:
    return ProbeSpec.model_validate(
        {"name": "prom", "prometheus": {"url": url, "query": query, "expect": expect, **extra}}
    )


async def _sample(spec: ProbeSpec) -> Outcome:
    async with httpx.AsyncClient(trust_env=False) as client:
        driver = PrometheusProbeDriver(spec, client)
        try:
            return await driver.sample()
        finally:
            await driver.aclose()


def sample(url: str, query: str, expect: str = "== 1", **extra: Any) -> Outcome:
    return asyncio.run(_sample(probe_spec(url, query, expect, **extra)))


_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], dict[str, str]]:
    """A strict-enough parser of the text format: samples by (name, labels), and TYPE lines."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        match = _LINE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = float(value)
    return samples, types


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]
