"""The one place a run's outcome is decided: status, exit code, the word every report shows,
and the message, from the facts the run recorded.

The orchestrator records facts as they happen (what was injected, seen in effect, reverted,
breached, why the run stopped); :func:`decide` turns them into the outcome. The terminal summary,
the Markdown, JUnit and HTML reports, the run metrics and ``chaos report`` all call it (or read
what it wrote), so a failed revert reads the same everywhere. Pure and light: no pydantic, no
engine, so ``chaos report`` loads only this and the renderers.

Exit codes (stable; the README's table is checked against :data:`EXIT_MEANINGS`)::

    0   passed        steady state held before, during and after
    1   deviated      the steady state or the recovery check failed; also an error after
                      something was touched (a fault that failed to inject or did not take effect)
    2   invalid input nothing was injected
    3   aborted       by the SLO guard (or limits.maxDuration); every fault was reverted
    4   revert failed a fault may still be active
    130 interrupted   SIGINT or SIGTERM; every fault was reverted
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chaos.journal.record import RunRecord, Status, StopCause


class ExitCode(enum.IntEnum):
    PASSED = 0
    DEVIATED = 1
    INVALID_INPUT = 2
    ABORTED = 3
    REVERT_FAILED = 4
    INTERRUPTED = 130


#: What each exit code means, in the words of the README's table.
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.PASSED: "passed: steady state held before, during and after",
    ExitCode.DEVIATED: "deviated: the run completed but the steady state (baseline) or the "
    "recovery check failed; also an error after something was touched: a fault that failed to "
    "inject or did not take effect (status `error`, every fault reverted)",
    ExitCode.INVALID_INPUT: "invalid input: the experiment, a flag or the configuration is "
    "wrong, or a target does not exist; nothing was injected",
    ExitCode.ABORTED: "aborted by the SLO guard (or by `limits.maxDuration`); every fault was "
    "reverted",
    ExitCode.REVERT_FAILED: "a revert failed: a fault may still be active; the message says "
    "which and how to remove it",
    ExitCode.INTERRUPTED: "interrupted (SIGINT or SIGTERM); every fault was reverted and the "
    "rollbacks ran",
}

#: The word a person sees for an outcome, in every renderer.
REVERT_FAILED = "REVERT FAILED"


@dataclass(frozen=True)
class Outcome:
    status: Status
    exit_code: ExitCode
    verdict: str
    message: str


_STOPPED: dict[str, tuple[Status, ExitCode, str]] = {
    StopCause.SLO_BREACH: (Status.ABORTED, ExitCode.ABORTED,
                           "aborted; every injected fault was reverted"),
    StopCause.MAX_DURATION: (Status.ABORTED, ExitCode.ABORTED,
                             "aborted; every injected fault was reverted"),
    StopCause.INTERRUPT: (Status.INTERRUPTED, ExitCode.INTERRUPTED,
                          "interrupted; every injected fault was reverted"),
    StopCause.NOT_IN_EFFECT: (Status.ERROR, ExitCode.DEVIATED,
                              "a fault did not take effect; every injected fault was reverted"),
    StopCause.INJECT_FAILED: (Status.ERROR, ExitCode.DEVIATED,
                              "a fault failed to inject; every injected fault was reverted"),
    StopCause.JOURNAL: (Status.ERROR, ExitCode.DEVIATED,
                        "the fault journal could not be written; every injected fault was "
                        "reverted"),
    StopCause.PLATFORM: (Status.ERROR, ExitCode.DEVIATED,
                         "the run lost its hold on the target; every injected fault was "
                         "reverted"),
    StopCause.UNEXPECTED: (Status.ERROR, ExitCode.DEVIATED,
                           "the run failed unexpectedly; every injected fault was reverted"),
}


def decide(record: RunRecord) -> Outcome:
    """The outcome of a finished (or crashed-and-reloaded) run from what it recorded."""
    touched = any(f.injected_at or f.inject_error for f in record.faults)
    abort = record.abort
    status: Status
    code: ExitCode
    if record.preflight_errors:
        status, code = Status.ERROR, ExitCode.INVALID_INPUT
        message = "preflight failed; nothing was injected"
    elif abort is not None:
        status, code, message = _STOPPED.get(abort.cause, _STOPPED[StopCause.UNEXPECTED])
        if abort.cause in (StopCause.NOT_IN_EFFECT, StopCause.PLATFORM):
            message = f"{abort.reason}; every injected fault was reverted"
        if code is ExitCode.DEVIATED and not touched:
            code = ExitCode.INVALID_INPUT  # stopped before anything was injected
            message = message.replace("every injected fault was reverted", "nothing was "
                                      "injected")
        if abort.cause == StopCause.INTERRUPT and any(
                p.get("phase") == "recovering" and float(p.get("t", 0.0)) <= abort.t
                for p in record.phases):
            message = "interrupted during the recovery check; every fault was reverted"
    elif record.baseline_breach is not None:
        status, code = Status.DEVIATED, ExitCode.DEVIATED
        message = (f"steady state not met before any fault: {record.baseline_breach}; nothing "
                   "was injected")
    elif record.recovery_judged:
        if record.recovery_failures:
            status, code = Status.DEVIATED, ExitCode.DEVIATED
            message = "recovery check failed: " + "; ".join(record.recovery_failures)
        else:
            status, code = Status.PASSED, ExitCode.PASSED
            message = "steady state held before, during and after the faults"
    else:
        status = Status.ERROR
        code = ExitCode.DEVIATED if touched else ExitCode.INVALID_INPUT
        message = "the run ended without a verdict"

    # Never a pass (nor a mere deviation) with a fault whose effect was not seen.
    unseen = [f for f in record.faults
              if f.not_in_effect or (f.injected_at and not f.verified_at)]
    if unseen and status in (Status.PASSED, Status.DEVIATED):
        status, code = Status.ERROR, ExitCode.DEVIATED
        message = "; ".join(
            f"fault '{f.name}' did not take effect: "
            f"{f.not_in_effect or 'its effect was never seen'}" for f in unseen)
    verdict = status.value.upper()

    left = [f.name for f in record.faults if f.revert_error and f.outstanding]
    unrecorded = [f.name for f in record.faults if f.journal_error]
    if left:
        status, code, verdict = Status.ERROR, ExitCode.REVERT_FAILED, REVERT_FAILED
        message = (f"{REVERT_FAILED} for: {', '.join(left)}; the fault may still be active: run "
                   f"`chaos recover` or remove it by hand (see runbooks/); {message}")
    elif unrecorded:
        status, code, verdict = Status.ERROR, ExitCode.REVERT_FAILED, REVERT_FAILED
        message = (f"{REVERT_FAILED} to be recorded for: {', '.join(unrecorded)}; reverted, but "
                   "the write-ahead journal still lists it (disk full or read-only?): free the "
                   f"disk, then `chaos recover` (it reverts again, safely); {message}")
    return Outcome(status, code, verdict, message)


def outcome_of(record: RunRecord) -> Outcome:
    """The outcome a finished run recorded (what :func:`decide` wrote into it), or decided now
    for a record that has none yet."""
    if record.exit_code is not None and record.verdict:
        try:
            code = ExitCode(record.exit_code)
        except ValueError:
            return decide(record)
        return Outcome(record.status, code, record.verdict, record.message)
    return decide(record)


__all__ = ["EXIT_MEANINGS", "REVERT_FAILED", "ExitCode", "Outcome", "decide", "outcome_of"]
