"""Files the runner reads but did not write: what it reads of them, and whom it trusts to have
written them (docs/security.md).

One rule for every such file: experiment files, probe templates, journals, pidfiles and the
state folder.

- :func:`read_regular` reads only a regular file, at most ``limit`` bytes. A symlink is judged by
  what it points to; the file is opened with ``O_NONBLOCK`` and checked again on the open
  descriptor, so a FIFO is refused rather than waited on, a device (``/dev/zero``) is never read,
  and a file swapped between the two looks is still caught.
- :func:`untrusted` says why a file or folder could have been written by someone other than the
  runner: owned by another user than the runner or root, or writable by others or by a group
  with other members. A group-writable entry whose group is its owner's own private group (named
  after the owner, no other member: what a umask of 002 on Debian and Ubuntu gives) is not a
  way in for anyone else. A sticky folder (``/tmp``) is fine: others cannot replace what is
  ours in it. :func:`untrusted_path` applies it to a file and every folder above it, as written
  and after symlinks.

Standard library only; no I/O but ``stat``, ``open`` and the user and group databases.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from pathlib import Path

__all__ = ["Refused", "read_regular", "untrusted", "untrusted_path", "user"]


class Refused(Exception):
    """A path that is not read: not a regular file, or too large. The text says which, ready to
    follow the path in a message."""


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, *, limit: int, what: str, limit_says: str,
                 chunk: int = 1 << 16) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at ``path`` (at most ``limit``) and its descriptor's stat.

    ``what`` names the file in "pass the {what} itself"; ``limit_says`` begins the size message
    ("experiment files are at most", "a journal is at most"). Raises :class:`Refused`, or
    ``OSError`` (``FileNotFoundError``, ``IsADirectoryError``, ``PermissionError``)."""
    first = os.stat(path)  # before opening: a device is not even opened
    if stat.S_ISDIR(first.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    if not stat.S_ISREG(first.st_mode):
        raise Refused(_not_regular(path, first.st_mode, what))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(_not_regular(path, st.st_mode, what))
        if st.st_size > limit:
            raise Refused(_too_large(st.st_size, limit, limit_says))
        chunks: list[bytes] = []
        total = 0
        while data := os.read(fd, min(chunk, limit + 1 - total)):
            chunks.append(data)
            total += len(data)
            if total > limit:  # grew since fstat, or a /proc file that reports size 0
                raise Refused(_too_large(total, limit, limit_says, at_least=True))
    finally:
        os.close(fd)
    return b"".join(chunks), st


def _not_regular(path: Path, mode: int, what: str) -> str:
    via = f" (a symlink to {os.path.realpath(path)})" if os.path.islink(path) else ""
    return f"is {_file_type(mode)}{via}, not a regular file: pass the {what} itself"


def _too_large(size: int, limit: int, limit_says: str, at_least: bool = False) -> str:
    mib = f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
    return (f"is {'more than ' if at_least else ''}{size} bytes; {limit_says} {mib} "
            f"({limit} bytes)")


def user(uid: int) -> str:
    """``uid 1000 (alice)``, or ``uid 4242`` for a uid with no name."""
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, ImportError):
        return f"uid {uid}"


@functools.lru_cache(maxsize=64)
def private_group(gid: int, owner: int) -> bool:
    """``gid`` is the owner's own group: named after the owner, with no member but the owner,
    and the primary group of no one else (the user private groups of Debian, Ubuntu, Fedora)."""
    try:
        import grp
        import pwd

        owner_pw = pwd.getpwuid(owner)
        group = grp.getgrgid(gid)
    except (KeyError, ImportError):
        return False
    if group.gr_name != owner_pw.pw_name or owner_pw.pw_gid != gid:
        return False
    if any(member != owner_pw.pw_name for member in group.gr_mem):
        return False
    return all(pw.pw_gid != gid or pw.pw_uid == owner for pw in pwd.getpwall())


def untrusted(path: str, st: os.stat_result, *, sticky_ok: bool = True) -> str | None:
    """Why someone other than the runner (or root) could have written ``path`` (``st``: its
    stat, or its lstat for a symlink), or None."""
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        return f"{path} is owned by {user(st.st_uid)}, not by you ({user(me)}) or root"
    if stat.S_ISLNK(st.st_mode):
        return None  # a symlink's own mode means nothing; its owner and target are checked
    writable = st.st_mode & 0o022
    if sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        writable = 0
    if writable == 0o020 and private_group(st.st_gid, st.st_uid):
        writable = 0
    if writable:
        who = {0o020: "its group", 0o002: "others"}.get(writable, "group and others")
        return (f"{path} is writable by {who} (mode {stat.filemode(st.st_mode)}, "
                f"{st.st_mode & 0o7777:04o})")
    return None


def untrusted_path(path: Path, st: os.stat_result) -> str | None:
    """Why the file at ``path`` (``st``: its open descriptor's stat) could have been written or
    replaced by someone other than the runner or root: it, or a folder on its path (as written,
    and after symlinks), or a symlink on the way. None when no one else could."""
    why = untrusted(str(path), st)
    if why:
        return why
    lexical = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    checked: set[tuple[Path, bool]] = set()
    for entry, follow in ((lexical, False), *((d, False) for d in lexical.parents),
                          *((d, True) for d in real.parents)):
        if (entry, follow) in checked:
            continue
        checked.add((entry, follow))
        try:
            est = os.stat(entry) if follow else os.lstat(entry)
        except OSError:
            continue
        why = untrusted(str(entry), est)
        if why:
            return why
    return None
