"""Pydantic field types for values with units (the parsing itself lives in :mod:`chaos.units`).

Durations are strings with units ("250ms", "1m30s", "2h"); a bare number is rejected because
"5" could mean seconds or milliseconds, and guessing is how faults outlive their welcome.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from chaos.units import (
    Threshold,
    format_duration,
    parse_duration,
    parse_percent,
    parse_rate,
    threshold_parser,
)


def _ser_duration(seconds: float) -> str:
    return format_duration(seconds)


_DURATION_SCHEMA = WithJsonSchema(
    {"type": "string", "pattern": r"^(\d+(\.\d+)?(us|ms|s|m|h))+$", "examples": ["250ms", "10s"]}
)
_PERCENT_SCHEMA = WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?%$"})
_THRESHOLD_SCHEMA = WithJsonSchema(
    {"type": "string", "pattern": r"^\s*(>=|<=|==|>|<)\s*\S+", "examples": [">= 99%", "< 300ms"]}
)

Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(_ser_duration), _DURATION_SCHEMA
]
Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    PlainSerializer(lambda f: f"{f * 100:g}%"),
    _PERCENT_SCHEMA,
]
Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    WithJsonSchema({"type": "string", "examples": ["1mbit", "64kbps"]}),
]


def _ser_threshold(t: Threshold) -> str:
    return t.text


def _threshold(kind: str) -> tuple[BeforeValidator, PlainSerializer, WithJsonSchema]:
    return (
        BeforeValidator(threshold_parser(kind)),
        PlainSerializer(_ser_threshold),
        _THRESHOLD_SCHEMA,
    )


PercentThreshold = Annotated[Threshold, *_threshold("percent")]
DurationThreshold = Annotated[Threshold, *_threshold("duration")]
NumberThreshold = Annotated[Threshold, *_threshold("number")]

__all__ = [
    "Duration",
    "DurationThreshold",
    "NumberThreshold",
    "Percent",
    "PercentThreshold",
    "Rate",
    "Threshold",
    "format_duration",
    "parse_duration",
    "parse_percent",
    "parse_rate",
    "threshold_parser",
]


