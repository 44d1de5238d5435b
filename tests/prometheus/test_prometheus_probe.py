"""The prometheus probe against a real Prometheus scraping the real demo service."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest
from promkit import Prometheus, free_port, probe_spec, sample
from pydantic import ValidationError

from chaos.engine.protocols import Outcome
from chaos.errors import InvalidInput
from chaos.model import load_experiment
from chaos.model.experiment import Experiment, ProbeSpec
from chaos.probes.prometheus import PrometheusProbeDriver, check_prometheus_env
from chaos.targets.local import LocalPlatform

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------------- the model


def test_model_accepts_a_full_prometheus_probe() -> None:
    spec = ProbeSpec.model_validate({"name": "p", "interval": "2s", "prometheus": {
        "url": "https://prom.example:9090/prefix", "query": "up", "expect": ">= 0.99",
        "timeout": "1s", "basicAuth": {"usernameEnv": "PROM_USER", "passwordEnv": "PROM_PASS"},
        "verifyTls": False, "caFile": "/etc/ssl/ca.pem"}})
    assert spec.kind.key == "prometheus"
    assert spec.timeout == 1.0
    assert spec.prometheus is not None
    assert spec.prometheus.expect.holds(0.995)
    assert not spec.prometheus.expect.holds(0.5)
    assert probe_spec("http://x:9090", "up").prometheus.timeout == 5.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("prom", "message"),
    [
        ({"url": "prom:9090", "query": "up", "expect": "== 1"}, "is not an http(s) URL"),
        ({"url": "http://p:9090", "query": "up"}, "expect"),
        ({"url": "http://p:9090", "query": "up", "expect": "about 1"}, "is not a comparison"),
        ({"url": "http://p:9090", "query": "up", "expect": "== 1", "bearerTokenEnv": "A",
          "basicAuth": {"usernameEnv": "U", "passwordEnv": "P"}}, "not both"),
        ({"url": "http://p:9090", "query": "up", "expect": "== 1", "bearerTokenEnv": "1bad"},
         "String should match pattern"),
        ({"url": "http://p:9090", "query": "up", "expect": "== 1", "step": "1s"},
         "Extra inputs are not permitted"),
    ],
)
def test_model_rejects_bad_prometheus_probes(prom: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ProbeSpec.model_validate({"name": "p", "prometheus": prom})


def test_exactly_one_kind_still_enforced() -> None:
    with pytest.raises(ValidationError, match="it has http and prometheus"):
        ProbeSpec.model_validate({"name": "p", "http": {"url": "http://x/"}, "prometheus": {
            "url": "http://p:9090", "query": "up", "expect": "== 1"}})


def test_missing_auth_env_is_invalid_input_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHAOS_TEST_PROM_TOKEN", raising=False)
    monkeypatch.delenv("CHAOS_TEST_PROM_USER", raising=False)
    monkeypatch.setenv("CHAOS_TEST_PROM_PASS", "secret")
    token = probe_spec("http://p:9090", "up", bearerTokenEnv="CHAOS_TEST_PROM_TOKEN")
    basic = ProbeSpec.model_validate({"name": "basic", "prometheus": {
        "url": "http://p:9090", "query": "up", "expect": "== 1",
        "basicAuth": {"usernameEnv": "CHAOS_TEST_PROM_USER", "passwordEnv": "CHAOS_TEST_PROM_PASS"}}})
    with pytest.raises(InvalidInput) as info:
        check_prometheus_env([token, basic])
    text = str(info.value)
    assert "probe 'prom': env var CHAOS_TEST_PROM_TOKEN is not set" in text
    assert "probe 'basic': env var CHAOS_TEST_PROM_USER is not set" in text
    assert "CHAOS_TEST_PROM_PASS" not in text
    with pytest.raises(InvalidInput, match="CHAOS_TEST_PROM_TOKEN is not set"):
        PrometheusProbeDriver(token, httpx.AsyncClient())
    monkeypatch.setenv("CHAOS_TEST_PROM_TOKEN", "t0ken")
    check_prometheus_env(token)  # set now: no error
    check_prometheus_env(probe_spec("http://p:9090", "up", caFile=__file__))
    with pytest.raises(InvalidInput, match=r"caFile /nonexistent/ca\.pem does not exist"):
        check_prometheus_env(probe_spec("http://p:9090", "up", caFile="/nonexistent/ca.pem"))


# ------------------------------------------------------------------ against a real Prometheus


def test_ok_on_up(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url, 'up{job="demo"}', "== 1")
    assert outcome.ok, outcome.detail
    assert outcome.detail == "value 1 (== 1)"
    assert outcome.latency is not None and 0 < outcome.latency < 2


def test_ok_on_a_scalar_and_with_a_trailing_slash(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url + "/", "scalar(up{job='demo'}) * 0.5", "< 0.6")
    assert outcome.ok, outcome.detail
    assert outcome.detail == "value 0.5 (< 0.6)"


def test_threshold_not_met(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url, 'up{job="demo"}', "> 1")
    assert not outcome.ok
    assert outcome.detail == "value 1 does not meet > 1"
    assert outcome.latency is not None


def test_empty_result(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url, 'up{job="no-such-job"}')
    assert not outcome.ok
    assert outcome.detail == "query returned no series: check the metric name and labels"


def test_several_series(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url, "up")
    assert not outcome.ok
    assert outcome.detail.startswith("query returned 2 series; aggregate it, e.g. sum(...)")
    assert 'job="demo"' in outcome.detail and 'job="prometheus"' in outcome.detail


def test_bad_query_gives_prometheus_error(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url, "sum(up")
    assert not outcome.ok
    assert outcome.detail.startswith("HTTP 400: bad_data: ")
    assert "parse error" in outcome.detail


def test_range_vector_is_explained(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url, 'up{job="demo"}[1m]')
    assert not outcome.ok
    assert "range vector (matrix)" in outcome.detail


@pytest.mark.parametrize(
    ("query", "detail"),
    [("vector(0) / vector(0)", "value is NaN"), ("vector(1) / 0", "value is +Inf"),
     ("-1 / 0", "value is -Inf")],
)
def test_nan_and_inf_fail(prometheus: Prometheus, query: str, detail: str) -> None:
    outcome = sample(prometheus.url, query, "< 1")
    assert not outcome.ok
    assert outcome.detail.startswith(detail), outcome.detail


def test_wrong_base_url_is_explained(prometheus: Prometheus) -> None:
    outcome = sample(prometheus.url + "/not-prometheus", "up")
    assert not outcome.ok
    assert outcome.detail.startswith("HTTP 404 (is ")


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    outcome = sample(url, "up")
    assert not outcome.ok
    assert outcome.detail == f"prometheus {url}: connection refused"


def test_timeout_is_a_failed_sample() -> None:
    # A real socket that accepts connections (the kernel's backlog) but never answers.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        outcome = sample(url, "up", timeout="300ms")
        assert time.monotonic() - started < 2
    assert not outcome.ok
    assert outcome.detail.startswith(f"prometheus {url}: timed out")
    assert outcome.latency is not None and outcome.latency >= 0.25


def test_auth_header_and_own_client(prometheus: Prometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus ignores credentials it does not require: the probe still works with them, and
    with verifyTls false it owns (and closes) a client of its own."""
    monkeypatch.setenv("CHAOS_TEST_PROM_TOKEN", "t0ken")
    spec = probe_spec(prometheus.url, 'up{job="demo"}', bearerTokenEnv="CHAOS_TEST_PROM_TOKEN",
                      verifyTls=False)

    async def run() -> tuple[Outcome, bool, bool]:
        async with httpx.AsyncClient() as shared:
            driver = PrometheusProbeDriver(spec, shared)
            owns = driver.owns_client
            outcome = await driver.sample()
            await driver.aclose()
            await driver.aclose()  # idempotent
            shared_open = not shared.is_closed
            return outcome, owns, shared_open

    outcome, owns, shared_open = asyncio.run(run())
    assert outcome.ok, outcome.detail
    assert owns and shared_open
    plain = PrometheusProbeDriver(probe_spec(prometheus.url, "up"), httpx.AsyncClient())
    assert not plain.owns_client


