"""``networkLatency``: added delay, three ways, one kind.

- ``proxy: NAME`` (local): the run's TCP proxy holds response data back. In effect when a
  connection made through the proxy (half-closed at once, nothing sent) gets its first response
  no sooner than the delay, or when real response data is seen held that long.
- ``interface: IF`` (local, root): a netem root qdisc with this fault's own handle, so removal
  (by the revert, ``chaos recover`` or the watchdog that expires it) deletes this qdisc and never
  another run's. In effect when ``tc`` shows our netem with the delay on the interface.
- ``selector: ...`` (Kubernetes): the same qdisc from a helper container in each pod (root with
  only NET_ADMIN, so the ``privileged`` Pod Security level); the script checks the qdisc is there
  and says so in its log.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from chaos.errors import FaultNotInEffect, RevertFailed
from chaos.faults._proxy import proxy_target, verify_proxy_clear
from chaos.faults.contract import (
    HELPER_PERMISSIONS,
    FaultKind,
    HelperFault,
    HelperState,
    KubeContext,
    LocalContext,
    Permission,
    PlannedFault,
    PlatformName,
    PodNeeds,
    RecoverContext,
    RevertState,
    Seen,
    observe_until,
)
from chaos.model._units import Duration, Percent, Rate
from chaos.model.common import DEFAULT_HELPER_IMAGE, PodSelector, Strict, exactly_one

if TYPE_CHECKING:
    from chaos.faults._ephemeral import Helper, HelperPlan
    from chaos.model.experiment import FaultSpec
    from chaos.platform.kubernetes import PodRef
    from chaos.platform.local.proxy import FaultProxy
    from chaos.platform.local.tc import Netem
    from chaos.platform.local.watchdog import Watchdog

_IFNAME = r"^[A-Za-z0-9_.:-]{1,15}$"
#: Delays we can tell apart from a normal round trip on a real connection.
_SLACK_S = 0.002


class NetworkLatency(Strict):
    """Added delay, either through a named run proxy, with tc netem on an interface, or in the
    pods a selector picks."""

    proxy: str | None = None
    interface: str | None = Field(default=None, pattern=_IFNAME)
    selector: PodSelector | None = Field(
        default=None,
        description="kubernetes: pods to slow down (tc netem in a helper container)",
    )
    netns: str | None = Field(default=None, description="network namespace of the interface")
    device: str = Field(default="eth0", pattern=_IFNAME,
                        description="kubernetes: the pod's network interface")
    container: str | None = Field(
        default=None, description="kubernetes: container whose namespaces to join (default: first)"
    )
    image: str = Field(default=DEFAULT_HELPER_IMAGE, description="kubernetes: helper image")
    delay: Duration
    jitter: Duration = 0.0
    correlation: Percent | None = None
    bandwidth: Rate | None = Field(default=None, description="proxy only: cap each direction")

    @model_validator(mode="after")
    def _where(self) -> Self:
        exactly_one(self, ("proxy", "interface", "selector"), "networkLatency")
        if self.proxy is not None and (self.netns is not None or self.correlation is not None):
            raise ValueError("netns and correlation apply to interface (tc netem) latency only")
        if self.proxy is None and self.bandwidth is not None:
            raise ValueError("bandwidth applies to proxy latency only")
        if self.selector is not None and self.netns is not None:
            raise ValueError("netns applies to interface latency only; pods use their own")
        if self.jitter > self.delay:
            raise ValueError("jitter must not exceed delay")
        return self

    def netem_args(self) -> list[str]:
        args = ["delay", _ms(self.delay)]
        if self.jitter > 0:
            args.append(_ms(self.jitter))
            if self.correlation is not None:
                args.append(f"{self.correlation * 100:g}%")
        return args


def _ms(seconds: float) -> str:
    text = f"{seconds * 1000:.3f}".rstrip("0").rstrip(".")
    return f"{text}ms"


def netem_handle(run_id: str, fault: str) -> str:
    """A root qdisc handle of this run's fault: 1000-7fff, clear of the kernel's automatic
    handles (8000 and up)."""
    digest = int(hashlib.sha256(f"{run_id}/{fault}".encode()).hexdigest()[:8], 16)
    return f"{0x1000 + digest % 0x7000:x}"


# --------------------------------------------------------------------------------- revert states


class ProxyState(RevertState):
    version: Literal[1] = 1
    variant: Literal["proxy"] = "proxy"
    proxy: str
    listen: str


class NetemState(RevertState):
    version: Literal[1] = 1
    variant: Literal["interface"] = "interface"
    interface: str = Field(pattern=_IFNAME)
    netns: str | None = None
    handle: str = Field(pattern=r"^[1-9a-f][0-9a-f]{0,3}$")
    watchdog_pid: int | None = None
    watchdog_start_ticks: int | None = None


class PodNetemState(HelperState):
    """The helper-container state plus what the undo needs to remove a leftover qdisc."""

    device: str = Field(pattern=_IFNAME)
    handle: str = Field(pattern=r"^[1-9a-f][0-9a-f]{0,3}$")


LatencyState = Annotated[ProxyState | NetemState | PodNetemState, Field(discriminator="variant")]


# ------------------------------------------------------------------------------------ via a proxy


class ProxyLatencyFault(PlannedFault[ProxyState]):
    def __init__(self, spec: FaultSpec, params: NetworkLatency, proxy: FaultProxy,
                 ctx: LocalContext) -> None:
        super().__init__(spec)
        self.params = params
        self.proxy = proxy
        self.ctx = ctx

    def targets(self) -> list[str]:
        return [proxy_target(self.proxy)]

    def describe(self) -> str:
        p = self.params
        text = f"add {p.delay * 1000:g}ms"
        if p.jitter:
            text += f" ±{p.jitter * 1000:g}ms"
        text += " latency to responses"
        if p.bandwidth:
            text += f", cap {p.bandwidth / 1000:g} kB/s"
        return text + f" through proxy '{p.proxy}'"

    def target_keys(self) -> list[str]:
        host, port = self.proxy.listen
        return [f"local:proxy:{host}:{port}"]

    def state(self) -> ProxyState:
        host, port = self.proxy.listen
        return ProxyState(proxy=self.proxy.name, listen=f"{host}:{port}")

    async def inject(self) -> None:
        p = self.params
        self.proxy.set_toxic(delay=p.delay, jitter=p.jitter, bandwidth=p.bandwidth,
                             expires_in=(self.spec.duration or 0) + self.ctx.limits.expiry_grace)

    async def verify(self, within: float) -> str:
        from chaos.platform.local.proxy import first_response

        p = self.params
        floor = max(0.0, p.delay - p.jitter - _SLACK_S)
        proxy = self.proxy
        wait = p.delay + p.jitter + 2.0
        probing = True

        async def look() -> Seen:
            nonlocal probing
            held = proxy.held
            if held.chunks and held.max_hold >= floor and (floor > 0 or p.bandwidth):
                return Seen(True, f"{held.chunks} response chunk(s) through proxy "
                            f"'{proxy.name}' held up to {held.max_hold * 1000:.0f}ms")
            if probing:
                took = await first_response(proxy.address, wait)
                if took is None:
                    probing = False  # the upstream sends nothing to a silent client; watch
                elif took >= floor > 0:
                    return Seen(True, f"a connection through proxy '{proxy.name}' got its first "
                                f"response after {took * 1000:.0f}ms")
                elif floor > 0:
                    raise FaultNotInEffect(
                        f"{proxy_target(proxy)}: a connection through it got its response after "
                        f"{took * 1000:.1f}ms, sooner than the {p.delay * 1000:g}ms delay")
            return Seen(False, f"no response through proxy '{proxy.name}' showed the delay "
                        "(is the traffic going through the proxy's listen address?)")

        return await observe_until(within, look, what="the latency", interval=0.2)

    async def revert(self) -> None:
        self.proxy.clear()

    async def verify_reverted(self, within: float) -> str:
        return await verify_proxy_clear(self.proxy, within)


# ------------------------------------------------------------------------- netem on an interface


class NetemFault(PlannedFault[NetemState]):
    def __init__(self, spec: FaultSpec, params: NetworkLatency, netem: Netem,
                 ctx: LocalContext) -> None:
        super().__init__(spec)
        self.params = params
        self.netem = netem
        self.ctx = ctx
        self.watchdog: Watchdog | None = None

    def targets(self) -> list[str]:
        where = f" in netns {self.params.netns}" if self.params.netns else ""
        return [f"interface {self.params.interface}{where}"]

    def describe(self) -> str:
        return self.netem.command_preview()

    def target_keys(self) -> list[str]:
        return [f"local:netem:{self.params.netns or 'host'}:{self.params.interface}"]

    def state(self) -> NetemState:
        assert self.netem.handle is not None
        wd = self.watchdog
        return NetemState(interface=self.netem.interface, netns=self.netem.netns,
                          handle=self.netem.handle, watchdog_pid=wd.pid if wd else None,
                          watchdog_start_ticks=wd.start_ticks if wd else None)

    async def preflight(self) -> None:
        await self.netem.preflight()

    async def inject(self) -> None:
        from chaos.platform.local.watchdog import spawn_watchdog

        n = self.netem
        where = f"{n.handle}/{n.interface}" + (f"@{n.netns}" if n.netns else "")
        self.watchdog = spawn_watchdog(
            (self.spec.duration or 0) + self.ctx.limits.expiry_grace,
            tag=f"{self.ctx.run_id}/{self.spec.name}", netem=[where])
        await n.apply()

    async def verify(self, within: float) -> str:
        async def look() -> Seen:
            root = await self.netem.root()
            if self.netem.is_ours(root):
                return Seen(True, f"tc shows netem {self.netem.handle}: on {self.netem.where} "
                            f"({_netem_options(root)})")
            return Seen(False, f"the root qdisc of {self.netem.where} is "
                        f"{_describe_qdisc(root)}, not our netem {self.netem.handle}:")

        return await observe_until(within, look, what="the netem qdisc")

    async def revert(self) -> None:
        await self.netem.remove()
        if self.watchdog is not None:
            self.watchdog.cancel()

    async def verify_reverted(self, within: float) -> str:
        return await _netem_gone(self.netem, within)


async def _netem_gone(netem: Netem, within: float) -> str:
    async def look() -> Seen:
        root = await netem.root()
        if netem.is_ours(root):
            return Seen(False, f"netem {netem.handle}: is still on {netem.where}")
        return Seen(True, f"no netem {netem.handle}: on {netem.where} (root: "
                    f"{_describe_qdisc(root)})")

    return await observe_until(within, look, what="the removal of netem", failure=RevertFailed)


def _describe_qdisc(root: dict[str, object] | None) -> str:
    if root is None:
        return "none (or the interface is gone)"
    return f"{root.get('kind')} {root.get('handle', '')}".strip()


def _netem_options(root: dict[str, object] | None) -> str:
    options = (root or {}).get("options")
    return str(options) if options else "no options shown"


# ------------------------------------------------------------------------- in pods, on Kubernetes

#: Root, with NET_ADMIN and nothing else: tc in the pod's network namespace needs no more.
NETEM_SECURITY: dict[str, Any] = {
    "runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
}
NETEM_NEEDS = PodNeeds("privileged", True, "tc netem needs root and NET_ADMIN in the helper "
                       "container")
NETEM_CAUSES: dict[str, tuple[str, str | None]] = {
    "no-netem": ("this node's kernel has no sch_netem",
                 "load it on the node (modprobe sch_netem); on RHEL-family nodes it ships in "
                 "kernel-modules-extra"),
    "not-permitted": ("tc was refused (Operation not permitted): the helper runs without root "
                      "or NET_ADMIN",
                      "a Pod Security, SCC or admission policy may have dropped them; the "
                      "namespace needs the privileged level"),
    "qdisc-exists": ("the interface already has a root qdisc (another tool, or a fault left "
                     "behind)", "run `chaos recover`, or inspect it with tc qdisc show"),
    "no-device": ("the pod has no such network interface", "set `device:` in the fault"),
    "no-tc": ("the helper image has no tc", "build the image from docker/helper.Dockerfile"),
    "not-observed": ("tc accepted the qdisc but does not show it", None),
    "tc": ("tc failed", None),
}


def pod_script(device: str, handle: str, netem: list[str]) -> str:
    """The fault script (after the prelude, which defines DEADLINE, START_BY, say and fail)."""
    dev = shlex.quote(device)
    args = " ".join(shlex.quote(a) for a in netem)
    return f"""dev={dev}
