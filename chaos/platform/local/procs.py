"""Finding local processes through ``/proc`` and signalling them without hitting the wrong one.

A :class:`ProcInfo` records the process start time (``/proc/PID/stat`` field 22, in clock ticks
since boot) alongside the pid. :func:`send_signal` re-checks it, through a pidfd where the kernel
has them, so a pid that was reused by an unrelated process between discovery and signalling is
never signalled.

Only the network namespace of the runner is searched by :func:`find_by_port`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path

from chaos import trust
from chaos.errors import InvalidInput, PermissionDenied, TargetNotFound

__all__ = [
    "ProcInfo",
    "SignalMasks",
    "alive",
    "check_trusted",
    "cpu_ticks",
    "find_by_name",
    "find_by_port",
    "is_stopped",
    "never_a_target",
    "proc_info",
    "read_pidfile",
    "send_signal",
    "signal_masks",
    "state_of",
]

_PROC = "/proc"
_PF_KTHREAD = 0x00200000
_TCP_LISTEN = "0A"
_DESCRIBE_MAX = 80
#: How much of a command line a ``name:`` pattern is matched against.
MATCH_CHARS = 4096
# Modules of the runner itself; its own helper processes must never become a fault's target.
_RUNNER_MODULE = re.compile(r"(^|\s)-m\s+chaos(\.|\s|$)")


@dataclass(frozen=True)
class ProcInfo:
    """A process as seen at one moment; ``start_ticks`` tells it apart from a later pid reuse."""

    pid: int
    ppid: int
    comm: str
    cmdline: str
    start_ticks: int

    def describe(self) -> str:
        """E.g. ``pid 1234 (python3 -m chaos.demo.service --port 18080)``."""
        what = self.cmdline or f"[{self.comm}]"
        if len(what) > _DESCRIBE_MAX:
            what = what[: _DESCRIBE_MAX - 3] + "..."
        return f"pid {self.pid} ({what})"


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    flags: int
    start_ticks: int
    comm: str
    cpu_ticks: int


def _read_stat(pid: int) -> _Stat | None:
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # comm may itself contain spaces and parentheses: it ends at the *last* ')'.
    lparen, rparen = raw.find("("), raw.rfind(")")
    if lparen < 0 or rparen < 0:
        return None
    rest = raw[rparen + 2 :].split()
    # rest[0] is field 3 (state), so field N is rest[N - 3].
    try:
        return _Stat(
            state=rest[0],
            ppid=int(rest[1]),
            flags=int(rest[6]),
            start_ticks=int(rest[19]),
            comm=raw[lparen + 1 : rparen],
            cpu_ticks=int(rest[11]) + int(rest[12]),  # utime + stime
        )
    except (IndexError, ValueError):
        return None


def _read_cmdline(pid: int) -> str:
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def proc_info(pid: int) -> ProcInfo | None:
    """The process with this pid now, or None if there is none."""
    stat = _read_stat(pid)
    if stat is None:
        return None
    return ProcInfo(pid, stat.ppid, stat.comm, _read_cmdline(pid), stat.start_ticks)


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir(_PROC) if name.isdigit()]


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        stat = _read_stat(pid)
        if stat is None:
            break
        pid = stat.ppid
    seen.add(1)
    return seen


def _is_runner_helper(info: ProcInfo, me: int, my_cmdline: str) -> bool:
    """A descendant of this process that is part of the runner (a fork of it, or a chaos module)."""
    if info.cmdline == my_cmdline:
        return True
    if not _RUNNER_MODULE.search(info.cmdline):
        return False
    pid = info.ppid
    for _ in range(64):
        if pid == me:
            return True
        if pid <= 1:
            return False
        stat = _read_stat(pid)
        if stat is None:
            return False
        pid = stat.ppid
    return False


def find_by_name(pattern: str) -> list[ProcInfo]:
    """Processes whose command line (or name, when it has none) matches ``pattern`` (re.search).

    Only the first :data:`MATCH_CHARS` characters of a command line are matched. Never returns
    the runner itself, its ancestors (the shell or CI job that started it, whose
    command line often contains the pattern too), the runner's own helper processes, zombies or
    kernel threads.
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InvalidInput(
            f"process name pattern {pattern!r} is not a valid regular expression: {exc}",
            hint="it is matched with re.search against the command line; escape ( ) [ ] . * +",
        ) from exc
    me = os.getpid()
    excluded = _ancestors(me)
    my_cmdline = _read_cmdline(me)
    found = []
    for pid in _all_pids():
        if pid in excluded:
            continue
        stat = _read_stat(pid)
        if stat is None or stat.state in ("Z", "X") or stat.flags & _PF_KTHREAD:
            continue
        info = ProcInfo(pid, stat.ppid, stat.comm, _read_cmdline(pid), stat.start_ticks)
        # Matched against the first MATCH_CHARS only: a process chooses its own command line,
        # and even a pattern without nested quantifiers can take quadratic time on a long one.
        if not regex.search((info.cmdline or info.comm)[:MATCH_CHARS]):
            continue
        if _is_runner_helper(info, me, my_cmdline):
            continue
        found.append(info)
    return sorted(found, key=lambda p: p.pid)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"{_PROC}/net/{table}") as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[9] != "0":
                inodes.add(fields[9])
    return inodes


