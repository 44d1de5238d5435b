"""Pydantic models of the ``chaos/v1`` Experiment format.

Keys are camelCase in YAML and snake_case in Python. Unknown keys are errors everywhere. A block
that offers several kinds (a probe is http *or* command *or* tcp) must name exactly one of them.
Cross-references (an SLO's probe, a fault's proxy) are checked by :func:`check_references`, which
returns located problems so the loader can point at the offending line.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from chaos.model._units import (
    Duration,
    DurationThreshold,
    NumberThreshold,
    Percent,
    PercentThreshold,
    Rate,
    Threshold,
)

Loc = tuple[str | int, ...]

_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_HINT = "lowercase letters, digits and '-', starting and ending with a letter or digit"


class Strict(BaseModel):
    """Base for every model of the format: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


def _exactly_one(model: BaseModel, kinds: tuple[str, ...], what: str) -> str:
    present = [k for k in kinds if getattr(model, k) is not None]
    names = ", ".join(to_camel(k) for k in kinds)
    if not present:
        raise ValueError(f"{what} needs exactly one of: {names}")
    if len(present) > 1:
        got = " and ".join(to_camel(k) for k in present)
        raise ValueError(f"{what} needs exactly one of: {names}; it has {got}")
    return present[0]


def _name_field(description: str) -> Any:
    return Field(pattern=_NAME, description=f"{description} ({NAME_HINT})")


# --------------------------------------------------------------------------------------- metadata


class Metadata(Strict):
    name: str = _name_field("experiment name")
    labels: dict[str, str] = Field(default_factory=dict)
    description: str | None = None


class Target(Strict):
    platform: Literal["local", "kubernetes"] = "local"
    namespace: str | None = None


# ----------------------------------------------------------------------------------------- probes


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
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    timeout: Duration = 2.0
    expect: HttpExpect = Field(default_factory=HttpExpect)
    follow_redirects: bool = False
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"'{value}' is not an http(s) URL: write it as http://host:port/path"
            )
        return value


class CommandExpect(Strict):
    exit_code: int = 0
    stdout_contains: str | None = None


class CommandProbe(Strict):
    argv: list[str] = Field(min_length=1, description="program and arguments; never a shell string")
    timeout: Duration = 5.0
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    expect: CommandExpect = Field(default_factory=CommandExpect)


class TcpProbe(Strict):
    host: str
    port: int = Field(ge=1, le=65535)
    timeout: Duration = 2.0


PROBE_KINDS = ("http", "command", "tcp")


class ProbeSpec(Strict):
    name: str = _name_field("probe name")
    interval: Duration = 1.0
    http: HttpProbe | None = None
    command: CommandProbe | None = None
    tcp: TcpProbe | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ProbeSpec:
        _exactly_one(self, PROBE_KINDS, f"probe '{self.name}'")
        if self.interval < 0.01:
            raise ValueError(f"probe '{self.name}': interval must be at least 10ms")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in PROBE_KINDS if getattr(self, k) is not None)

    @property
    def timeout(self) -> float:
        spec = getattr(self, self.kind)
        return float(spec.timeout)


# ------------------------------------------------------------------------------------------- SLOs

LATENCY_OBJECTIVES = {"latency_p50": 50, "latency_p90": 90, "latency_p95": 95, "latency_p99": 99}
SLO_OBJECTIVES = ("success_rate", *LATENCY_OBJECTIVES, "consecutive_failures")


class SloSpec(Strict):
    name: str = _name_field("SLO name")
    probe: str
    success_rate: PercentThreshold | None = None
    latency_p50: DurationThreshold | None = None
    latency_p90: DurationThreshold | None = None
    latency_p95: DurationThreshold | None = None
    latency_p99: DurationThreshold | None = None
    consecutive_failures: NumberThreshold | None = None
    window: Duration = 30.0
    abort_after: int = Field(default=1, ge=1)
    min_samples: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_objective(self) -> SloSpec:
        _exactly_one(self, SLO_OBJECTIVES, f"SLO '{self.name}'")
        return self

    @property
    def objective(self) -> str:
        return next(k for k in SLO_OBJECTIVES if getattr(self, k) is not None)

    @property
    def threshold(self) -> Threshold:
        value = getattr(self, self.objective)
        assert isinstance(value, Threshold)
        return value


# ----------------------------------------------------------------------------------------- faults