def _experiment(url: str) -> Experiment:
    return Experiment.model_validate({
        "apiVersion": "chaos/v1", "kind": "Experiment", "metadata": {"name": "prom"},
        "spec": {"probes": [{"name": "prom", "prometheus": {
            "url": url, "query": 'up{job="demo"}', "expect": "== 1"}}]}})


def test_local_platform_wires_the_probe(prometheus: Prometheus) -> None:
    experiment = _experiment(prometheus.url)

    async def run() -> Outcome:
        platform = LocalPlatform(experiment)
        try:
            probe = platform.probe(experiment.spec.probes[0])
            assert isinstance(probe, PrometheusProbeDriver)
            return await probe.sample()
        finally:
            await platform.close()

    outcome = asyncio.run(run())
    assert outcome.ok, outcome.detail


# ----------------------------------------------------------------- the example experiment


def _traffic(base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(trust_env=False) as client:
        while time.monotonic() < deadline:
            client.get(f"{base}/work")
            client.get(f"{base}/health")
            time.sleep(0.02)


def test_example_experiment_queries_work_against_scraped_demo(prometheus: Prometheus) -> None:
    """The PromQL SLOs of experiments/demo-prometheus.yaml, evaluated by the driver against a
    Prometheus that scrapes the real demo service, while traffic flows."""
    env = {"CHAOS_PROMETHEUS_URL": prometheus.url, "CHAOS_DEMO_PORT": str(prometheus.demo.port)}
    experiment = load_experiment("experiments/demo-prometheus.yaml", env=env)
    probes = {p.name: p for p in experiment.spec.probes if p.prometheus is not None}
    assert set(probes) == {"error-ratio", "work-latency"}
    check_prometheus_env(experiment.spec.probes)

    async def evaluate() -> dict[str, Outcome]:
        async with httpx.AsyncClient(trust_env=False) as client:
            drivers = {n: PrometheusProbeDriver(s, client) for n, s in probes.items()}
            outcomes: dict[str, Outcome] = {}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                await asyncio.to_thread(_traffic, prometheus.demo.url, 0.5)
                outcomes = {n: await d.sample() for n, d in drivers.items()}
                if all(o.ok for o in outcomes.values()):
                    break
            return outcomes

    outcomes = asyncio.run(evaluate())
    assert outcomes["error-ratio"].ok, outcomes["error-ratio"].detail
    assert outcomes["error-ratio"].detail == "value 0 (< 0.01)"
    assert outcomes["work-latency"].ok, outcomes["work-latency"].detail
    # the same error-ratio query judged against a stricter bound fails with the observed value
    strict = probes["error-ratio"].prometheus
    assert strict is not None
    failing = sample(prometheus.url, strict.query, "> 0.5")
    assert failing.detail == "value 0 does not meet > 0.5"
