"""Building blocks of the experiment format shared by the kind modules.

The fault, probe and SLO-objective kinds (``chaos.faults``, ``chaos.probes``,
``chaos.objectives``) each own their parameter model; they build it from what is here: the
:class:`Strict` base (camelCase keys, unknown keys rejected, immutable), names, URLs, process
targets and pod selectors. Nothing here knows about any kind.
"""

# No ``from __future__ import annotations``: pydantic would have to eval every field's annotation
# string when the classes are created, on each CLI start.
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from chaos.model._units import parse_percent
from chaos.units import check_http_url

Loc = tuple[str | int, ...]

_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_HINT = "lowercase letters, digits and '-', starting and ending with a letter or digit"
#: The image Kubernetes fault helpers run (docker/helper.Dockerfile); not published yet.
DEFAULT_HELPER_IMAGE = "ghcr.io/chaos-runner/helper:0.1.0"


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


def exactly_one(model: BaseModel, kinds: tuple[str, ...], what: str) -> str:
    """The one field of ``kinds`` that is set on ``model``; ValueError when none or several."""
    present = [k for k in kinds if getattr(model, k) is not None]
    names = ", ".join(to_camel(k) for k in kinds)
    if not present:
        raise ValueError(f"{what} needs exactly one of: {names}")
    if len(present) > 1:
        got = " and ".join(to_camel(k) for k in present)
        raise ValueError(f"{what} needs exactly one of: {names}; it has {got}")
    return present[0]


def name_field(description: str) -> Any:
    return Field(pattern=_NAME, description=f"{description} ({NAME_HINT})")


def _url(value: str) -> str:
    return check_http_url(value)


#: Every URL field of the format: an absolute http(s) URL with a host (one rule everywhere).
HttpUrl = Annotated[
    str, AfterValidator(_url),
    WithJsonSchema({"type": "string", "pattern": r"^https?://[^/\s]+",
                    "examples": ["http://127.0.0.1:8080/health"]}),
]


# ---------------------------------------------------------------------------------- local targets


#: A process name pattern is matched against every command line on the machine.
MAX_PATTERN = 256


def check_pattern(pattern: str) -> None:
    """A regular expression safe to run against every command line: it compiles, is short, and
    has no quantifier inside a quantified group (``(a+)+``, ``(a*)*``, ``(x+y?)+``), whose
    backtracking grows exponentially with the input (a 30-character command line took a minute).
    """
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"name is {len(pattern)} characters long; at most {MAX_PATTERN}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"name '{pattern}' is not a valid regular expression: {exc}") from None
    from re import _parser  # type: ignore[attr-defined]  # the stdlib's own parse of the pattern

    repeats = {_parser.MAX_REPEAT, _parser.MIN_REPEAT, _parser.POSSESSIVE_REPEAT}

    def nested(items: Any, inside: bool) -> bool:
        for op, arg in items:
            if op in repeats:
                _, high, sub = arg
                unbounded = high == _parser.MAXREPEAT or high > 1
                if inside and unbounded:
                    return True
                if nested(sub, inside or unbounded):
                    return True
            elif op == _parser.SUBPATTERN:
                if nested(arg[-1], inside):
                    return True
            elif op == _parser.BRANCH:
                if any(nested(branch, inside) for branch in arg[1]):
                    return True
            elif op in (_parser.ASSERT, _parser.ASSERT_NOT) and nested(arg[1], inside):
                return True
        return False

    if nested(_parser.parse(pattern), False):
        raise ValueError(
            f"name '{pattern}' repeats a group that itself repeats (a nested quantifier such as "
            "(a+)+): matching it can take exponential time; write it without the outer "
            "repetition, e.g. (a+) instead of (a+)+"
        )


class ProcessTarget(Strict):
    """Which local processes a process fault acts on; exactly one selector."""

    pid: int | None = Field(default=None, ge=1)
    pidfile: str | None = None
    name: str | None = Field(default=None, description="regular expression matched on the command")
    port: int | None = Field(default=None, ge=1, le=65535, description="a listening TCP port")
    mode: Literal["one", "all"] = "all"

    @model_validator(mode="after")
    def _one_selector(self) -> Self:
        exactly_one(self, ("pid", "pidfile", "name", "port"), "a process target")
        if self.name is not None:
            check_pattern(self.name)
        return self

    def describe(self) -> str:
        for key in ("pid", "pidfile", "name", "port"):
            value = getattr(self, key)
            if value is not None:
                return f"{key}={value}"
        return "?"


# ----------------------------------------------------------------------------- kubernetes targets


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


_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
_FIELD_TERM = re.compile(r"[A-Za-z][A-Za-z0-9.]*\s*(==|=|!=)\s*[A-Za-z0-9._:-]+")


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
        # Each is sent to the API as a selector string: an operator smuggled into a key
        # ("app!" makes "app!=", nearly every pod) or an empty field selector matches all.
        for key, value in self.labels.items():
            if not _LABEL_KEY.fullmatch(key):
                raise ValueError(f"'{key}' is not a label key (letters, digits, '-', '_', '.', "
                                 "an optional 'prefix/'); a selector key takes no operator")
            if not _LABEL_VALUE.fullmatch(value):
                raise ValueError(f"'{value}' is not a label value for '{key}' (at most 63 "
                                 "letters, digits, '-', '_', '.')")
        if self.field_selector is not None:
            terms = [t.strip() for t in self.field_selector.split(",")]
            if not all(_FIELD_TERM.fullmatch(t) for t in terms):
                raise ValueError(
                    f"fieldSelector '{self.field_selector}' is not a list of field=value terms "
                    "(e.g. spec.nodeName=node-1); an empty one would select every pod"
                )
        return self

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.labels.items()]
        if self.field_selector:
            parts.append(self.field_selector)
        if self.owner:
            parts.append(f"owner {self.owner.kind}/{self.owner.name}")
        return ", ".join(parts)


__all__ = [
    "DEFAULT_HELPER_IMAGE",
    "NAME_HINT",
    "HttpUrl",
    "Loc",
    "OwnerRef",
    "PodMode",
    "PodModeField",
    "PodSelector",
    "ProcessTarget",
    "Strict",
    "check_pattern",
    "exactly_one",
    "name_field",
]
