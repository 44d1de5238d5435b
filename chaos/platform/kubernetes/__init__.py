"""Kubernetes platform access: the only package that imports the ``kubernetes`` client.

Everything the runner does to a cluster goes through :class:`KubeClient`: listing and deleting
or evicting pods, scaling workloads, reading any object, annotating what a run touched, emitting
Events, adding ephemeral containers, checking permissions before injecting (SelfSubjectAccessReview)
and holding a Lease per target so that two runs never inject into the same target at once.

Every call is async (the synchronous client runs in a worker thread), is retried when the failure
is transient (:mod:`.retry`), and fails with an exception from :mod:`.errors` whose message says
what was attempted, on what, and why. The ``kubernetes`` package itself is imported only by
:meth:`KubeClient.connect`, so importing this package costs almost nothing at CLI start-up.
See docs/kubernetes.md.
"""

from .access import AccessCheck, rules_yaml
from .client import REPORTING_CONTROLLER, KubeClient, LeaseInfo
from .errors import (
    Conflict,
    DisruptionBudgetBlocked,
    Forbidden,
    Invalid,
    KubeError,
    LeaseHeld,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from .models import PodRef, WorkloadStatus
from .retry import RetryPolicy

__all__ = [
    "REPORTING_CONTROLLER",
    "AccessCheck",
    "Conflict",
    "DisruptionBudgetBlocked",
    "Forbidden",
    "Invalid",
    "KubeClient",
    "KubeError",
    "LeaseHeld",
    "LeaseInfo",
    "NotFound",
    "PodRef",
    "RetryPolicy",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "WorkloadStatus",
    "rules_yaml",
]
