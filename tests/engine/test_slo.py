import math

import pytest

from chaos.engine.slo import Guard, observe, percentile
from chaos.journal.record import SampleRecord
from chaos.model.experiment import SloSpec


def s(t: float, ok: bool = True, latency: float | None = 0.1) -> SampleRecord:
    return SampleRecord(t=t, ok=ok, latency=latency, detail="", phase="baseline")


def slo(**kw: object) -> SloSpec:
    return SloSpec.model_validate({"name": "x", "probe": "p", **kw})


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_success_rate_over_window() -> None:
    spec = slo(successRate=">= 75%", window="10s")
    observed, used = observe(spec, [s(1), s(2, ok=False), s(3), s(4)])
    assert observed == 0.75 and used == 4
    assert spec.threshold.holds(observed)


def test_latency_percentile_counts_only_samples_with_latency() -> None:
    spec = slo(latencyP90="< 300ms")
    observed, used = observe(spec, [s(1, latency=0.1)] * 9 + [s(2, latency=None)])
    assert observed == pytest.approx(0.1) and used == 9


def test_consecutive_failures_is_the_current_streak() -> None:
    spec = slo(consecutiveFailures="< 3")
    assert observe(spec, [s(1, ok=False), s(2), s(3, ok=False), s(4, ok=False)])[0] == 2


def test_window_slides() -> None:
    guard = Guard([slo(successRate=">= 50%", window="2s")])
    guard.add("p", s(0.5, ok=False))
    guard.add("p", s(1.0, ok=False))
    assert guard.add("p", s(1.5)) != []  # 1/3 < 50%
    # at t=3.1 the two failures (t<=1.1) have left the window
    assert guard.add("p", s(3.1)) == []
    assert guard.last["x"].observed == 1.0


def test_abort_after_counts_consecutive_breaching_evaluations() -> None:
    guard = Guard([slo(latencyP50="< 100ms", window="10s", abortAfter=3)])
    assert guard.add("p", s(1, latency=0.5)) == []
    assert guard.add("p", s(2, latency=0.5)) == []
    breaches = guard.add("p", s(3, latency=0.5))
    assert len(breaches) == 1 and breaches[0].streak == 3


def test_min_samples_defers_judgement() -> None:
    guard = Guard([slo(successRate=">= 99%", window="10s", minSamples=3)])
    assert guard.add("p", s(1, ok=False)) == []
    assert guard.add("p", s(2, ok=False)) == []
    assert guard.add("p", s(3, ok=False)) != []


def test_samples_of_other_probes_are_ignored() -> None:
    guard = Guard([slo(successRate=">= 99%")])
    assert guard.add("other", s(1, ok=False)) == []
