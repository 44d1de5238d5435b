"""Command probe: runs an argv (never a shell string); ok on the expected exit code and output.

The program gets a minimal environment (PATH, HOME, LANG, LC_ALL, TZ, TMPDIR when set) plus its
``env:``, never the runner's whole environment; ``env: {NAME: "${NAME}"}`` passes a variable
through. Details are masked with the run's redactor (chaos.redact): a program that cannot be
started is named by ``argv[0]`` only, and output that echoes a secret shows ``***``.
"""

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
        from chaos.redact import current

        c = self._cmd
        try:
            result = await run_argv(
                list(c.argv), timeout=c.timeout, env=dict(c.env), cwd=c.cwd, inherit_env=False
            )
        except PlatformError as exc:
            return Outcome(False, None, current().text(exc.message))
        ok, detail = self._judge(result.returncode, result.timed_out, result.stdout,
                                 result.stderr)
        return Outcome(ok, result.duration, current().text(detail))

    def _judge(self, returncode: int, timed_out: bool, stdout: str,
               stderr: str) -> tuple[bool, str]:
        c = self._cmd
        if timed_out:
            return False, f"timed out after {c.timeout:g}s"
        if returncode != c.expect.exit_code:
            tail = (stderr or stdout).strip().splitlines()[-1:] or [""]
            return False, (f"exit code {returncode} (expected {c.expect.exit_code}) "
                           f"{tail[0][:200]}").rstrip()
        if c.expect.stdout_contains is not None and c.expect.stdout_contains not in stdout:
            return False, f"output does not contain {c.expect.stdout_contains!r}"
        return True, f"exit {returncode}"
