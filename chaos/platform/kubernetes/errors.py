"""Kubernetes API failures as :mod:`chaos.errors` exceptions, with messages a person can act on.

Everything the Kubernetes client or urllib3 raises is translated here, at the boundary, into the
most specific class below (chained with ``raise ... from exc``), so nothing above the platform
layer ever sees a client-library exception::

    KubeError(PlatformError)            any failed API call; .status, .api_reason
    ├── NotFound                        404: the object (or its kind) does not exist
    ├── Conflict                        409: changed under us, already exists, precondition failed
    ├── Invalid                         400/422: the server refused the object as malformed
    ├── DisruptionBudgetBlocked         429 from an eviction: a PodDisruptionBudget forbids it
    ├── LeaseHeld                       another run holds the target's lease
    ├── Forbidden(PermissionDenied)     403: RBAC (hint: the rule that grants it) or admission
    ├── Unauthorized(PermissionDenied)  401: the credentials are missing, wrong or expired
    ├── Unavailable(TransientError)     5xx, connection refused/reset/dropped, timeouts: retried
    └── TooManyRequests(TransientError) 429 (API priority and fairness): retried after .retry_after

Every message reads ``<action> <target> failed: <status> <reason>: <the server's message>``, e.g.
``delete pod shop/checkout-7d9c-x2 failed: 403 Forbidden: pods "checkout-7d9c-x2" is forbidden:
User "system:serviceaccount:shop:chaos" cannot delete resource "pods" ...``.

This module does not import the Kubernetes client: it recognises the client's exceptions by name
so that ``import chaos.platform.kubernetes`` stays cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chaos.errors import PermissionDenied, PlatformError, TransientError

from .access import AccessCheck

__all__ = [
    "Conflict",
    "DisruptionBudgetBlocked",
    "Forbidden",
    "HttpFailure",
    "Invalid",
    "KubeError",
    "LeaseHeld",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "map_error",
]


class KubeError(PlatformError):
    """A Kubernetes API call failed. ``status`` is the HTTP status (None when no response came
    back) and ``api_reason`` the machine-readable ``Status.reason`` (``AlreadyExists``, ...)."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        api_reason: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.api_reason = api_reason


class NotFound(KubeError):
    """404: the object, its namespace or its kind does not exist."""


class Conflict(KubeError):
    """409: the object changed since it was read, already exists, or a precondition failed."""


class Invalid(KubeError):
    """400/422: the server refused the request body (validation failed)."""


class Forbidden(KubeError, PermissionDenied):
    """403: RBAC or an admission plugin (Pod Security, ...) refused the request."""


class Unauthorized(KubeError, PermissionDenied):
    """401: the API server did not accept the credentials."""


class Unavailable(KubeError, TransientError):
    """The API server could not be reached or failed (5xx, refused, reset, timed out)."""


class TooManyRequests(KubeError, TransientError):
    """429 from API priority and fairness: try again after ``retry_after`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = 429,
        api_reason: str = "TooManyRequests",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint, status=status, api_reason=api_reason)
        self.retry_after = retry_after


class DisruptionBudgetBlocked(KubeError):
    """An eviction was refused because a PodDisruptionBudget allows no more disruptions.

    Not transient in any useful sense for a chaos run: the budget is doing its job, and waiting
    for it would only delay the run. ``budget`` names the PDB when the server said which."""

    def __init__(self, message: str, *, hint: str | None = None, budget: str | None = None) -> None:
        super().__init__(message, hint=hint, status=429, api_reason="TooManyRequests")
        self.budget = budget


class LeaseHeld(KubeError):
    """Another holder has the lease (and it has not expired): another run owns the target."""

    def __init__(
        self, message: str, *, hint: str | None = None, holder: str, expires_at: datetime | None
    ) -> None:
        super().__init__(message, hint=hint, status=None, api_reason="LeaseHeld")
        self.holder = holder
        self.expires_at = expires_at


class HttpFailure(Exception):
    """A non-2xx response, as raised by the client's request helper before mapping."""

    def __init__(self, status: int, reason: str, body: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers


# `pods "x" is forbidden: User "u" cannot delete resource "pods" in API group "" in the
# namespace "shop"` (or `at the cluster scope`); subresources appear as "pods/eviction".
_RBAC_DENIAL = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)" '
    r'in API group "(?P<group>[^"]*)"(?: in the namespace "(?P<namespace>[^"]*)")?'
)
_PDB_NAME = re.compile(r"[Tt]he disruption budget (?P<name>[\w.-]+)")
_CERT_PROBLEM = ("certificate verify failed", "CERTIFICATE_VERIFY_FAILED", "hostname mismatch")


def rbac_hint(message: str) -> str | None:
    """The Role rule that would have allowed what an RBAC 403 ``message`` refused, if it says."""
    match = _RBAC_DENIAL.search(message)
    if match is None:
        return None
    resource, _, subresource = match["resource"].partition("/")
    check = AccessCheck(
        verb=match["verb"],
        resource=resource,
        subresource=subresource,
        group=match["group"],
        namespace=match["namespace"],
    )
    scope = (
        f"a Role in namespace {check.namespace}"
        if check.namespace
        else "a ClusterRole (cluster-scoped resource)"
    )
    return f"grant {match['user']} this rule through {scope} and a binding:\n{check.rule()}"


