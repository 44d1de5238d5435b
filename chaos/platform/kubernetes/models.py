"""Plain values the Kubernetes layer hands upwards: pods and workload status.

The API's JSON is read into these at the boundary so that nothing above the platform layer
handles raw ``dict[str, Any]`` objects from the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PodRef", "WorkloadStatus"]


@dataclass(frozen=True)
class PodRef:
    """One pod as it was when listed. ``uid`` pins this exact pod: a replacement with the same
    name (a StatefulSet's) has another uid, and deleting through a stale ref is refused.

    ``owner`` is the workload that manages the pod, resolved through its ReplicaSet for a
    Deployment: ``"Deployment/checkout"``, ``"StatefulSet/db"``, or None for a bare pod."""

    namespace: str
    name: str
    uid: str
    node: str | None
    owner: str | None
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ready: bool = False
    phase: str = "Unknown"
    restarts: int = 0
    #: The pod has a deletionTimestamp: it is already on its way out.
    terminating: bool = False

    def describe(self) -> str:
        """``pod shop/checkout-7d9c-x2 (Deployment/checkout, node kwok-node-0)``."""
        where = f"node {self.node}" if self.node else "not scheduled"
        owner = f"{self.owner}, " if self.owner else ""
        return f"pod {self.namespace}/{self.name} ({owner}{where})"


@dataclass(frozen=True)
class WorkloadStatus:
    """Replica counts of a Deployment or StatefulSet (``replicas`` is the desired count)."""

    kind: str
    namespace: str
    name: str
    replicas: int
    ready: int
    available: int
    updated: int
    #: Pods that exist, old and new (``status.replicas``).
    current: int
    generation: int
    observed_generation: int

    @property
    def settled(self) -> bool:
        """The controller has seen the latest spec and every desired replica is updated, ready
        and available, with no extra pods left over."""
        return (
            self.observed_generation >= self.generation
            and self.ready == self.available == self.updated == self.current == self.replicas
        )

    def describe(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}: {self.ready}/{self.replicas} ready, "
            f"{self.available} available, {self.updated} updated"
        )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object's controlling owner reference, if any."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    for ref in refs:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("kind", "")), str(ref.get("name", ""))
    return None


def pod_ref(pod: Mapping[str, Any], replicaset_owners: Mapping[str, str | None]) -> PodRef:
    """A :class:`PodRef` from a Pod's JSON. ``replicaset_owners`` maps ReplicaSet names in the
    pod's namespace to their owner (``"Deployment/x"``, or None for a bare ReplicaSet)."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    owner: str | None = None
    controller = controller_of(pod)
    if controller is not None:
        kind, name = controller
        owner = f"{kind}/{name}"
        if kind == "ReplicaSet" and replicaset_owners.get(name):
            owner = replicaset_owners[name]
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    restarts = sum(_int(c.get("restartCount")) for c in status.get("containerStatuses") or [])
    return PodRef(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        node=spec.get("nodeName") or None,
        owner=owner,
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        ready=ready,
        phase=str(status.get("phase") or "Unknown"),
        restarts=restarts,
        terminating=bool(meta.get("deletionTimestamp")),
    )


def workload_status(kind: str, obj: Mapping[str, Any]) -> WorkloadStatus:
    meta = obj.get("metadata", {})
    spec = obj.get("spec", {})
    status = obj.get("status", {})
    return WorkloadStatus(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        replicas=_int(spec.get("replicas", 1)),
        ready=_int(status.get("readyReplicas")),
        available=_int(status.get("availableReplicas")),
        updated=_int(status.get("updatedReplicas")),
        current=_int(status.get("replicas")),
        generation=_int(meta.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
    )
