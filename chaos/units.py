"""Values with units (durations, percentages, comparisons, byte rates) and URLs, parsed and
formatted.

Pure functions with no dependencies, shared by the experiment models, the engine and the reports
(which must load fast and without pydantic).

Durations are strings with units ("250ms", "1m30s", "2h"); a bare number is rejected because
"5" could mean seconds or milliseconds, and guessing is how faults outlive their welcome.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h)")
_UNIT_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Return seconds for a duration string such as ``"1m30s"`` or ``"250ms"``."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"expected a duration string with a unit such as '500ms', '10s' or '2m', got {value!r}"
        )
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"'{value}' is not a duration: use a number and a unit (us, ms, s, m, h), "
            "for example '500ms', '10s' or '1m30s'"
        )
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly and losslessly enough for a person: 0.25 -> '250ms'."""
    if seconds < 1 and seconds != 0:
        ms = seconds * 1000
        return f"{ms:g}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"


def parse_percent(value: object) -> float:
    """Return a fraction in [0, 1] for ``"99.5%"``."""
    if not isinstance(value, str) or not value.strip().endswith("%"):
        raise ValueError(f"expected a percentage such as '99%' or '12.5%', got {value!r}")
    try:
        number = float(value.strip()[:-1])
    except ValueError:
        raise ValueError(f"'{value}' is not a percentage: use a number followed by %") from None
    if not 0 <= number <= 100:
        raise ValueError(f"'{value}' is out of range: a percentage is between 0% and 100%")
    return number / 100


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Threshold:
    """A comparison such as ``>= 99%`` or ``< 300ms``; ``value`` is in base units."""

    op: str
    value: float
    text: str

    def holds(self, observed: float) -> bool:
        if math.isnan(observed):
            return False
        return _OPS[self.op](observed, self.value)

    def __str__(self) -> str:
        return self.text


_THRESHOLD = re.compile(r"^\s*(>=|<=|==|>|<)\s*(.+?)\s*$")


def threshold_parser(kind: str) -> Callable[[object], Threshold]:
    """Build a parser for comparisons whose right side is a ``kind`` (percent|duration|number)."""

    def parse(value: object) -> Threshold:
        if isinstance(value, Threshold):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected a comparison such as '>= 99%' or '< 300ms', got {value!r}")
        match = _THRESHOLD.match(value)
        if not match:
            raise ValueError(
                f"'{value}' is not a comparison: start with one of >=, <=, >, <, == "
                "followed by a value, for example '>= 99%' or '< 300ms'"
            )
        op, rhs = match.groups()
        if kind == "percent":
            number = parse_percent(rhs)
        elif kind == "duration":
            number = parse_duration(rhs)
        else:
            try:
                number = float(rhs)
            except ValueError:
                raise ValueError(f"'{rhs}' is not a number") from None
        return Threshold(op=op, value=number, text=f"{op} {rhs}")

    return parse


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)\s*$", re.I)
_RATE_BYTES_PER_S = {
    "bit": 1 / 8,
    "kbit": 1000 / 8,
    "mbit": 1_000_000 / 8,
    "gbit": 1_000_000_000 / 8,
    "bps": 1.0,
    "kbps": 1000.0,
    "mbps": 1_000_000.0,
    "gbps": 1_000_000_000.0,
}


def parse_rate(value: object) -> float:
    """Return bytes per second for ``"1mbit"`` (tc style bits) or ``"64kbps"`` (bytes)."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(
            f"expected a rate such as '1mbit' (bits/s) or '64kbps' (bytes/s), got {value!r}"
        )
    return float(match.group(1)) * _RATE_BYTES_PER_S[match.group(2).lower()]


__all__ = [
    "Threshold",
    "check_http_url",
    "format_duration",
    "parse_duration",
    "parse_percent",
    "parse_rate",
    "threshold_parser",
]


def check_http_url(value: object, example: str = "http://host:port/path") -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host; raise ValueError otherwise.

    The one URL rule for every URL the project takes (probes, rollbacks, Prometheus, the
    Pushgateway flag), so a URL accepted in one place is never refused in another."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value or value != value.strip() or any(
            c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an http(s) URL: write it as {example}")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"'{value}' is not an http(s) URL (bad port): write it as {example}"
                         ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not an http(s) URL: write it as {example}")
    if port == 0:
        raise ValueError(f"'{value}': port 0 is not a port a server listens on")
    return value
