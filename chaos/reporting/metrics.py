"""A run record as Prometheus metrics (text exposition format 0.0.4), for a Pushgateway.

Pure: :func:`render_run_metrics` turns a :class:`~chaos.journal.record.RunRecord` into text and
does no I/O. Every series carries ``experiment`` plus the caller's extra labels. The metrics, their
types and labels are documented in ``docs/metrics.md``; they describe *one* run (the last one
pushed for the grouping key), so they are gauges, not counters.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping

from chaos.errors import InvalidInput
from chaos.journal.outcome import outcome_of
from chaos.journal.record import RunRecord, Status, StopCause

__all__ = ["CONTENT_TYPE", "METRIC_NAMES", "check_label_name", "render_run_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# name -> (type, help); the order is the order of the output
_FAMILIES: dict[str, tuple[str, str]] = {
    "chaos_run_status": (
        "gauge", "1 for the status the run ended with, 0 for the other statuses."),
    "chaos_run_duration_seconds": ("gauge", "Wall-clock duration of the run."),
    "chaos_run_faults_injected": ("gauge", "Faults injected by the run."),
    "chaos_run_faults_reverted": ("gauge", "Faults the run reverted successfully."),
    "chaos_run_exit_code": (
        "gauge", "The run's exit code (0 passed, 1 deviated or error, 3 aborted, 4 revert "
        "failed, 130 interrupted; see docs/metrics.md)."),
    "chaos_run_faults_not_in_effect": (
        "gauge", "Faults whose effect was not seen on their target: the run cannot pass."),
    "chaos_run_revert_failures": (
        "gauge", "Faults whose revert failed: they may still be active (see chaos recover)."),
    "chaos_run_aborted": (
        "gauge", "1 when the SLO guard (or a limit) aborted the run; slo names the breached SLO."),
    "chaos_run_time_to_abort_seconds": (
        "gauge", "From the abort decision (the breaching sample) to the last fault reverted."),
    "chaos_run_probe_success_ratio": (
        "gauge", "Share of successful samples of each probe over the whole run (0-1)."),
    "chaos_run_last_timestamp_seconds": (
        "gauge", "Unix time at which the run ended (or started, if it never ended)."),
}
METRIC_NAMES = tuple(_FAMILIES)


def check_label_name(name: str) -> None:
    """Raise InvalidInput unless ``name`` is a valid, non-reserved Prometheus label name."""
    if not _LABEL_NAME.match(name) or name.startswith("__"):
        raise InvalidInput(
            f"'{name}' is not a valid metric label name",
            hint="use letters, digits and '_', not starting with a digit or '__'",
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


def _unix(iso_time: str | None) -> float | None:
    if not iso_time:
        return None
    try:
        parsed = dt.datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


class _Writer:
    def __init__(self, base: Mapping[str, str]) -> None:
        self._base = dict(base)
        self._series: dict[str, list[str]] = {name: [] for name in _FAMILIES}

    def add(self, name: str, value: float, **labels: str) -> None:
        merged = {**self._base, **labels}
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in merged.items())
        self._series[name].append(f"{name}{{{text}}} {_number(value)}")

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text) in _FAMILIES.items():
            if not self._series[name]:
                continue
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines += self._series[name]
        return "\n".join(lines) + "\n"


def _base_labels(record: RunRecord, labels: Mapping[str, str]) -> dict[str, str]:
    base = {"experiment": record.experiment}
    for name, value in labels.items():
        check_label_name(name)
        if name == "experiment":
            continue  # the record's experiment name wins
        if name in ("status", "slo", "probe"):
            raise InvalidInput(
                f"extra metric label '{name}' clashes with a label of the run metrics",
                hint="choose another name",
            )
        base[name] = value
    return base


def _count(items: Iterable[object]) -> int:
    return sum(1 for item in items if item)


def render_run_metrics(record: RunRecord, labels: dict[str, str]) -> str:
    """The run's metrics in the Prometheus text format; ``labels`` are added to every series.

    Raises InvalidInput for an invalid extra label name or one that clashes with
    ``status``, ``slo`` or ``probe``.
    """
    out = _Writer(_base_labels(record, labels))
    for status in Status:
        if status is Status.RUNNING and record.status is not Status.RUNNING:
            continue
        out.add("chaos_run_status", 1.0 if record.status is status else 0.0, status=str(status))

    started, ended = _unix(record.started_at), _unix(record.ended_at)
    duration = record.duration
    if duration is None and started is not None and ended is not None:
        duration = max(0.0, ended - started)
    if duration is not None:
        out.add("chaos_run_duration_seconds", duration)

    out.add("chaos_run_faults_injected", _count(f.injected_at for f in record.faults))
    out.add("chaos_run_faults_reverted",
            _count(f.reverted_at for f in record.faults if not f.one_shot))
    out.add("chaos_run_faults_not_in_effect", _count(f.not_in_effect for f in record.faults))
    out.add("chaos_run_revert_failures", _count(f.revert_error for f in record.faults))
    out.add("chaos_run_exit_code", float(outcome_of(record).exit_code))

    aborted = record.abort is not None and record.abort.cause in (
        StopCause.SLO_BREACH, StopCause.MAX_DURATION)
    slo = (record.abort.slo or "") if (aborted and record.abort is not None) else ""
    out.add("chaos_run_aborted", 1.0 if aborted else 0.0, slo=slo)
    if aborted and record.abort is not None:
        abort_at = _unix(record.abort.at)
        reverts = [t for t in (_unix(f.reverted_at) for f in record.faults if not f.one_shot)
                   if t is not None]
        if abort_at is not None and reverts and max(reverts) >= abort_at:
            out.add("chaos_run_time_to_abort_seconds", round(max(reverts) - abort_at, 6))

    for probe, samples in record.probes.items():
        if samples:
            ratio = sum(1 for s in samples if s.ok) / len(samples)
            out.add("chaos_run_probe_success_ratio", ratio, probe=probe)

    last = ended if ended is not None else started
    if last is not None:
        out.add("chaos_run_last_timestamp_seconds", last)
    return out.render()
