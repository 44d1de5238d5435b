"""The one registry of probe kinds: one line per kind (see chaos.probes.contract)."""

from __future__ import annotations

from typing import Any

from chaos.probes import command, http, kubernetes, prometheus, tcp
from chaos.probes.contract import ProbeKind

PROBE_KINDS: tuple[ProbeKind[Any], ...] = (
    http.KIND,
    command.KIND,
    tcp.KIND,
    kubernetes.KIND,
    prometheus.KIND,
)

__all__ = ["PROBE_KINDS"]
