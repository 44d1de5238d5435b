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
        return f"{self.verb} {self.full_resource}{group} {where}"

    def rule(self) -> str:
        """The RBAC rule (YAML, as in a Role's ``rules:`` list) that grants this check."""
        return (
            f'- apiGroups: ["{self.group}"]\n'
            f'  resources: ["{self.full_resource}"]\n'
            f'  verbs: ["{self.verb}"]'
        )


def rules_yaml(checks: Iterable[AccessCheck]) -> str:
    """The rules granting all ``checks``, merged per (group, resource), in first-seen order."""
    merged: dict[tuple[str, str], list[str]] = {}
    for check in checks:
        verbs = merged.setdefault((check.group, check.full_resource), [])
        if check.verb not in verbs:
            verbs.append(check.verb)
    return "\n".join(
        f'- apiGroups: ["{group}"]\n  resources: ["{resource}"]\n  verbs: {json.dumps(verbs)}'
        for (group, resource), verbs in merged.items()
    )
