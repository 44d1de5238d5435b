"""Pydantic models of the ``chaos/v1`` Experiment format.

Keys are camelCase in YAML and snake_case in Python. Unknown keys are errors everywhere. A block
that offers several kinds (a probe is http *or* command *or* tcp) must name exactly one of them.
Cross-references (an SLO's probe, a fault's proxy) are checked by :func:`check_references`, which
returns located problems so the loader can point at the offending line.
"""

# No ``from __future__ import annotations``: pydantic would have to eval every field's annotation
# string when the classes are created, on each CLI start.
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, create_model, field_validator, model_validator
from pydantic.alias_generators import to_snake

from chaos.faults.registry import FAULT_KINDS
from chaos.model._units import (
    Duration,
    DurationThreshold,
    NumberThreshold,
    Percent,
    PercentThreshold,
)
from chaos.model.common import (
    HttpUrl,
    Loc,
    PodSelector,
    Strict,
    exactly_one,
    name_field,
)
from chaos.objectives import OBJECTIVES, Objective
from chaos.probes.registry import PROBE_KINDS
from chaos.units import Threshold

if TYPE_CHECKING:
    from chaos.faults.contract import FaultKind, PlatformName
    from chaos.probes.contract import ProbeKind

# --------------------------------------------------------------------------------------- metadata


class Metadata(Strict):
    name: str = name_field("experiment name")
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
# The probe keys come from the probe kinds' registry (chaos.probes.registry): each kind module
# owns its parameter model.

_PROBE_FIELDS: dict[str, "ProbeKind[Any]"] = {to_snake(k.key): k for k in PROBE_KINDS}


class _ProbeSpecBase(Strict):
    name: str = name_field("probe name")
    interval: Duration = 1.0

    @model_validator(mode="after")
    def _one_kind(self) -> "_ProbeSpecBase":
        exactly_one(self, tuple(_PROBE_FIELDS), f"probe '{self.name}'")
        if self.interval < 0.01:
            raise ValueError(f"probe '{self.name}': interval must be at least 10ms")
        return self

    @property
    def kind(self) -> "ProbeKind[Any]":
        return next(k for f, k in _PROBE_FIELDS.items() if getattr(self, f) is not None)

    @property
    def params(self) -> Strict:
        value = next(getattr(self, f) for f in _PROBE_FIELDS if getattr(self, f) is not None)
        assert isinstance(value, Strict)
        return value

    @property
    def timeout(self) -> float:
        return self.kind.timeout(self.params)


if TYPE_CHECKING:
    ProbeSpec = _ProbeSpecBase
else:
    ProbeSpec = create_model(
        "ProbeSpec", __base__=_ProbeSpecBase, __module__=__name__,
        **{f: (k.params | None, None) for f, k in _PROBE_FIELDS.items()},
    )


# ------------------------------------------------------------------------------------------- SLOs
# The objective keys come from chaos.objectives.

_OBJECTIVE_FIELDS: dict[str, Objective] = {to_snake(o.key): o for o in OBJECTIVES}
_THRESHOLD_TYPES: dict[str, Any] = {
    "percent": PercentThreshold, "duration": DurationThreshold, "number": NumberThreshold,
}


class _SloSpecBase(Strict):
    name: str = name_field("SLO name")
    probe: str
    window: Duration = 30.0
    abort_after: int = Field(default=1, ge=1)
    min_samples: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_objective(self) -> "_SloSpecBase":
        exactly_one(self, tuple(_OBJECTIVE_FIELDS), f"SLO '{self.name}'")
        return self

    @property
    def objective(self) -> Objective:
        return next(o for f, o in _OBJECTIVE_FIELDS.items() if getattr(self, f) is not None)

    @property
    def threshold(self) -> Threshold:
        value = next(getattr(self, f) for f in _OBJECTIVE_FIELDS if getattr(self, f) is not None)
        assert isinstance(value, Threshold)
        return value


if TYPE_CHECKING:
    SloSpec = _SloSpecBase
else:
    SloSpec = create_model(
        "SloSpec", __base__=_SloSpecBase, __module__=__name__,
        **{f: (_THRESHOLD_TYPES[o.unit] | None, None) for f, o in _OBJECTIVE_FIELDS.items()},
    )


# ----------------------------------------------------------------------------------------- faults
# The fault keys come from the fault kinds' registry (chaos.faults.registry): each kind module
# owns its parameter model, its rules, and everything it does.

_FAULT_FIELDS: dict[str, "FaultKind[Any, Any]"] = {to_snake(k.key): k for k in FAULT_KINDS}


class _FaultSpecBase(Strict):
    name: str = name_field("fault name")
    at: Duration = 0.0
    duration: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "_FaultSpecBase":
        exactly_one(self, tuple(_FAULT_FIELDS), f"fault '{self.name}'")
        self.kind.check(self.name, self.duration, self.params)
        return self

    @property
    def kind(self) -> "FaultKind[Any, Any]":
        return next(k for f, k in _FAULT_FIELDS.items() if getattr(self, f) is not None)

    @property
    def params(self) -> Strict:
        value = next(getattr(self, f) for f in _FAULT_FIELDS if getattr(self, f) is not None)
        assert isinstance(value, Strict)
        return value

    @property
    def ends_at(self) -> float:
        return self.at + (self.duration or 0.0)

    @property
    def platform(self) -> "PlatformName":
        """Which platform this fault acts on."""
        return self.kind.platform_of(self.params)

    @property
    def pod_selector(self) -> PodSelector | None:
        return self.kind.pod_selector(self.params)


