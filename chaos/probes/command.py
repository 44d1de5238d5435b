"""Command probe: runs an argv (never a shell string); ok on the expected exit code and output."""

# No ``from __future__ import annotations``: pydantic reads the models' annotations.
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from chaos.model._units import Duration
from chaos.model.common import Strict
from chaos.probes.contract import ProbeContext, ProbeKind

if TYPE_CHECKING:
    from chaos.engine.protocols import Outcome, Probe
    from chaos.model.experiment import ProbeSpec


class CommandExpect(Strict):
    exit_code: int = 0
    stdout_contains: str | None = None


class CommandProbe(Strict):
    argv: list[str] = Field(min_length=1, description="program and arguments; never a shell string")
    timeout: Duration = 5.0
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    expect: CommandExpect = Field(default_factory=CommandExpect)


class CommandProbeKind(ProbeKind[CommandProbe]):
    key: ClassVar[str] = "command"
    params: ClassVar[type[Strict]] = CommandProbe
    summary: ClassVar[str] = "run a program (an argv, no shell); ok on its exit code and output"

    def describe(self, params: CommandProbe) -> str:
        return " ".join(params.argv)

    def driver(self, spec: "ProbeSpec", ctx: ProbeContext) -> "Probe":
        return CommandProbeDriver(spec)


KIND = CommandProbeKind()


class CommandProbeDriver:
    def __init__(self, spec: "ProbeSpec") -> None:
        self._spec = spec
        self._cmd = KIND.typed(spec)

    @property
    def spec(self) -> "ProbeSpec":
        return self._spec

    async def sample(self) -> "Outcome":
        from chaos.engine.protocols import Outcome
        from chaos.errors import PlatformError
        from chaos.platform.local.run import run_argv

        c = self._cmd
        try:
            result = await run_argv(
                list(c.argv), timeout=c.timeout, env=dict(c.env) or None, cwd=c.cwd
            )
        except PlatformError as exc:
            return Outcome(False, None, exc.message)
        if result.timed_out:
            return Outcome(False, result.duration, f"timed out after {c.timeout:g}s")
        if result.returncode != c.expect.exit_code:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            return Outcome(
                False,
                result.duration,
                f"exit code {result.returncode} (expected {c.expect.exit_code}) {tail[0][:200]}"
                .rstrip(),
            )
        if c.expect.stdout_contains is not None and c.expect.stdout_contains not in result.stdout:
            return Outcome(False, result.duration,
                           f"output does not contain {c.expect.stdout_contains!r}")
        return Outcome(True, result.duration, f"exit {result.returncode}")