def _status_body(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _causes(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    return [c for c in causes if isinstance(c, dict)] if isinstance(causes, list) else []


def _retry_after(headers: Mapping[str, str], status: Mapping[str, Any]) -> float | None:
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass  # an HTTP date: rare from the API server, fall back to backoff
    details = status.get("details")
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None


def from_http(
    action: str,
    target: str,
    status_code: int,
    http_reason: str,
    body: str,
    headers: Mapping[str, str],
) -> KubeError:
    """The exception for a non-2xx response to ``action`` on ``target``."""
    status = _status_body(body)
    server_message = str(status.get("message") or body.strip() or http_reason or "(no message)")
    api_reason = str(status.get("reason") or "")
    causes = _causes(status)
    cause_text = "; ".join(str(c.get("message")) for c in causes if c.get("message"))
    extra = [
        str(c["message"])
        for c in causes
        if c.get("message") and str(c["message"]) not in server_message
    ]
    text = f"{server_message} ({'; '.join(dict.fromkeys(extra))})" if extra else server_message
    message = f"{action} {target} failed: {status_code} {http_reason or api_reason}: {text}"
    kw: dict[str, Any] = {"status": status_code, "api_reason": api_reason}

    if status_code == 429:
        if any(c.get("reason") == "DisruptionBudget" for c in causes) or "disruption budget" in (
            server_message.lower()
        ):
            match = _PDB_NAME.search(cause_text or server_message)
            budget = match["name"] if match else None
            if "still being processed" in cause_text:
                # The PDB controller has not caught up with a new budget yet: retry shortly.
                return TooManyRequests(message, retry_after=1.0, api_reason=api_reason)
            what = f"PodDisruptionBudget {budget}" if budget else "a PodDisruptionBudget"
            return DisruptionBudgetBlocked(
                message,
                budget=budget,
                hint=f"{what} allows no more disruptions right now; delete the pod instead of "
                "evicting it, lower the fault's pod count, or wait until more pods are Ready",
            )
        return TooManyRequests(
            message,
            retry_after=_retry_after(headers, status),
            api_reason=api_reason,
            hint="the API server is shedding load (API priority and fairness)",
        )
    if status_code == 404:
        return NotFound(message, **kw)
    if status_code == 409:
        hint = None
        if "precondition" in server_message.lower():
            hint = "the object was replaced by a new one with the same name since it was read"
        return Conflict(message, hint=hint, **kw)
    if status_code in (400, 422):
        return Invalid(message, **kw)
    if status_code == 401:
        return Unauthorized(
            message,
            hint="the credentials were refused: check the kubeconfig's user, or renew an expired "
            "token or client certificate",
            **kw,
        )
    if status_code == 403:
        hint = rbac_hint(server_message)
        if hint is None and "violates PodSecurity" in server_message:
            hint = (
                "the namespace's Pod Security level forbids this; it is set by the label "
                "pod-security.kubernetes.io/enforce on the namespace"
            )
        return Forbidden(message, hint=hint, **kw)
    if status_code >= 500 and "more than one PodDisruptionBudget" not in server_message:
        if status_code == 501:
            return KubeError(message, **kw)
        return Unavailable(
            message,
            hint="the API server failed; this was retried with backoff. Check its health "
            "(kubectl get --raw /readyz?verbose)",
            **kw,
        )
    return KubeError(message, **kw)


def _connection_error(action: str, target: str, exc: BaseException) -> KubeError:
    """A failure with no HTTP response: refused, reset, dropped, timed out, TLS."""
    detail = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
    message = f"{action} {target} failed: no response from the API server: {detail}"
    if any(p in detail for p in _CERT_PROBLEM):
        # A TLS verification failure does not heal by itself: do not retry it.
        return KubeError(
            message,
            hint="the API server's certificate did not verify: check the kubeconfig's "
            "certificate-authority and server address",
        )
    return Unavailable(
        message,
        hint="the API server could not be reached; this was retried with backoff. Check the "
        "kubeconfig's server address and that the API server is up",
    )


def map_error(exc: BaseException, action: str, target: str) -> BaseException:
    """Translate ``exc`` (from the Kubernetes client, urllib3 or the OS) into a :class:`KubeError`
    for ``action`` on ``target``. Anything unrecognised is returned unchanged (a bug, not an API
    failure)."""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, HttpFailure):
        return from_http(action, target, exc.status, exc.reason, exc.body, exc.headers)
    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__
    if "ApiException" in names and module.startswith("kubernetes"):
        status_code = getattr(exc, "status", 0) or 0
        if status_code:
            return from_http(
                action,
                target,
                int(status_code),
                str(getattr(exc, "reason", "") or ""),
                str(getattr(exc, "body", "") or ""),
                dict(getattr(exc, "headers", None) or {}),
            )
        # status 0: the client wraps TLS errors this way (reason holds the text).
        return _connection_error(action, target, exc)
    if module.startswith("urllib3") or isinstance(exc, OSError | TimeoutError):
        return _connection_error(action, target, exc)
    return exc
