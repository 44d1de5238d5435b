"""The one registry of fault kinds: one line per kind.

The experiment model builds the fault keys from it, the platforms plan through it, ``chaos
recover`` finds the kind of a journaled fault in it, ``chaos kinds`` lists it, and the Helm
chart's Role rules are generated from it (``chaos kinds --rbac``, checked in CI). Adding a kind
is adding its module and a line here.
"""

from __future__ import annotations

from typing import Any

from chaos.faults import (
    connection_reset,
    cpu_stress,
    network_latency,
    pod_kill,
    process_kill,
    process_pause,
)
from chaos.faults.contract import FaultKind

FAULT_KINDS: tuple[FaultKind[Any, Any], ...] = (
    process_kill.KIND,
    process_pause.KIND,
    network_latency.KIND,
    connection_reset.KIND,
    cpu_stress.KIND,
    pod_kill.KIND,
)

_BY_KEY = {kind.key: kind for kind in FAULT_KINDS}


def fault_kind(key: str) -> FaultKind[Any, Any] | None:
    """The kind journaled as ``key`` (its YAML key), or None when this version has none."""
    return _BY_KEY.get(key)


__all__ = ["FAULT_KINDS", "fault_kind"]
