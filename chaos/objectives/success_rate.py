"""``successRate: ">= 99%"``: the fraction of ok samples in the window."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.journal.record import SampleRecord

from chaos.objectives.contract import _Base


@dataclass(frozen=True)
class SuccessRate(_Base):
    def observe(self, samples: Sequence[SampleRecord]) -> tuple[float, int]:
        if not samples:
            return math.nan, 0
        return sum(1 for s in samples if s.ok) / len(samples), len(samples)


OBJECTIVES = (SuccessRate("successRate", "percent",
                          "fraction of ok samples in the window, e.g. \">= 99%\""),)
