"""What an SLO objective kind is: its YAML key, the unit of its threshold, how it turns a window
of samples into one observed value, and how that value reads to a person.

Pure: no pydantic, no clocks, no I/O, so the reports (``chaos report``) format values without
loading the experiment models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from chaos.journal.record import SampleRecord

ThresholdUnit = Literal["percent", "duration", "number"]


class Objective(Protocol):
    """One SLO objective key (``successRate``, ``latencyP95``, ...)."""

    @property
    def key(self) -> str:
        """The YAML key, camelCase; also how the journal names the objective."""
        ...

    @property
    def unit(self) -> ThresholdUnit:
        """What the right side of the threshold is: ``>= 99%``, ``< 300ms``, ``< 3``."""
        ...

    @property
    def needs_window(self) -> bool:
        """False when the value does not depend on the window (a failure streak)."""
        ...

    @property
    def description(self) -> str: ...

    def observe(self, samples: Sequence[SampleRecord]) -> tuple[float, int]:
        """The observed value over ``samples`` and how many samples it used (NaN: no data)."""
        ...


def format_value(unit: ThresholdUnit, value: float | None) -> str:
    """An observed value in its unit: 87.5%, 412ms, 3; ``no data`` for none or NaN."""
    if value is None or math.isnan(value):
        return "no data"
    if unit == "percent":
        return f"{value * 100:.1f}%"
    if unit == "duration":
        return f"{value * 1000:.0f}ms"
    return f"{value:g}"


@dataclass(frozen=True)
class _Base:
    key: str
    unit: ThresholdUnit
    description: str
    needs_window: bool = True


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct% of values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
