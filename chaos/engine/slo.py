"""SLO arithmetic and the guard that judges every sample as it arrives.

An SLO looks at one probe's samples inside a sliding ``window`` and computes an observed value:
success rate (fraction of ok samples), a latency percentile (nearest rank over the samples that
recorded a latency) or the current run of consecutive failures. The guard evaluates an SLO after
each sample of its probe; ``abortAfter: N`` consecutive breaching evaluations make a breach.
Pure logic: no clocks, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from chaos.journal.record import SampleRecord
from chaos.model.experiment import SloSpec
from chaos.objectives import format_observed as _format
from chaos.objectives import percentile


def observe(slo: SloSpec, samples: Iterable[SampleRecord]) -> tuple[float, int]:
    """The SLO's observed value over ``samples`` and how many samples it used."""
    return slo.objective.observe(list(samples))


def format_observed(slo: SloSpec, value: float | None) -> str:
    return _format(slo.objective.key, value)


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

__all__ = ["Evaluation", "Guard", "SloTracker", "format_observed", "observe", "percentile"]
