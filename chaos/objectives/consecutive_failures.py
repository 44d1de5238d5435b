"""``consecutiveFailures: "< 3"``: the current run of failed samples, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.journal.record import SampleRecord

from chaos.objectives.contract import _Base


@dataclass(frozen=True)
class ConsecutiveFailures(_Base):
    def observe(self, samples: Sequence[SampleRecord]) -> tuple[float, int]:
        streak = 0
        for sample in reversed(samples):
            if sample.ok:
                break
            streak += 1
        return float(streak), len(samples)


OBJECTIVES = (ConsecutiveFailures("consecutiveFailures", "number",
                                  "the current streak of failed samples, e.g. \"< 3\"",
                                  needs_window=False),)
