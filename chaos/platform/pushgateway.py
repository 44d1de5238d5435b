"""Pushing a run's metrics to a Prometheus Pushgateway.

``PUT {url}/metrics/job/<job>/<label>/<value>...`` replaces every metric of that grouping key, so
each push leaves exactly the last run's metrics behind. Values that cannot travel in a path
segment (a ``/``, or the empty string) use the Pushgateway's ``<label>@base64/<base64url>`` form.
Failures raise :class:`~chaos.errors.PlatformError` saying where the push went and why it failed.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

import httpx

from chaos.errors import InvalidInput, PlatformError
from chaos.units import check_http_url

__all__ = ["grouping_path", "push_run_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_TIMEOUT = 10.0

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _segment(name: str, value: str) -> str:
    if not _LABEL_NAME.match(name) or name.startswith("__"):
        raise InvalidInput(
            f"'{name}' is not a valid Pushgateway grouping label name",
            hint="use letters, digits and '_', not starting with a digit or '__'",
        )
    if value == "" or "/" in value:
        encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
        return f"{name}@base64/{encoded}"
    return f"{name}/{quote(value, safe='')}"


def grouping_path(job: str, grouping: dict[str, str]) -> str:
    """The path of a grouping key: ``/metrics/job/<job>/<label>/<value>...``."""
    if not job:
        raise InvalidInput("the Pushgateway job name must not be empty")
    if "job" in grouping:
        raise InvalidInput("'job' is the Pushgateway job itself; do not repeat it in the grouping")
    parts = [_segment("job", job)] + [_segment(k, v) for k, v in grouping.items()]
    return "/metrics/" + "/".join(parts)


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
                return "connection refused"
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect: {text}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {DEFAULT_TIMEOUT:g}s ({type(exc).__name__})"
    return f"{type(exc).__name__}: {text}"


async def push_run_metrics(
    url: str,
    job: str,
    grouping: dict[str, str],
    body: str,
    client: httpx.AsyncClient | None = None,
) -> None:
    """PUT ``body`` (text exposition format) to the Pushgateway at ``url`` under the grouping
    key; raise PlatformError when the gateway cannot be reached or does not answer 2xx."""
    try:
        check_http_url(url, "http://host:9091")
    except ValueError as exc:
        raise InvalidInput(f"the Pushgateway URL: {exc}") from None
    target = url.rstrip("/") + grouping_path(job, grouping)
    own = client is None
    http = client if client is not None else httpx.AsyncClient(trust_env=False)
    try:
        response = await http.put(
            target,
            content=body.encode(),
            headers={"Content-Type": CONTENT_TYPE},
            timeout=DEFAULT_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise PlatformError(
            f"pushing run metrics to {target} failed: {_describe(exc)}",
            hint="check the --pushgateway URL and that the Pushgateway is running",
        ) from exc
    finally:
        if own:
            await http.aclose()
    if not 200 <= response.status_code < 300:
        text = response.text.strip().replace("\n", " ")[:500] or "(empty body)"
        raise PlatformError(
            f"pushing run metrics to {target} failed: HTTP {response.status_code}: {text}"
        )
