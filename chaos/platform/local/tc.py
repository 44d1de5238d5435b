"""Kernel-level network latency on a local interface with ``tc qdisc ... netem``.

:class:`Netem` owns one root netem qdisc on one interface (optionally inside a network namespace).
Preflight checks everything that can be checked without changing anything: privileges, the ``tc``
and ``ip`` programs, the namespace, the interface, and that the interface's root qdisc is one of
the kernel defaults, so a qdisc someone configured on purpose is never replaced. Removal only ever
deletes a root qdisc that is netem, and succeeds when there is nothing left to remove.

All commands go through :func:`chaos.platform.local.run.run_argv`, never a shell.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil

from chaos.errors import InjectFailed, PermissionDenied, PlatformError, RevertFailed, TargetNotFound
from chaos.platform.local.run import CommandResult, run_argv

__all__ = ["DEFAULT_QDISCS", "Netem"]

# Root qdiscs the kernel sets up by itself; anything else was configured by someone on purpose.
DEFAULT_QDISCS = frozenset({"noqueue", "pfifo_fast", "mq", "fq_codel", "pfifo", "noop"})
_CAP_NET_ADMIN = 12
_TIMEOUT_S = 10.0
_NO_NETEM = "Specified qdisc kind is unknown"


def _ms(seconds: float) -> str:
    text = f"{seconds * 1000:.3f}".rstrip("0").rstrip(".")
    return f"{text}ms"


def _has_net_admin() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << _CAP_NET_ADMIN))
    except OSError:
        pass
    return False


def _system_default_qdisc() -> str | None:
    try:
        with open("/proc/sys/net/core/default_qdisc") as f:
            return f.read().strip() or None
    except OSError:
        return None


class Netem:
    """A ``netem delay`` root qdisc on ``interface`` (in ``netns`` when given).

    ``delay`` and ``jitter`` are in seconds; ``correlation`` is a percentage (0-100) of how much
    each packet's jitter depends on the previous one, and is only used together with jitter.
    """

    def __init__(
        self,
        interface: str,
        *,
        netns: str | None = None,
        delay: float,
        jitter: float = 0.0,
        correlation: float | None = None,
        handle: str | None = None,
    ) -> None:
        if not interface or "/" in interface or interface.strip() != interface:
            raise ValueError(f"invalid interface name {interface!r}")
        if delay < 0 or jitter < 0:
            raise ValueError(f"delay and jitter must be >= 0, got delay={delay} jitter={jitter}")
        if correlation is not None and not 0 <= correlation <= 100:
            raise ValueError(f"correlation is a percentage 0-100, got {correlation}")
        self.interface = interface
        self.netns = netns
        self.delay = delay
        self.jitter = jitter
        self.correlation = correlation
        if handle is not None and not re.fullmatch(r"[1-9a-f][0-9a-f]{0,3}", handle):
            raise ValueError(f"invalid qdisc handle {handle!r}: 1 to 4 hex digits, not 0")
        #: The root qdisc's handle (hex, no colon): this fault's qdisc and no one else's.
        self.handle = handle

    # -- commands ----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """Human-readable location, e.g. ``dev eth0 in netns blue``."""
        return f"dev {self.interface}" + (f" in netns {self.netns}" if self.netns else "")

    def _tc(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, "tc", *args]

    def _ip(self, *args: str) -> list[str]:
        return ["ip", *(["-n", self.netns] if self.netns else []), *args]

    def add_argv(self) -> list[str]:
        netem = ["delay", _ms(self.delay)]
        if self.jitter > 0:
            netem.append(_ms(self.jitter))
            if self.correlation is not None:
                netem.append(f"{self.correlation:g}%")
        return self._tc("qdisc", "add", "dev", self.interface, "root", *self._handle_args(),
                        "netem", *netem)

    def _handle_args(self) -> list[str]:
        return ["handle", f"{self.handle}:"] if self.handle else []

    def del_argv(self) -> list[str]:
        # With a handle the kernel deletes the root qdisc only if it is that one ("Invalid
        # handle" otherwise): an earlier run's timer can never delete a later run's qdisc.
        return self._tc("qdisc", "del", "dev", self.interface, "root", *self._handle_args())

    def command_preview(self) -> str:
        """The exact command :meth:`apply` runs, for plans and runbooks."""
        return shlex.join(self.add_argv())

    def revert_preview(self) -> str:
        """The exact command :meth:`remove` runs, for runbooks and revert-failed messages."""
        return shlex.join(self.del_argv())

    async def _run(self, argv: list[str]) -> CommandResult:
        result = await run_argv(argv, timeout=_TIMEOUT_S)
        if result.timed_out:
            raise PlatformError(
                f"`{shlex.join(argv)}` did not finish within {_TIMEOUT_S:g}s and was killed",
                hint="the kernel's netlink may be stuck; check `dmesg` and try the command by hand",
            )
        return result

    # -- queries -----------------------------------------------------------------------------

    def _netns_names(self) -> list[str]:
        try:
            return sorted(os.listdir("/run/netns"))
        except OSError:
            return []

    async def interfaces(self) -> list[str]:
        """Names of the interfaces in the target namespace."""
        result = await self._run(self._ip("-j", "link", "show"))
        if result.returncode != 0:
            raise PlatformError(
                f"cannot list interfaces ({shlex.join(self._ip('link', 'show'))}): "
                f"{result.stderr.strip()}"
            )
        return [str(link["ifname"]) for link in json.loads(result.stdout or "[]")]

    async def root_qdisc(self) -> str | None:
        """Kind of the interface's root qdisc, or None if the interface (or netns) is gone."""
        root = await self.root()
        return None if root is None else str(root.get("kind"))

    def is_ours(self, root: dict[str, object] | None) -> bool:
        """Whether ``root`` (from :meth:`root`) is this fault's netem qdisc."""
        if root is None or root.get("kind") != "netem":
            return False
        return self.handle is None or str(root.get("handle", "")).rstrip(":") == self.handle

    async def root(self) -> dict[str, object] | None:
        """The interface's root qdisc as ``tc -j`` shows it, or None if the interface (or the
        netns) is gone or it has none."""
        result = await self._run(self._tc("-j", "qdisc", "show", "dev", self.interface))
        if result.returncode != 0:
            err = result.stderr
            if "Cannot find device" in err or "Cannot open network namespace" in err:
                return None
            raise PlatformError(
                f"cannot read the qdiscs of {self.where}: {err.strip()}",
                hint=f"try by hand: {shlex.join(self._tc('qdisc', 'show', 'dev', self.interface))}",
            )
        for qdisc in json.loads(result.stdout or "[]"):
            if qdisc.get("root"):
                return dict(qdisc)
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    async def preflight(self) -> None:
        """Check that :meth:`apply` can work and would not clobber anything; changes nothing."""
        if not _has_net_admin():
            raise PermissionDenied(
                "tc netem needs root (CAP_NET_ADMIN); run as root or use a proxy latency fault",
                hint=f"the runner runs as uid {os.geteuid()} without CAP_NET_ADMIN",
            )
        for program in ("tc", "ip"):
            if shutil.which(program) is None:
                raise PlatformError(
                    f"`{program}` is not installed, so latency cannot be injected on {self.where}",
                    hint="install iproute2 (apt-get install iproute2 / dnf install iproute-tc)",
                )
        if self.netns is not None and self.netns not in self._netns_names():
            known = ", ".join(self._netns_names()) or "none"
            raise TargetNotFound(
                f"network namespace {self.netns!r} does not exist (existing: {known})",
                hint="check the netns name in the experiment; `ip netns list` shows them",
            )
        names = await self.interfaces()
        if self.interface not in names:
            raise TargetNotFound(
                f"interface {self.interface!r} does not exist"
                + (f" in netns {self.netns}" if self.netns else "")
                + f"; interfaces there: {', '.join(names) or 'none'}",
                hint="pick one of those in the experiment's networkLatency interface",
            )
        kind = await self.root_qdisc()
        allowed = DEFAULT_QDISCS | {_system_default_qdisc() or "pfifo_fast"}
        if kind is not None and kind not in allowed:
            extra = (
                "; it may have been left by a crashed run: `chaos recover`, or remove it with "
                f"`{self.revert_preview()}`"
                if kind == "netem"
                else ""
            )
            raise InjectFailed(
                f"refusing to replace the {kind} root qdisc on {self.where}: it was configured "
                f"on purpose and netem would clobber it{extra}",
                hint="inject latency on another interface, or use a proxy latency fault",
            )

    async def apply(self) -> None:
        """Add the netem qdisc. Call :meth:`preflight` first."""
        argv = self.add_argv()
        result = await self._run(argv)
        if result.returncode == 0:
            return
        err = result.stderr.strip()
        if _NO_NETEM in err:
            raise PlatformError(
                f"cannot add latency on {self.where}: this kernel has no sch_netem "
                "(CONFIG_NET_SCH_NETEM); load the module (modprobe sch_netem) or use a proxy "
                "latency fault",
                hint=f"`{shlex.join(argv)}` said: {err}",
            )
        if "Operation not permitted" in err:
            raise PermissionDenied(
                f"not allowed to add a qdisc on {self.where}: {err}",
                hint="tc netem needs root (CAP_NET_ADMIN) in the interface's network namespace",
            )
        if "Cannot find device" in err or "Cannot open network namespace" in err:
            raise TargetNotFound(f"cannot add latency on {self.where}: {err}")
        raise InjectFailed(
            f"`{shlex.join(argv)}` failed (exit {result.returncode}): {err}",
            hint="File exists means a root qdisc was added since preflight; inspect it with "
            f"`{shlex.join(self._tc('qdisc', 'show', 'dev', self.interface))}`",
        )

    async def remove(self) -> None:
        """Delete the root qdisc if, and only if, it is this netem (its handle, when it has
        one). Already gone is success."""
        try:
            if not self.is_ours(await self.root()):
                return
            result = await self._run(self.del_argv())
            if result.returncode == 0 or not self.is_ours(await self.root()):
                # Deleted, or removed concurrently / the interface went away: nothing to undo.
                return
        except PlatformError as exc:
            raise RevertFailed(
                f"cannot remove latency from {self.where}: {exc.message}; it may still be active",
                hint=f"remove it by hand as root: {self.revert_preview()}",
            ) from exc
        raise RevertFailed(
            f"latency is still active on {self.where}: `{self.revert_preview()}` failed "
            f"(exit {result.returncode}): {result.stderr.strip()}",
            hint=f"remove it by hand as root: {self.revert_preview()}",
        )
