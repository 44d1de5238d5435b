"""The one exception tree of the project.

Every error carries a message a person can act on: what happened, to what, and what to do next.
Exceptions from dependencies (pydantic, httpx, the Kubernetes client, OS errors) are translated at
the boundary into the most specific class here, chained with ``raise ... from exc``.

    ChaosError
    ├── InvalidInput              exit 2: nothing was injected
    │   ├── ExperimentInvalid     one or more located problems in an experiment file
    │   └── TargetNotFound        a fault's target cannot be resolved at preflight
    ├── PlatformError             a driver could not do what it was asked
    │   ├── TransientError        worth retrying (busy, unavailable); reverts retry these
    │   ├── PermissionDenied      the OS or an API refused (not root, RBAC 403, ...)
    │   ├── InjectFailed          applying a fault failed
    │   ├── FaultNotInEffect      a fault was applied but its effect is not on the target
    │   └── RevertFailed          removing a fault failed: it may still be active (exit 4)
    ├── ProbeError                a probe could not be built or run (not a failed sample)
    └── IllegalTransition         the run state machine was asked for a move it does not allow
"""

from __future__ import annotations

from dataclasses import dataclass


class ChaosError(Exception):
    """Base of every error the project raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InvalidInput(ChaosError):
    """The experiment, a flag or the configuration is wrong; nothing was injected."""


@dataclass(frozen=True)
class Problem:
    """One located problem in an input file."""

    file: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ExperimentInvalid(InvalidInput):
    """One or more problems found while loading an experiment; all are reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TargetNotFound(InvalidInput):
    """A fault's target does not exist, so nothing can be injected into it."""


class PlatformError(ChaosError):
    """A platform driver could not complete an operation."""


class TransientError(PlatformError):
    """A failure that may succeed if tried again shortly (busy device, API unavailable)."""


class PermissionDenied(PlatformError):
    """The operating system or an API refused the operation."""


class InjectFailed(PlatformError):
    """Applying a fault failed; whatever part of it was applied has been undone where possible."""


class FaultNotInEffect(PlatformError):
    """A fault was applied but its effect could not be observed on the target: the run must not
    pass. The message names the target and the cause in words an operator can act on."""


class RevertFailed(PlatformError):
    """Removing a fault failed: the fault may still be active."""


class ProbeError(ChaosError):
    """A probe could not be constructed or run (as opposed to a failed sample)."""


class IllegalTransition(ChaosError):
    """The run state machine refused a transition."""
