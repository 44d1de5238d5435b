"""The crash-safe fault journal: an append-only JSON-lines file per run, written ahead.

Before a fault is applied an ``intent`` record is appended; after it is applied an ``applied``
record carries everything needed to revert it without the runner (pids, interfaces, addresses);
after revert a ``reverted`` (or ``revert_failed``) record. Each append is flushed and fsynced, and
the directory is fsynced when a file is created, so what was injected survives a power cut or a
SIGKILL. A torn last line (the process died mid-write) is ignored when reading, never fatal.

While a run is alive it holds an exclusive ``flock`` on its journal; the kernel drops it when the
process dies, which is how ``chaos recover`` tells a crashed run from a live one.

Layout under the state directory (``$XDG_STATE_HOME/chaos``, default ``~/.local/state/chaos``)::

    runs/<run_id>.jsonl      one journal per run
    locks/<target-key>.lock  held while a run may inject into that target
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.errors import InvalidInput, PlatformError


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chaos"


def _now() -> str:
    return dt.datetime.now(tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    _fsync_dir(path.parent)


class StateDir:
    """The state directory: run journals and target locks."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_state_dir()
        self.runs = self.root / "runs"
        self.locks = self.root / "locks"

    def prepare(self) -> None:
        try:
            _ensure_dir(self.runs)
            _ensure_dir(self.locks)
        except OSError as exc:
            raise InvalidInput(
                f"cannot use state directory {self.root}: {exc.strerror}",
                hint="pass --state-dir with a writable folder",
            ) from None

    def journals(self) -> list[Path]:
        if not self.runs.is_dir():
            return []
        return sorted(self.runs.glob("*.jsonl"))


class Journal:
    """The write-ahead journal of one live run; holds the run's flock until closed."""

    def __init__(self, state: StateDir, run_id: str) -> None:
        state.prepare()
        self.path = state.runs / f"{run_id}.jsonl"
        self.run_id = run_id
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise PlatformError(f"journal {self.path} is locked by another live run") from None
        _fsync_dir(self.path.parent)

    def append(self, record_type: str, /, **fields: Any) -> None:
        record = {"type": record_type, "time": _now(), **fields}
        line = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode()
        os.write(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal; a torn or garbled line is skipped."""
    records: list[dict[str, Any]] = []
    try:
        raw = path.read_bytes()
    except OSError:
        return records
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # the last line of a crashed write
        if isinstance(record, dict) and "type" in record:
            records.append(record)
    return records


def append_to(path: Path, record_type: str, /, **fields: Any) -> bool:
    """Append to another run's journal (used by recovery); False if that run is still alive."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        record = {"type": record_type, "time": _now(), **fields}
        line = b"\n" + (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode()
        os.write(fd, line)  # the leading newline seals off a torn last line
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


def run_is_alive(path: Path) -> bool:
    """True while the run that owns this journal still holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass
class OutstandingFault:
    """A fault a journal says was (or may have been) applied and not reverted."""

    run_id: str
    journal: Path
    name: str
    kind: str
    targets: list[str]
    target_keys: list[str]
    revert_state: dict[str, Any]
    applied: bool  # False: only the intent was written; it may be half applied
    last_error: str | None = None


@dataclass
class RunSummary:
    run_id: str
    journal: Path
    experiment: str | None
    started_at: str | None
    ended: bool
    alive: bool
    outstanding: list[OutstandingFault] = field(default_factory=list)


def summarize(path: Path) -> RunSummary:
    records = read_records(path)
    run_id = path.stem
    start = next((r for r in records if r["type"] == "start"), {})
    faults: dict[str, OutstandingFault] = {}
    for r in records:
        kind = r["type"]
        name = r.get("fault")
        if kind == "intent" and name:
            faults[name] = OutstandingFault(
                run_id=run_id, journal=path, name=name, kind=r.get("kind", "?"),
                targets=list(r.get("targets", [])), target_keys=list(r.get("target_keys", [])),
                revert_state=dict(r.get("revert_state", {})), applied=False,
            )
        elif kind == "applied" and name in faults:
            faults[name].applied = True
            faults[name].revert_state = dict(r.get("revert_state", faults[name].revert_state))
        elif kind in ("reverted", "not_applied") and name in faults:
            del faults[name]
        elif kind == "revert_failed" and name in faults:
            faults[name].last_error = r.get("error")
    return RunSummary(
        run_id=run_id,
        journal=path,
        experiment=start.get("experiment"),
        started_at=start.get("time"),
        ended=any(r["type"] == "end" for r in records),
        alive=run_is_alive(path),
        outstanding=list(faults.values()),
    )


def outstanding_runs(state: StateDir) -> list[RunSummary]:
    """Runs that are no longer alive and left faults behind."""
    return [s for s in map(summarize, state.journals()) if s.outstanding and not s.alive]


def check_no_outstanding(state: StateDir, keys: list[str]) -> None:
    """Refuse to inject into a target that an earlier run left a fault on."""
    wanted = set(keys)
    for run in outstanding_runs(state):
        for fault in run.outstanding:
            clash = wanted.intersection(fault.target_keys)
            if clash:
                raise InvalidInput(
                    f"run {run.run_id} left fault '{fault.name}' ({fault.kind}) on "
                    f"{', '.join(sorted(clash))} and it was never reverted",
                    hint=f"run `chaos recover --state-dir {state.root}` first "
                    "(or `chaos recover --dry-run` to see what it would do)",
                )


class TargetLocks:
    """Exclusive locks on target keys, so two runs never inject into the same target at once.

    A lock is an ``flock`` on a file named after the key: the kernel releases it when the holder
    dies, so a crashed run never blocks the next one.
    """

    def __init__(self, state: StateDir) -> None:
        self.state = state
        self._fds: list[int] = []

    @staticmethod
    def _file(key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:60]
        return f"{safe}-{digest}.lock"

    def acquire(self, keys: list[str]) -> None:
        self.state.prepare()
        for key in sorted(set(keys)):
            path = self.state.locks / self._file(key)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = _read_holder(path)
                self.release()
                raise InvalidInput(
                    f"another run is injecting into {key} right now{holder}",
                    hint="wait for it to finish, or stop it (it reverts on SIGINT/SIGTERM)",
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fds.append(fd)

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def _read_holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(path.read_text().strip())})"
    return ""


@contextlib.contextmanager
def held(locks: TargetLocks, keys: list[str]) -> Iterator[None]:
    locks.acquire(keys)
    try:
        yield
    finally:
        locks.release()
