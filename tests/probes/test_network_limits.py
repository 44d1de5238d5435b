"""Every probe request has a total deadline and reads at most a capped body.

Against real servers on loopback: one that drips its answer one byte per second (httpx's timeout
is per read, so each byte reset it and a sample never ended), one that answers with a body of
hundreds of MiB (a sample read all of it into memory). Through the real CLI, the runner's peak RSS
is read from the kernel by the runner process itself as it exits (``VmHWM`` of its own address
space: ``wait4``'s ``ru_maxrss`` of a child started from pytest counts pytest's own peak too,
since the child is forked from it).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "secrets"))

from loopback_servers import drip_server, huge_server

from chaos.model.experiment import ProbeSpec
from chaos.probes.http import BODY_LIMIT, HttpProbeDriver
from chaos.probes.prometheus import PrometheusProbeDriver

pytestmark = pytest.mark.timeout(120)

HUGE = 400 << 20  # 400 MiB


def _http(url: str, **kw: object) -> ProbeSpec:
    return ProbeSpec.model_validate({"name": "p", "http": {"url": url, **kw}})


def _prom(url: str, **kw: object) -> ProbeSpec:
    return ProbeSpec.model_validate(
        {"name": "q", "prometheus": {"url": url, "query": "up", "expect": "== 1", **kw}})


async def _sample_http(spec: ProbeSpec) -> tuple[bool, float | None, str, float]:
    started = time.monotonic()
    async with httpx.AsyncClient(trust_env=False) as client:
        outcome = await HttpProbeDriver(spec, client).sample()
    return outcome.ok, outcome.latency, outcome.detail, time.monotonic() - started


async def _sample_prom(spec: ProbeSpec) -> tuple[bool, str, float]:
    started = time.monotonic()
    async with httpx.AsyncClient(trust_env=False) as client:
        outcome = await PrometheusProbeDriver(spec, client).sample()
    return outcome.ok, outcome.detail, time.monotonic() - started


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_http_probe_has_a_total_deadline(mode: str) -> None:
    with drip_server(mode) as url:
        ok, _, detail, elapsed = asyncio.run(_sample_http(
            _http(url + "/", timeout="2s", expect={"bodyContains": "}"})))
    assert not ok and "timed out after 2s" in detail, detail
    assert elapsed < 3.0, f"a 2s probe took {elapsed:.1f}s against a dripping server"


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_prometheus_probe_has_a_total_deadline(mode: str) -> None:
    with drip_server(mode) as url:
        ok, detail, elapsed = asyncio.run(_sample_prom(_prom(url, timeout="2s")))
    assert not ok and "timed out after 2s" in detail, detail
    assert elapsed < 3.0, f"a 2s probe took {elapsed:.1f}s against a dripping server"


def test_http_probe_reads_at_most_the_cap() -> None:
    with huge_server(HUGE) as url:
        # Nothing needs the body: the status decides, and reading stops at the cap.
        ok, latency, detail, elapsed = asyncio.run(_sample_http(_http(url + "/", timeout="5s")))
        assert ok and detail == "200" and latency is not None
        # bodyContains needs all of it: a failed sample that says so.
        ok, _, detail, _ = asyncio.run(_sample_http(
            _http(url + "/", timeout="5s", expect={"bodyContains": "needle"})))
        assert not ok
        assert detail == (f"body is larger than {BODY_LIMIT // 1024} KiB, the most a probe "
                          "reads; bodyContains and json need all of it"), detail
    assert elapsed < 3.0


def test_prometheus_probe_reads_at_most_the_cap() -> None:
    with huge_server(HUGE) as url:
        ok, detail, elapsed = asyncio.run(_sample_prom(_prom(url, timeout="5s")))
    assert not ok and detail.startswith(f"answer is larger than {BODY_LIMIT // 1024} KiB"), detail
    assert elapsed < 3.0


EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: huge-answers}}
spec:
  baseline: 2s
  recovery: 500ms
  probes:
    - {{name: status-only, interval: 500ms, http: {{url: "{url}/", timeout: 5s}}}}
    - name: needs-body
      interval: 500ms
      http: {{url: "{url}/", timeout: 5s, expect: {{bodyContains: needle}}}}
    - {{name: prom, interval: 500ms, prometheus: {{url: "{url}", query: up, expect: "== 1",
        timeout: 5s}}}}
"""


def test_cli_peak_rss_stays_bounded_against_huge_answers(tmp_path: Path) -> None:
    exp = tmp_path / "huge.yaml"
    with huge_server(HUGE) as url:
        exp.write_text(EXPERIMENT.format(url=url))
        started = time.monotonic()
        hwm = tmp_path / "hwm"
        # `python -m chaos run ...`, writing its own VmHWM when it exits.
        runner = ("import atexit, runpy, sys\n"
                  f"atexit.register(lambda: open({str(hwm)!r}, 'w').write("
                  "[l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]))\n"
                  "sys.argv[0] = 'chaos'\n"
                  "runpy.run_module('chaos', run_name='__main__', alter_sys=True)\n")
        with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", runner, "run", str(exp), "--state-dir",
                 str(tmp_path / "s"), "--journal", str(tmp_path / "j.json"),
                 "--log-format", "json"], stdout=out, stderr=err)
            proc.wait()
        elapsed = time.monotonic() - started
    peak_mib = int(hwm.read_text().split()[1]) / 1024  # "VmHWM:  61234 kB"
    print(f"CLI against {HUGE >> 20} MiB answers: {elapsed:.1f}s, peak RSS {peak_mib:.0f} MiB")
    assert proc.returncode == 0, (tmp_path / "out").read_text() + (tmp_path / "err").read_text()
    record = json.loads((tmp_path / "j.json").read_text())
    assert {s["detail"] for s in record["probes"]["status-only"]} == {"200"}
    assert all("larger than" in s["detail"] for s in record["probes"]["needs-body"])
    assert all("larger than" in s["detail"] for s in record["probes"]["prom"])
    assert peak_mib < 150, f"the runner's peak RSS was {peak_mib:.0f} MiB"
