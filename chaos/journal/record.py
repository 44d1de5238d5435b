"""The run journal of the contract in the design brief, as plain dataclasses and JSON.

Fields other tools rely on: ``run_id``, ``experiment``, ``status`` (passed, deviated, aborted,
interrupted, error), ``exit_code`` and ``verdict``, ``started_at``, ``ended_at``, ``abort`` (or
null, with its ``cause``), ``faults`` (name, kind, targets, injected_at, verified_at, effect,
not_in_effect, reverted_at, revert_error), ``slos`` (verdict and the samples judged on) and
``probes`` (the time series of results). Times are ISO 8601 in UTC; ``t`` fields are seconds since
the run started, which is what charts and arithmetic want.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    DEVIATED = "deviated"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class StopCause(enum.StrEnum):
    """Why a run stopped before its plan was done (``abort.cause`` in the journal)."""

    SLO_BREACH = "slo-breach"
    MAX_DURATION = "max-duration"
    INTERRUPT = "interrupt"
    INJECT_FAILED = "inject-failed"
    NOT_IN_EFFECT = "not-in-effect"
    JOURNAL = "journal-failed"
    PLATFORM = "platform-lost"
    UNEXPECTED = "unexpected-error"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        )
    )


@dataclass
class SampleRecord:
    t: float
    ok: bool
    latency: float | None
    detail: str
    phase: str


@dataclass
class FaultRecord:
    name: str
    kind: str
    description: str
    targets: list[str]
    at: float
    duration: float | None
    one_shot: bool = False
    injected_at: str | None = None
    reverted_at: str | None = None
    inject_error: str | None = None
    revert_error: str | None = None
    revert_state: dict[str, Any] = field(default_factory=dict)
    #: When the effect was seen on the target, what was seen, and seconds from inject to then.
    verified_at: str | None = None
    effect: str | None = None
    effect_seconds: float | None = None
    #: The cause, in words, when the effect was not seen: the run then ends as an error.
    not_in_effect: str | None = None
    #: What was seen on the target after the revert (the effect gone).
    revert_verified: str | None = None
    #: The revert happened but the write-ahead journal could not record it (a full disk).
    journal_error: str | None = None

    @property
    def outstanding(self) -> bool:
        """Injected (or possibly half-injected) and not known to be reverted."""
        if self.one_shot:
            return False
        attempted = self.injected_at is not None or self.inject_error is not None
        return attempted and self.reverted_at is None


@dataclass
class SloRecord:
    name: str
    probe: str
    objective: str
    threshold: str
    window: float
    verdict: str = "not-evaluated"  # passed | breached | no-data | not-evaluated
    observed: float | None = None
    breached_at: str | None = None
    breach_phase: str | None = None
    evaluations: int = 0
    breaching_evaluations: int = 0
    samples: list[SampleRecord] = field(default_factory=list)


@dataclass
class AbortRecord:
    reason: str
    slo: str | None
    observed: float | None
    threshold: str | None
    at: str | None
    t: float
    cause: str = StopCause.SLO_BREACH.value


@dataclass
class RollbackRecord:
    name: str
    ok: bool
    detail: str
    started_at: str | None
    ended_at: str | None


@dataclass
class RunRecord:
    run_id: str
    experiment: str
    experiment_file: str | None = None
    status: Status = Status.RUNNING
    started_at: str | None = None
    ended_at: str | None = None
    phase: str = "preflight"
    phases: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    abort: AbortRecord | None = None
    faults: list[FaultRecord] = field(default_factory=list)
    slos: list[SloRecord] = field(default_factory=list)
    probes: dict[str, list[SampleRecord]] = field(default_factory=dict)
    rollbacks: list[RollbackRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float | None = None
    #: Facts the outcome is decided from (chaos.journal.outcome.decide): problems found before
    #: anything was touched, a breach during the baseline, and the recovery check.
    preflight_errors: list[str] = field(default_factory=list)
    baseline_breach: str | None = None
    recovery_judged: bool = False
    recovery_failures: list[str] = field(default_factory=list)
    #: The decided outcome: the exit code and the word every renderer shows.
    exit_code: int | None = None
    verdict: str | None = None
    #: Per probe, how late its samples started against their schedule, in seconds:
    #: ``{"n": samples, "p50": ..., "p99": ..., "max": ...}``. A late guard is a slow guard.
    probe_lag: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @property
    def outstanding_faults(self) -> list[FaultRecord]:
        return [f for f in self.faults if f.outstanding]
