"""Undoing faults that a crashed run left behind, from what its journal recorded.

Each reverter works from the journal's ``revert_state`` alone (no live objects survive a crash)
and is idempotent: a target that is gone, or a pid that now belongs to another process, counts
as reverted. Transient failures are retried with backoff and jitter; permanent ones stop at once
with a message that says how to remove the fault by hand.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from chaos.errors import ChaosError, RevertFailed, TargetNotFound, TransientError
from chaos.journal.wal import OutstandingFault
from chaos.platform.local import procs
from chaos.platform.local.tc import Netem
from chaos.platform.local.watchdog import cancel_tagged, cancel_watchdog


@dataclass(frozen=True)
class RecoveryResult:
    fault: OutstandingFault
    ok: bool
    detail: str


def _same(pid: int, ticks: int) -> procs.ProcInfo | None:
    info = procs.proc_info(pid)
    if info is None or (ticks and info.start_ticks != ticks):
        return None
    return info


def _pairs(state: dict[str, Any]) -> list[tuple[int, int]]:
    pids = [int(p) for p in state.get("pids", [])]
    ticks = [int(t) for t in state.get("start_ticks", [])] or [0] * len(pids)
    return list(zip(pids, ticks, strict=False))


def _cancel_watchdog(state: dict[str, Any]) -> None:
    if "watchdog_pid" in state:
        cancel_watchdog(int(state["watchdog_pid"]), int(state.get("watchdog_start_ticks", 0)))


async def _resume(state: dict[str, Any]) -> str:
    resumed = 0
    for pid, ticks in _pairs(state):
        info = _same(pid, ticks)
        if info is None:
            continue
        try:
            procs.send_signal(info, signal.SIGCONT)
            resumed += 1
        except TargetNotFound:
            continue
    _cancel_watchdog(state)
    return f"resumed {resumed} paused process(es)" if resumed else "no paused process was left"


async def _kill_burners(state: dict[str, Any]) -> str:
    killed = 0
    for pid, ticks in _pairs(state):
        info = _same(pid, ticks)
        if info is None or "chaos.platform.local._burner" not in info.cmdline:
            continue
        try:
            procs.send_signal(info, signal.SIGKILL)
            killed += 1
        except TargetNotFound:
            continue
    return f"stopped {killed} CPU burner(s)" if killed else "no CPU burner was left"


async def _proxy(state: dict[str, Any]) -> str:
    # The proxy lived inside the runner process: it ended when the runner did.
    return f"proxy {state.get('listen', '?')} ended with its run; nothing to undo"


async def _netem(state: dict[str, Any]) -> str:
    interface = str(state.get("interface"))
    netns = state.get("netns")
    netem = Netem(interface, netns=str(netns) if netns else None, delay=0.0)
    await netem.remove()
    _cancel_watchdog(state)
    where = f" in netns {netns}" if netns else ""
    return f"removed netem from {interface}{where} (if it was still there)"


async def _nothing(state: dict[str, Any]) -> str:
    return "one-shot fault; nothing to undo"


_REVERTERS: dict[str, Callable[[dict[str, Any]], Awaitable[str]]] = {
    "processPause": _resume,
    "cpuStress": _kill_burners,
    "connectionReset": _proxy,
    "processKill": _nothing,
}


def manual_steps(fault: OutstandingFault) -> str:
    """How a person removes this fault by hand (printed when automatic recovery fails)."""
    state = fault.revert_state
    if fault.kind == "processPause":
        pids = " ".join(str(p) for p, _ in _pairs(state))
        return f"kill -CONT {pids}"
    if fault.kind == "cpuStress":
        return "pkill -KILL -f chaos.platform.local._burner"
    if "container" in state and "pods" in state:
        pods = " ".join(f"{p['namespace']}/{p['name']}" for p in state["pods"])
        return (f"the fault container {state['container']} ends by itself after its duration; "
                f"to end it now add an undo ephemeral container to {pods} "
                "(see runbooks/fault-left-behind.md)")
    if fault.kind == "networkLatency" and "interface" in state:
        prefix = f"ip netns exec {state['netns']} " if state.get("netns") else ""
        return f"{prefix}tc qdisc del dev {state['interface']} root"
    return "see runbooks/fault-left-behind.md"


@dataclass(frozen=True)
class KubeAccess:
    kubeconfig: str | None = None
    context: str | None = None


def _kubernetes_reverter(kind: str, access: KubeAccess
                         ) -> Callable[[dict[str, Any]], Awaitable[str]]:
    async def revert(state: dict[str, Any]) -> str:
        from chaos.faults.kubernetes import undo_from_state
        from chaos.platform.kubernetes import KubeClient

        client = await KubeClient.connect(access.kubeconfig, access.context)
        try:
            return await undo_from_state(client, kind, state)
        finally:
            await client.close()

    return revert


async def revert_outstanding(fault: OutstandingFault, attempts: int = 5,
                             kube: KubeAccess | None = None) -> RecoveryResult:
    reverter: Callable[[dict[str, Any]], Awaitable[str]]
    if "pods" in fault.revert_state and isinstance(fault.revert_state["pods"], list) and \
            fault.revert_state["pods"] and isinstance(fault.revert_state["pods"][0], dict):
        reverter = _kubernetes_reverter(fault.kind, kube or KubeAccess())
    elif fault.kind == "networkLatency":
        reverter = _netem if "interface" in fault.revert_state else _proxy
    else:
        reverter = _REVERTERS.get(fault.kind, _unknown)
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=3.0),
            reraise=True,
        ):
            with attempt:
                detail = await reverter(fault.revert_state)
    except ChaosError as exc:
        return RecoveryResult(fault, False, f"{exc}; remove it by hand: {manual_steps(fault)}")
    # A run killed between starting a watchdog and journaling its pid: find it by its tag.
    cancel_tagged(f"{fault.run_id}/{fault.name}")
    return RecoveryResult(fault, True, detail)


async def _unknown(state: dict[str, Any]) -> str:
    raise RevertFailed("this version does not know how to revert this fault kind")
