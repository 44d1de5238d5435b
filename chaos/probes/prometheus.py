"""Prometheus probe: one instant PromQL query per sample (``GET /api/v1/query``).

A sample is ok when the query gives a scalar or exactly one series whose value meets ``expect``.
Everything else is a failed sample whose detail says what went wrong and how to fix the query:
HTTP and connection errors, Prometheus' own ``error`` field, no series, several series, NaN or
infinite values. Samples never raise.

Auth secrets come from environment variables named in the experiment. Whether they are set is an
input problem, not a sample failure: :func:`check_prometheus_env` raises
:class:`~chaos.errors.InvalidInput` (exit 2) and is meant to be called at preflight, before any
fault is injected; the driver's constructor calls it too.

The driver uses the run's shared httpx client unless the probe needs its own TLS settings
(``verifyTls: false`` or ``caFile``); then it owns a client, which :meth:`aclose` closes.

A query has a total deadline (``timeout``, the whole request) and reads at most
:data:`chaos.probes.http.BODY_LIMIT` of the answer; a larger answer is a failed sample. Details
are masked with the run's redactor (chaos.redact): the token, the basic-auth pair, the URL's
userinfo and query string never show.
"""

# No ``from __future__ import annotations``: pydantic reads the models' annotations.
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import Field, model_validator

from chaos.errors import InvalidInput
from chaos.model._units import Duration, NumberThreshold
from chaos.model.common import HttpUrl, Strict
from chaos.probes.contract import ProbeContext, ProbeKind

if TYPE_CHECKING:
    import httpx

    from chaos.engine.protocols import Outcome, Probe
    from chaos.model.experiment import ProbeSpec

__all__ = ["PrometheusProbe", "PrometheusProbeDriver", "check_prometheus_env", "query_url"]

_MAX_ERROR = 300
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class BasicAuthEnv(Strict):
    """HTTP basic auth read from environment variables, so no secret lives in the experiment."""

    username_env: str = Field(pattern=_ENV_NAME, description="env var holding the user name")
    password_env: str = Field(pattern=_ENV_NAME, description="env var holding the password")


class PrometheusProbe(Strict):
    """An instant PromQL query; a sample is ok when its single value meets ``expect``."""

    url: HttpUrl = Field(description="base URL of the Prometheus server, e.g. "
                         "http://prometheus:9090")
    query: str = Field(min_length=1, description="PromQL giving a scalar or a single series")
    expect: NumberThreshold
    timeout: Duration = 5.0
    bearer_token_env: str | None = Field(
        default=None, pattern=_ENV_NAME, description="env var holding a bearer token"
    )
    basic_auth: BasicAuthEnv | None = None
    verify_tls: bool = True
    ca_file: str | None = Field(default=None, description="PEM bundle to verify the server with")

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        if self.bearer_token_env is not None and self.basic_auth is not None:
            raise ValueError("a prometheus probe takes bearerTokenEnv or basicAuth, not both")
        return self


def _missing_env(p: PrometheusProbe, environ: Mapping[str, str]) -> list[str]:
    names: list[str] = []
    if p.bearer_token_env is not None:
        names.append(p.bearer_token_env)
    if p.basic_auth is not None:
        names += [p.basic_auth.username_env, p.basic_auth.password_env]
    return [n for n in names if not environ.get(n)]


def _env_problems(name: str, p: PrometheusProbe, environ: Mapping[str, str]) -> list[str]:
    problems = [
        f"probe '{name}': env var {var} is not set (or is empty); the prometheus probe reads "
        "its credentials from it"
        for var in _missing_env(p, environ)
    ]
    if p.ca_file is not None and not os.access(p.ca_file, os.R_OK):
        problems.append(f"probe '{name}': caFile {p.ca_file} does not exist or is not readable")
    return problems


