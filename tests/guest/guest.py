"""Run a command inside a throw-away Linux guest kernel that has ``sch_netem``.

The host kernel of our development and CI machines is built without
``CONFIG_NET_SCH_NETEM``, so ``tc qdisc ... netem`` cannot be tested there.
This module boots Debian's user-mode Linux kernel (package ``user-mode-linux``,
``/usr/bin/linux.uml``) as an ordinary host process, with the *host's* root
filesystem as the guest's root (hostfs), runs one command as root inside it and
returns its exit code, stdout and stderr.

Inside the guest:

* ``/proc``, ``/sys``, ``/dev`` (devtmpfs), ``/dev/shm``, ``/run`` and ``/tmp`` are
  guest-private (fresh proc/sysfs, tmpfs), so ``ip netns add`` (``/run/netns``)
  and temporary files never touch the host.  Everything else *is* the host's
  filesystem, read-write, as root: a command that writes to ``/work/main`` or
  ``/etc`` writes to the host.  ``PYTHONDONTWRITEBYTECODE=1`` is set by default so
  importing the repo does not leave ``__pycache__`` directories behind.
* The UML kernel modules from ``/usr/lib/uml/modules/<version>`` are made
  loadable (``modprobe`` wrapper installed as ``/proc/sys/kernel/modprobe``, so
  the kernel's own module auto-loading works too); ``sch_netem`` and ``veth``
  are loaded up front.
* The only network device is ``lo`` (brought up).  No host networking is
  attached: no ``ethN=`` / ``vec`` option is ever passed to the kernel.

Host-side safety: UML runs under ``unshare --pid --fork`` (a small ``sh`` is
PID 1 of the new PID namespace), in its own session.  On timeout, error or
Ctrl-C that ``sh`` is SIGKILLed, so the host kernel kills *and reaps* UML and
all its helper processes (no zombies even where the host's PID 1 does not reap
orphans); a guest kernel panic ends the run at once.  All run files, including
UML's ``uml_dir``, live in one temporary directory that is always removed.

Caveat handled here: UML 6.1 saves/restores the FPU state of its guest
processes with ``PTRACE_{GET,SET}REGSET(NT_X86_XSTATE)`` using a fixed
2696-byte buffer (x87/SSE/AVX/AVX-512/PKRU).  On hosts with AMX the XSAVE area
is ~11 KiB and the host kernel rejects a short SETREGSET with EFAULT
("userspace - ptrace set fp regs failed, errno = 14", then a guest panic at
the first user process).  We therefore build a tiny ``LD_PRELOAD`` shim (C
source below, compiled with the host ``gcc`` into the run's temporary
directory, ~0.1-0.4 s) that performs those two calls with the host's full
XSAVE size.  On hosts without the problem it changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "GuestError",
    "GuestResult",
    "GuestTimeoutError",
    "guest_available",
    "run_in_guest",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

UML_KERNEL_CANDIDATES = ("/usr/bin/linux.uml", "/usr/bin/linux")
UML_MODULES_ROOT = Path("/usr/lib/uml/modules")
# Modules loaded before the command runs (anything else is auto-loaded on demand).
PRELOAD_MODULES = ("sch_netem", "veth")
DEFAULT_MEM = os.environ.get("CHAOS_GUEST_MEM", "512M")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GUEST_RUN_MOUNT = "/run/chaos-guest"  # where the run directory is bind-mounted in the guest

# --------------------------------------------------------------------------- shim

_XSTATE_SHIM_C = r"""
/* LD_PRELOAD shim for user-mode Linux 6.1 on hosts whose XSAVE area is larger
 * than UML's fixed FP buffer (2696 bytes: x87/SSE/AVX/AVX-512/PKRU).  With AMX
 * the host's area is ~11 KiB and PTRACE_SETREGSET(NT_X86_XSTATE) insists on the
 * full size (EFAULT otherwise).  GET: read the full area, hand UML its prefix.
 * SET: read the tracee's current full area, overlay UML's prefix, write it
 * back.  Only state beyond UML's buffer (AMX tiles, which UML guests cannot
 * enable) is thereby not switched per guest thread.  See tests/guest/guest.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PT_GETREGSET 0x4204
#define PT_SETREGSET 0x4205
#define NT_XSTATE 0x202
#define MAXX (64 * 1024)

static long (*real_ptrace)(int, ...);
static unsigned char full_buf[MAXX];
static volatile int busy;

__attribute__((constructor)) static void shim_init(void) {
    real_ptrace = (long (*)(int, ...))dlsym(RTLD_NEXT, "ptrace");
}

static long xstate(int req, pid_t pid, struct iovec *iov) {
    struct iovec full = { full_buf, MAXX };
    if (syscall(SYS_ptrace, PT_GETREGSET, (long)pid, (long)NT_XSTATE, &full) < 0) return -1;
    size_t n = iov->iov_len < full.iov_len ? iov->iov_len : full.iov_len;
    if (req == PT_GETREGSET) {
        memcpy(iov->iov_base, full_buf, n);
        iov->iov_len = n;
        return 0;
    }
    memcpy(full_buf, iov->iov_base, n);
    return syscall(SYS_ptrace, PT_SETREGSET, (long)pid, (long)NT_XSTATE, &full);
}

long ptrace(int req, ...) {
    va_list ap;
    va_start(ap, req);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    if ((req == PT_GETREGSET || req == PT_SETREGSET) && (uintptr_t)addr == NT_XSTATE
        && data != NULL && !busy) {
        busy = 1;
        long r = xstate(req, pid, (struct iovec *)data);
        busy = 0;
        return r;
    }
    return real_ptrace(req, pid, addr, data);
}
"""

# --------------------------------------------------------------------------- init

# PID 1 of the guest.  Runs with /bin/sh of the host (dash).  Placeholders are
# filled with shell-quoted values by _render_init().
_INIT_TEMPLATE = r"""#!/bin/sh
# Generated by tests/guest/guest.py - PID 1 of a user-mode Linux guest.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
HOSTRUN=@HOSTRUN@
G=@GUESTRUN@

finish() {
    sync
    echo o > /proc/sysrq-trigger 2>/dev/null
    sleep 2
    poweroff -f 2>/dev/null
    halt -f 2>/dev/null
    while :; do sleep 60; done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mkdir -p "$G"
mount --bind "$HOSTRUN" "$G" || { echo "guest: cannot bind $HOSTRUN" >&2; finish; }
exec 2>>"$G/init.log" 1>&2
date +%s.%N > "$G/t_init"
# Host paths the command needs that live under /tmp (a checkout or virtualenv there) are set
# aside before the private /tmp hides them, and put back on top of it.
i=0
for p in @KEEP@; do
    mkdir -p "/run/keep/$i" && mount --bind "$p" "/run/keep/$i"; i=$((i+1))
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
i=0
for p in @KEEP@; do
    mkdir -p "$p" && mount --bind "/run/keep/$i" "$p"; i=$((i+1))
done
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
echo chaos-guest > /proc/sys/kernel/hostname

# Kernel modules shipped with the UML kernel, usable by modprobe and by the
# kernel's auto-loader (request_module -> /proc/sys/kernel/modprobe).
KVER=$(uname -r)
mkdir -p /run/uml-modules/lib/modules
ln -s @MODULES_ROOT@/"$KVER" /run/uml-modules/lib/modules/"$KVER"
printf '#!/bin/sh\nexec /usr/sbin/modprobe -d /run/uml-modules "$@"\n' > /run/uml-modprobe
chmod 0755 /run/uml-modprobe
echo /run/uml-modprobe > /proc/sys/kernel/modprobe
for m in @PRELOAD@; do
    /run/uml-modprobe "$m" || echo "guest: modprobe $m failed" >&2
done

ip link set lo up

date +%s.%N > "$G/t_start"
(
    cd @CWD@ || exit 126
    exec env -i -- @ENV@ @ARGV@
) < /dev/null > "$G/stdout" 2> "$G/stderr"
echo $? > "$G/rc.tmp"
date +%s.%N > "$G/t_end"
mv "$G/rc.tmp" "$G/rc"
finish
"""


# --------------------------------------------------------------------------- API


class GuestError(RuntimeError):
    """The guest could not be started or did not report a result."""

    def __init__(self, message: str, console: str = "") -> None:
        tail = f"\n--- guest console (tail) ---\n{console}" if console else ""
        super().__init__(message + tail)
        self.console = console


class GuestTimeoutError(GuestError, TimeoutError):
    """The guest did not finish within the timeout; it has been killed."""


@dataclasses.dataclass(frozen=True)
class GuestResult:
    returncode: int
    stdout: str
    stderr: str
    boot_seconds: float  # host launch -> command start inside the guest
    command_seconds: float  # command start -> command end (guest clock)
    total_seconds: float  # host launch -> guest process gone
    console: str  # kernel console + init diagnostics (for debugging)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> GuestResult:
        if self.returncode != 0:
            raise GuestError(
                f"guest command failed with exit code {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}",
                self.console,
            )
        return self


def _uml_kernel() -> str | None:
    for cand in UML_KERNEL_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return None


def _static_problems() -> str | None:
    if sys.platform != "linux":
        return "not Linux"
    if os.geteuid() != 0:
        return "needs root (the guest uses the host filesystem as root via hostfs)"
    kernel = _uml_kernel()
    if kernel is None:
        return "user-mode Linux kernel not installed (run tests/guest/setup.sh)"
    netem = list(UML_MODULES_ROOT.glob("*/kernel/net/sched/sch_netem.ko*"))
    if not netem:
        return f"sch_netem.ko not found under {UML_MODULES_ROOT} (run tests/guest/setup.sh)"
    for tool in ("modprobe", "tc", "ip", "gcc", "mount", "sh", "unshare"):
        if shutil.which(tool, path=_SYSTEM_PATH) is None:
            return f"`{tool}` not found (run tests/guest/setup.sh)"
    return None


