"""Pydantic models of the ``chaos/v1`` Experiment format.

Keys are camelCase in YAML and snake_case in Python. Unknown keys are errors everywhere. A block
that offers several kinds (a probe is http *or* command *or* tcp) must name exactly one of them.
Cross-references (an SLO's probe, a fault's proxy) are checked by :func:`check_references`, which
returns located problems so the loader can point at the offending line.
"""

# No ``from __future__ import annotations``: pydantic would have to eval every field's annotation
# string when the classes are created, on each CLI start.
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from chaos.model._units import (
    Duration,
    DurationThreshold,
    NumberThreshold,
    Percent,
    PercentThreshold,
    Rate,
    Threshold,
    parse_percent,
    threshold_parser,
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
        # Build validators on first use, not at import (CLI start-up): importing the models costs
        # only class creation, and validating an Experiment builds its one schema instead of a
        # validator per nested model. Schemas, errors and JSON Schema are unchanged.
        defer_build=True,
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


PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


class Target(Strict):
    platform: Literal["local", "kubernetes"] = "local"
    namespace: str | None = Field(default=None, description="kubernetes: the default namespace")
    allow_protected_namespaces: bool = Field(
        default=False,
        description="kubernetes: allow faults in kube-system and other kube-* namespaces",
    )


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


class WorkloadCheck(Strict):
    """Available replicas of a Deployment or StatefulSet: a comparison, or ``== desired``."""

    name: str
    available: str = Field(default="== desired", description="'== desired' or e.g. '>= 2'")

    @field_validator("available")
    @classmethod
    def _comparison(cls, value: str) -> str:
        if value.replace(" ", "") not in ("==desired", "desired"):
            threshold_parser("number")(value)
        return value

    def threshold(self, desired: int) -> Threshold:
        if self.available.replace(" ", "") in ("==desired", "desired"):
            return Threshold("==", float(desired), f"== desired ({desired})")
        return threshold_parser("number")(self.available)


class PodsCheck(Strict):
    selector: dict[str, str] = Field(min_length=1, description="labels of the pods")
    ready: NumberThreshold


class ConditionCheck(Strict):
    type: str
    status: str = "True"


class ResourceCheck(Strict):
    api_version: str
    kind: str
    name: str
    condition: ConditionCheck


class RestartsCheck(Strict):
    selector: dict[str, str] = Field(min_length=1)
    max: int = Field(default=0, ge=0, description="restarts allowed across the selected pods")


class KubernetesProbe(Strict):
    namespace: str | None = Field(default=None, description="default: spec.target.namespace")
    deployment: WorkloadCheck | None = None
    statefulset: WorkloadCheck | None = None
    pods: PodsCheck | None = None
    resource: ResourceCheck | None = None
    restarts: RestartsCheck | None = None
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _one_check(self) -> Self:
        _exactly_one(self, ("deployment", "statefulset", "pods", "resource", "restarts"),
                     "a kubernetes probe")
        return self


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class BasicAuthEnv(Strict):
    """HTTP basic auth read from environment variables, so no secret lives in the experiment."""

    username_env: str = Field(pattern=_ENV_NAME, description="env var holding the user name")
    password_env: str = Field(pattern=_ENV_NAME, description="env var holding the password")


class PrometheusProbe(Strict):
    """An instant PromQL query; a sample is ok when its single value meets ``expect``."""

    url: str = Field(description="base URL of the Prometheus server, e.g. http://prometheus:9090")
    query: str = Field(min_length=1, description="PromQL giving a scalar or a single series")
    expect: NumberThreshold
    timeout: Duration = 5.0
    bearer_token_env: str | None = Field(
        default=None, pattern=_ENV_NAME, description="env var holding a bearer token"
    )
    basic_auth: BasicAuthEnv | None = None
    verify_tls: bool = True
    ca_file: str | None = Field(default=None, description="PEM bundle to verify the server with")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"'{value}' is not an http(s) URL: write it as http://host:9090"
            )
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        if self.bearer_token_env is not None and self.basic_auth is not None:
            raise ValueError("a prometheus probe takes bearerTokenEnv or basicAuth, not both")
        return self


