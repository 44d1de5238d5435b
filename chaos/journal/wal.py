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
import errno
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos import trust
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


#: Journals are small (a few records per fault); a bigger file is not one of ours.
MAX_JOURNAL_BYTES = 16 * 1024 * 1024
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def _check_owned(st: os.stat_result, what: str) -> None:
    """Owned by the runner (or root) and writable by no one else (chaos.trust): another user
    could otherwise plant a journal, a lock or a symlink there (see docs/security.md)."""
    why = trust.untrusted(what, st, sticky_ok=False)
    if why:
        raise InvalidInput(
            f"{why}: refusing to use it",
            hint="chmod 700 it, or pass --state-dir with a private folder the runner's user owns",
        )


def _ensure_dir(path: Path) -> None:
    """The folder exists, private (0700 whatever the umask), not a symlink, and ours."""
    try:
        os.mkdir(path, _PRIVATE_DIR)
    except FileExistsError:
        pass
    else:
        os.chmod(path, _PRIVATE_DIR)  # the umask may have narrowed it; never widened
        _fsync_dir(path.parent)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInput(f"state folder {path} is not a folder (a symlink?): refusing to use it",
                           hint="pass --state-dir with a real folder")
    _check_owned(st, f"state folder {path}")


def _open_private(path: Path, flags: int) -> int:
    """Open (or create, 0600) a file of the state folder without following a symlink."""
    try:
        fd = os.open(path, flags | _NOFOLLOW, _PRIVATE_FILE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(f"{path} is a symlink: refusing to follow it",
                               hint="remove it; nothing of the runner's is a symlink") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidInput(f"{path} is not a regular file: refusing to use it")
    return fd


class StateDir:
    """The state directory: run journals and target locks."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_state_dir()
        self.runs = self.root / "runs"
        self.locks = self.root / "locks"
        self.quarantine = self.runs / "quarantine"

    def prepare(self) -> None:
        try:
            if not self.root.exists():
                self.root.parent.mkdir(parents=True, exist_ok=True)
            _ensure_dir(self.root)
            _ensure_dir(self.runs)
            _ensure_dir(self.locks)
        except OSError as exc:
            raise InvalidInput(
                f"cannot use state directory {self.root}: {exc.strerror}",
                hint="pass --state-dir with a writable folder",
            ) from None

    def journals(self) -> list[Path]:
        """The run journals. A state folder (or its runs/) that another user owns or could
        write is refused here too, as a run refuses it: ``chaos recover`` would otherwise act
        on journals planted there."""
        if not self.runs.is_dir():
            return []
        for folder, what in ((self.root, "state folder"), (self.runs, "journal folder")):
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidInput(f"{what} {folder} is not a folder (a symlink?): refusing to "
                                   "use it", hint="pass --state-dir with a real folder")
            _check_owned(st, f"{what} {folder}")
        return sorted(self.runs.glob("*.jsonl"))

    def quarantined(self, path: Path, why: str) -> Path:
        """Move a journal this version cannot trust aside (never deleted: a person reads it),
        so that it no longer blocks recovery or later runs."""
        _ensure_dir(self.quarantine)
        target = self.quarantine / path.name
        os.replace(path, target)  # renames the entry itself, a symlink included
        note = os.open(target.with_suffix(".why"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                       | _NOFOLLOW, _PRIVATE_FILE)
        try:
            os.write(note, f"{_now()} {why}\n".encode())
        finally:
            os.close(note)
        return target


class Journal:
    """The write-ahead journal of one live run; holds the run's flock until closed."""

    def __init__(self, state: StateDir, run_id: str) -> None:
        state.prepare()
        self.path = state.runs / f"{run_id}.jsonl"
        self.run_id = run_id
        try:
            self._fd = _open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        except OSError as exc:
            raise InvalidInput(
                f"cannot write the fault journal {self.path}: {exc.strerror} (nothing was "
                "injected)",
                hint="pass --state-dir with a writable folder",
            ) from None
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


class UntrustedJournal(InvalidInput):
    """A journal that cannot be one of ours: not a regular file, too big, or records of the
    wrong shape. It is quarantined, never acted on."""


def _read_journal(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedJournal(f"{path} is a symlink") from None
        return b""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedJournal(f"{path} is not a regular file")
        if st.st_uid not in (os.geteuid(), 0):
            raise UntrustedJournal(f"{path} is owned by uid {st.st_uid}, not by the runner")
        if st.st_size > MAX_JOURNAL_BYTES:
            raise UntrustedJournal(f"{path} is {st.st_size} bytes, more than a journal holds")
        chunks = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, MAX_JOURNAL_BYTES + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_JOURNAL_BYTES:  # grew since fstat
                raise UntrustedJournal(f"{path} grew past {MAX_JOURNAL_BYTES} bytes while read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal; a torn or garbled line is skipped. Raises
    UntrustedJournal for a file that cannot be one of ours."""
    records: list[dict[str, Any]] = []
    raw = _read_journal(path)
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
    fd = _open_private(path, os.O_WRONLY | os.O_APPEND)
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
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
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


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value
    raise UntrustedJournal(f"record {record.get('type')!r} has a {key!r} that is not text")


def _texts(record: dict[str, Any], key: str) -> list[str]:
    value = record.get(key, [])
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise UntrustedJournal(f"record {record.get('type')!r} has a {key!r} that is not a list "
                           "of text")


def _state(record: dict[str, Any]) -> dict[str, Any]:
    value = record.get("revert_state", {})
    if isinstance(value, dict):
        return dict(value)
    raise UntrustedJournal(f"record {record.get('type')!r} has a revert_state that is not an "
                           "object")


def summarize(path: Path) -> RunSummary:
    """What a run's journal says is outstanding. Raises UntrustedJournal for a journal that
    cannot be one of ours (its revert states are checked by the kinds when they are used)."""
    records = read_records(path)
    run_id = path.stem
    start = next((r for r in records if r["type"] == "start"), {})
    faults: dict[str, OutstandingFault] = {}
    for r in records:
        kind = r["type"]
        name = _text(r, "fault")
        if kind == "intent" and name:
            faults[name] = OutstandingFault(
                run_id=run_id, journal=path, name=name, kind=_text(r, "kind") or "?",
                targets=_texts(r, "targets"), target_keys=_texts(r, "target_keys"),
                revert_state=_state(r), applied=False,
            )
        elif kind == "applied" and name in faults:
            faults[name].applied = True
            if "revert_state" in r:
                faults[name].revert_state = _state(r)
        elif kind in ("reverted", "not_applied") and name in faults:
            del faults[name]
        elif kind == "revert_failed" and name in faults:
            faults[name].last_error = _text(r, "error")
    return RunSummary(
        run_id=run_id,
        journal=path,
        experiment=_text(start, "experiment") if start else None,
        started_at=_text(start, "time") if start else None,
        ended=any(r["type"] == "end" for r in records),
        alive=run_is_alive(path),
        outstanding=list(faults.values()),
    )


@dataclass
class Quarantined:
    journal: Path
    moved_to: Path
    why: str


def scan(state: StateDir) -> tuple[list[RunSummary], list[Quarantined]]:
    """Runs that are no longer alive and left faults behind, and the journals that could not be
    trusted: each of those is moved to ``runs/quarantine/`` (with a ``.why`` note) so one bad
    file never blocks the recovery of the others, nor every later run."""
    runs: list[RunSummary] = []
    bad: list[Quarantined] = []
    for path in state.journals():
        try:
            summary = summarize(path)
        except UntrustedJournal as exc:
            if run_is_alive(path):
                continue  # a live run's journal is its own business
            try:
                moved = state.quarantined(path, exc.message)
            except OSError as err:
                moved = path
                exc.message += f" (and it could not be moved aside: {err.strerror})"
            bad.append(Quarantined(path, moved, exc.message))
            continue
        if summary.outstanding and not summary.alive:
            runs.append(summary)
    return runs, bad


def outstanding_runs(state: StateDir) -> list[RunSummary]:
    """Runs that are no longer alive and left faults behind (untrusted journals quarantined)."""
    return scan(state)[0]


def check_no_outstanding(state: StateDir, keys: list[str]) -> list[Quarantined]:
    """Refuse to inject into a target that an earlier run left a fault on; return the
    journals quarantined on the way (the caller says so)."""
    wanted = set(keys)
    runs, quarantined = scan(state)
    for run in runs:
        for fault in run.outstanding:
            clash = wanted.intersection(fault.target_keys)
            if clash:
                raise InvalidInput(
                    f"run {run.run_id} left fault '{fault.name}' ({fault.kind}) on "
                    f"{', '.join(sorted(clash))} and it was never reverted",
                    hint=f"run `chaos recover --state-dir {state.root}` first "
                    "(or `chaos recover --dry-run` to see what it would do)",
                )
    return quarantined


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
            fd = _open_private(path, os.O_RDWR | os.O_CREAT)
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
