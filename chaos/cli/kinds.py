"""``chaos kinds``: the registered fault kinds, probe kinds and SLO objectives; and
``--chart-rules``, the Role rules of each fault kind as the Helm chart reads them
(charts/chaos-runner/files/fault-rules.json is this output, checked in CI)."""

from __future__ import annotations

import json
from typing import Any


def chart_rules() -> dict[str, Any]:
    """Per fault name the chart accepts, the rules its kind declares; plus what every
    Kubernetes fault needs (``base``). Rules are (apiGroup, resource[/subresource], verbs)."""
    from chaos.faults.registry import FAULT_KINDS
    from chaos.targets.kubernetes import BASE_PERMISSIONS

    def rules(perms: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
        merged: dict[tuple[str, str, str], set[str]] = {}
        for verb, resource, group, name in perms:
            merged.setdefault((group, resource, name), set()).add(verb)
        return [{"apiGroup": g, "resource": r, **({"resourceName": n} if n else {}),
                 "verbs": sorted(v)} for (g, r, n), v in sorted(merged.items())]

    faults: dict[str, list[dict[str, Any]]] = {}
    for kind in FAULT_KINDS:
        for name, example in kind.chart_variants.items():
            params = kind.params.model_validate(example)
            perms = [(p.verb, p.resource + (f"/{p.subresource}" if p.subresource else ""),
                      p.group, "") for p in kind.permissions(params)]
            faults[name] = rules(perms)
    return {
        "generatedBy": "chaos kinds --chart-rules (do not edit: CI checks it matches the "
        "runner's fault registry)",
        "base": rules(list(BASE_PERMISSIONS)),
        "faults": faults,
    }


def render(chart: bool) -> str:
    if chart:
        return json.dumps(chart_rules(), indent=2) + "\n"
    from chaos.faults.registry import FAULT_KINDS
    from chaos.objectives import OBJECTIVES
    from chaos.probes.registry import PROBE_KINDS

    lines = ["fault kinds:"]
    for kind in FAULT_KINDS:
        platforms = ", ".join(sorted(kind.platforms))
        lines.append(f"  {kind.key:<20} [{platforms}] {kind.summary}")
    lines.append("probe kinds:")
    for probe in PROBE_KINDS:
        lines.append(f"  {probe.key:<20} {probe.summary}")
    lines.append("SLO objectives:")
    for objective in OBJECTIVES:
        lines.append(f"  {objective.key:<20} {objective.description}")
    return "\n".join(lines) + "\n"


__all__ = ["chart_rules", "render"]
