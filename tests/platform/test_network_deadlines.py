"""HTTP rollbacks and the Pushgateway push end by their deadline, whatever the server does.

A real server on loopback drips its answer one byte per second: httpx's timeout applies to each
read, so before the total deadline a ``timeout: 2s`` rollback and the push both waited as long as
the server kept dripping.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "secrets"))

from loopback_servers import drip_server, huge_server

from chaos.errors import PlatformError
from chaos.model import load_experiment_text
from chaos.platform.pushgateway import push_run_metrics
from chaos.targets.local import LocalPlatform

pytestmark = pytest.mark.timeout(120)


def _platform(url: str, timeout: str = "2s") -> LocalPlatform:
    exp = load_experiment_text(f"""\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: rollback-deadline}}
spec:
  probes: [{{name: t, tcp: {{host: 127.0.0.1, port: 1}}}}]
  rollbacks:
    - {{name: hook, http: {{url: "{url}/hook", timeout: {timeout}}}}}
""")
    return LocalPlatform(exp)


async def _rollback(platform: LocalPlatform) -> str:
    try:
        return await platform.run_rollback(platform.experiment.spec.rollbacks[0])
    finally:
        await platform.close()


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_http_rollback_has_a_total_deadline(mode: str) -> None:
    with drip_server(mode) as url:
        started = time.monotonic()
        if mode == "headers":
            with pytest.raises(PlatformError) as info:
                asyncio.run(_rollback(_platform(url)))
            assert str(info.value) == (f"POST {url}/… timed out after 2s (the whole request)")
        else:  # the status is all a rollback needs: it does not wait for the body
            assert asyncio.run(_rollback(_platform(url))) == f"POST {url}/… -> 200"
        elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"a 2s rollback took {elapsed:.1f}s against a dripping server"


def test_http_rollback_does_not_read_a_huge_body() -> None:
    with huge_server(400 << 20) as url:
        started = time.monotonic()
        assert asyncio.run(_rollback(_platform(url, "5s"))) == f"POST {url}/… -> 200"
    assert time.monotonic() - started < 3.0


def test_push_has_a_total_deadline() -> None:
    with drip_server("headers") as url:
        started = time.monotonic()
        with pytest.raises(PlatformError) as info:
            asyncio.run(push_run_metrics(url, "chaos", {"experiment": "x"}, "x 1\n",
                                         timeout=2.0))
        elapsed = time.monotonic() - started
    assert str(info.value).startswith(
        f"pushing run metrics to {url}/metrics/job/chaos/experiment/x failed: timed out after "
        "2s (the whole request)"), str(info.value)
    assert elapsed < 3.0, f"a 2s push took {elapsed:.1f}s against a dripping server"


def test_push_reads_at_most_a_capped_error_body() -> None:
    with huge_server(400 << 20, status=500) as url:
        started = time.monotonic()
        with pytest.raises(PlatformError) as info:
            asyncio.run(push_run_metrics(url, "chaos", {"experiment": "x"}, "x 1\n",
                                         timeout=5.0))
        elapsed = time.monotonic() - started
    assert "failed: HTTP 500: xxxx" in str(info.value)
    assert len(str(info.value)) < 1000
    assert elapsed < 3.0
