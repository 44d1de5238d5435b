"""SLO objective kinds, found through one registry.

Each module owns one kind: its YAML key(s), threshold unit, arithmetic over a window of samples
and formatting. The experiment model builds ``SloSpec``'s keys from :data:`OBJECTIVES`, the
guard calls :meth:`Objective.observe`, and every report formats values with
:func:`format_observed`; nothing else names an objective. Adding one is a module and one line
here.
"""

from __future__ import annotations

from chaos.objectives import consecutive_failures, latency, success_rate
from chaos.objectives.contract import Objective, ThresholdUnit, format_value, percentile

#: The registry: every objective key, in the order docs and schemas list them.
OBJECTIVES: tuple[Objective, ...] = (
    *success_rate.OBJECTIVES,
    *latency.OBJECTIVES,
    *consecutive_failures.OBJECTIVES,
)
_BY_KEY = {o.key: o for o in OBJECTIVES}


def objective(key: str) -> Objective:
    """The objective for a YAML/journal key such as ``latencyP95``; KeyError if unknown."""
    return _BY_KEY[key]


def format_observed(key: str, value: float | None) -> str:
    """An observed value of objective ``key`` as a person reads it; plain for an unknown key
    (a journal written by another version)."""
    found = _BY_KEY.get(key)
    return format_value(found.unit if found else "number", value)


__all__ = ["OBJECTIVES", "Objective", "ThresholdUnit", "format_observed", "objective",
           "percentile"]
