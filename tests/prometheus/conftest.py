"""Real Prometheus, Pushgateway and demo service on free loopback ports (no mocks).

``tests/prometheus/setup.sh`` installs Debian's ``prometheus`` and ``prometheus-pushgateway``.
Without them the tests are skipped loudly, except when ``CI`` is set: then they fail, because a CI
run that silently skips its metrics tests proves nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from promkit import (
    ROOT,
    SCRAPE_INTERVAL,
    Demo,
    Prometheus,
    Pushgateway,
    free_port,
    log_tail,
    need_binary,
    stop,
    wait_http,
)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    port = free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chaos.demo.service", "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log, time.monotonic() + 10)
        yield Demo(port)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def prometheus(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus scraping the demo service (job ``demo``) and itself (job ``prometheus``)
    every second; yielded once the demo target is up."""
    binary = need_binary("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE_INTERVAL}, evaluation_interval: {SCRAPE_INTERVAL}}}\n"
        "scrape_configs:\n"
        f"  - job_name: demo\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{demo.port}']}}]\n"
        f"  - job_name: prometheus\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        wait_http(f"{url}/-/ready", proc, log, deadline)
        while True:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]
            health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
            if health.get("demo") == "up" and health.get("prometheus") == "up":
                break
            if time.monotonic() > deadline:
                pytest.fail(f"scrape targets not up in time: {health}\n{log_tail(log)}")
            time.sleep(0.1)
        yield Prometheus(url, demo)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    binary = need_binary("prometheus-pushgateway")
    tmp = tmp_path_factory.mktemp("pushgateway")
    port = free_port()
    log = tmp / "pushgateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", proc, log, time.monotonic() + 10)
        yield Pushgateway(url)
    finally:
        stop(proc)
