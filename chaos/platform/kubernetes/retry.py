"""The one retry loop every Kubernetes API call goes through.

Only :class:`~chaos.errors.TransientError` is retried: 5xx, connections refused, reset or dropped,
timeouts, and 429s from API priority and fairness (waiting what ``Retry-After`` asks, capped).
Every other 4xx, and a 429 from a PodDisruptionBudget, fails at once. Retries are bounded both in
attempts and in time, with exponential backoff and jitter so that many runners do not retry in
step. A call that gives up says how many attempts it made and for how long.

The Kubernetes client is synchronous: each attempt runs in a worker thread
(:func:`asyncio.to_thread`). Cancelling the awaiting task does not stop a request already in
flight; the request timeout bounds it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

from chaos.errors import TransientError

from .errors import TooManyRequests, map_error

__all__ = ["RetryPolicy", "call_with_retries"]

T = TypeVar("T")
_log = structlog.get_logger("chaos.kubernetes")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults give up after 5 attempts or ~20 s, whichever comes first."""

    attempts: int = 5
    #: No new attempt starts later than this many seconds after the first one.
    max_elapsed: float = 20.0
    initial_backoff: float = 0.2
    max_backoff: float = 4.0
    jitter: float = 0.2
    #: A server asking for a longer wait (``Retry-After``) gets this much at most.
    max_retry_after: float = 10.0
    #: (connect, read) timeout of each HTTP request, seconds.
    request_timeout: tuple[float, float] = (5.0, 30.0)


def _waiter(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_retry_after)
        exponential = policy.initial_backoff * 2.0 ** (state.attempt_number - 1)
        return min(policy.max_backoff, exponential) + random.uniform(0, policy.jitter)

    return wait


def _log_retry(action: str, target: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        _log.debug(
            "kubernetes call retrying",
            action=action,
            target=target,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=str(exc).splitlines()[0] if exc else None,
        )

    return before_sleep


async def call_with_retries(
    policy: RetryPolicy, action: str, target: str, fn: Callable[[int], T],
    executor: Executor | None = None,
) -> T:
    """Run ``fn(attempt_number)`` in a thread until it succeeds, retrying transient failures.

    Whatever ``fn`` raises is translated by :func:`~.errors.map_error` with ``action`` and
    ``target`` ("delete pod", "shop/checkout-1") before it is judged, so the caller sees only
    :class:`~.errors.KubeError` and friends. ``fn`` learns the attempt number so that a mutating
    call can recognise the echo of its own earlier, lost success (409 AlreadyExists on a retry).
    """
    started = time.monotonic()
    attempts = 0

    async def once(attempt_number: int) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, attempt_number)
        except Exception as exc:
            mapped = map_error(exc, action, target)
            if mapped is exc:
                raise
            raise mapped from exc

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_elapsed),
            wait=_waiter(policy),
            before_sleep=_log_retry(action, target),
            reraise=True,
        ):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                return await once(attempts)
    except TransientError as exc:
        if attempts > 1:
            exc.message += (
                f" (gave up after {attempts} attempts in {time.monotonic() - started:.1f}s)"
            )
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