class ProcessTarget(Strict):
    """Which local processes a process fault acts on; exactly one selector."""

    pid: int | None = Field(default=None, ge=1)
    pidfile: str | None = None
    name: str | None = Field(default=None, description="regular expression matched on the command")
    port: int | None = Field(default=None, ge=1, le=65535, description="a listening TCP port")
    mode: Literal["one", "all"] = "all"

    @model_validator(mode="after")
    def _one_selector(self) -> ProcessTarget:
        _exactly_one(self, ("pid", "pidfile", "name", "port"), "a process target")
        if self.name is not None:
            try:
                re.compile(self.name)
            except re.error as exc:
                raise ValueError(
                    f"name '{self.name}' is not a valid regular expression: {exc}"
                ) from None
        return self

    def describe(self) -> str:
        for key in ("pid", "pidfile", "name", "port"):
            value = getattr(self, key)
            if value is not None:
                return f"{key}={value}"
        return "?"


_SIGNALS = (
    "SIGKILL",
    "SIGTERM",
    "SIGINT",
    "SIGHUP",
    "SIGQUIT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGABRT",
)


class ProcessKill(Strict):
    target: ProcessTarget
    signal: str = "SIGKILL"

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str) -> str:
        name = value.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name not in _SIGNALS:
            raise ValueError(f"unsupported signal '{value}': use one of {', '.join(_SIGNALS)}")
        return name


class ProcessPause(Strict):
    target: ProcessTarget


class NetworkLatency(Strict):
    """Added delay, either through a named run proxy or with tc netem on an interface."""

    proxy: str | None = None
    interface: str | None = None
    netns: str | None = Field(default=None, description="network namespace of the interface")
    delay: Duration
    jitter: Duration = 0.0
    correlation: Percent | None = None
    bandwidth: Rate | None = Field(default=None, description="proxy only: cap each direction")

    @model_validator(mode="after")
    def _where(self) -> NetworkLatency:
        _exactly_one(self, ("proxy", "interface"), "networkLatency")
        if self.proxy is not None and (self.netns is not None or self.correlation is not None):
            raise ValueError("netns and correlation apply to interface (tc netem) latency only")
        if self.interface is not None and self.bandwidth is not None:
            raise ValueError("bandwidth applies to proxy latency only")
        if self.jitter > self.delay:
            raise ValueError("jitter must not exceed delay")
        return self


class ConnectionReset(Strict):
    """The named proxy resets new and open connections while active."""

    proxy: str


class CpuStress(Strict):
    workers: int | None = Field(default=None, ge=1, le=256, description="default: one per core")
    load: Percent = 1.0


FAULT_KINDS = ("process_kill", "process_pause", "network_latency", "connection_reset", "cpu_stress")
ONE_SHOT_KINDS = frozenset({"process_kill"})


class FaultSpec(Strict):
    name: str = _name_field("fault name")
    at: Duration = 0.0
    duration: Duration | None = None
    process_kill: ProcessKill | None = None
    process_pause: ProcessPause | None = None
    network_latency: NetworkLatency | None = None
    connection_reset: ConnectionReset | None = None
    cpu_stress: CpuStress | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FaultSpec:
        kind = _exactly_one(self, FAULT_KINDS, f"fault '{self.name}'")
        if kind in ONE_SHOT_KINDS and self.duration is not None:
            raise ValueError(
                f"fault '{self.name}': {to_camel(kind)} is one-shot; remove 'duration'"
            )
        if kind not in ONE_SHOT_KINDS and self.duration is None:
            raise ValueError(
                f"fault '{self.name}': {to_camel(kind)} needs a 'duration' so it always ends, "
                "for example duration: 30s"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in FAULT_KINDS if getattr(self, k) is not None)

    @property
    def kind_name(self) -> str:
        return to_camel(self.kind)

    @property
    def params(self) -> Strict:
        value = getattr(self, self.kind)
        assert isinstance(value, Strict)
        return value

    @property
    def ends_at(self) -> float:
        return self.at + (self.duration or 0.0)


# -------------------------------------------------------------------------------------- rollbacks


class CommandAction(Strict):
    argv: list[str] = Field(min_length=1)
    timeout: Duration = 30.0
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class HttpAction(Strict):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    timeout: Duration = 10.0
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])


class RollbackSpec(Strict):
    name: str = _name_field("rollback name")
    command: CommandAction | None = None
    http: HttpAction | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RollbackSpec:
        _exactly_one(self, ("command", "http"), f"rollback '{self.name}'")
        return self


# ------------------------------------------------------------------------------- proxies, limits


_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def split_hostport(value: str) -> tuple[str, int]:
    match = _HOSTPORT.match(value)
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError(f"'{value}' is not host:port, for example 127.0.0.1:8081")
    return match.group(1).strip("[]"), int(match.group(2))


