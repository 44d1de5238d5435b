"""``latencyP50|P90|P95|P99: "< 300ms"``: a nearest-rank percentile over the samples of the
window that recorded a latency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.journal.record import SampleRecord

from chaos.objectives.contract import _Base, percentile


@dataclass(frozen=True)
class LatencyPercentile(_Base):
    pct: float = 50.0

    def observe(self, samples: Sequence[SampleRecord]) -> tuple[float, int]:
        latencies = [s.latency for s in samples if s.latency is not None]
        return percentile(latencies, self.pct), len(latencies)


OBJECTIVES = tuple(
    LatencyPercentile(f"latencyP{pct}", "duration",
                      f"p{pct} latency of the window's samples, e.g. \"< 300ms\"", pct=pct)
    for pct in (50, 90, 95, 99)
)