PROBE_KINDS = ("http", "command", "tcp", "kubernetes", "prometheus")


class ProbeSpec(Strict):
    name: str = _name_field("probe name")
    interval: Duration = 1.0
    http: HttpProbe | None = None
    command: CommandProbe | None = None
    tcp: TcpProbe | None = None
    kubernetes: KubernetesProbe | None = None
    prometheus: PrometheusProbe | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
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
    def _one_objective(self) -> Self:
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
    def _one_selector(self) -> Self:
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


@dataclass(frozen=True)
class PodMode:
    """How many of the matching pods a fault hits: one, all, a fixed number or a percentage."""

    kind: Literal["one", "all", "fixed", "percent"]
    value: float = 0.0

    def count(self, matched: int) -> int:
        if self.kind == "one":
            return min(1, matched)
        if self.kind == "all":
            return matched
        if self.kind == "fixed":
            return min(int(self.value), matched)
        return min(matched, max(1, math.ceil(self.value * matched))) if matched else 0

    def __str__(self) -> str:
        if self.kind in ("one", "all"):
            return self.kind
        if self.kind == "fixed":
            return f"fixed {int(self.value)}"
        return f"{self.value * 100:g}%"


def _parse_mode(value: object) -> PodMode:
    if isinstance(value, PodMode):
        return value
    if value in ("one", "all"):
        return PodMode(value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "fixed" and isinstance(arg, int) and not isinstance(arg, bool) and arg >= 1:
            return PodMode("fixed", arg)
        if key == "percent":
            return PodMode("percent", parse_percent(arg))
    raise ValueError(
        f"mode must be one, all, {{fixed: N}} (N >= 1) or {{percent: P%}}, got {value!r}"
    )


PodModeField = Annotated[
    PodMode,
    BeforeValidator(_parse_mode),
    PlainSerializer(str),
    WithJsonSchema({"anyOf": [
        {"enum": ["one", "all"]},
        {"type": "object", "properties": {"fixed": {"type": "integer", "minimum": 1}},
         "required": ["fixed"], "additionalProperties": False},
        {"type": "object", "properties": {"percent": {"type": "string"}},
         "required": ["percent"], "additionalProperties": False},
    ]}),
]


class OwnerRef(Strict):
    kind: Literal["Deployment", "StatefulSet"]
    name: str


class PodSelector(Strict):
    """Which pods a Kubernetes fault hits. At least one of labels, fieldSelector or owner, so a
    fault never selects a whole namespace by accident."""

    namespace: str | None = Field(default=None, description="default: spec.target.namespace")
    labels: dict[str, str] = Field(default_factory=dict)
    field_selector: str | None = None
    owner: OwnerRef | None = None
    mode: PodModeField = PodMode("one")

    @model_validator(mode="after")
    def _narrow(self) -> Self:
        if not self.labels and self.field_selector is None and self.owner is None:
            raise ValueError(
                "a pod selector needs labels, fieldSelector or owner; selecting every pod of "
                "a namespace is not allowed"
            )
        return self

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.labels.items()]
        if self.field_selector:
            parts.append(self.field_selector)
        if self.owner:
            parts.append(f"owner {self.owner.kind}/{self.owner.name}")
        return ", ".join(parts)


DEFAULT_HELPER_IMAGE = "ghcr.io/chaos-runner/helper:0.1.0"


