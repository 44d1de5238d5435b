"""Pushing a run's metrics to a Prometheus Pushgateway.

``PUT {url}/metrics/job/<job>/<label>/<value>...`` replaces every metric of that grouping key, so
each push leaves exactly the last run's metrics behind. Values that cannot travel in a path
segment (a ``/``, or the empty string) use the Pushgateway's ``<label>@base64/<base64url>`` form.
Failures raise :class:`~chaos.errors.PlatformError` saying where the push went and why it failed.

The push has a total deadline (``timeout``, the whole request: httpx's own timeout is per read)
and reads at most 64 KiB of an error answer. The URL is shown without its userinfo or query
string and the run's secrets are masked (chaos.redact), so the gateway's credentials never show.
"""

from __future__ import annotations

import asyncio
import base64
import re
from urllib.parse import quote

import httpx

from chaos import redact
from chaos.errors import InvalidInput, PlatformError
from chaos.units import check_http_url

__all__ = ["grouping_path", "push_run_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_TIMEOUT = 10.0
#: The most of an error answer read (the message shows its first 500 characters).
ERROR_BODY_LIMIT = 64 * 1024

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


def _describe(exc: httpx.HTTPError, timeout: float) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
                return "connection refused"
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect: {text}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s ({type(exc).__name__})"
    return f"{type(exc).__name__}: {text}"


async def push_run_metrics(
    url: str,
    job: str,
    grouping: dict[str, str],
    body: str,
    client: httpx.AsyncClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """PUT ``body`` (text exposition format) to the Pushgateway at ``url`` under the grouping
    key, within ``timeout`` seconds in all; raise PlatformError when the gateway cannot be
    reached, does not answer in time or does not answer 2xx."""
    redactor = redact.current().extended(urls=[url])
    try:
        check_http_url(url, "http://host:9091")
    except ValueError as exc:
        raise InvalidInput(f"the Pushgateway URL: {redactor.text(str(exc))}") from None
    target = url.rstrip("/") + grouping_path(job, grouping)
    where = f"pushing run metrics to {redactor.url(target)} failed"
    hint = "check the --pushgateway URL and that the Pushgateway is running"
    own = client is None
    http = client if client is not None else httpx.AsyncClient(trust_env=False)
    try:
        async with asyncio.timeout(timeout):
            async with http.stream(
                "PUT",
                target,
                content=body.encode(),
                headers={"Content-Type": CONTENT_TYPE},
                timeout=timeout,
            ) as response:
                status = response.status_code
                answer = b""
                if not 200 <= status < 300:
                    chunks = response.aiter_bytes()
                    async for chunk in chunks:
                        answer += chunk
                        if len(answer) >= ERROR_BODY_LIMIT:
                            break
                    close = getattr(chunks, "aclose", None)
                    if close is not None:
                        await close()
    except TimeoutError:
        raise PlatformError(f"{where}: timed out after {timeout:g}s (the whole request)",
                            hint=hint) from None
    except httpx.HTTPError as exc:
        raise PlatformError(redactor.text(f"{where}: {_describe(exc, timeout)}"),
                            hint=hint) from None
    finally:
        if own:
            await http.aclose()
    if not 200 <= status < 300:
        text = answer.decode("utf-8", "replace").strip().replace("\n", " ")[:500]
        raise PlatformError(redactor.text(f"{where}: HTTP {status}: {text or '(empty body)'}"))