handle={handle}
command -v tc >/dev/null 2>&1 || fail no-tc "tc is not installed in the helper image"
sleeper=
removed=0
remove() {{
  [ "$removed" = 1 ] && return 0
  removed=1
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
  if tc qdisc del dev "$dev" root handle "$handle:" 2>/dev/null; then
    say "reverted: $1: removed netem $handle: from $dev"
  else
    say "reverted: $1: netem $handle: was not on $dev"
  fi
}}
trap 'remove "asked to stop"; exit 0' TERM INT HUP
if ! out=$(tc qdisc add dev "$dev" root handle "$handle:" netem {args} 2>&1); then
  removed=1
  case "$out" in
    *"qdisc kind is unknown"*|*"Specified qdisc not found"*) fail no-netem "$out" ;;
    *"Operation not permitted"*) fail not-permitted "$out" ;;
    *"Exclusivity flag on"*|*"NLM_F_REPLACE needed"*|*"File exists"*)
      fail qdisc-exists "$(tc qdisc show dev "$dev" root 2>&1)" ;;
    *"Cannot find device"*) fail no-device "$out" ;;
    *) fail tc "$out" ;;
  esac
fi
shown=$(tc qdisc show dev "$dev" root 2>&1)
case "$shown" in
  *"netem $handle: "*) say "in-effect: $shown" ;;
  *) remove "not observed"; fail not-observed "tc shows: $shown" ;;