@functools.lru_cache(maxsize=1)
def guest_available() -> str | None:
    """Return None if a netem-capable guest can be booted here, else why not.

    Boots one guest (about 1-2 s) that adds a netem qdisc on lo; the answer is
    cached for the life of the process.
    """
    problem = _static_problems()
    if problem:
        return problem
    try:
        res = run_in_guest(
            ["sh", "-c", "tc qdisc add dev lo root netem delay 1ms && tc qdisc show dev lo"],
            timeout=60,
        )
    except GuestError as exc:
        return f"guest failed to boot: {exc}"
    if res.returncode != 0 or "netem" not in res.stdout:
        return (
            f"guest booted but netem does not work (rc={res.returncode}): "
            f"{res.stdout}{res.stderr}\n{res.console[-2000:]}"
        )
    return None


def _default_guest_env() -> dict[str, str]:
    # The directory of the interpreter running the tests (a venv's bin/ keeps
    # the venv's site-packages) goes first, so `python3` in the guest is ours.
    py_bin = os.path.dirname(sys.executable)
    path = ":".join(
        dict.fromkeys(
            [py_bin, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        )
    )
    return {
        "PATH": path,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _kept_paths(cwd: str) -> list[str]:
    """Host paths under /tmp that the guest must still see (its /tmp is private)."""
    wanted = {cwd, str(REPO_ROOT), sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    under_tmp = sorted({os.path.realpath(p) for p in wanted
                        if os.path.realpath(p).startswith("/tmp/")})
    kept: list[str] = []
    for path in under_tmp:  # sorted: a parent comes before what it contains
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def _render_init(
    hostrun: str, argv: Sequence[str], cwd: str, env: Mapping[str, str], modules_root: str
) -> str:
    for key in env:
        if not key or "=" in key or not key.replace("_", "a").isalnum():
            raise ValueError(f"invalid environment variable name: {key!r}")
    env_words = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    subs = {
        "@HOSTRUN@": shlex.quote(hostrun),
        "@GUESTRUN@": shlex.quote(_GUEST_RUN_MOUNT),
        "@MODULES_ROOT@": shlex.quote(modules_root),
        "@PRELOAD@": " ".join(PRELOAD_MODULES),
        "@CWD@": shlex.quote(cwd),
        "@ENV@": env_words,
        "@ARGV@": " ".join(shlex.quote(a) for a in argv),
        "@KEEP@": " ".join(shlex.quote(k) for k in _kept_paths(cwd)),
    }
    text = _INIT_TEMPLATE
    for marker, value in subs.items():
        text = text.replace(marker, value)
    return text


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a host process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    # Fields after the ")" that ends comm: state ppid pgrp session ... starttime (22nd).
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _descendants(root: int) -> dict[int, int]:
    """Live (non-zombie) descendants of `root`, as pid -> starttime."""
    table: dict[int, tuple[str, int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := _proc_stat(int(entry.name))) is not None:
            table[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        state, _, start = table[pid]
        if state not in ("Z", "X"):
            found[pid] = start
        todo.extend(children.get(pid, []))
    return found


def _kill_guest(proc: subprocess.Popen[bytes]) -> None:
    """Kill the guest and every host process it spawned, and reap them.

    `proc` is ``unshare --pid --fork``; its only child is a tiny ``sh``, PID 1 of
    a fresh PID namespace, which runs the UML kernel.  SIGKILLing that ``sh``
    makes the host kernel kill every process of the namespace (the UML kernel
    and the "stub" processes that run guest user space) and reap them; unshare
    then reaps the ``sh`` and exits.  This leaves no zombie behind even on hosts
    whose PID 1 does not reap orphans.  As a last resort, every process that was
    below `proc` is SIGKILLed by pid (checked against its start time).
    """
    if proc.poll() is None:
        snapshot = _descendants(proc.pid)
        for pid in snapshot:
            st = _proc_stat(pid)
            if st is not None and st[1] == proc.pid:  # the namespace's PID 1
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    else:
        snapshot = {}
    for _ in range(50):
        if proc.poll() is None:
            snapshot.update(_descendants(proc.pid))
        alive = []
        for pid, start in snapshot.items():
            st = _proc_stat(pid)
            if st is not None and st[2] == start and st[0] not in ("Z", "X"):
                alive.append(pid)
        if proc.poll() is None:
            alive.append(proc.pid)
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _build_shim(rundir: Path, timeout: float = 60) -> Path:
    src = rundir / "xstate_shim.c"
    out = rundir / "xstate_shim.so"
    src.write_text(_XSTATE_SHIM_C)
    res = subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-o", str(out), str(src), "-ldl"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if res.returncode != 0:
        raise GuestError(f"building the UML ptrace shim failed:\n{res.stderr}")
    return out


@contextlib.contextmanager
def _rundir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="chaos-guest-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _read_float(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def run_in_guest(
    argv: list[str],
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    mem: str = DEFAULT_MEM,
) -> GuestResult:
    """Boot a user-mode Linux guest, run `argv` as root in it and return the result.

    `argv` is executed (no shell) with cwd `cwd` (default: the repo root,
    /work/main) and an environment made of a small default (PATH with this
    interpreter's directory first, PYTHONPATH=<repo root>,
    PYTHONDONTWRITEBYTECODE=1, ...) updated with `env`.  Stdin is /dev/null.

    `timeout` bounds the whole thing (boot, command, power-off); when it
    expires the guest is killed and GuestTimeoutError is raised.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    kernel = _uml_kernel()
    if kernel is None:
        raise GuestError("user-mode Linux kernel not installed (run tests/guest/setup.sh)")
    guest_env = _default_guest_env()
    if env:
        guest_env.update(env)
    workdir = os.fspath(cwd) if cwd is not None else str(REPO_ROOT)
    deadline = time.monotonic() + timeout

    with _rundir() as rundir:
        shim = _build_shim(rundir, timeout=max(deadline - time.monotonic(), 1))
        init = rundir / "init"
        init.write_text(_render_init(str(rundir), argv, workdir, guest_env, str(UML_MODULES_ROOT)))
        init.chmod(0o755)
        console_path = rundir / "console.log"
        umid = rundir.name
        cmdline = [
            # A new PID namespace whose PID 1 is a small sh running UML: when
            # it dies, the host kernel kills and reaps everything UML started.
            # (UML itself must not be PID 1 there: its panic path ends in
            # abort(), which a namespace's init ignores, and it would spin.)
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--",
            "/bin/sh",
            "-c",
            'ulimit -c 0; "$@"; exit $?',
            "chaos-guest-init",
            kernel,
            f"mem={mem}",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={init}",
            "quiet",
            "con=null",
            "con0=fd:0,fd:1",
            "ssl=null",
            f"uml_dir={rundir}",
            f"umid={umid}",
        ]
        host_env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(rundir),
            "LD_PRELOAD": str(shim),
        }
        t0 = time.time()
        mono0 = time.monotonic()
        timed_out = False
        with open(console_path, "wb") as console:
            proc = subprocess.Popen(
                cmdline,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=rundir,  # any core dump lands in the run dir and is removed
                env=host_env,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                # Also after a normal power-off: make sure nothing is left.
                _kill_guest(proc)
        if timed_out:
            raise GuestTimeoutError(
                f"guest did not finish within {timeout:g}s and was killed (argv={argv!r})",
                _tail(_read(console_path) + _read(rundir / "init.log")),
            )
        total = time.monotonic() - mono0
        console_text = _read(console_path) + _read(rundir / "init.log")
        rc_text = _read(rundir / "rc").strip()
        if not rc_text.lstrip("-").isdigit():
            raise GuestError(
                f"guest exited (status {proc.returncode}) without reporting a result "
                f"(argv={argv!r})",
                _tail(console_text),
            )
        t_start = _read_float(rundir / "t_start")
        t_end = _read_float(rundir / "t_end")
        boot = (t_start - t0) if t_start is not None else float("nan")
        cmd = (t_end - t_start) if t_start is not None and t_end is not None else float("nan")
        return GuestResult(
            returncode=int(rc_text),
            stdout=_read(rundir / "stdout"),
            stderr=_read(rundir / "stderr"),
            boot_seconds=boot,
            command_seconds=cmd,
            total_seconds=total,
            console=console_text,
        )


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def main(args: list[str] | None = None) -> int:
    """``python3 tests/guest/guest.py [--timeout S] -- CMD ARGS...``: run CMD in a guest."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--cwd", default=None)
    parser.add_argument("--mem", default=DEFAULT_MEM)
    parser.add_argument("--console", action="store_true", help="print the guest console too")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("no command given")
    problem = _static_problems()
    if problem:
        print(f"guest unavailable: {problem}", file=sys.stderr)
        return 2
    res = run_in_guest(argv, timeout=ns.timeout, cwd=ns.cwd, mem=ns.mem)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    if ns.console:
        sys.stderr.write(res.console)
    print(
        f"[guest] rc={res.returncode} boot={res.boot_seconds:.2f}s "
        f"command={res.command_seconds:.2f}s total={res.total_seconds:.2f}s",
        file=sys.stderr,
    )
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
