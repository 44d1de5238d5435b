"""Running faults: journal the intent, inject, journal what was applied, verify the effect on
the target, and revert (verifying the effect is gone), recording every fact as it happens.

The order is the promise: the ``intent`` record is durable before anything is touched, so a
crash at any later moment leaves a record ``chaos recover`` acts on. A fault counts as in effect
only when its own ``verify`` saw the effect on the target; verification runs beside the fault
timeline (a helper image pull must not hold back the next fault), and a fault that does not take
effect stops the run. A revert is retried on transient failures, never cancelled, and counts
only when ``verify_reverted`` saw the effect gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from chaos import redact
from chaos.errors import ChaosError, TransientError
from chaos.journal.record import FaultRecord, StopCause

if TYPE_CHECKING:
    from chaos.engine.orchestrator import Observer, RunOptions
    from chaos.engine.protocols import Fault

Stop = Callable[[StopCause, str], None]


def describe_exc(exc: BaseException) -> str:
    """An exception in words for the record and the logs, the run's secrets masked
    (chaos.redact: URLs without userinfo or query string)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ChaosError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact.current().text(text)


class FaultRunner:
    """The faults of one run: what is active, what is being verified, what is reverting."""

    def __init__(self, options: RunOptions, obs: Observer, errors: list[str], *,
                 now: Callable[[], float], wall: Callable[[], str | None],
                 persist: Callable[[], None], stop: Stop, stopping: Callable[[], bool],
                 verify_timeout: float) -> None:
        self.options = options
        self.obs = obs
        self.errors = errors
        self.now = now
        self.wall = wall
        self.persist = persist
        self.stop = stop
        self.stopping = stopping
        self.verify_timeout = verify_timeout
        self.records: dict[str, FaultRecord] = {}
        self.active: list[Fault] = []
        self.reverting: set[str] = set()
        self._verifying: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------------------ journal

    def log(self, record_type: str, /, **fields: object) -> None:
        if self.options.fault_log is not None:
            self.options.fault_log.append(record_type, run_id=self.options.run_id, **fields)

    def log_quietly(self, record_type: str, /, **fields: object) -> None:
        """Journal an outcome; a journal failure here must not stop the other reverts."""
        try:
            self.log(record_type, **fields)
        except Exception as exc:
            self.errors.append(f"fault journal write failed ({record_type}): {exc}")

    # ------------------------------------------------------------------------------- inject

    async def inject(self, fault: Fault) -> None:
        rec = self.records[fault.spec.name]
        self.obs.event("injecting", fault=rec.name, kind=rec.kind, targets=rec.targets)
        self.persist()
        try:
            # Written (and fsynced) before anything is touched: a crash after this point
            # leaves a record that `chaos recover` acts on.
            self.log("intent", fault=rec.name, kind=rec.kind, targets=rec.targets,
                     target_keys=fault.target_keys(), revert_state=fault.revert_state(),
                     one_shot=fault.one_shot)
        except Exception as exc:
            rec.inject_error = f"not injected: the fault journal could not be written: {exc}"
            self.errors.append(rec.inject_error)
            self.stop(StopCause.JOURNAL, rec.inject_error)
            return
        started = self.now()
        try:
            async with asyncio.timeout(self.options.inject_timeout):
                await fault.inject()
        except Exception as exc:
            rec.inject_error = describe_exc(exc)
            self.errors.append(f"fault '{rec.name}' failed to inject: {rec.inject_error}")
            self.obs.event("inject_failed", fault=rec.name, error=rec.inject_error)
            if not fault.one_shot:
                # It may be half applied; reverting is idempotent, so make sure.
                self.active.append(fault)
            self.stop(StopCause.INJECT_FAILED,
                      f"fault '{rec.name}' failed to inject: {rec.inject_error}")
            self.persist()
            return
        rec.injected_at = self.wall()
        rec.revert_state = fault.revert_state()
        if fault.one_shot:
            self.log_quietly("done", fault=rec.name, revert_state=rec.revert_state)
        else:
            self.active.append(fault)
            try:
                self.log("applied", fault=rec.name, revert_state=rec.revert_state)
            except Exception as exc:
                # Applied but not journaled: a crash now would leave it unknown to recover.
                # Straight to the revert.
                self.errors.append(f"the fault journal could not record that fault "
                                   f"'{rec.name}' was applied: {exc}")
                self.stop(StopCause.JOURNAL, f"the fault journal could not record fault "
                          f"'{rec.name}' (disk full or read-only?): {exc}")
                self.persist()
                return
        self.obs.event("injected", fault=rec.name, kind=rec.kind, targets=rec.targets)
        self.persist()
        self._verifying[rec.name] = asyncio.create_task(self._verify(fault, started),
                                                        name=f"verify {rec.name}")

    async def _verify(self, fault: Fault, started: float) -> None:
        rec = self.records[fault.spec.name]
        within = self.verify_timeout
        try:
            # The fault bounds its own looking; this only guards against one that never returns.
            async with asyncio.timeout(within + 15):
                effect = await fault.verify(within)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._not_in_effect(rec, describe_exc(exc))
            return
        rec.verified_at = self.wall()
        rec.effect = effect
        rec.effect_seconds = round(self.now() - started, 3)
        self.obs.event("in_effect", fault=rec.name, after=rec.effect_seconds, seen=effect)
        self.log_quietly("verified", fault=rec.name, effect=effect, seconds=rec.effect_seconds)
        self.persist()

    def _not_in_effect(self, rec: FaultRecord, cause: str) -> None:
        rec.not_in_effect = cause
        self.errors.append(f"fault '{rec.name}' did not take effect: {cause}")
        self.obs.event("not_in_effect", fault=rec.name, cause=cause)
        self.log_quietly("not_in_effect", fault=rec.name, cause=cause)
        self.stop(StopCause.NOT_IN_EFFECT, f"fault '{rec.name}' did not take effect: {cause}")
        self.persist()

    async def settle(self) -> None:
        """Wait for every verification still looking (each is bounded by the verify timeout):
        the verdict is decided only on what was seen."""
        tasks = list(self._verifying.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _end_verification(self, fault: Fault) -> None:
        """Before a revert: a verification still looking is stopped. If the run is not stopping
        anyway, a fault whose effect was never seen up to its scheduled end did not take
        effect."""
        task = self._verifying.get(fault.spec.name)
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rec = self.records[fault.spec.name]
        if rec.verified_at is None and rec.not_in_effect is None and not self.stopping():
            self._not_in_effect(rec, "its effect was not seen before its scheduled end")

    # ------------------------------------------------------------------------------- revert

    async def revert(self, fault: Fault) -> None:
        rec = self.records[fault.spec.name]
        self.reverting.add(rec.name)
        try:
            await self._end_verification(fault)
            await self._revert_with_retries(fault)
            rec.revert_verified = await fault.verify_reverted(self.verify_timeout)
        except Exception as exc:
            rec.revert_error = describe_exc(exc)
            self.errors.append(f"fault '{rec.name}' failed to revert: {rec.revert_error}")
            self.obs.event("revert_failed", fault=rec.name, error=rec.revert_error)
            self.log_quietly("revert_failed", fault=rec.name, error=rec.revert_error)
        else:
            rec.reverted_at = self.wall()
            rec.revert_error = None
            self.obs.event("reverted", fault=rec.name, kind=rec.kind, seen=rec.revert_verified)
            try:
                self.log("reverted", fault=rec.name, seen=rec.revert_verified)
            except Exception as exc:
                # Reverted, but the write-ahead journal still says applied: say so (exit 4);
                # `chaos recover` would revert it again, which is safe.
                rec.journal_error = (f"reverted, but the fault journal could not record it "
                                     f"({exc}): it still lists the fault as applied")
                self.errors.append(f"fault '{rec.name}': {rec.journal_error}")
        finally:
            self.reverting.discard(rec.name)
            if fault in self.active:
                self.active.remove(fault)
            self.persist()

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

    async def revert_all(self) -> None:
        """Revert every active fault, newest first; each revert runs even if another fails.
        Verifications still looking (of one-shot faults, say) are stopped."""
        for fault in reversed(list(self.active)):
            await self.revert(fault)
        for task in list(self._verifying.values()):
            if not task.done():  # the run stopped first: the effect stays unverified
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def pending(self) -> list[str]:
        """Faults still active or being reverted (for a second Ctrl-C's message)."""
        return sorted({f.spec.name for f in self.active} | self.reverting)


__all__ = ["FaultRunner", "describe_exc"]
