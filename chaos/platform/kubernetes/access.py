"""What the runner must be allowed to do, as checks for a preflight SelfSubjectAccessReview.

An :class:`AccessCheck` is one (verb, resource) question. :meth:`KubeClient.access_review` asks
the API server each one and fills in ``allowed`` and ``reason``; a denied check knows the RBAC
rule that would grant it (:meth:`AccessCheck.rule`), so preflight can print exactly what to add.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AccessCheck", "rules_yaml"]


@dataclass
class AccessCheck:
    """One permission: ``verb`` on ``resource``/``subresource`` of API ``group`` in
    ``namespace`` (None: cluster-wide). ``allowed`` is None until reviewed."""

    verb: str
    resource: str
    namespace: str | None
    group: str = ""
    subresource: str = ""
    #: One object by name (RBAC ``resourceNames``); empty: any object of the resource.
    name: str = ""
    allowed: bool | None = None
    reason: str = ""

    @property
    def full_resource(self) -> str:
        """``pods/eviction`` style: the resource as RBAC rules name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self) -> str:
        """``create pods/eviction in namespace shop``."""
        group = f" (API group {self.group})" if self.group else ""
        where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {self.full_resource}{named}{group} {where}"

    def rule(self) -> str:
        """The RBAC rule (YAML, as in a Role's ``rules:`` list) that grants this check."""
        names = f'\n  resourceNames: ["{self.name}"]' if self.name else ""
        return (
            f'- apiGroups: ["{self.group}"]\n'
            f'  resources: ["{self.full_resource}"]{names}\n'
            f'  verbs: ["{self.verb}"]'
        )


def rules_yaml(checks: Iterable[AccessCheck]) -> str:
    """The rules granting all ``checks``, merged per (group, resource), in first-seen order."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    for check in checks:
        verbs = merged.setdefault((check.group, check.full_resource, check.name), [])
        if check.verb not in verbs:
            verbs.append(check.verb)
    return "\n".join(
        f'- apiGroups: ["{group}"]\n  resources: ["{resource}"]\n'
        + (f'  resourceNames: ["{name}"]\n' if name else "")
        + f"  verbs: {json.dumps(verbs)}"
        for (group, resource, name), verbs in merged.items()
    )
