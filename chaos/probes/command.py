"""Command probe: runs an argv (never a shell string); ok on the expected exit code and output."""

from __future__ import annotations

from chaos.engine.protocols import Outcome
from chaos.errors import PlatformError
from chaos.model.experiment import ProbeSpec
from chaos.platform.local.run import run_argv


class CommandProbeDriver:
    def __init__(self, spec: ProbeSpec) -> None:
        assert spec.command is not None
        self._spec = spec
        self._cmd = spec.command

    @property
    def spec(self) -> ProbeSpec:
        return self._spec

    async def sample(self) -> Outcome:
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
