"""Running a local program without a shell, bounded in time, leaving nothing behind.

:func:`run_argv` is the one way the platform layer runs external programs (``tc``, ``ip``, command
probes). The program gets its own session and process group so that, on timeout or cancellation,
the whole group (the program and anything it spawned) is killed with SIGKILL and the program is
always reaped: no stray processes, no zombies.

Command probes and rollbacks run with ``inherit_env=False``: the program gets only
:data:`MINIMAL_ENV` (those of them that are set) and its own ``env``, never the runner's cloud
credentials. A program that cannot be started is named by ``argv[0]`` only: its arguments may
hold a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass

from chaos.errors import PermissionDenied, PlatformError

__all__ = ["MINIMAL_ENV", "OUTPUT_LIMIT", "CommandResult", "minimal_env", "run_argv"]

OUTPUT_LIMIT = 64 * 1024
#: What a command probe or rollback inherits from the runner's environment (when set).
MINIMAL_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# After the program exited or was killed, how long to wait for pipes held open by its children.
_PIPE_GRACE_S = 1.0


@dataclass(frozen=True)
class CommandResult:
    """How a program ended. ``returncode`` is negative (-signal) when it was killed."""

    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class _Capture:
    """Reads a pipe to its end, keeping the first OUTPUT_LIMIT bytes so the child never blocks."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.dropped = 0

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return
            room = OUTPUT_LIMIT - self.kept
            if room > 0:
                self.chunks.append(chunk[:room])
                self.kept += min(room, len(chunk))
            self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        out = b"".join(self.chunks).decode("utf-8", "replace")
        if self.dropped:
            out += f"\n... [{self.dropped} more bytes not kept]"
        return out


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def minimal_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """:data:`MINIMAL_ENV` from the runner's environment (those that are set), plus ``extra``."""
    base = {name: os.environ[name] for name in MINIMAL_ENV if name in os.environ}
    return {**base, **(extra or {})}


def _spawn_error(argv: list[str], cwd: str | None, exc: OSError) -> PlatformError:
    # argv[0] only: the arguments may carry a secret (a token, a password).
    program = argv[0]
    if isinstance(exc, FileNotFoundError):
        if cwd is not None and not os.path.isdir(cwd):
            return PlatformError(
                f"cannot run {program!r}: working directory {cwd} does not exist",
                hint="create it or fix the cwd of the command",
            )
        return PlatformError(
            f"command {program!r} not found; check argv[0] or PATH",
            hint=f"PATH is {os.environ.get('PATH', '(unset)')}",
        )
    if isinstance(exc, PermissionError):
        return PermissionDenied(
            f"command {program!r} is not executable (permission denied)",
            hint=f"check that {program} is an executable file (chmod +x) and not a directory",
        )
    if exc.errno == errno.ENOEXEC:
        return PlatformError(
            f"command {program!r} is not a valid executable for this machine (exec format error)",
            hint="a script needs a #! line; a binary must be built for this architecture",
        )
    return PlatformError(f"cannot run {program!r}: {exc.strerror or type(exc).__name__}")


async def run_argv(
    argv: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    inherit_env: bool = True,
) -> CommandResult:
    """Run ``argv`` (no shell) for at most ``timeout`` seconds and capture its output.

    ``env`` extends the runner's environment, or with ``inherit_env=False`` the minimal one
    (:func:`minimal_env`). A timeout is not an exception: the result says ``timed_out=True``. A
    program that cannot be started raises :class:`PlatformError` naming ``argv[0]`` only.
    """
    if not argv:
        raise PlatformError("cannot run an empty command; argv must name a program")
    if not inherit_env:
        full_env: dict[str, str] | None = minimal_env(env)
    else:
        full_env = None if env is None else {**os.environ, **env}
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise _spawn_error(argv, cwd, exc) from exc

    out, err = _Capture(), _Capture()
    readers = asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr))
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            timed_out = True
            _kill_group(proc.pid)
            await proc.wait()
        remaining = max(timeout - (time.monotonic() - started), 0.0)
        try:
            async with asyncio.timeout(max(remaining, _PIPE_GRACE_S)):
                await asyncio.shield(readers)
        except TimeoutError:
            # Something the program started still holds its stdout/stderr open: end it too.
            _kill_group(proc.pid)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PIPE_GRACE_S):
                    await asyncio.shield(readers)
    except BaseException:
        # Cancelled (or failed) mid-run: never leave the program or its children running.
        _kill_group(proc.pid)
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    finally:
        if not readers.done():
            readers.cancel()
            with contextlib.suppress(BaseException):
                await readers

    returncode = proc.returncode
    assert returncode is not None  # proc.wait() returned
    return CommandResult(
        returncode=returncode,
        stdout=out.text(),
        stderr=err.text(),
        duration=time.monotonic() - started,
        timed_out=timed_out,
    )
