"""The demo service's /metrics: valid text format, counting, thread-safe, scraped by Prometheus."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from promkit import Demo, Prometheus, parse, sample, value

from chaos.demo.service import BUCKETS, Metrics

pytestmark = pytest.mark.timeout(60)

def test_metrics_count_requests_by_path_and_code(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, trust_env=False) as client:
        before, _ = parse(client.get("/metrics").text)
        for _ in range(3):
            assert client.get("/health").status_code == 200
        for _ in range(2):
            assert client.get("/work").status_code == 200
        assert client.get("/nope").status_code == 404  # not an instrumented path
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after, types = parse(response.text)
    assert types == {"chaos_demo_requests_total": "counter",
                     "chaos_demo_request_duration_seconds": "histogram"}

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - before.get((name, frozenset(labels.items())), 0.0)

    assert delta("chaos_demo_requests_total", path="/health", code="200") == 3
    assert delta("chaos_demo_requests_total", path="/work", code="200") == 2
    assert not any(dict(k[1]).get("path") in ("/nope", "/metrics") for k in after)
    for path, n in (("/health", 3), ("/work", 2)):
        assert delta("chaos_demo_request_duration_seconds_count", path=path) == n
        assert delta("chaos_demo_request_duration_seconds_bucket", path=path, le="+Inf") == n
        assert value(after, "chaos_demo_request_duration_seconds_sum", path=path) > 0
        counts = [value(after, "chaos_demo_request_duration_seconds_bucket", path=path,
                        le=repr(b)) for b in BUCKETS]
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] <= value(after, "chaos_demo_request_duration_seconds_count", path=path)


def test_histogram_buckets_and_thread_safety() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.007, 0.3, 3.0):
        metrics.observe("/work", 200, seconds)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: metrics.observe("/health", 503, 0.02), range(4000)))
    samples, _ = parse(metrics.render())
    work = {b: value(samples, "chaos_demo_request_duration_seconds_bucket", path="/work",
                     le=repr(b)) for b in BUCKETS}
    assert work[0.005] == 1 and work[0.01] == 2 and work[0.25] == 2 and work[0.5] == 3
    assert work[2.5] == 3
    assert value(samples, "chaos_demo_request_duration_seconds_bucket", path="/work",
                 le="+Inf") == 4
    assert value(samples, "chaos_demo_request_duration_seconds_sum", path="/work") == (
        pytest.approx(3.308))
    assert value(samples, "chaos_demo_requests_total", path="/health", code="503") == 4000
    assert value(samples, "chaos_demo_request_duration_seconds_count", path="/health") == 4000
    assert value(samples, "chaos_demo_request_duration_seconds_bucket", path="/health",
                 le="0.025") == 4000


def test_service_keeps_its_routes(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, trust_env=False) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.head("/health").status_code == 200
        assert client.get("/").json()["endpoints"] == ["/health", "/work", "/metrics"]
        assert client.get("/nope").json() == {"error": "no route /nope"}


def test_prometheus_scrapes_the_counters(prometheus: Prometheus) -> None:
    with httpx.Client(base_url=prometheus.demo.url, trust_env=False) as client:
        for _ in range(5):
            client.get("/work")
    query = 'sum(chaos_demo_requests_total{job="demo",path="/work",code="200"})'
    outcome = sample(prometheus.url, query, ">= 5")
    for _ in range(30):  # the next scrape is at most a second away
        if outcome.ok:
            break
        asyncio.run(asyncio.sleep(0.2))
        outcome = sample(prometheus.url, query, ">= 5")
    assert outcome.ok, outcome.detail
    histogram = sample(prometheus.url,
                       'sum(chaos_demo_request_duration_seconds_count{path="/work"})', ">= 5")
    assert histogram.ok, histogram.detail
