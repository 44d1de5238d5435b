"""Undo of the Kubernetes networkLatency pod helper against real netem, in a user-mode Linux guest.

The host kernel has no sch_netem, so this runs inside the UML guest of tests/guest/guest.py, all
trials in one boot. As in tests/guest/pod_scripts_scenario.py, a network namespace "pod" holds a
veth end named eth0. The fault script is the exact one the runner generates (prelude and
``helper_plan`` of chaos/faults/network_latency.py, ``delay 100ms``), run as
``sh -c SCRIPT chaos-fault-<container>`` in the pod's network namespace with the helper's
securityContext, both applied in the child before its exec, as runc does (see ``Proc``). Once
its ``in-effect`` line is read, the benchmark waits a uniformly random 0.5-1.5 s and starts the
generated undo script the same way (``sh -c UNDO chaos-undo``, in the same PID namespace, like
the undo container): it pkills the fault script with SIGTERM. From the instant the undo script's
process runs (its exec done; the launcher's fork is timed apart; the guest's monotonic clock)
the benchmark polls the pod's qdiscs every 5 ms and reads the fault script's output, until

- ``qdisc gone``: no netem qdisc left on eth0 (an RTM_GETQDISC netlink dump from a socket in the
  pod's namespace, ~0.1 ms: one ``tc`` exec costs 50-100 ms of the guest's only CPU, far too slow
  to poll with, so ``tc qdisc show`` confirms the result once per trial instead);
- ``reverted line``: the script's ``chaos-runner: reverted: asked to stop: ...`` line is read.

Interleaved with those trials, alternating which goes first, the same number of trials sends
SIGTERM to the fault script's pid directly (no undo script), timed from ``os.kill``: the
script's own share. Its figures, the undo script's run time, the launcher's fork time and the
guest's boot time go to the figures' extras. There is no peer.

Run by ``bench/run``; inside the guest this file runs as ``python b_netem_guest.py --guest N SEED``.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import random
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common import ROOT, Ctx, Figure, percentile

BENCH = "netem_guest"
GUEST_DIR = ROOT / "tests" / "guest"
RUN = "7b1e4c9a0d2f5e83"
FAULT = "slow"
NS, DEV = "pod", "eth0"
DELAY = ["delay", "100ms"]
WAIT_S = (0.5, 1.5)           # in-effect seen -> undo, uniformly random
POLL_S = 0.005
EVENT_TIMEOUT_S = 10.0
TARGET_MS = 1000.0
MODES = ("undo", "sigterm")

# ------------------------------------------------------------------------------ in the guest

CLONE_NEWNET = 0x40000000
RTM_NEWQDISC, RTM_GETQDISC = 36, 38
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
TCA_KIND = 1
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
CAPS = {"KILL": 5, "NET_ADMIN": 12, "NET_RAW": 13, "SYS_ADMIN": 21, "SYS_PTRACE": 19}
#: A container's environment (tests/guest/pod_scripts_scenario.py ENV)
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"]
_NLMSG = struct.Struct("=LHHLL")
_TCMSG = struct.Struct("=BxxxiLLL")


class QdiscWatch:
    """The qdisc kinds on one device of a network namespace, by a netlink dump: a poll is a few
    syscalls, where ``tc`` would be an exec the guest's one CPU needs 50-100 ms for."""

    def __init__(self, ns: str, dev: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)

        def setns(fd: int, what: str) -> None:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {what}")

        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        pod = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            setns(pod, f"netns {ns}")
            try:  # a socket stays in the namespace it was made in
                self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                          socket.NETLINK_ROUTE)
                self.ifindex = socket.if_nametoindex(dev)
            finally:
                setns(own, "the guest's own netns")
        finally:
            os.close(own)
            os.close(pod)
        self.sock.bind((0, 0))
        self.seq = 0

    def kinds(self) -> list[str]:
        self.seq += 1
        self.sock.send(_NLMSG.pack(_NLMSG.size + _TCMSG.size, RTM_GETQDISC,
                                   NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
                       + _TCMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        kinds: list[str] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, kind, _, seq, _ = _NLMSG.unpack_from(data, off)
                if length < _NLMSG.size:
                    raise RuntimeError(f"bad netlink message length {length}")
                if seq == self.seq:
                    if kind == NLMSG_DONE:
                        return kinds
                    if kind == NLMSG_ERROR:
                        err = struct.unpack_from("=i", data, off + _NLMSG.size)[0]
                        raise OSError(-err, "RTM_GETQDISC dump failed")
                    if kind == RTM_NEWQDISC:
                        _, ifindex, _, _, _ = _TCMSG.unpack_from(data, off + _NLMSG.size)
                        if ifindex == self.ifindex:
                            kinds += self._kind(data, off + _NLMSG.size + _TCMSG.size,
                                                off + length)
                off += (length + 3) & ~3

    @staticmethod
    def _kind(data: bytes, at: int, end: int) -> list[str]:
        while at + 4 <= end:
            alen, atype = struct.unpack_from("=HH", data, at)
            if alen < 4:
                break
            if atype == TCA_KIND:
                return [data[at + 4:at + alen].rstrip(b"\0").decode()]
            at += (alen + 3) & ~3
        return []


class Proc:
    """A helper script in the pod; its output lines stamped with the monotonic time they were
    read at (``pump`` reads whatever is there, from any number of them).

    Started the way the container runtime starts a container's process: the child joins the
    pod's network namespace and takes the container's securityContext (no supplementary groups,
    a bounding set of only the added capabilities, no new privileges) before it execs the
    script, in the guest's PID namespace. In the guest every exec costs 50-100 ms (more when
    the host is busy), so the ``ip netns exec`` + ``setpriv`` + ``env`` chain of the tests would
    add hundreds of ms that runc does not."""

    def __init__(self, argv: list[str], security: Mapping[str, Any], netns: int) -> None:
        caps = security.get("capabilities", {})
        if int(security.get("runAsUser", 0)) != 0 or caps.get("drop") != ["ALL"]:
            raise RuntimeError(f"only root with drop: [ALL] is handled: {security}")
        keep = {CAPS[c] for c in caps.get("add", [])}
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        no_new_privs = security.get("allowPrivilegeEscalation") is False
        libc = ctypes.CDLL(None, use_errno=True)

        def enter() -> None:  # in the child, before exec
            if libc.setns(netns, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the pod")
            os.setgroups([])
            for cap in range(last + 1):
                if cap not in keep and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), f"dropping capability {cap}")
            if no_new_privs and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "no_new_privs")

        self.cap_eff = sum(1 << c for c in keep)
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, bufsize=0, cwd="/",
                                      env=dict(e.split("=", 1) for e in ENV),
                                      preexec_fn=enter)  # noqa: PLW1509 (single-threaded)
        assert self.popen.stdout is not None
        self.fd = self.popen.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.lines: list[tuple[float, str]] = []
        self.eof = False

    def check_caps(self) -> None:
        """The running script has only the container's capabilities."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        got = {k: int(v, 16) for k, v in (ln.split(":\t") for ln in status.splitlines()
                                          if ln.startswith(("CapEff", "CapBnd", "CapPrm")))}
        if set(got.values()) != {self.cap_eff}:
            raise RuntimeError(f"the script's capabilities are {got}, not {self.cap_eff:#x}")

    def first(self, what: str, since: int = 0) -> tuple[float, str] | None:
        from chaos.faults._ephemeral import script_lines

        for t, line in self.lines[since:]:
            for kind, rest in script_lines(line):
                if kind == what:
                    return t, rest
        return None

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    @staticmethod
    def pump(procs: list[Proc], timeout: float) -> None:
        live = [p for p in procs if not p.eof]
        if not live:
            time.sleep(max(timeout, 0))
            return
        ready, _, _ = select.select([p.fd for p in live], [], [], max(timeout, 0))
        now = time.monotonic()
        for p in live:
            if p.fd not in ready:
                continue
            chunk = os.read(p.fd, 1 << 16)
            if not chunk:
                p.eof = True
                chunk = b"\n" if p.buf else b""
            *done, p.buf = (p.buf + chunk).split(b"\n")
            p.lines += [(now, line.decode(errors="replace")) for line in done]

    def finish(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while not self.eof and time.monotonic() < end:
            Proc.pump([self], end - time.monotonic())
        return self.popen.wait(timeout=max(end - time.monotonic(), 0.1))

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def guest_setup(ns: str, dev: str) -> None:
    for argv in (["ip", "netns", "add", ns],
                 ["ip", "link", "add", "veth-pod", "type", "veth", "peer", "name", dev,
                  "netns", ns],
                 ["ip", "link", "set", "veth-pod", "up"],
                 ["ip", "-n", ns, "link", "set", dev, "up"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=20)


def tc_show(ns: str, dev: str) -> str:
    return subprocess.run(["tc", "-n", ns, "qdisc", "show", "dev", dev], check=True,
                          capture_output=True, text=True, timeout=20).stdout


def trial(mode: str, wait_s: float, watch: QdiscWatch, netns: int) -> dict[str, Any]:
    """One fault script, undone ``wait_s`` after its in-effect line; times from the undo."""
    from chaos.faults._ephemeral import SCRIPT_PRELUDE, container_names, token, undo_script
    from chaos.faults.network_latency import helper_plan, netem_handle

    name, _ = container_names(RUN, FAULT)
    plan = helper_plan("helper:bench", DEV, netem_handle(RUN, FAULT), DELAY)
    now = time.time()
    script = (f"DEADLINE={int(now + 60)}\nSTART_BY={int(now + 30)}\n"
              f"{SCRIPT_PRELUDE}{plan.script}")
    fault = Proc(["sh", "-c", script, token(name)], plan.security, netns)
    undo: Proc | None = None
    try:
        t_start = time.monotonic()
        while fault.first("in-effect") is None:
            if fault.eof or time.monotonic() - t_start > 15:
                raise RuntimeError(f"no in-effect line (exit {fault.popen.poll()}): "
                                   f"{fault.text()}")
            Proc.pump([fault], 0.1)
        in_effect_at, shown = fault.first("in-effect") or (0.0, "")
        fault.check_caps()
        if "netem" not in watch.kinds():
            raise RuntimeError(f"in-effect, but the netlink dump shows no netem: {shown}")
        seen = len(fault.lines)
        while time.monotonic() < in_effect_at + wait_s:
            Proc.pump([fault], in_effect_at + wait_s - time.monotonic())

        procs = [fault]
        launch_ms = 0.0
        if mode == "undo":
            # Popen returns once the child has exec'd the script's sh: the container's process
            # is running. The fork before it is the launcher's (runc's), and in UML the fork of
            # this Python process is slow, so it is timed apart.
            t = time.monotonic()
            undo = Proc(["sh", "-c", undo_script(name, plan.belt), "chaos-undo"],
                        plan.undo_security, netns)
            t0 = time.monotonic()
            launch_ms = (t0 - t) * 1000
            procs.append(undo)
        else:
            t0 = time.monotonic()
            os.kill(fault.popen.pid, signal.SIGTERM)
        gone_at: float | None = None
        polls: list[float] = []
        next_poll = t0
        while time.monotonic() - t0 < EVENT_TIMEOUT_S:
            if gone_at is None and time.monotonic() >= next_poll:
                polls.append(time.monotonic())
                if "netem" not in watch.kinds():
                    gone_at = time.monotonic()
                next_poll = polls[-1] + POLL_S
            if gone_at is not None and fault.first("reverted", seen) is not None:
                break
            Proc.pump(procs, next_poll - time.monotonic() if gone_at is None else 0.05)
        reverted = fault.first("reverted", seen)
        if gone_at is None or reverted is None:
            raise RuntimeError(f"{mode}: within {EVENT_TIMEOUT_S:g}s, qdisc gone: "
                               f"{gone_at is not None}, reverted line: {reverted is not None}: "
                               f"{fault.text()}")
        rc = fault.finish(5)
        out: dict[str, Any] = {
            "mode": mode, "wait_s": round(wait_s, 3),
            "gone_ms": (gone_at - t0) * 1000, "reverted_ms": (reverted[0] - t0) * 1000,
            "launch_ms": launch_ms, "reverted": reverted[1], "rc": rc,
            "polls": len(polls),
            "max_poll_gap_ms": max((b - a for a, b in itertools.pairwise(polls)),
                                   default=0.0) * 1000,
        }
        if undo is not None:
            out["undo_rc"] = undo.finish(15)
            done = undo.first("undone")
            out["undone"] = done[1] if done else undo.text()
            out["undone_ms"] = (done[0] - t0) * 1000 if done else None
        out["tc_after"] = tc_show(NS, DEV).strip()
        problems = []
        if rc != 0:
            problems.append(f"the fault script exited {rc}")
        if not reverted[1].startswith("asked to stop: removed netem"):
            problems.append(f"reverted line says {reverted[1]!r}")
        if undo is not None and (out["undo_rc"] != 0
                                 or out["undone"] != "the fault helper stopped"):
            problems.append(f"undo exited {out['undo_rc']}: {undo.text()!r}")
        if "netem" in out["tc_after"]:
            problems.append(f"tc still shows netem: {out['tc_after']}")
        if problems:
            raise RuntimeError(f"{mode}: " + "; ".join(problems) + f"\n{fault.text()}")
        return out
    finally:
        for p in (fault, undo):
            if p is not None:
                p.kill()


def guest_main(n: int, seed: int) -> None:
    rng = random.Random(seed)
    guest_setup(NS, DEV)
    watch = QdiscWatch(NS, DEV)
    netns = os.open(f"/run/netns/{NS}", os.O_RDONLY)
    trials: list[dict[str, Any]] = []
    t = time.monotonic()
    try:
        for i in range(n):
            for mode in MODES if i % 2 == 0 else MODES[::-1]:
                trials.append({"i": i, **trial(mode, rng.uniform(*WAIT_S), watch, netns)})
    except Exception as exc:
        print("RESULT " + json.dumps({"error": f"{type(exc).__name__}: {exc}",
                                      "trials": trials}), flush=True)
        raise
    print("RESULT " + json.dumps({"trials": trials, "seconds": time.monotonic() - t,
                                  "uptime_s": float(Path("/proc/uptime").read_text().split()[0]),
                                  "tc_show": tc_show(NS, DEV).strip()}), flush=True)


# ------------------------------------------------------------------------------ on the host

def _ms(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 1),
            "p95": round(percentile(samples, 95), 1), "max": round(max(samples), 1)}


def run(ctx: Ctx) -> list[Figure]:
    sys.path.insert(0, str(GUEST_DIR))
    import guest as g

    reason = g.guest_available()
    if reason is not None:
        raise RuntimeError(f"the netem guest cannot start here: {reason} "
                           "(run tests/guest/setup.sh)")
    n = ctx.trials(20, 3)
    seed = int(time.time())
    res = g.run_in_guest([ctx.python, str(Path(__file__).resolve()), "--guest", str(n),
                          str(seed)], timeout=60 + 10 * n, cwd=str(ROOT))
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    data: dict[str, Any] = json.loads(line.removeprefix("RESULT ")) if line else {}
    if res.returncode != 0 or "error" in data or not data.get("trials"):
        raise RuntimeError(f"the guest run failed (rc={res.returncode}): "
                           f"{data.get('error', '')}\n{res.output[-4000:]}")
    by = {m: [t for t in data["trials"] if t["mode"] == m] for m in MODES}
    for t in data["trials"]:
        undone = f", undone {t['undone_ms']:.0f} ms" if t["mode"] == "undo" else ""
        print(f"   trial {t['i'] + 1}/{n} {t['mode']:7}: waited {t['wait_s']:.2f} s, qdisc gone "
              f"{t['gone_ms']:.0f} ms, reverted line {t['reverted_ms']:.0f} ms{undone}",
              flush=True)
    boot = round(res.boot_seconds, 2)
    print(f"   guest boot {boot:.2f} s, {len(data['trials'])} trials in "
          f"{data['seconds']:.1f} s", flush=True)
    undo, direct = by["undo"], by["sigterm"]
    extra: dict[str, Any] = {
        "seed": seed, "trials": n, "guest_boot_s": boot,
        "guest_command_s": round(res.command_seconds, 2),
        "guest_total_s": round(res.total_seconds, 2),
        "delay": " ".join(DELAY), "poll_interval_ms": POLL_S * 1000,
        "max_poll_gap_ms": round(max(t["max_poll_gap_ms"] for t in data["trials"]), 1),
        "undo_launch_fork_ms": _ms([t["launch_ms"] for t in undo]),
        "undo_script_done_ms": _ms([t["undone_ms"] for t in undo]),
        "direct_sigterm_gone_ms": _ms([t["gone_ms"] for t in direct]),
        "direct_sigterm_reverted_ms": _ms([t["reverted_ms"] for t in direct]),
        "trial_details": data["trials"],
    }
    notes = (f"one UML guest boot ({boot:.2f} s, host launch to command start), {n} trials; "
             "exact generated networkLatency pod script (delay 100ms on the pod's eth0), undone "
             f"{WAIT_S[0]:g}-{WAIT_S[1]:g} s after its in-effect line by the generated undo "
             "script (pkill -TERM); timed with the guest's monotonic clock from the undo "
             "script's exec; qdiscs polled every 5 ms by netlink, confirmed by tc afterwards. "
             f"Direct SIGTERM (no undo script): qdisc gone median "
             f"{extra['direct_sigterm_gone_ms']['median']:g} ms, reverted line median "
             f"{extra['direct_sigterm_reverted_ms']['median']:g} ms.")
    common: dict[str, Any] = {
        "bench": BENCH, "unit": "ms", "target_text": f"p95 <= {TARGET_MS:g} ms",
        "target": lambda o, p: o <= TARGET_MS, "target_stat": "p95", "notes": notes,
        "extra": extra,
    }
    return [
        Figure(name="netem in the guest: undo signal -> qdisc gone",
               ours=[t["gone_ms"] for t in undo], **common),
        Figure(name="netem in the guest: undo signal -> reverted line",
               ours=[t["reverted_ms"] for t in undo], **common),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] != ["--guest"] or len(sys.argv) != 4:
        sys.exit("usage: b_netem_guest.py --guest N SEED (run inside the netem guest; "
                 "use bench/run netem_guest)")
    guest_main(int(sys.argv[2]), int(sys.argv[3]))