class PrometheusProbeKind(ProbeKind[PrometheusProbe]):
    key: ClassVar[str] = "prometheus"
    params: ClassVar[type[Strict]] = PrometheusProbe
    summary: ClassVar[str] = "an instant PromQL query; ok when its one value meets expect"

    def describe(self, params: PrometheusProbe) -> str:
        return f"{params.query} {params.expect} at {params.url}"

    def check_env(self, name: str, params: PrometheusProbe,
                  environ: Mapping[str, str]) -> list[str]:
        return _env_problems(name, params, environ)

    def driver(self, spec: "ProbeSpec", ctx: ProbeContext) -> "Probe":
        driver = PrometheusProbeDriver(spec, ctx.http_client())
        if driver.owns_client:
            ctx.on_close(driver.aclose)
        return driver


KIND = PrometheusProbeKind()


def check_prometheus_env(
    spec: "ProbeSpec | Iterable[ProbeSpec]", environ: Mapping[str, str] | None = None
) -> None:
    """Raise InvalidInput when a prometheus probe's auth env var or CA file is missing.

    Takes one probe or several (``experiment.spec.probes``); probes of other kinds are ignored.
    Every problem is reported at once.
    """
    from chaos.model.experiment import ProbeSpec

    env = os.environ if environ is None else environ
    specs = [spec] if isinstance(spec, ProbeSpec) else list(spec)
    problems: list[str] = []
    for s in specs:
        if isinstance(s.params, PrometheusProbe):
            problems += _env_problems(s.name, s.params, env)
    if problems:
        raise InvalidInput(
            "; ".join(problems),
            hint="export the variables (or fix caFile) before `chaos run`; nothing was injected",
        )


def query_url(base: str) -> str:
    """The instant-query endpoint under a Prometheus base URL (which may carry a path prefix)."""
    return base.rstrip("/") + "/api/v1/query"