class PodKill(Strict):
    selector: PodSelector
    grace_period: Duration | None = Field(default=None, description="default: the pod's own")
    use_eviction: bool = Field(
        default=False, description="go through the Eviction API so PodDisruptionBudgets hold"
    )
    every: Duration | None = Field(
        default=None, description="repeat the kill at this interval for the fault's duration"
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
    selector: PodSelector | None = Field(
        default=None,
        description="kubernetes: pods to slow down (tc netem in an ephemeral container)",
    )
    netns: str | None = Field(default=None, description="network namespace of the interface")
    device: str = Field(default="eth0", description="kubernetes: the pod's network interface")
    container: str | None = Field(
        default=None, description="kubernetes: container whose namespaces to join (default: first)"
    )
    image: str = Field(default=DEFAULT_HELPER_IMAGE, description="kubernetes: helper image")
    delay: Duration
    jitter: Duration = 0.0
    correlation: Percent | None = None
    bandwidth: Rate | None = Field(default=None, description="proxy only: cap each direction")

    @model_validator(mode="after")
    def _where(self) -> Self:
        _exactly_one(self, ("proxy", "interface", "selector"), "networkLatency")
        if self.proxy is not None and (self.netns is not None or self.correlation is not None):
            raise ValueError("netns and correlation apply to interface (tc netem) latency only")
        if self.proxy is None and self.bandwidth is not None:
            raise ValueError("bandwidth applies to proxy latency only")
        if self.selector is not None and self.netns is not None:
            raise ValueError("netns applies to interface latency only; pods use their own")
        if self.jitter > self.delay:
            raise ValueError("jitter must not exceed delay")
        return self


class ConnectionReset(Strict):
    """The named proxy resets new and open connections while active."""

    proxy: str


class CpuStress(Strict):
    workers: int | None = Field(default=None, ge=1, le=256, description="default: one per core")
    load: Percent = 1.0
    selector: PodSelector | None = Field(
        default=None, description="kubernetes: pods to stress (an ephemeral container)"
    )
    container: str | None = None
    image: str = DEFAULT_HELPER_IMAGE


FAULT_KINDS = (
    "process_kill",
    "process_pause",
    "network_latency",
    "connection_reset",
    "cpu_stress",
    "pod_kill",
)
ONE_SHOT_KINDS = frozenset({"process_kill", "pod_kill"})


class FaultSpec(Strict):
    name: str = _name_field("fault name")
    at: Duration = 0.0
    duration: Duration | None = None
    process_kill: ProcessKill | None = None
    process_pause: ProcessPause | None = None
    network_latency: NetworkLatency | None = None
    connection_reset: ConnectionReset | None = None
    cpu_stress: CpuStress | None = None
    pod_kill: PodKill | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kind = _exactly_one(self, FAULT_KINDS, f"fault '{self.name}'")
        if self.pod_kill is not None and self.pod_kill.every is not None:
            if self.duration is None:
                raise ValueError(
                    f"fault '{self.name}': podKill with 'every' repeats for a 'duration'; add one"
                )
            return self
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

    @property
    def platform(self) -> Literal["local", "kubernetes"]:
        """Which platform this fault acts on."""
        if self.pod_kill is not None:
            return "kubernetes"
        if getattr(self.params, "selector", None) is not None:
            return "kubernetes"
        return "local"

    @property
    def pod_selector(self) -> PodSelector | None:
        selector = getattr(self.params, "selector", None)
        return selector if isinstance(selector, PodSelector) else None


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


class ScaleAction(Strict):
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    name: str
    replicas: int = Field(ge=0)
    namespace: str | None = None


class KubernetesAction(Strict):
    scale: ScaleAction


class RollbackSpec(Strict):
    name: str = _name_field("rollback name")
    command: CommandAction | None = None
    http: HttpAction | None = None
    kubernetes: KubernetesAction | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        _exactly_one(self, ("command", "http", "kubernetes"), f"rollback '{self.name}'")
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


def _protected(namespace: str) -> bool:
    return namespace in PROTECTED_NAMESPACES or namespace.startswith("kube-")


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
        if fault.platform != spec.target.platform:
            problems.append(
                (
                    ("spec", "faults", i),
                    f"fault '{fault.name}' ({fault.kind_name}) acts on the {fault.platform} "
                    f"platform but spec.target.platform is {spec.target.platform}",
                )
            )
        selector = fault.pod_selector
        if selector is not None:
            namespace = selector.namespace or spec.target.namespace
            if namespace is None:
                problems.append(
                    (
                        ("spec", "faults", i, fault.kind_name, "selector"),
                        f"fault '{fault.name}' has no namespace: set selector.namespace or "
                        "spec.target.namespace",
                    )
                )
            elif _protected(namespace) and not spec.target.allow_protected_namespaces:
                problems.append(
                    (
                        ("spec", "faults", i, fault.kind_name, "selector"),
                        f"fault '{fault.name}' targets protected namespace '{namespace}'; set "
                        "spec.target.allowProtectedNamespaces: true if you really mean it",
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
