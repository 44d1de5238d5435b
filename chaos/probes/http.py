"""HTTP probe: one request per sample through the run's shared httpx client.

A sample is ok when the status is in the expected set and, if asked, the body contains a string
or a JSON field equals a value. Connection errors and timeouts are failed samples whose detail
says what happened; they never raise.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from chaos.engine.protocols import Outcome
from chaos.model.experiment import HttpProbe, ProbeSpec

_MISSING = object()


def json_path(data: Any, path: str) -> Any:
    """Follow a dotted path (``checks.0.ok``) into decoded JSON; a missing step gives _MISSING."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(
            part
        ) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _connect_error(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        root = _root_cause(exc)
        if isinstance(root, ConnectionRefusedError) or "refused" in text.lower():
            return "connection refused"
        if isinstance(root, OSError) and root.strerror:
            return f"cannot connect: {root.strerror}"
        return f"cannot connect: {text}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection dropped: {text}"
    return f"{type(exc).__name__}: {text}"


class HttpProbeDriver:
    def __init__(self, spec: ProbeSpec, client: httpx.AsyncClient) -> None:
        assert spec.http is not None
        self._spec = spec
        self._http: HttpProbe = spec.http
        self._client = client

    @property
    def spec(self) -> ProbeSpec:
        return self._spec

    async def sample(self) -> Outcome:
        h = self._http
        started = time.perf_counter()
        try:
            response = await self._client.request(
                h.method,
                h.url,
                headers=h.headers,
                content=h.body,
                timeout=h.timeout,
                follow_redirects=h.follow_redirects,
            )
        except httpx.HTTPError as exc:
            return Outcome(False, time.perf_counter() - started, _connect_error(exc))
        latency = time.perf_counter() - started
        if response.status_code not in h.expect.status:
            expected = ",".join(str(s) for s in h.expect.status)
            return Outcome(False, latency, f"status {response.status_code} (expected {expected})")
        if h.expect.body_contains is not None and h.expect.body_contains not in response.text:
            return Outcome(False, latency, f"body does not contain {h.expect.body_contains!r}")
        if h.expect.json_ is not None:
            try:
                data = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return Outcome(False, latency, "body is not JSON")
            found = json_path(data, h.expect.json_.path)
            if found is _MISSING:
                return Outcome(False, latency, f"JSON has no '{h.expect.json_.path}'")
            if found != h.expect.json_.equals:
                return Outcome(
                    False,
                    latency,
                    f"JSON {h.expect.json_.path} is {found!r}, expected {h.expect.json_.equals!r}",
                )
        return Outcome(True, latency, str(response.status_code))