def _labels(metric: object) -> str:
    if not isinstance(metric, dict) or not metric:
        return "{}"
    name = metric.get("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


def _error_text(body: bytes) -> str:
    """Prometheus' own ``error`` field when the body has one, else the start of the body."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        kind = data.get("errorType")
        prefix = f"{kind}: " if isinstance(kind, str) and kind else ""
        return (prefix + error)[:_MAX_ERROR]
    text = body[:4 * _MAX_ERROR].decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:_MAX_ERROR] or "(empty body)"


class PrometheusProbeDriver:
    def __init__(self, spec: "ProbeSpec", client: "httpx.AsyncClient") -> None:
        import ssl

        import httpx

        check_prometheus_env(spec)
        self._spec = spec
        self._prom: PrometheusProbe = KIND.typed(spec)
        self._url = query_url(self._prom.url)
        p = self._prom
        self._headers: dict[str, str] = {"Accept": "application/json"}
        self._auth: httpx.BasicAuth | None = None
        if p.bearer_token_env is not None:
            self._headers["Authorization"] = f"Bearer {os.environ[p.bearer_token_env]}"
        if p.basic_auth is not None:
            self._auth = httpx.BasicAuth(
                os.environ[p.basic_auth.username_env], os.environ[p.basic_auth.password_env]
            )
        self._owned: httpx.AsyncClient | None = None
        if not p.verify_tls or p.ca_file is not None:
            verify: ssl.SSLContext | bool
            if not p.verify_tls:
                verify = False
            else:
                assert p.ca_file is not None
                verify = ssl.create_default_context(cafile=p.ca_file)
            self._owned = httpx.AsyncClient(verify=verify, trust_env=False)
        self._client = self._owned or client

    @property
    def spec(self) -> "ProbeSpec":
        return self._spec

    @property
    def owns_client(self) -> bool:
        """True when the probe has its own client (custom TLS); close it with :meth:`aclose`."""
        return self._owned is not None

    async def aclose(self) -> None:
        """Close the probe's own client, if it has one; the shared client is left alone."""
        if self._owned is not None:
            await self._owned.aclose()
            self._owned = None

    async def sample(self) -> "Outcome":
        import asyncio

        import httpx

        from chaos.engine.protocols import Outcome
        from chaos.probes.http import _connect_error, read_capped
        from chaos.redact import current

        p = self._prom
        redactor = current()
        shown = redactor.url(p.url)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(p.timeout):
                async with self._client.stream(
                    "GET",
                    self._url,
                    params={"query": p.query, "timeout": f"{p.timeout:g}s"},
                    headers=self._headers,
                    auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
                    timeout=p.timeout,
                ) as response:
                    body, truncated = await read_capped(response)
        except TimeoutError:
            return Outcome(False, time.perf_counter() - started,
                           f"prometheus {shown}: timed out after {p.timeout:g}s "
                           "(the whole request)")
        except httpx.HTTPError as exc:
            return Outcome(False, time.perf_counter() - started,
                           redactor.text(f"prometheus {shown}: {_connect_error(exc)}"))
        except Exception as exc:  # a sample never raises (e.g. a closed client)
            return Outcome(False, time.perf_counter() - started,
                           redactor.text(f"prometheus {shown}: {type(exc).__name__}: {exc}"))
        latency = time.perf_counter() - started
        ok, detail = self._judge(response.status_code, body, truncated, shown)
        return Outcome(ok, latency, redactor.text(detail))

    def _judge(self, status: int, answer: bytes, truncated: bool,
               shown: str) -> tuple[bool, str]:
        from chaos.probes.http import BODY_LIMIT

        p = self._prom
        if status != 200:
            hint = ""
            if status in (401, 403):
                hint = " (check bearerTokenEnv / basicAuth)"
            elif status == 404:
                hint = f" (is {shown} the Prometheus base URL?)"
            return False, f"HTTP {status}{hint}: {_error_text(answer)}"
        if truncated:
            return False, (f"answer is larger than {BODY_LIMIT // 1024} KiB, the most a probe "
                           "reads: the query returns too many series; aggregate it, e.g. sum(...)")
        try:
            body: Any = json.loads(answer)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False, (f"answer is not JSON (is {shown} a Prometheus server?): "
                           f"{answer[:100].decode('utf-8', 'replace')!r}")
        if not isinstance(body, dict):
            return False, "answer is not a Prometheus API response"
        if body.get("status") != "success":
            return False, f"query failed: {_error_text(answer)}"
        data = body.get("data")
        if not isinstance(data, dict):
            return False, "answer has no data"
        result_type = data.get("resultType")
        result = data.get("result")
        raw: object
        if result_type == "scalar":
            raw = result
        elif result_type == "vector":
            if not isinstance(result, list):
                return False, "answer has a malformed vector"
            if not result:
                return False, "query returned no series: check the metric name and labels"
            if len(result) > 1:
                shown = ", ".join(_labels(r.get("metric")) for r in result[:3]
                                  if isinstance(r, dict))
                more = ", ..." if len(result) > 3 else ""
                return False, (f"query returned {len(result)} series; aggregate it, e.g. "
                               f"sum(...): {shown}{more}")
            first = result[0]
            raw = first.get("value") if isinstance(first, dict) else None
        elif result_type == "matrix":
            return False, ("query returned a range vector (matrix); wrap it in a function "
                           "such as rate(...) or drop the [range]")
        else:
            return False, f"query returned a {result_type}, not a number"
        if not (isinstance(raw, list) and len(raw) == 2):
            return False, "answer has a malformed sample value"
        try:
            value = float(raw[1])
        except (TypeError, ValueError):
            return False, f"value {raw[1]!r} is not a number"
        if math.isnan(value):
            return False, ("value is NaN (often 0/0: no traffic in the window, or a "
                           "counter that never moved); check the query")
        if math.isinf(value):
            return False, f"value is {'+' if value > 0 else '-'}Inf (a division by zero?); " \
                          "check the query"
        if p.expect.holds(value):
            return True, f"value {value:g} ({p.expect})"
        return False, f"value {value:g} does not meet {p.expect}"
