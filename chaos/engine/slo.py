"""SLO arithmetic and the guard that judges every sample as it arrives.

An SLO looks at one probe's samples inside a sliding ``window`` and computes an observed value:
success rate (fraction of ok samples), a latency percentile (nearest rank over the samples that
recorded a latency) or the current run of consecutive failures. The guard evaluates an SLO after
each sample of its probe; ``abortAfter: N`` consecutive breaching evaluations make a breach.
Pure logic: no clocks, no I/O.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from chaos.journal.record import SampleRecord
from chaos.model.experiment import LATENCY_OBJECTIVES, SloSpec


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct% of values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def observe(slo: SloSpec, samples: Iterable[SampleRecord]) -> tuple[float, int]:
    """The SLO's observed value over ``samples`` and how many samples it used."""
    items = list(samples)
    objective = slo.objective
    if objective == "success_rate":
        if not items:
            return math.nan, 0
        return sum(1 for s in items if s.ok) / len(items), len(items)
    if objective in LATENCY_OBJECTIVES:
        latencies = [s.latency for s in items if s.latency is not None]
        return percentile(latencies, LATENCY_OBJECTIVES[objective]), len(latencies)
    # consecutive_failures: the current streak, counted back from the newest sample
    streak = 0
    for sample in reversed(items):
        if sample.ok:
            break
        streak += 1
    return float(streak), len(items)


def format_observed(slo: SloSpec, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "no data"
    if slo.objective == "success_rate":
        return f"{value * 100:.1f}%"
    if slo.objective in LATENCY_OBJECTIVES:
        return f"{value * 1000:.0f}ms"
    return f"{value:g}"


@dataclass(frozen=True)
class Evaluation:
    slo: SloSpec
    t: float
    observed: float
    samples_used: int
    holds: bool
    streak: int  # consecutive breaching evaluations so far

    @property
    def breached(self) -> bool:
        return not self.holds and self.streak >= self.slo.abort_after

    def describe(self) -> str:
        return (
            f"SLO '{self.slo.name}' on probe '{self.slo.probe}': observed "
            f"{format_observed(self.slo, self.observed)}, objective {self.slo.threshold}"
            f" over {self.slo.window:g}s"
        )


class SloTracker:
    """Sliding window and breach streak for one SLO."""

    def __init__(self, slo: SloSpec) -> None:
        self.slo = slo
        self.window: deque[SampleRecord] = deque()
        self.streak = 0
        self.evaluations = 0
        self.breaching = 0

    def reset(self) -> None:
        """Forget the window (used when the recovery phase starts judging afresh)."""
        self.window.clear()
        self.streak = 0

    def add(self, sample: SampleRecord) -> Evaluation | None:
        self.window.append(sample)
        horizon = sample.t - self.slo.window
        while self.window and self.window[0].t <= horizon:
            self.window.popleft()
        return self.evaluate(sample.t)

    def evaluate(self, t: float) -> Evaluation | None:
        observed, used = observe(self.slo, self.window)
        if used < self.slo.min_samples:
            return None
        self.evaluations += 1
        holds = self.slo.threshold.holds(observed)
        if holds:
            self.streak = 0
        else:
            self.streak += 1
            self.breaching += 1
        return Evaluation(self.slo, t, observed, used, holds, self.streak)


class Guard:
    """Routes each sample to the SLOs on its probe and reports the first breach."""

    def __init__(self, slos: Iterable[SloSpec]) -> None:
        self.trackers = [SloTracker(s) for s in slos]
        self._by_probe: dict[str, list[SloTracker]] = {}
        for tracker in self.trackers:
            self._by_probe.setdefault(tracker.slo.probe, []).append(tracker)
        self.last: dict[str, Evaluation] = {}

    def add(self, probe: str, sample: SampleRecord) -> list[Evaluation]:
        """Judge the sample; return the evaluations that are breaches (possibly several)."""
        breaches: list[Evaluation] = []
        for tracker in self._by_probe.get(probe, []):
            evaluation = tracker.add(sample)
            if evaluation is None:
                continue
            self.last[tracker.slo.name] = evaluation
            if evaluation.breached:
                breaches.append(evaluation)
        return breaches

    def reset(self) -> None:
        for tracker in self.trackers:
            tracker.reset()
        self.last.clear()
