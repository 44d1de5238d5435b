"""Undoing faults that a crashed run left behind, from what its journal recorded.

The journal names each fault's kind; the kind (found in chaos.faults.registry) reads its typed,
versioned revert state back and undoes the fault with the same routine its revert uses. A state
this version cannot read, or a kind it does not know, is not guessed at: the fault is reported
with the manual steps. Undoing is idempotent (a target that is gone counts as reverted);
transient failures are retried with backoff and jitter, permanent ones stop at once with a
message that says how to remove the fault by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from chaos.errors import ChaosError, TransientError
from chaos.faults.registry import fault_kind

if TYPE_CHECKING:
    from chaos.journal.wal import OutstandingFault
    from chaos.platform.kubernetes import KubeClient


@dataclass(frozen=True)
class RecoveryResult:
    fault: OutstandingFault
    ok: bool
    detail: str


@dataclass(frozen=True)
class KubeAccess:
    kubeconfig: str | None = None
    context: str | None = None
    #: The helper image for undo containers (configuration; never read from a journal).
    helper_image: str | None = None


class _Context:
    """The RecoverContext of one outstanding fault: its tag and, on first use, a cluster."""

    def __init__(self, fault: OutstandingFault, access: KubeAccess) -> None:
        self._tag = f"{fault.run_id}/{fault.name}"
        self._access = access
        self._client: KubeClient | None = None

    @property
    def tag(self) -> str:
        return self._tag

    @property
    def helper_image(self) -> str | None:
        return self._access.helper_image

    async def client(self) -> KubeClient:
        if self._client is None:
            from chaos.platform.kubernetes import KubeClient

            self._client = await KubeClient.connect(self._access.kubeconfig,
                                                    self._access.context)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def manual_steps(fault: OutstandingFault) -> str:
    """How a person removes this fault by hand (printed when automatic recovery fails)."""
    kind = fault_kind(fault.kind)
    if kind is None:
        return f"this version does not know fault kind '{fault.kind}'; see " \
               "runbooks/fault-left-behind.md"
    try:
        steps = kind.manual_undo(kind.load_state(fault.revert_state))
    except ChaosError:
        return "its revert state cannot be read; see runbooks/fault-left-behind.md"
    return "; ".join(steps) if steps else "nothing to undo (it ended with its run)"


async def revert_outstanding(fault: OutstandingFault, attempts: int = 5,
                             kube: KubeAccess | None = None) -> RecoveryResult:
    kind = fault_kind(fault.kind)
    if kind is None:
        return RecoveryResult(fault, False, f"this version does not know how to revert a "
                              f"'{fault.kind}' fault; remove it by hand: {manual_steps(fault)}")
    try:
        state = kind.load_state(fault.revert_state)
    except ChaosError as exc:
        return RecoveryResult(fault, False, f"{exc}; remove it by hand: {manual_steps(fault)}")
    ctx = _Context(fault, kube or KubeAccess())
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=3.0),
            reraise=True,
        ):
            with attempt:
                detail = await kind.recover(state, ctx)
    except ChaosError as exc:
        return RecoveryResult(fault, False, f"{exc}; remove it by hand: {manual_steps(fault)}")
    finally:
        await ctx.close()
    return RecoveryResult(fault, True, detail)


__all__ = ["KubeAccess", "RecoveryResult", "manual_steps", "revert_outstanding"]