esac
left=$((DEADLINE - $(date +%s)))
if [ "$left" -gt 0 ]; then
  sleep "$left" &
  sleeper=$!
  wait "$sleeper"
fi
remove "deadline reached"
exit 0
"""


def pod_belt(device: str, handle: str) -> str:
    """After the undo stopped the fault script: remove our qdisc if it survived (the script
    killed hard)."""
    dev = shlex.quote(device)
    return (f'if tc qdisc del dev {dev} root handle {handle}: 2>/dev/null; then '
            f'say "undone: removed a leftover netem {handle}: from {device}"; fi')


def helper_plan(image: str, device: str, handle: str, netem: list[str]) -> HelperPlan:
    from chaos.faults._ephemeral import HelperPlan

    return HelperPlan(image=image, script=pod_script(device, handle, netem),
                      belt=pod_belt(device, handle), security=NETEM_SECURITY,
                      undo_security=NETEM_SECURITY, needs=NETEM_NEEDS, causes=NETEM_CAUSES)


class PodNetemFault(HelperFault[PodNetemState]):
    def __init__(self, spec: FaultSpec, params: NetworkLatency, ctx: KubeContext,
                 helper: Helper, refs: dict[str, PodRef], handle: str) -> None:
        super().__init__(spec, ctx, helper, refs)
        self.params = params
        self.handle = handle

    def describe(self) -> str:
        p = self.params
        return (f"add {' '.join(p.netem_args())} on {p.device} (netem {self.handle}:) in "
                f"{len(self.refs)} pod(s) via helper container {self.helper.container} "
                f"({p.image}); ends by itself after {self.spec.duration:g}s")

    def state(self) -> PodNetemState:
        return PodNetemState(**self.helper.state.model_dump(), device=self.params.device,
                             handle=self.handle)


# ------------------------------------------------------------------------------------- the kind


class NetworkLatencyKind(FaultKind[NetworkLatency, Any]):
    key: ClassVar[str] = "networkLatency"
    params: ClassVar[type[Strict]] = NetworkLatency
    platforms: ClassVar[frozenset[PlatformName]] = frozenset({"local", "kubernetes"})
    summary: ClassVar[str] = ("added delay: through a run proxy, tc netem on an interface, or "
                              "tc netem in pods (helper container)")
    chart_variants: ClassVar[dict[str, dict[str, Any]]] = {
        "networkLatency": {"selector": {"labels": {"app": "x"}}, "delay": "1ms"},
    }

    def platform_of(self, params: NetworkLatency) -> PlatformName:
        return "kubernetes" if params.selector is not None else "local"

    def pod_selector(self, params: NetworkLatency) -> PodSelector | None:
        return params.selector

    def proxy_name(self, params: NetworkLatency) -> str | None:
        return params.proxy

    async def plan_local(self, spec: FaultSpec, ctx: LocalContext) -> PlannedFault[Any]:
        params = self.typed(spec)
        if params.proxy is not None:
            return ProxyLatencyFault(spec, params, ctx.proxy(params.proxy), ctx)
        from chaos.platform.local.tc import Netem

        assert params.interface is not None
        netem = Netem(params.interface, netns=params.netns, delay=params.delay,
                      jitter=params.jitter,
                      correlation=None if params.correlation is None else params.correlation * 100,
                      handle=netem_handle(ctx.run_id, spec.name))
        return NetemFault(spec, params, netem, ctx)

    async def plan_kubernetes(self, spec: FaultSpec, ctx: KubeContext) -> PodNetemFault:
        from chaos.faults._ephemeral import helper_for, target_containers

        params = self.typed(spec)
        assert params.selector is not None
        pods = await ctx.select(spec.name, params.selector)
        targets = await target_containers(await ctx.client(), pods, params.container)
        handle = netem_handle(ctx.run_id, spec.name)
        plan = helper_plan(params.image, params.device, handle, params.netem_args())
        helper = helper_for(ctx, spec, pods, targets, plan)
        return PodNetemFault(spec, params, ctx, helper, {p.uid: p for p in pods}, handle)

    def permissions(self, params: NetworkLatency) -> list[Permission]:
        return list(HELPER_PERMISSIONS) if params.selector is not None else []

    def pod_needs(self, params: NetworkLatency) -> PodNeeds | None:
        return NETEM_NEEDS if params.selector is not None else None

    def state_model(self) -> Any:
        return LatencyState

    async def recover(self, state: Any, ctx: RecoverContext) -> str:
        if isinstance(state, ProxyState):
            return f"proxy {state.listen} ended with its run; nothing to undo"
        if isinstance(state, NetemState):
            from chaos.platform.local.tc import Netem
            from chaos.platform.local.watchdog import cancel_tagged, cancel_watchdog

            netem = Netem(state.interface, netns=state.netns, delay=0.0, handle=state.handle)
            await netem.remove()
            if state.watchdog_pid is not None:
                cancel_watchdog(state.watchdog_pid, state.watchdog_start_ticks or 0)
            cancel_tagged(ctx.tag)
            return f"removed netem {state.handle}: from {netem.where} (if it was still there)"
        from chaos.faults._ephemeral import need_image, recover_helper

        assert isinstance(state, PodNetemState)
        plan = helper_plan(need_image(ctx), state.device, state.handle, [])
        return await recover_helper(state, plan, await ctx.client())

    def manual_undo(self, state: Any) -> list[str]:
        if isinstance(state, ProxyState):
            return []
        if isinstance(state, NetemState):
            prefix = f"ip netns exec {state.netns} " if state.netns else ""
            return [f"{prefix}tc qdisc del dev {state.interface} root handle {state.handle}:"]
        from chaos.faults._ephemeral import manual_steps

        assert isinstance(state, PodNetemState)
        return manual_steps(state,
                            f"tc qdisc del dev {state.device} root handle {state.handle}:",
                            profile="netadmin")


KIND = NetworkLatencyKind()