def find_by_port(port: int) -> list[ProcInfo]:
    """Processes holding a listening TCP socket (IPv4 or IPv6) on ``port``."""
    if not 0 < port < 65536:
        raise InvalidInput(f"port {port} is out of range; use 1-65535")
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return []
    found = []
    for pid in _all_pids():
        fd_dir = f"{_PROC}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for fd in fds:
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if link in wanted:
                info = proc_info(pid)
                if info is not None:
                    found.append(info)
                break
    return sorted(found, key=lambda p: p.pid)


def check_trusted(path: str, st: os.stat_result) -> None:
    """Refuse a pidfile that another user could have written or replaced: it, or a folder above
    it, owned by someone other than the runner or root, or writable by others (chaos.trust: the
    one rule for every file the runner reads)."""
    why = trust.untrusted_path(Path(path), st)
    if why:
        raise InvalidInput(
            f"pidfile {path} refused: {why}; whoever can change it chooses which process the "
            "runner signals",
            hint="chown it and its folders to the runner's user or root, and chmod go-w",
        )


def read_pidfile(path: str) -> int:
    """The pid written in ``path``; TargetNotFound if the file is missing, empty or not a pid.

    Read without following a symlink, only from a regular file that neither it nor its folder
    could have been changed by another user: a pidfile is how a local user would otherwise make
    the runner signal a process of their choosing."""
    path = os.path.expanduser(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if stat_mod.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            if not stat_mod.S_ISREG(st.st_mode):
                raise InvalidInput(f"pidfile {path} is not a regular file",
                                   hint="point to the pidfile itself")
            check_trusted(path, st)
            raw = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(f"pidfile {path} is a symlink; refusing to follow it",
                               hint="point to the real file") from exc
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise _pidfile_error(path, exc) from exc
        raise
    return _parse_pid(path, raw)


def _pidfile_error(path: str, exc: OSError) -> InvalidInput | PermissionDenied:
    if isinstance(exc, FileNotFoundError):
        return TargetNotFound(
            f"pidfile {path} does not exist, so the target process cannot be found",
            hint="check the path, and that the service is running (it writes the pidfile)",
        )
    if isinstance(exc, IsADirectoryError):
        return TargetNotFound(f"pidfile {path} is a directory, not a file",
                              hint="point to the pidfile itself")
    return PermissionDenied(
        f"cannot read pidfile {path}: permission denied",
        hint="run the runner as a user that can read it, or make the file readable",
    )


def _parse_pid(path: str, raw: bytes) -> int:
    text = raw.decode("ascii", "replace").strip()
    if not text:
        raise TargetNotFound(
            f"pidfile {path} is empty; the service may be starting or may have crashed",
            hint="check that the service is running and writes its pid to this file",
        )
    first = text.split()[0]
    if not first.isdigit() or int(first) <= 0:
        raise TargetNotFound(
            f"pidfile {path} does not contain a pid (starts with {first[:20]!r})",
            hint="a pidfile must hold a positive process id, e.g. 1234",
        )
    return int(first)


def never_a_target(info: ProcInfo) -> str | None:
    """Why this process may never be a fault's target, or None: pid 1, a kernel thread, a
    zombie, the runner itself or the process that started it, or one of the runner's own
    helper processes (burners, watchdogs)."""
    if info.pid == 1:
        return "pid 1 is the system's init process"
    stat = _read_stat(info.pid)
    if stat is None or stat.state in ("Z", "X"):
        return "it has exited"
    if stat.flags & _PF_KTHREAD or info.ppid == 2 or info.pid == 2:
        return "it is a kernel thread"
    me = os.getpid()
    if info.pid in _ancestors(me):
        return "it is the runner itself, or the process that started it"
    if _is_runner_helper(info, me, _read_cmdline(me)):
        return "it is one of the runner's own helper processes"
    return None


def _check_same(info: ProcInfo) -> None:
    now = _read_stat(info.pid)
    if now is None or now.state in ("Z", "X"):
        raise TargetNotFound(
            f"{info.describe()} has exited; nothing to signal",
            hint="the target may have crashed or been restarted; look it up again",
        )
    if now.start_ticks != info.start_ticks:
        current = proc_info(info.pid)
        owner = current.describe() if current is not None else "another process"
        raise TargetNotFound(
            f"pid {info.pid} was reused: it now belongs to {owner}, not to the process found "
            f"earlier ({info.describe()}); refusing to signal it",
            hint="the original target exited; look it up again by name, port or pidfile",
        )


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def send_signal(info: ProcInfo, sig: int) -> None:
    """Send ``sig`` to the process ``info`` describes, and only to that process."""
    name = _signal_name(sig)
    pidfd: int | None = None
    try:
        # A pidfd pins the process: once opened and re-checked, a reuse can no longer slip in.
        with contextlib.suppress(AttributeError, OSError):
            pidfd = os.pidfd_open(info.pid)
        _check_same(info)
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(info.pid, sig)
    except ProcessLookupError as exc:
        raise TargetNotFound(
            f"{info.describe()} exited before {name} could be sent",
            hint="the target may have crashed or been restarted; look it up again",
        ) from exc
    except PermissionError as exc:
        raise PermissionDenied(
            f"not allowed to send {name} to {info.describe()}: it belongs to another user "
            f"(runner uid {os.geteuid()})",
            hint="run the runner as the same user as the target, or as root",
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise TargetNotFound(f"{info.describe()} exited before {name} could be sent") from exc
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)


def is_stopped(pid: int) -> bool:
    """True if the process is stopped by a signal (state ``T``, e.g. after SIGSTOP)."""
    stat = _read_stat(pid)
    return stat is not None and stat.state == "T"


def alive(info: ProcInfo) -> bool:
    """True if this very process (same start time) still exists and is not a zombie."""
    stat = _read_stat(info.pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return stat.start_ticks == info.start_ticks


def state_of(info: ProcInfo) -> str | None:
    """The state letter (R, S, T, Z, ...) of this very process, or None if it is gone (or its
    pid was reused)."""
    stat = _read_stat(info.pid)
    if stat is None or stat.start_ticks != info.start_ticks:
        return None
    return stat.state


def cpu_ticks(info: ProcInfo) -> int | None:
    """User plus system CPU time of this very process in clock ticks; None if it is gone."""
    stat = _read_stat(info.pid)
    if stat is None or stat.start_ticks != info.start_ticks or stat.state in ("Z", "X"):
        return None
    return stat.cpu_ticks


@dataclass(frozen=True)
class SignalMasks:
    """A process's signal dispositions from ``/proc/PID/status`` (bit n-1 is signal n)."""

    ignored: int
    caught: int
    blocked: int
    pending: int

    @staticmethod
    def _has(mask: int, sig: int) -> bool:
        return bool(mask >> (sig - 1) & 1)

    def ignores(self, sig: int) -> bool:
        return self._has(self.ignored, sig)

    def catches(self, sig: int) -> bool:
        return self._has(self.caught, sig)

    def blocks(self, sig: int) -> bool:
        return self._has(self.blocked, sig)

    def has_pending(self, sig: int) -> bool:
        return self._has(self.pending, sig)


def signal_masks(info: ProcInfo) -> SignalMasks | None:
    """The signal masks of this very process, or None if it is gone."""
    try:
        with open(f"{_PROC}/{info.pid}/status", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if (state := state_of(info)) is None or state in ("Z", "X"):
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigCgt", "SigBlk", "SigPnd", "ShdPnd"):
            fields[key] = int(value.strip(), 16)
    return SignalMasks(
        ignored=fields.get("SigIgn", 0), caught=fields.get("SigCgt", 0),
        blocked=fields.get("SigBlk", 0), pending=fields.get("SigPnd", 0) | fields.get("ShdPnd", 0),
    )
