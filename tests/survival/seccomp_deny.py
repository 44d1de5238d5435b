"""Run a command under a seccomp filter that makes the kernel refuse SIGCONT with EPERM.

    python seccomp_deny.py -- PROGRAM ARGS...

This is how the tests get a real revert failure: the runner can pause a process (SIGSTOP is
allowed) but the kernel refuses to let it resume it, exactly as if the target had become
unsignallable. Blocks kill(2), tgkill(2), rt_sigqueueinfo(2) and pidfd_send_signal(2) with
SIGCONT; everything else is allowed. x86-64 only.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
RET_ALLOW = 0x7FFF0000
RET_EPERM = 0x00050000 | 1
LD_ABS_W = 0x20
JEQ_K = 0x15
RET_K = 0x06
SIGCONT = 18
# syscall number -> offset of the signal argument in struct seccomp_data
SIGNAL_ARG = {62: 24, 200: 24, 234: 32, 129: 24, 424: 24}  # kill tkill tgkill rt_sigqueueinfo pidfd


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_filter() -> bytes:
    prog = [_ins(LD_ABS_W, 0, 0, 4), _ins(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
            _ins(RET_K, 0, 0, RET_ALLOW), _ins(LD_ABS_W, 0, 0, 0)]
    for nr, offset in SIGNAL_ARG.items():
        # if nr matches: load the signal argument; if SIGCONT: EPERM, else allow
        prog += [
            _ins(JEQ_K, 0, 4, nr),
            _ins(LD_ABS_W, 0, 0, offset),
            _ins(JEQ_K, 0, 1, SIGCONT),
            _ins(RET_K, 0, 0, RET_EPERM),
            _ins(RET_K, 0, 0, RET_ALLOW),
        ]
    prog.append(_ins(RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)


def install() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    code = build_filter()
    buf = ctypes.create_string_buffer(code, len(code))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(code) // 8, ctypes.addressof(buf))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    install()
    os.execvp(argv[0], argv)
