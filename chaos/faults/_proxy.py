"""What the proxy fault kinds (``networkLatency`` through a proxy, ``connectionReset``) share:
how a proxy target reads, and checking that a proxy passes traffic through unchanged again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chaos.errors import RevertFailed
from chaos.faults.contract import Seen, observe_until

if TYPE_CHECKING:
    from chaos.platform.local.proxy import FaultProxy


def proxy_target(proxy: FaultProxy) -> str:
    host, port = proxy.listen
    return f"proxy '{proxy.name}' {host}:{port} -> {proxy.upstream[0]}:{proxy.upstream[1]}"


async def verify_proxy_clear(proxy: FaultProxy, within: float) -> str:
    """The proxy holds nothing back any more: no toxic and nothing queued. (The proxy is the
    only place a proxy fault lives, so its state is the target's state.)"""

    async def look() -> Seen:
        if proxy.toxic is not None:
            return Seen(False, f"proxy '{proxy.name}' still has a toxic {proxy.toxic}")
        if proxy.queued:
            return Seen(False, f"proxy '{proxy.name}' still holds {proxy.queued} chunk(s)")
        return Seen(True, f"proxy '{proxy.name}' passes traffic through unchanged")

    return await observe_until(within, look, what="the pass-through", failure=RevertFailed)
