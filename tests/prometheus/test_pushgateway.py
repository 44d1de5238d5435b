"""Run metrics: the text rendering, and pushing it to a real Pushgateway."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
from promkit import Pushgateway, free_port, parse, value

from chaos.errors import InvalidInput, PlatformError
from chaos.journal.record import (
    AbortRecord,
    FaultRecord,
    RunRecord,
    SampleRecord,
    Status,
)
from chaos.platform.pushgateway import grouping_path, push_run_metrics
from chaos.reporting.metrics import METRIC_NAMES, render_run_metrics

pytestmark = pytest.mark.timeout(60)


def _samples(oks: list[bool]) -> list[SampleRecord]:
    return [SampleRecord(t=i * 0.5, ok=ok, latency=0.01, detail="200", phase="observing")
            for i, ok in enumerate(oks)]


def aborted_record() -> RunRecord:
    return RunRecord(
        run_id="20261122T003000-abcd",
        experiment="demo-latency",
        status=Status.ABORTED,
        started_at="2026-11-22T00:30:00.000Z",
        ended_at="2026-11-22T00:30:12.500Z",
        duration=12.5,
        abort=AbortRecord(reason="latency p95 300ms breaches < 200ms", slo="latency",
                          observed=0.3, threshold="< 200ms", at="2026-11-22T00:30:05.000Z", t=5.0),
        faults=[
            FaultRecord(name="slow", kind="networkLatency", description="", targets=["front"],
                        at=2, duration=20, injected_at="2026-11-22T00:30:02.000Z",
                        reverted_at="2026-11-22T00:30:05.250Z"),
            FaultRecord(name="burn", kind="cpuStress", description="", targets=["cpu"],
                        at=3, duration=20, injected_at="2026-11-22T00:30:03.000Z",
                        reverted_at=None, revert_error="burner 123 would not die"),
            FaultRecord(name="kill", kind="processKill", description="", targets=["pid 1"],
                        at=4, duration=None, one_shot=True,
                        injected_at="2026-11-22T00:30:04.000Z"),
        ],
        probes={"api": _samples([True, True, True, False]), "health": _samples([True] * 5),
                "never": []},
    )


def test_render_aborted_run() -> None:
    text = render_run_metrics(aborted_record(), {"team": "payments", "env": 'pr "42"\\x'})
    samples, types = parse(text)
    assert set(types) == set(METRIC_NAMES)
    assert set(types.values()) == {"gauge"}
    base = {"experiment": "demo-latency", "team": "payments", "env": 'pr \\"42\\"\\\\x'}
    assert value(samples, "chaos_run_status", **base, status="aborted") == 1
    for other in ("passed", "deviated", "interrupted", "error"):
        assert value(samples, "chaos_run_status", **base, status=other) == 0
    assert ("chaos_run_status", frozenset({**base, "status": "running"}.items())) not in samples
    assert value(samples, "chaos_run_duration_seconds", **base) == 12.5
    assert value(samples, "chaos_run_faults_injected", **base) == 3
    assert value(samples, "chaos_run_faults_reverted", **base) == 1
    assert value(samples, "chaos_run_revert_failures", **base) == 1
    assert value(samples, "chaos_run_aborted", **base, slo="latency") == 1
    assert value(samples, "chaos_run_time_to_abort_seconds", **base) == pytest.approx(0.25)
    assert value(samples, "chaos_run_probe_success_ratio", **base, probe="api") == 0.75
    assert value(samples, "chaos_run_probe_success_ratio", **base, probe="health") == 1
    assert ("chaos_run_probe_success_ratio", frozenset({**base, "probe": "never"}.items())) \
        not in samples
    assert value(samples, "chaos_run_last_timestamp_seconds", **base) == 1795307412.5
    # every series carries the experiment and the extra labels
    assert all({("experiment", "demo-latency"), ("team", "payments")} <= labels
               for _, labels in samples)


def test_render_passed_run_has_no_abort_timing() -> None:
    record = RunRecord(run_id="r", experiment="ok", status=Status.PASSED,
                       started_at="2026-11-22T00:30:00Z", ended_at="2026-11-22T00:30:10Z")
    samples, _ = parse(render_run_metrics(record, {}))
    assert value(samples, "chaos_run_status", experiment="ok", status="passed") == 1
    assert value(samples, "chaos_run_duration_seconds", experiment="ok") == 10  # from the times
    assert value(samples, "chaos_run_aborted", experiment="ok", slo="") == 0
    assert value(samples, "chaos_run_faults_injected", experiment="ok") == 0
    assert not any(name == "chaos_run_time_to_abort_seconds" for name, _ in samples)


def test_render_rejects_bad_extra_labels() -> None:
    record = aborted_record()
    with pytest.raises(InvalidInput, match="'bad-name' is not a valid metric label name"):
        render_run_metrics(record, {"bad-name": "x"})
    with pytest.raises(InvalidInput, match="clashes"):
        render_run_metrics(record, {"probe": "x"})
    # the record's experiment name always wins over an extra label
    samples, _ = parse(render_run_metrics(record, {"experiment": "other"}))
    assert all(("experiment", "demo-latency") in labels for _, labels in samples)


def test_grouping_path_encoding() -> None:
    assert grouping_path("chaos", {"experiment": "demo"}) == "/metrics/job/chaos/experiment/demo"
    encoded = base64.urlsafe_b64encode(b"ci/runner 1").decode()
    assert grouping_path("chaos", {"instance": "ci/runner 1"}) == (
        f"/metrics/job/chaos/instance@base64/{encoded}")
    assert grouping_path("chaos", {"instance": ""}) == "/metrics/job/chaos/instance@base64/="
    assert grouping_path("a b", {}) == "/metrics/job/a%20b"
    with pytest.raises(InvalidInput):
        grouping_path("chaos", {"job": "x"})
    with pytest.raises(InvalidInput):
        grouping_path("chaos", {"1bad": "x"})


def _group(groups: list[dict[str, Any]], **labels: str) -> dict[str, Any]:
    for group in groups:
        if group["labels"] == labels:
            return group
    raise AssertionError(f"no group {labels} in {[g['labels'] for g in groups]}")


def test_push_and_read_back(pushgateway: Pushgateway) -> None:
    body = render_run_metrics(aborted_record(), {"team": "payments"})
    grouping = {"experiment": "demo-latency", "instance": "ci/runner 1"}

    async def push() -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            await push_run_metrics(pushgateway.url, "chaos", grouping, body, client=client)

    asyncio.run(push())
    exposed = httpx.get(f"{pushgateway.url}/metrics", timeout=5).text
    pushed = "\n".join(line for line in exposed.splitlines() if line.startswith("chaos_run_"))
    samples, _ = parse(pushed + "\n")
    labels = {"experiment": "demo-latency", "team": "payments", "instance": "ci/runner 1",
              "job": "chaos"}
    assert value(samples, "chaos_run_status", **labels, status="aborted") == 1
    assert value(samples, "chaos_run_time_to_abort_seconds", **labels) == pytest.approx(0.25)
    assert value(samples, "chaos_run_probe_success_ratio", **labels, probe="api") == 0.75
    assert value(samples, "chaos_run_revert_failures", **labels) == 1

    api = httpx.get(f"{pushgateway.url}/api/v1/metrics", timeout=5).json()
    assert api["status"] == "success"
    group = _group(api["data"], job="chaos", experiment="demo-latency", instance="ci/runner 1")
    aborted = group["chaos_run_aborted"]
    assert aborted["type"] == "GAUGE"
    assert aborted["metrics"][0]["labels"]["slo"] == "latency"
    assert float(aborted["metrics"][0]["value"]) == 1

    # a second push to the same grouping key replaces the first (PUT semantics)
    passed = RunRecord(run_id="r2", experiment="demo-latency", status=Status.PASSED,
                       started_at="2026-11-22T00:40:00Z", ended_at="2026-11-22T00:40:05Z")
    asyncio.run(push_run_metrics(pushgateway.url, "chaos", grouping,
                                 render_run_metrics(passed, {"team": "payments"})))
    api = httpx.get(f"{pushgateway.url}/api/v1/metrics", timeout=5).json()
    group = _group(api["data"], job="chaos", experiment="demo-latency", instance="ci/runner 1")
    assert "chaos_run_time_to_abort_seconds" not in group
    statuses = {m["labels"]["status"]: float(m["value"])
                for m in group["chaos_run_status"]["metrics"]}
    assert statuses["passed"] == 1 and statuses["aborted"] == 0


def test_push_refused_is_a_platform_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PlatformError) as info:
        asyncio.run(push_run_metrics(url, "chaos", {"experiment": "x"}, "x 1\n"))
    assert str(info.value).startswith(
        f"pushing run metrics to {url}/metrics/job/chaos/experiment/x failed: connection refused")
    assert "--pushgateway" in str(info.value)


def test_push_rejected_body_is_a_platform_error(pushgateway: Pushgateway) -> None:
    with pytest.raises(PlatformError) as info:
        asyncio.run(push_run_metrics(pushgateway.url, "chaos", {"experiment": "bad"},
                                     "this is { not the text format\n"))
    message = str(info.value)
    assert "failed: HTTP 400: " in message
    assert len(message) > len("failed: HTTP 400: ") + 10  # the gateway's reason is included


def test_push_to_a_bad_url_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="is not an http"):
        asyncio.run(push_run_metrics("localhost:9091", "chaos", {}, "x 1\n"))
