"""``connectionReset``: the named run proxy resets every open and new connection.

In effect when a new connection through the proxy is reset; reverted when the proxy passes
traffic through again. The proxy lives in the runner, so it ends with the run: a crash leaves
nothing behind, and the toxic also expires by itself after duration plus the expiry grace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from chaos.faults._proxy import proxy_target, verify_proxy_clear
from chaos.faults.contract import (
    FaultKind,
    LocalContext,
    PlannedFault,
    PlatformName,
    RecoverContext,
    RevertState,
    Seen,
    observe_until,
)
from chaos.model.common import Strict

if TYPE_CHECKING:
    from chaos.model.experiment import FaultSpec
    from chaos.platform.local.proxy import FaultProxy


class ConnectionReset(Strict):
    """The named proxy resets new and open connections while active."""

    proxy: str


class ResetState(RevertState):
    version: Literal[1] = 1
    proxy: str
    listen: str


class ConnectionResetFault(PlannedFault[ResetState]):
    def __init__(self, spec: FaultSpec, proxy: FaultProxy, ctx: LocalContext) -> None:
        super().__init__(spec)
        self.proxy = proxy
        self.ctx = ctx

    def targets(self) -> list[str]:
        return [proxy_target(self.proxy)]

    def describe(self) -> str:
        return f"reset every connection through proxy '{self.proxy.name}'"

    def target_keys(self) -> list[str]:
        host, port = self.proxy.listen
        return [f"local:proxy:{host}:{port}"]

    def state(self) -> ResetState:
        host, port = self.proxy.listen
        return ResetState(proxy=self.proxy.name, listen=f"{host}:{port}")

    async def inject(self) -> None:
        self.proxy.set_toxic(reset=True,
                             expires_in=(self.spec.duration or 0) + self.ctx.limits.expiry_grace)

    async def verify(self, within: float) -> str:
        from chaos.platform.local.proxy import gets_reset

        async def look() -> Seen:
            how = await gets_reset(self.proxy.address, 1.0)
            if how is not None:
                return Seen(True, f"a new connection through proxy '{self.proxy.name}': {how}")
            return Seen(False, f"a new connection through proxy '{self.proxy.name}' stayed open")

        return await observe_until(within, look, what="the reset", interval=0.2)

    async def revert(self) -> None:
        self.proxy.clear()

    async def verify_reverted(self, within: float) -> str:
        return await verify_proxy_clear(self.proxy, within)


class ConnectionResetKind(FaultKind[ConnectionReset, ResetState]):
    key: ClassVar[str] = "connectionReset"
    params: ClassVar[type[Strict]] = ConnectionReset
    platforms: ClassVar[frozenset[PlatformName]] = frozenset({"local"})
    summary: ClassVar[str] = "a run proxy resets every open and new connection"

    def proxy_name(self, params: ConnectionReset) -> str | None:
        return params.proxy

    async def plan_local(self, spec: FaultSpec, ctx: LocalContext) -> ConnectionResetFault:
        return ConnectionResetFault(spec, ctx.proxy(self.typed(spec).proxy), ctx)

    def state_model(self) -> type[ResetState]:
        return ResetState

    async def recover(self, state: ResetState, ctx: RecoverContext) -> str:
        # The proxy lived inside the runner process: it ended when the runner did.
        return f"proxy {state.listen} ended with its run; nothing to undo"


KIND = ConnectionResetKind()
