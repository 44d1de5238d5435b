"""The orchestrator: preflight -> baseline -> inject -> observe -> revert -> recover -> report.

Probes run as independent tasks from the baseline until the recovery check ends; every sample
goes through the SLO guard at once. A breach, an interrupt, a fault that fails to inject or the
``maxDuration`` limit all set one stop event that every wait in the run listens to, so the
orchestrator moves to reverting within the time it takes to notice, not at the next step.
Reverts are never cancelled: a second interrupt only reports what is still being reverted.
Declared rollbacks run whenever the run got past preflight, however it ended.

All time comes from the running event loop, so tests drive the whole run on virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic.alias_generators import to_camel
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from chaos.engine.protocols import Fault, FaultLog, Outcome, Platform, Probe
from chaos.engine.slo import Evaluation, Guard, format_observed, percentile
from chaos.engine.state import Phase, RunState
from chaos.errors import ChaosError, InvalidInput, TransientError
from chaos.journal.record import (
    AbortRecord,
    FaultRecord,
    RollbackRecord,
    RunRecord,
    SampleRecord,
    SloRecord,
    Status,
    iso,
)
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


def exit_code(record: RunRecord) -> int:
    """The documented exit code for a finished run."""
    if any(f.revert_error and f.outstanding for f in record.faults):
        return 4
    fixed = {Status.PASSED: 0, Status.DEVIATED: 1, Status.ABORTED: 3, Status.INTERRUPTED: 130}
    if record.status in fixed:
        return fixed[record.status]
    touched = any(f.injected_at or f.inject_error for f in record.faults)
    return 1 if touched else 2  # an error before anything was injected is invalid input


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
                    objective=to_camel(s.objective),
                    threshold=str(s.threshold),
                    window=s.window,
                )
                for s in spec.slos
            ],
        )
        self._slo_records = {s.name: s for s in self.record.slos}
        self._faults: list[Fault] = []
        self._fault_records: dict[str, FaultRecord] = {}
        self._active: list[Fault] = []
        self._reverting: set[str] = set()
        self._stop: asyncio.Event | None = None
        self._stop_status: Status | None = None
        self._probe_tasks: list[asyncio.Task[None]] = []
        self._interrupts = 0
        self._t0 = 0.0
        self._wall0 = 0.0
        self.lags: dict[str, list[float]] = {p.name: [] for p in spec.probes}
        self._probes_stopping = False

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
            self._trigger_stop(
                Status.INTERRUPTED,
                AbortRecord(reason=f"{reason} received", slo=None, observed=None, threshold=None,
                            at=self.wall(), t=self.now()),
            )
            self.obs.event("interrupt", signal=reason)
        else:
            pending = [f.spec.name for f in self._active] + sorted(self._reverting)
            self.obs.event(
                "interrupt_again",
                signal=reason,
                still_reverting=sorted(set(pending)),
                message="reverts are not skipped; waiting for them to finish",
            )

    def _trigger_stop(self, status: Status, abort: AbortRecord) -> None:
        if self._stop is None or self._stop.is_set():
            return
        self._stop_status = status
        self.record.abort = abort
        self._stop.set()

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
        if self.options.persist is not None:
            self.options.persist(self.record)

    # ------------------------------------------------------------------------------ the run

    async def run(self) -> RunRecord:
        loop = self._loop()
        self._t0 = loop.time()
        self._wall0 = time.time()
        self._stop = asyncio.Event()
        self.record.started_at = self.wall()
        self._log("start", experiment=self.experiment.metadata.name,
                  experiment_file=self.options.experiment_file)
        spec = self.experiment.spec
        deadline = loop.call_later(spec.limits.max_duration, self._max_duration_reached)
        started = False
        try:
            if await self._preflight():
                started = True
                await self._run_phases()
        except Exception as exc:  # a bug or an unexpected driver failure: still revert everything
            self.record.errors.append(f"unexpected error: {type(exc).__name__}: {exc}")
            self.record.status = Status.ERROR
            self.record.message = "the run failed unexpectedly; every injected fault was reverted"
            self.obs.event("error", error=str(exc))
            if self.state.phase in (Phase.BASELINE, Phase.INJECTING, Phase.OBSERVING):
                self._move(Phase.REVERTING)
            await self._revert_all()
        finally:
            deadline.cancel()
            await self._stop_probes()
            if started:
                await self._rollbacks()
                try:
                    status = self.record.status
                    if status is Status.RUNNING:  # decided by a stop, written in _finish
                        status = self._stop_status or Status.ERROR
                    await self.platform.finish(str(status), self.record.message)
                except Exception as exc:
                    self.record.errors.append(f"reporting the outcome failed: {exc}")
            await self._close_platform()
            if self.options.release_targets is not None:
                self.options.release_targets()
            if self.state.phase is not Phase.REPORTING:
                with contextlib.suppress(ChaosError):
                    self._move(Phase.REPORTING)
            self._finish()
            self._log("end", status=str(self.record.status),
                      outstanding=[f.name for f in self.record.outstanding_faults])
            self._move(Phase.DONE)
        return self.record

    def _max_duration_reached(self) -> None:
        limit = self.experiment.spec.limits.max_duration
        self.obs.event("max_duration", limit=limit)
        self._trigger_stop(
            Status.ABORTED,
            AbortRecord(
                reason=f"limits.maxDuration of {limit:g}s reached",
                slo=None, observed=None, threshold=None, at=self.wall(), t=self.now(),
            ),
        )

    async def _preflight(self) -> bool:
        """Resolve every fault's targets before anything is touched. False: do not start."""
        problems: list[str] = []
        for fspec in self.experiment.spec.faults:
            try:
                fault = await self.platform.plan_fault(fspec)
            except ChaosError as exc:
                problems.append(f"fault '{fspec.name}': {exc}")
                continue
            self._faults.append(fault)
            rec = FaultRecord(
                name=fspec.name,
                kind=fspec.kind_name,
                description=fault.describe(),
                targets=fault.targets(),
                at=fspec.at,
                duration=fspec.duration,
                one_shot=fault.one_shot,
            )
            self._fault_records[fspec.name] = rec
            self.record.faults.append(rec)
            self.obs.event("planned", fault=fspec.name, targets=rec.targets, what=rec.description)
        if not problems and self.options.claim_targets is not None:
            keys = sorted({k for fault in self._faults for k in fault.target_keys()})
            try:
                self.options.claim_targets(keys)
            except ChaosError as exc:
                problems.append(str(exc))
        if problems:
            self.record.status = Status.ERROR
            self.record.message = "preflight failed; nothing was injected"
            self.record.errors += problems
            self.obs.event("preflight_failed", problems=problems)
            self._move(Phase.REPORTING)
            return False
        try:
            await self.platform.prepare()
        except ChaosError as exc:
            self.record.status = Status.ERROR
            self.record.message = "preflight failed; nothing was injected"
            self.record.errors.append(str(exc))
            self.obs.event("preflight_failed", problems=[str(exc)])
            self._move(Phase.REPORTING)
            return False
        return True

    async def _run_phases(self) -> None:
        spec = self.experiment.spec
        self._move(Phase.BASELINE)
        for pspec in spec.probes:
            probe = self.platform.probe(pspec)
            self._probe_tasks.append(asyncio.create_task(self._probe_loop(probe), name=pspec.name))
        if await self._wait(spec.baseline):
            await self._after_stop(during_baseline=True)
            return

        self._move(Phase.INJECTING)
        await self._schedule_faults()
        if self._stop is not None and self._stop.is_set():
            await self._after_stop(during_baseline=False)
            return
        self._move(Phase.REVERTING)
        await self._revert_all()

        self._move(Phase.RECOVERING)
        self.guard.reset()
        stopped = await self._wait(spec.recovery)
        if stopped:
            self._move(Phase.REPORTING)
            self.record.status = self._stop_status or Status.INTERRUPTED
            self.record.message = "interrupted during the recovery check; every fault was reverted"
            return
        self._judge_recovery()
        self._move(Phase.REPORTING)

    async def _after_stop(self, *, during_baseline: bool) -> None:
        status = self._stop_status or Status.INTERRUPTED
        abort = self.record.abort
        if during_baseline and status is Status.ABORTED and abort and abort.slo:
            # A breach before any fault: the system was not steady to begin with.
            self.record.status = Status.DEVIATED
            self.record.message = (
                f"steady state not met before any fault: {abort.reason}; nothing was injected"
            )
            self.record.abort = None
            self._move(Phase.REPORTING)
            return
        if self.state.phase is not Phase.REVERTING:
            # Revert first, write the run record after (each revert persists it): rewriting a
            # long run's record and fsyncing it must not delay the revert. The write-ahead
            # fault journal is what a crash here is recovered from, not this record.
            self._move(Phase.REVERTING, persist=False)
        await self._revert_all()
        self.record.status = status
        if status is Status.ABORTED:
            self.record.message = "aborted; every injected fault was reverted"
        elif status is Status.INTERRUPTED:
            self.record.message = "interrupted; every injected fault was reverted"
        else:
            self.record.message = "a fault failed to inject; every injected fault was reverted"
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
                await self._inject(fault)
                injects_left -= 1
                if injects_left == 0 and self._stop is not None and not self._stop.is_set():
                    self._move(Phase.OBSERVING)
            elif fault in self._active:
                await self._revert(fault)
        if injects_left == 0 and self.state.phase is Phase.INJECTING:
            self._move(Phase.OBSERVING)

    async def _inject(self, fault: Fault) -> None:
        rec = self._fault_records[fault.spec.name]
        self.obs.event("injecting", fault=rec.name, kind=rec.kind, targets=rec.targets)
        self._persist()
        try:
            # Written (and fsynced) before anything is touched: a crash after this point
            # leaves a record that `chaos recover` acts on.
            self._log("intent", fault=rec.name, kind=rec.kind, targets=rec.targets,
                      target_keys=fault.target_keys(), revert_state=fault.revert_state(),
                      one_shot=fault.one_shot)
        except Exception as exc:
            rec.inject_error = f"not injected: the fault journal could not be written: {exc}"
            self.record.errors.append(rec.inject_error)
            self._trigger_stop(
                Status.ERROR,
                AbortRecord(reason=rec.inject_error, slo=None, observed=None, threshold=None,
                            at=self.wall(), t=self.now()),
            )
            return
        try:
            async with asyncio.timeout(self.options.inject_timeout):
                await fault.inject()
        except Exception as exc:
            rec.inject_error = _describe_exc(exc)
            self.record.errors.append(f"fault '{rec.name}' failed to inject: {rec.inject_error}")
            self.obs.event("inject_failed", fault=rec.name, error=rec.inject_error)
            if not fault.one_shot:
                # It may be half applied; reverting is idempotent, so make sure.
                self._active.append(fault)
            self._trigger_stop(
                Status.ERROR,
                AbortRecord(reason=f"fault '{rec.name}' failed to inject: {rec.inject_error}",
                            slo=None, observed=None, threshold=None, at=self.wall(),
                            t=self.now()),
            )
            self._persist()
            return
        rec.injected_at = self.wall()
        rec.revert_state = fault.revert_state()
        if fault.one_shot:
            self._log("done", fault=rec.name)
        else:
            self._active.append(fault)
            self._log("applied", fault=rec.name, revert_state=rec.revert_state)
        self.obs.event("injected", fault=rec.name, kind=rec.kind, targets=rec.targets)
        self._persist()

    async def _revert(self, fault: Fault) -> None:
        rec = self._fault_records[fault.spec.name]
        self._reverting.add(rec.name)
        try:
            await self._revert_with_retries(fault)
        except Exception as exc:
            rec.revert_error = _describe_exc(exc)
            self.record.errors.append(f"fault '{rec.name}' failed to revert: {rec.revert_error}")
            self.obs.event("revert_failed", fault=rec.name, error=rec.revert_error)
            self._log_quietly("revert_failed", fault=rec.name, error=rec.revert_error)
        else:
            rec.reverted_at = self.wall()
            rec.revert_error = None
            self.obs.event("reverted", fault=rec.name, kind=rec.kind)
            self._log_quietly("reverted", fault=rec.name)
        finally:
            self._reverting.discard(rec.name)
            if fault in self._active:
                self._active.remove(fault)
            self._persist()

    async def _revert_with_retries(self, fault: Fault) -> None:
        """Retry transient failures (bounded, exponential backoff with jitter); stop at once on
        anything else, because repeating a permanent failure only delays the person fixing it."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((TransientError, TimeoutError)),
            stop=stop_after_attempt(self.options.revert_attempts),
            wait=wait_exponential_jitter(multiplier=0.1, max=self.options.revert_retry_max_wait),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.obs.event("revert_retry", fault=fault.spec.name,
                                   attempt=attempt.retry_state.attempt_number)
                async with asyncio.timeout(self.options.revert_timeout):
                    await fault.revert()

    def _log(self, record_type: str, /, **fields: object) -> None:
        if self.options.fault_log is not None:
            self.options.fault_log.append(record_type, run_id=self.options.run_id, **fields)

    def _log_quietly(self, record_type: str, /, **fields: object) -> None:
        """Journal an outcome; a journal failure here must not stop the other reverts."""
        try:
            self._log(record_type, **fields)
        except Exception as exc:
            self.record.errors.append(f"fault journal write failed ({record_type}): {exc}")

    async def _revert_all(self) -> None:
        """Revert every active fault, newest first; each revert runs even if another fails."""
        for fault in reversed(list(self._active)):
            await self._revert(fault)

    # ------------------------------------------------------------------------------ probes

    async def _probe_loop(self, probe: Probe) -> None:
        loop = self._loop()
        spec = probe.spec
        interval = spec.interval
        cutoff = spec.timeout + self.options.probe_grace
        lags = self.lags[spec.name]
        next_tick = loop.time()
        # Checked as well as cancelled: on Python 3.11 a cancel that lands as an await completes
        # can be lost inside library code, and a loop that never ends hangs the run's exit.
        while not self._probes_stopping:
            lags.append(loop.time() - next_tick)
            started = loop.time()
            try:
                async with asyncio.timeout(cutoff):
                    outcome = await probe.sample()
            except TimeoutError:
                outcome = Outcome(False, loop.time() - started,
                                  f"probe did not answer within {cutoff:g}s")
            except Exception as exc:
                outcome = Outcome(False, None, f"probe error: {_describe_exc(exc)}")
            self._on_sample(spec.name, outcome)
            next_tick += interval
            now = loop.time()
            if next_tick < now:  # a slow sample: skip the ticks it overran, keep the phase
                next_tick += math.ceil((now - next_tick) / interval) * interval
            await asyncio.sleep(next_tick - now)

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
        self._trigger_stop(
            Status.ABORTED,
            AbortRecord(
                reason=first.describe(),
                slo=first.slo.name,
                observed=first.observed,
                threshold=str(first.slo.threshold),
                at=self.wall(),
                t=self.now(),
            ),
        )

    def _tracker_index(self, name: str) -> int:
        return next(i for i, t in enumerate(self.guard.trackers) if t.slo.name == name)

    def _record_breach(self, breach: Evaluation, phase: Phase) -> None:
        srec = self._slo_records[breach.slo.name]
        if srec.verdict == "breached":
            return
        srec.verdict = "breached"
        srec.observed = breach.observed
        srec.breached_at = self.wall()
        srec.breach_phase = phase.value
        tracker = self.guard.trackers[self._tracker_index(srec.name)]
        srec.samples = list(tracker.window)
        srec.breaching_evaluations = tracker.breaching
        self.obs.event("slo_breach", slo=srec.name, observed=format_observed(breach.slo,
                       breach.observed), threshold=srec.threshold, phase=phase.value)

    def _judge_recovery(self) -> None:
        failed: list[str] = []
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
                failed.append(evaluation.describe())
        if failed:
            self.record.status = Status.DEVIATED
            self.record.message = "recovery check failed: " + "; ".join(failed)
        else:
            self.record.status = Status.PASSED
            self.record.message = "steady state held before, during and after the faults"

    async def _stop_probes(self) -> None:
        self._probes_stopping = True
        tasks = list(self._probe_tasks)
        while tasks:
            for task in tasks:
                task.cancel()
            # A lost cancel is repeated rather than waited on forever.
            done, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in done:  # retrieve outcomes, so none is reported as never retrieved
                if not task.cancelled():
                    task.exception()
            tasks = list(pending)
        self._probe_tasks.clear()

    # ------------------------------------------------------------------------------ the end

    async def _rollbacks(self) -> None:
        for rspec in self.experiment.spec.rollbacks:
            started = self.wall()
            try:
                detail = await self.platform.run_rollback(rspec)
                ok = True
            except Exception as exc:
                detail = _describe_exc(exc)
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
            self.record.errors.append(f"closing the platform failed: {_describe_exc(exc)}")

    def _finish(self) -> None:
        if self.record.status is Status.RUNNING:
            self.record.status = Status.ERROR
            self.record.message = self.record.message or "the run ended without a verdict"
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
        if any(f.revert_error and f.outstanding for f in self.record.faults):
            left = ", ".join(f.name for f in self.record.faults if f.revert_error)
            self.record.message = (
                f"{self.record.message}; REVERT FAILED for: {left}; the fault may still be "
                "active: run `chaos recover` or remove it by hand (see runbooks/)"
            ).lstrip("; ")
        self.record.probe_lag = {name: _lag_summary(lags) for name, lags in self.lags.items()
                                 if lags}
        self.record.ended_at = self.wall()
        self.record.duration = round(self.now(), 3)
        self._persist()


def _lag_summary(lags: list[float]) -> dict[str, float]:
    late = [max(0.0, lag) for lag in lags]
    return {"n": len(late), "p50": round(percentile(late, 50), 6),
            "p99": round(percentile(late, 99), 6), "max": round(max(late), 6)}


def _describe_exc(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ChaosError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = ["InvalidInput", "Observer", "Orchestrator", "RunOptions", "exit_code"]
