"""HTTP probe: one request per sample through the run's shared httpx client.

A sample is ok when the status is in the expected set and, if asked, the body contains a string
or a JSON field equals a value. Connection errors and timeouts are failed samples whose detail
says what happened; they never raise.

Every request has a total deadline, the probe's ``timeout`` (httpx's own timeout is per read: a
server dripping a byte a second never trips it), and at most :data:`BODY_LIMIT` bytes of a body are
read: a larger body is a failed sample when ``bodyContains`` or ``json`` needs it, and is not read
further otherwise. Details are masked with the run's redactor (chaos.redact).
"""

# No ``from __future__ import annotations``: pydantic reads the models' annotations.
import json
import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from chaos.model._units import Duration
from chaos.model.common import HttpUrl, Strict
from chaos.probes.contract import ProbeContext, ProbeKind

if TYPE_CHECKING:
    import httpx

    from chaos.engine.protocols import Outcome, Probe
    from chaos.model.experiment import ProbeSpec

_MISSING = object()
#: The most of a response body a probe (or a rollback, or a Prometheus answer) reads: 1 MiB.
BODY_LIMIT = 1 << 20


class JsonExpect(Strict):
    path: str = Field(description="dotted path into the JSON body, e.g. 'status' or 'checks.0.ok'")
    equals: str | int | float | bool | None


class HttpExpect(Strict):
    status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    body_contains: str | None = None
    json_: JsonExpect | None = Field(default=None, alias="json")

    @field_validator("status")
    @classmethod
    def _valid_status(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
        return value


class HttpProbe(Strict):
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    timeout: Duration = 2.0
    expect: HttpExpect = Field(default_factory=HttpExpect)
    follow_redirects: bool = False
    verify_tls: bool = True


class HttpProbeKind(ProbeKind[HttpProbe]):
    key: ClassVar[str] = "http"
    params: ClassVar[type[Strict]] = HttpProbe
    summary: ClassVar[str] = "one HTTP request per sample; ok on the expected status and body"

    def describe(self, params: HttpProbe) -> str:
        return f"{params.method} {params.url}"

    def driver(self, spec: "ProbeSpec", ctx: ProbeContext) -> "Probe":
        params = self.typed(spec)
        # The shared client verifies TLS; a probe that opts out gets its own.
        return HttpProbeDriver(spec, ctx.http_client(verify=params.verify_tls))


KIND = HttpProbeKind()


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


async def read_capped(response: "httpx.Response", limit: int = BODY_LIMIT) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the (decoded) body of a streamed response, and whether there
    was more; nothing past the limit is read."""
    kept = bytearray()
    chunks = response.aiter_bytes()
    try:
        async for chunk in chunks:
            room = limit - len(kept)
            if len(chunk) > room:
                kept += chunk[:room]
                return bytes(kept), True
            kept += chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    return bytes(kept), False


def _connect_error(exc: "httpx.HTTPError") -> str:
    import httpx

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
    def __init__(self, spec: "ProbeSpec", client: "httpx.AsyncClient") -> None:
        self._spec = spec
        self._http: HttpProbe = KIND.typed(spec)
        self._client = client

    @property
    def spec(self) -> "ProbeSpec":
        return self._spec

    async def sample(self) -> "Outcome":
        import asyncio

        import httpx

        from chaos.engine.protocols import Outcome
        from chaos.redact import current

        h = self._http
        started = time.perf_counter()
        try:
            async with asyncio.timeout(h.timeout):
                async with self._client.stream(
                    h.method,
                    h.url,
                    headers=h.headers,
                    content=h.body,
                    timeout=h.timeout,
                    follow_redirects=h.follow_redirects,
                ) as response:
                    body, truncated = await read_capped(response)
        except TimeoutError:
            return Outcome(False, time.perf_counter() - started,
                           f"timed out after {h.timeout:g}s (the whole request)")
        except httpx.HTTPError as exc:
            return Outcome(False, time.perf_counter() - started,
                           current().text(_connect_error(exc)))
        latency = time.perf_counter() - started
        ok, detail = self._judge(response, body, truncated)
        return Outcome(ok, latency, current().text(detail))

    def _judge(self, response: "httpx.Response", body: bytes,
               truncated: bool) -> tuple[bool, str]:
        h = self._http
        if response.status_code not in h.expect.status:
            expected = ",".join(str(s) for s in h.expect.status)
            return False, f"status {response.status_code} (expected {expected})"
        if truncated and (h.expect.body_contains is not None or h.expect.json_ is not None):
            return False, (f"body is larger than {BODY_LIMIT // 1024} KiB, the most a probe "
                           "reads; bodyContains and json need all of it")
        if h.expect.body_contains is not None:
            text = body.decode(response.encoding or "utf-8", "replace")
            if h.expect.body_contains not in text:
                return False, f"body does not contain {h.expect.body_contains!r}"
        if h.expect.json_ is not None:
            try:
                data = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return False, "body is not JSON"
            found = json_path(data, h.expect.json_.path)
            if found is _MISSING:
                return False, f"JSON has no '{h.expect.json_.path}'"
            if found != h.expect.json_.equals:
                return False, (f"JSON {h.expect.json_.path} is {found!r}, expected "
                               f"{h.expect.json_.equals!r}")
        return True, str(response.status_code)