class ProxySpec(Strict):
    """A TCP proxy the run starts before the baseline; latency faults act on it."""

    name: str = _name_field("proxy name")
    listen: str
    upstream: str

    @field_validator("listen", "upstream")
    @classmethod
    def _hostport(cls, value: str) -> str:
        split_hostport(value)
        return value


class Limits(Strict):
    max_duration: Duration = 600.0
    expiry_grace: Duration = Field(
        default=10.0,
        description="every fault removes itself this long after its duration even if the "
        "runner is gone (the dead-man's switch)",
    )
    max_processes: int = Field(
        default=10, ge=1, description="cap on local processes one fault hits"
    )
    max_pods: int | None = Field(default=None, ge=1)
    max_percent: Percent | None = None


class Spec(Strict):
    target: Target = Field(default_factory=Target)
    baseline: Duration = Field(default=5.0, description="steady-state observation before faults")
    recovery: Duration = Field(default=5.0, description="observation after every fault is reverted")
    proxies: list[ProxySpec] = Field(default_factory=list)
    probes: list[ProbeSpec] = Field(min_length=1)
    slos: list[SloSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    rollbacks: list[RollbackSpec] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)

    @property
    def fault_span(self) -> float:
        return max((f.ends_at for f in self.faults), default=0.0)

    @property
    def planned_duration(self) -> float:
        return self.baseline + self.fault_span + self.recovery


class Experiment(Strict):
    api_version: Literal["chaos/v1"]
    kind: Literal["Experiment"]
    metadata: Metadata
    spec: Spec


def _duplicates(items: list[Any], base: Loc, what: str) -> list[tuple[Loc, str]]:
    seen: set[str] = set()
    problems: list[tuple[Loc, str]] = []
    for i, item in enumerate(items):
        if item.name in seen:
            problems.append(((*base, i, "name"), f"duplicate {what} name '{item.name}'"))
        seen.add(item.name)
    return problems


def check_references(exp: Experiment) -> list[tuple[Loc, str]]:
    """Cross-field checks that a single model cannot do; each problem is located."""
    spec = exp.spec
    problems: list[tuple[Loc, str]] = []
    problems += _duplicates(spec.probes, ("spec", "probes"), "probe")
    problems += _duplicates(spec.slos, ("spec", "slos"), "SLO")
    problems += _duplicates(spec.faults, ("spec", "faults"), "fault")
    problems += _duplicates(spec.rollbacks, ("spec", "rollbacks"), "rollback")
    problems += _duplicates(spec.proxies, ("spec", "proxies"), "proxy")

    probe_names = [p.name for p in spec.probes]
    for i, slo in enumerate(spec.slos):
        if slo.probe not in probe_names:
            problems.append(
                (
                    ("spec", "slos", i, "probe"),
                    f"SLO '{slo.name}' refers to probe '{slo.probe}', which is not defined; "
                    f"defined probes: {', '.join(probe_names)}",
                )
            )
        probe = next((p for p in spec.probes if p.name == slo.probe), None)
        if probe is not None and slo.window < probe.interval and slo.objective != (
            "consecutive_failures"
        ):
            problems.append(
                (
                    ("spec", "slos", i, "window"),
                    f"window is shorter than probe '{probe.name}' interval; make it at least "
                    "a few intervals long",
                )
            )

    proxy_names = [p.name for p in spec.proxies]
    listens = {}
    for i, proxy in enumerate(spec.proxies):
        if proxy.listen in listens:
            problems.append(
                (("spec", "proxies", i, "listen"), f"{proxy.listen} is already used by a proxy")
            )
        listens[proxy.listen] = proxy.name
    for i, fault in enumerate(spec.faults):
        proxy_ref = getattr(fault.params, "proxy", None)
        if proxy_ref is not None and proxy_ref not in proxy_names:
            known = ", ".join(proxy_names) or "none are declared under spec.proxies"
            problems.append(
                (
                    ("spec", "faults", i, fault.kind_name, "proxy"),
                    f"fault '{fault.name}' uses proxy '{proxy_ref}', which is not declared; "
                    f"declared proxies: {known}",
                )
            )
        if spec.target.platform != "local":
            problems.append(
                (
                    ("spec", "faults", i),
                    f"fault '{fault.name}' ({fault.kind_name}) runs on the local platform only; "
                    "set spec.target.platform: local",
                )
            )

    if spec.planned_duration > spec.limits.max_duration:
        problems.append(
            (
                ("spec", "limits", "maxDuration"),
                f"the plan takes {spec.planned_duration:g}s (baseline + faults + recovery) but "
                f"maxDuration is {spec.limits.max_duration:g}s; raise maxDuration or shorten "
                "the plan",
            )
        )
    return problems
