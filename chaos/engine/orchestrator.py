"""The orchestrator: preflight -> baseline -> inject -> observe -> revert -> recover -> report.

The pieces: :class:`~chaos.engine.probes.ProbeRunner` samples every probe on its interval and
hands each sample to the SLO guard at once; :class:`~chaos.engine.faults.FaultRunner` journals,
injects, verifies and reverts faults; :func:`chaos.journal.outcome.decide` turns what the run
recorded into its status, message and exit code. This module walks the phases and the fault
timeline.

A breach, an interrupt, a fault that fails to inject or does not take effect, a platform that
lost its hold on the targets (a Lease) or ``maxDuration`` all set one stop event that every wait
in the run listens to, so the orchestrator moves to reverting within the time it takes to
notice. Reverts are never cancelled: a second interrupt only reports what is still being
reverted. Declared rollbacks run whenever the run got past preflight, however it ended.

All time comes from the running event loop, so tests drive the whole run on virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from chaos.engine.faults import FaultRunner, describe_exc
from chaos.engine.probes import ProbeRunner
from chaos.engine.protocols import FaultLog, Outcome, Platform
from chaos.engine.slo import Evaluation, Guard, format_observed
from chaos.engine.state import Phase, RunState
from chaos.errors import ChaosError
from chaos.journal.outcome import decide
from chaos.journal.record import (
    AbortRecord,
    FaultRecord,
    RollbackRecord,
    RunRecord,
    SampleRecord,
    SloRecord,
    Status,
    StopCause,
    iso,
)

if TYPE_CHECKING:
    from chaos.engine.protocols import Fault
    from chaos.model.experiment import Experiment


class Observer(Protocol):
    """Receives what happens during a run (the CLI turns this into logs and live progress)."""

    def event(self, name: str, /, **fields: object) -> None: ...


class _Silent:
    def event(self, name: str, /, **fields: object) -> None:
        return None


@dataclass
class RunOptions:
    run_id: str
    experiment_file: str | None = None
    observer: Observer = field(default_factory=_Silent)
    persist: Callable[[RunRecord], None] | None = None
    fault_log: FaultLog | None = None
    claim_targets: Callable[[list[str]], None] | None = None
    release_targets: Callable[[], None] | None = None
    revert_attempts: int = 5
    revert_retry_max_wait: float = 2.0
    inject_timeout: float = 30.0
    revert_timeout: float = 30.0
    probe_grace: float = 1.0  # a probe gets its own timeout plus this before the engine cuts it


class Orchestrator:
    """Runs one experiment against one platform; ``run`` returns the finished record."""

    def __init__(self, experiment: Experiment, platform: Platform, options: RunOptions) -> None:
        self.experiment = experiment
        self.platform = platform
        self.options = options
        self.obs = options.observer
        self.state = RunState()
        spec = experiment.spec
        self.guard = Guard(spec.slos)
        self.record = RunRecord(
            run_id=options.run_id,
            experiment=experiment.metadata.name,
            experiment_file=options.experiment_file,
            probes={p.name: [] for p in spec.probes},
            slos=[
                SloRecord(
                    name=s.name,
                    probe=s.probe,
                    objective=s.objective.key,
                    threshold=str(s.threshold),
                    window=s.window,
                )
                for s in spec.slos
            ],
        )
        self._slo_records = {s.name: s for s in self.record.slos}
        self._faults: list[Fault] = []
        self._stop: asyncio.Event | None = None
        self._interrupts = 0
        self._persist_failed = False
        self._t0 = 0.0
        self._wall0 = 0.0
        self.faults = FaultRunner(
            options, self.obs, self.record.errors, now=self.now, wall=self.wall,
            persist=self._persist, stop=self._stop_for, stopping=self._stopping,
            verify_timeout=spec.limits.verify_timeout,
        )
        self.probes = ProbeRunner(self._on_sample, grace=options.probe_grace)

    # ------------------------------------------------------------------------------ time helpers

    def _loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def now(self) -> float:
        """Seconds since the run started."""
        return self._loop().time() - self._t0

    def wall(self) -> str | None:
        return iso(self._wall0 + self.now())

    # ------------------------------------------------------------------------------ control

    def interrupt(self, reason: str = "SIGINT") -> None:
        """Called from a signal handler: stop, revert everything, run rollbacks."""
        self._interrupts += 1
        if self._interrupts == 1:
            self._stop_for(StopCause.INTERRUPT, f"{reason} received")
            self.obs.event("interrupt", signal=reason)
        else:
            self.obs.event(
                "interrupt_again",
                signal=reason,
                still_reverting=self.faults.pending(),
                message="reverts are not skipped; waiting for them to finish",
            )

    def _stop_for(self, cause: StopCause, reason: str, *, slo: str | None = None,
                  observed: float | None = None, threshold: str | None = None) -> None:
        """Stop the run (the first cause wins): every wait returns, every fault is reverted."""
        if self._stop is None or self._stop.is_set():
            return
        self.record.abort = AbortRecord(reason=reason, slo=slo, observed=observed,
                                        threshold=threshold, at=self.wall(), t=self.now(),
                                        cause=cause.value)
        self._stop.set()

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _platform_lost(self, reason: str) -> None:
        self.record.errors.append(reason)
        self.obs.event("platform_lost", reason=reason)
        self._stop_for(StopCause.PLATFORM, reason)

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the run was told to stop meanwhile."""
        assert self._stop is not None
        if self._stop.is_set():
            return True
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._stop.wait()
        return self._stop.is_set()

    def _move(self, phase: Phase, *, persist: bool = True) -> None:
        self.state.move(phase)
        self.record.phase = phase.value
        self.record.phases.append({"phase": phase.value, "at": self.wall(), "t": self.now()})
        self.obs.event("phase", phase=phase.value, t=round(self.now(), 3))
        if persist:
            self._persist()

    def _persist(self) -> None:
        """Rewrite the run record. A failure (a full or read-only disk) never raises: it stops
        the run, which goes straight to reverting (a run whose record cannot be kept is not
        one to go on with), and the summary still goes to the terminal."""
        if self.options.persist is None:
            return
        try:
            self.options.persist(self.record)
        except OSError as exc:
            if not self._persist_failed:
                self._persist_failed = True
                reason = f"the run journal could not be written ({exc.strerror or exc})"
                self.record.errors.append(f"{reason}; every fault reverted, summary below")
                self.obs.event("journal_write_failed", error=describe_exc(exc))
                self._stop_for(StopCause.JOURNAL, reason)

    # ------------------------------------------------------------------------------ the run

    async def run(self) -> RunRecord:
        loop = self._loop()
        self._t0 = loop.time()
        self._wall0 = time.time()
        self._stop = asyncio.Event()
        self.record.started_at = self.wall()
        self.faults.log("start", experiment=self.experiment.metadata.name,
                        experiment_file=self.options.experiment_file)
        spec = self.experiment.spec
        deadline = loop.call_later(spec.limits.max_duration, self._max_duration_reached)
        started = False
        try:
            if await self._preflight():
                started = True
                await self._run_phases()
        except Exception as exc:  # a bug or an unexpected driver failure: still revert everything
            said = describe_exc(exc)
            self.record.errors.append(f"unexpected error: {said}")
            self.obs.event("error", error=said)
            self._stop_for(StopCause.UNEXPECTED, f"unexpected error: {said}")
            if self.state.phase in (Phase.BASELINE, Phase.INJECTING, Phase.OBSERVING):
                self._move(Phase.REVERTING)
            await self.faults.revert_all()
        finally:
            deadline.cancel()
            await self.probes.stop()
            if started:
                await self._rollbacks()
                try:
                    outcome = decide(self.record)
                    await self.platform.finish(str(outcome.status), outcome.message)
                except Exception as exc:
                    self.record.errors.append(f"reporting the outcome failed: {describe_exc(exc)}")
            await self._close_platform()
            if self.options.release_targets is not None:
                self.options.release_targets()
            if self.state.phase is not Phase.REPORTING:
                with contextlib.suppress(ChaosError):
                    self._move(Phase.REPORTING)
            self._finish()
            self.faults.log("end", status=str(self.record.status),
                            outstanding=[f.name for f in self.record.outstanding_faults])
            self._move(Phase.DONE)
        return self.record

    def _max_duration_reached(self) -> None:
        limit = self.experiment.spec.limits.max_duration
        self.obs.event("max_duration", limit=limit)
        self._stop_for(StopCause.MAX_DURATION, f"limits.maxDuration of {limit:g}s reached")

    async def _preflight(self) -> bool:
        """Resolve every fault's targets and check everything read-only before anything is
        touched. False: do not start."""
        problems: list[str] = []
        for fspec in self.experiment.spec.faults:
            try:
                fault = await self.platform.plan_fault(fspec)
            except ChaosError as exc:
                problems.append(f"fault '{fspec.name}': {describe_exc(exc)}")
                continue
            self._faults.append(fault)
            rec = FaultRecord(
                name=fspec.name,
                kind=fault.kind,
                description=fault.describe(),
                targets=fault.targets(),
                at=fspec.at,
                duration=fspec.duration,
                one_shot=fault.one_shot,
            )
            self.faults.records[fspec.name] = rec
            self.record.faults.append(rec)
            self.obs.event("planned", fault=fspec.name, targets=rec.targets, what=rec.description)
        if not problems:
            try:
                await self.platform.preflight()
            except ChaosError as exc:
                problems.append(describe_exc(exc))
        if not problems and self.options.claim_targets is not None:
            keys = sorted({k for fault in self._faults for k in fault.target_keys()})
            try:
                self.options.claim_targets(keys)
            except ChaosError as exc:
                problems.append(describe_exc(exc))
        if not problems:
            try:
                await self.platform.prepare(self._platform_lost)
            except ChaosError as exc:
                problems.append(describe_exc(exc))
        if problems:
            self.record.preflight_errors = problems
            self.record.errors += problems
            self.obs.event("preflight_failed", problems=problems)
            self._move(Phase.REPORTING)
            return False
        return True

    async def _run_phases(self) -> None:
        spec = self.experiment.spec
        self._move(Phase.BASELINE)
        for pspec in spec.probes:
            self.probes.start(self.platform.probe(pspec))
        if await self._wait(spec.baseline):
            await self._after_stop(during_baseline=True)
            return

        self._move(Phase.INJECTING)
        await self._schedule_faults()
        if not self._stopping():
            await self.faults.settle()  # one-shot faults still being verified
        if self._stopping():
            await self._after_stop(during_baseline=False)
            return
        self._move(Phase.REVERTING)
        await self.faults.revert_all()
        if self._stopping():  # a fault not in effect, found at its revert
            self._move(Phase.REPORTING)
            return

        self._move(Phase.RECOVERING)
        self.guard.reset()
        if await self._wait(spec.recovery):
            self._move(Phase.REPORTING)
            return
        self._judge_recovery()
        self._move(Phase.REPORTING)

    async def _after_stop(self, *, during_baseline: bool) -> None:
        abort = self.record.abort
        if during_baseline and abort is not None and abort.cause == StopCause.SLO_BREACH:
            # A breach before any fault: the system was not steady to begin with.
            self.record.baseline_breach = abort.reason
            self.record.abort = None
            self._move(Phase.REPORTING)
            return
        if self.state.phase is not Phase.REVERTING:
            # Revert first, write the run record after (each revert persists it): rewriting a
            # long run's record and fsyncing it must not delay the revert. The write-ahead
            # fault journal is what a crash here is recovered from, not this record.
            self._move(Phase.REVERTING, persist=False)
        await self.faults.revert_all()
        self._move(Phase.REPORTING)

    # ------------------------------------------------------------------------------ faults

    async def _schedule_faults(self) -> None:
        start = self.now()
        timeline: list[tuple[float, int, Fault]] = []
        for fault in self._faults:
            fspec = fault.spec
            timeline.append((fspec.at, 1, fault))
            if not fault.one_shot and fspec.duration is not None:
                timeline.append((fspec.at + fspec.duration, 0, fault))  # reverts sort first
        timeline.sort(key=lambda item: (item[0], item[1]))
        injects_left = sum(1 for _, action, _ in timeline if action == 1)
        for offset, action, fault in timeline:
            if await self._wait(start + offset - self.now()):
                return
            if action == 1:
                await self.faults.inject(fault)
                injects_left -= 1
                if injects_left == 0 and not self._stopping():
                    self._move(Phase.OBSERVING)
            elif fault in self.faults.active:
                await self.faults.revert(fault)
        if injects_left == 0 and self.state.phase is Phase.INJECTING:
            self._move(Phase.OBSERVING)

    # ------------------------------------------------------------------------------ probes

    def _on_sample(self, probe: str, outcome: Outcome) -> None:
        phase = self.state.phase
        sample = SampleRecord(
            t=round(self.now(), 4),
            ok=outcome.ok,
            latency=None if outcome.latency is None else round(outcome.latency, 6),
            detail=outcome.detail,
            phase=phase.value,
        )
        self.record.probes[probe].append(sample)
        if phase not in (Phase.BASELINE, Phase.INJECTING, Phase.OBSERVING, Phase.RECOVERING):
            self.obs.event("sample", probe=probe, ok=outcome.ok, latency=outcome.latency,
                           detail=outcome.detail, slos={})
            return
        breaches = self.guard.add(probe, sample)
        observed: dict[str, str] = {}
        for tracker in self.guard.trackers:
            evaluation = self.guard.last.get(tracker.slo.name)
            self._slo_records[tracker.slo.name].evaluations = tracker.evaluations
            if evaluation is not None and tracker.slo.probe == probe:
                observed[tracker.slo.name] = format_observed(tracker.slo, evaluation.observed)
        self.obs.event("sample", probe=probe, ok=outcome.ok, latency=outcome.latency,
                       detail=outcome.detail, slos=observed)
        if phase is Phase.RECOVERING or not breaches:
            return
        for breach in breaches:
            self._record_breach(breach, phase)
        first = breaches[0]
        self._stop_for(StopCause.SLO_BREACH, first.describe(), slo=first.slo.name,
                       observed=first.observed, threshold=str(first.slo.threshold))

    def _record_breach(self, breach: Evaluation, phase: Phase) -> None:
        srec = self._slo_records[breach.slo.name]
        if srec.verdict == "breached":
            return
        srec.verdict = "breached"
        srec.observed = breach.observed
        srec.breached_at = self.wall()
        srec.breach_phase = phase.value
        tracker = next(t for t in self.guard.trackers if t.slo.name == srec.name)
        srec.samples = list(tracker.window)
        srec.breaching_evaluations = tracker.breaching
        self.obs.event("slo_breach", slo=srec.name, observed=format_observed(breach.slo,
                       breach.observed), threshold=srec.threshold, phase=phase.value)

    def _judge_recovery(self) -> None:
        t = self.now()
        for tracker in self.guard.trackers:
            srec = self._slo_records[tracker.slo.name]
            evaluation = tracker.evaluate(t)
            srec.evaluations = tracker.evaluations
            if evaluation is None:
                if srec.verdict == "not-evaluated":
                    srec.verdict = "no-data"
                continue
            if srec.verdict == "breached":
                continue
            srec.observed = evaluation.observed
            srec.samples = list(tracker.window)
            if evaluation.holds:
                srec.verdict = "passed"
            else:
                srec.verdict = "breached"
                srec.breached_at = self.wall()
                srec.breach_phase = Phase.RECOVERING.value
                self.record.recovery_failures.append(evaluation.describe())
        self.record.recovery_judged = True

    # ------------------------------------------------------------------------------ the end

    async def _rollbacks(self) -> None:
        for rspec in self.experiment.spec.rollbacks:
            started = self.wall()
            try:
                detail = await self.platform.run_rollback(rspec)
                ok = True
            except Exception as exc:
                detail = describe_exc(exc)
                ok = False
                self.record.errors.append(f"rollback '{rspec.name}' failed: {detail}")
            self.record.rollbacks.append(
                RollbackRecord(name=rspec.name, ok=ok, detail=detail, started_at=started,
                               ended_at=self.wall())
            )
            self.obs.event("rollback", rollback=rspec.name, ok=ok, detail=detail)
        self._persist()

    async def _close_platform(self) -> None:
        try:
            await self.platform.close()
        except Exception as exc:
            self.record.errors.append(f"closing the platform failed: {describe_exc(exc)}")

    def _finish(self) -> None:
        for tracker in self.guard.trackers:
            srec = self._slo_records[tracker.slo.name]
            if srec.verdict != "not-evaluated":
                continue
            last = self.guard.last.get(srec.name)
            if last is None:
                srec.verdict = "no-data" if not srec.evaluations else "passed"
                continue
            # Stopped before the recovery check: judged on the last evaluation it had.
            srec.verdict = "passed" if last.holds else "breached"
            srec.observed = last.observed
            srec.samples = list(tracker.window)
        outcome = decide(self.record)
        self.record.status = outcome.status
        self.record.message = outcome.message
        self.record.exit_code = int(outcome.exit_code)
        self.record.verdict = outcome.verdict
        self.record.probe_lag = self.probes.lag_summary()
        self.record.ended_at = self.wall()
        self.record.duration = round(self.now(), 3)
        self._persist()


__all__ = ["Observer", "Orchestrator", "RunOptions", "Status"]