if TYPE_CHECKING:
    FaultSpec = _FaultSpecBase
else:
    FaultSpec = create_model(
        "FaultSpec", __base__=_FaultSpecBase, __module__=__name__,
        **{f: (k.params | None, None) for f, k in _FAULT_FIELDS.items()},
    )


# -------------------------------------------------------------------------------------- rollbacks


class CommandAction(Strict):
    argv: list[str] = Field(min_length=1)
    timeout: Duration = 30.0
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class HttpAction(Strict):
    url: HttpUrl
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
    name: str = name_field("rollback name")
    command: CommandAction | None = None
    http: HttpAction | None = None
    kubernetes: KubernetesAction | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "RollbackSpec":
        exactly_one(self, ("command", "http", "kubernetes"), f"rollback '{self.name}'")
        return self

    def describe(self) -> str:
        """What the rollback does, in one line (``chaos plan``)."""
        if self.command is not None:
            return " ".join(self.command.argv)
        if self.http is not None:
            return f"{self.http.method} {self.http.url}"
        assert self.kubernetes is not None
        scale = self.kubernetes.scale
        where = f"{scale.namespace}/" if scale.namespace else ""
        return f"scale {scale.kind} {where}{scale.name} to {scale.replicas} replica(s)"


# ------------------------------------------------------------------------------- proxies, limits


_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def split_hostport(value: str) -> tuple[str, int]:
    match = _HOSTPORT.match(value)
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError(f"'{value}' is not host:port, for example 127.0.0.1:8081")
    return match.group(1).strip("[]"), int(match.group(2))


class ProxySpec(Strict):
    """A TCP proxy the run starts before the baseline; latency faults act on it."""

    name: str = name_field("proxy name")
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
    verify_timeout: Duration = Field(
        default=30.0,
        description="how long after its inject a fault may take to show its effect on the "
        "target before the run stops as an error (a helper image pull counts)",
    )
    max_pods: int = Field(
        default=10, ge=1,
        description="cap on the pods one Kubernetes fault hits (raise it on purpose)")
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
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="environment variables whose values are secrets: masked in the journal, "
        "reports, logs and output (bearerTokenEnv and basicAuth variables are secret anyway)",
    )

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
        if probe is not None and slo.window < probe.interval and slo.objective.needs_window:
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
    for i, probe in enumerate(spec.probes):
        needs = probe.kind.needs_platform
        if needs is not None and needs != spec.target.platform:
            problems.append(
                (
                    ("spec", "probes", i),
                    f"probe '{probe.name}' ({probe.kind.key}) reads the {needs} platform but "
                    f"spec.target.platform is {spec.target.platform}",
                )
            )
    for i, fault in enumerate(spec.faults):
        proxy_ref = fault.kind.proxy_name(fault.params)
        if proxy_ref is not None and proxy_ref not in proxy_names:
            known = ", ".join(proxy_names) or "none are declared under spec.proxies"
            problems.append(
                (
                    ("spec", "faults", i, fault.kind.key, "proxy"),
                    f"fault '{fault.name}' uses proxy '{proxy_ref}', which is not declared; "
                    f"declared proxies: {known}",
                )
            )
        if fault.platform != spec.target.platform:
            problems.append(
                (
                    ("spec", "faults", i),
                    f"fault '{fault.name}' ({fault.kind.key}) acts on the {fault.platform} "
                    f"platform but spec.target.platform is {spec.target.platform}",
                )
            )
        selector = fault.pod_selector
        if selector is not None:
            namespace = selector.namespace or spec.target.namespace
            if namespace is None:
                problems.append(
                    (
                        ("spec", "faults", i, fault.kind.key, "selector"),
                        f"fault '{fault.name}' has no namespace: set selector.namespace or "
                        "spec.target.namespace",
                    )
                )
            elif _protected(namespace) and not spec.target.allow_protected_namespaces:
                problems.append(
                    (
                        ("spec", "faults", i, fault.kind.key, "selector"),
                        f"fault '{fault.name}' targets protected namespace '{namespace}'; set "
                        "spec.target.allowProtectedNamespaces: true if you really mean it",
                    )
                )

    for i, rollback in enumerate(spec.rollbacks):
        if rollback.kubernetes is None:
            continue
        namespace = rollback.kubernetes.scale.namespace or spec.target.namespace
        if namespace and _protected(namespace) and not spec.target.allow_protected_namespaces:
            problems.append(
                (
                    ("spec", "rollbacks", i, "kubernetes", "scale"),
                    f"rollback '{rollback.name}' scales a workload in protected namespace "
                    f"'{namespace}'; set spec.target.allowProtectedNamespaces: true if you "
                    "really mean it",
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
