"""An asyncio TCP proxy that injects network faults between a client and one upstream service.

The proxy is transparent until a *toxic* is set. A toxic can add latency (with jitter) to the
response direction, cap bandwidth in both directions, or reset connections. Every toxic may carry a
dead-man's switch (``expires_in``) so that a crashed or stuck runner cannot leave the fault active.

Data path: a proxied connection is two asyncio Protocols, one for the accepted client socket and
one for the upstream socket opened with ``loop.create_connection``, joined by two one-way flows
(client -> upstream, upstream -> client). While nothing is held, a chunk read from one transport is
written straight to the other from the read callback: no coroutine, future or task is involved
once the upstream is connected. When a flow has to hold data (a delay toxic, a bandwidth cap, or
data already queued ahead of it), chunks wait in that flow's FIFO queue and one ``loop.call_at``
timer per flow releases the head when it is due.

Backpressure: when a transport's write buffer rises above its high-water mark (``pause_writing``),
or more than 4 MiB of held data is queued, the flow stops reading its source until the buffer has
drained (``resume_writing``). A half-close (EOF) is passed on with ``write_eof`` after the data
queued ahead of it; the connection closes once both directions have ended. A reset or error on
one side is passed on to the other side as a reset.

Ordering guarantees: bytes are never reordered. Delayed chunks of the response direction are each
stamped with a release time that is never earlier than the previous chunk's, so a response spread
over many chunks is delayed once, not once per chunk. :meth:`FaultProxy.clear` releases whatever is
queued at once, in order.

All methods must be called from the event loop that ran :meth:`FaultProxy.start`, except
:meth:`FaultProxy.set_toxic` and :meth:`FaultProxy.clear`, which are also safe from other threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from chaos.errors import PlatformError

__all__ = ["FaultProxy", "HeldStats", "ProxyStats", "Toxic", "first_response", "gets_reset"]

# Bytes of held data queued in memory per flow before we stop reading its source.
_MAX_PENDING_BYTES = 4 * 1024 * 1024
_CONNECT_TIMEOUT_S = 5.0
# stop() waits this long for aborted connections to report that they are closed.
_STOP_TIMEOUT_S = 5.0
# Chunks due within this much are released now: the event loop cannot sleep for less than a
# millisecond, so waiting for a chunk read a few microseconds after the previous one would add
# a whole extra millisecond to every delayed response.
_RELEASE_SLACK_S = 0.001
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Toxic:
    """The fault currently applied by a proxy."""

    delay: float = 0.0
    jitter: float = 0.0
    bandwidth: float | None = None
    reset: bool = False
    expires_in: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "delay": self.delay,
            "jitter": self.jitter,
            "bandwidth": self.bandwidth,
            "reset": self.reset,
            "expires_in": self.expires_in,
        }


@dataclass
class HeldStats:
    """What the response direction actually held back under the current toxic: measured on
    real traffic, so a fault can be verified on what went through, not on what was set."""

    chunks: int = 0
    max_hold: float = 0.0
    min_hold: float = float("inf")

    def observe(self, held: float) -> None:
        self.chunks += 1
        self.max_hold = max(self.max_hold, held)
        self.min_hold = min(self.min_hold, held)


@dataclass
class ProxyStats:
    """Counters since :meth:`FaultProxy.start`."""

    connections_accepted: int = 0
    connections_active: int = 0
    connections_reset: int = 0
    upstream_failures: int = 0
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0


class _Eof:
    """Marker queued after the last held chunk when the source half-closes."""


_EOF = _Eof()


class _Pending:
    """A held chunk (or the EOF marker) and when it may be released."""

    __slots__ = ("arrived", "data", "epoch", "release_at")

    def __init__(self, release_at: float, epoch: int, data: bytes | _Eof,
                 arrived: float) -> None:
        self.release_at = release_at
        self.epoch = epoch
        self.data = data
        self.arrived = arrived


class _Bucket:
    """Token bucket for one direction of one connection."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.stamp: float | None = None

    @staticmethod
    def piece(rate: float) -> int:
        # Small pieces keep the flow smooth (about 50 writes a second) without huge syscall counts.
        return max(1, min(16 * 1024, int(rate / 50)))

    def wait_for(self, n: int, rate: float, now: float) -> float:
        """Seconds to wait before ``n`` bytes may be sent; takes the tokens when 0 is returned."""
        burst = float(self.piece(rate))
        if self.stamp is None:
            self.tokens = burst
        else:
            self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / rate


def _abort_with_rst(transport: asyncio.Transport) -> None:
    """Close a connection so that the peer sees a reset, not an orderly end of stream."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: abort() below is then a no-op
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


class _Flow:
    """One direction of a connection: bytes read from ``src`` are written to ``dst``, in order.

    A chunk goes straight to ``dst`` while nothing is held. Otherwise it is queued, and
    :meth:`_pump` writes out the head once it is due and the bandwidth cap allows, arming the one
    timer of this flow for whatever it still waits for. ``src`` is not read while ``dst``'s write
    buffer is full or too much is queued.
    """

    def __init__(
        self,
        conn: _Connection,
        src: asyncio.Transport,
        dst: asyncio.Transport,
        *,
        to_client: bool,
        src_paused: bool,
    ) -> None:
        self.conn = conn
        self.proxy = conn.proxy
        self.loop = conn.loop
        self.src = src
        self.dst = dst
        # The response direction: the only one a delay applies to.
        self.to_client = to_client
        self.queue: collections.deque[_Pending] = collections.deque()
        self.queued_bytes = 0
        self.bucket = _Bucket()
        self.timer: asyncio.TimerHandle | None = None
        self.dst_full = False  # dst's write buffer is above its high-water mark
        self.src_paused = src_paused  # whether we have paused reading src
        # src sent EOF; its reader is gone and must never be resumed (that would read EOF again).
        self.src_ended = False
        self.ended = False  # the EOF has been passed on to dst

    # -- input, from the source's protocol

    def feed(self, data: bytes) -> None:
        if self.conn.closing:
            return
        toxic = self.proxy._current
        if not self.queue and (
            toxic is None
            or (toxic.bandwidth is None and not (self.to_client and (toxic.delay or toxic.jitter)))
        ):
            # Fast path: nothing is queued ahead of this chunk, so writing now keeps order.
            self._write(data)
            return
        self._hold(data, toxic)

    def feed_eof(self) -> None:
        self.src_ended = True
        if self.conn.closing:
            return
        toxic = self.proxy._current
        if not self.queue and (
            toxic is None or not (self.to_client and (toxic.delay or toxic.jitter))
        ):
            self._end()  # no bytes to hold back, so a bandwidth cap does not apply
            return
        self._hold(_EOF, toxic)

    # -- output, to the destination

    def pause(self) -> None:
        """``dst``'s write buffer went above its high-water mark: stop feeding it."""
        self.dst_full = True
        self._update_reading()

    def resume(self) -> None:
        """``dst``'s write buffer drained below its low-water mark."""
        self.dst_full = False
        if self.queue:
            self._pump()
        else:
            self._update_reading()

    def kick(self) -> None:
        """Re-evaluate the head of the queue now: the toxic or the epoch changed."""
        if self.queue:
            self._pump()

    def start_reading(self) -> None:
        """Start reading ``src``, which was created paused (the upstream was not connected yet)."""
        self._update_reading()

    def discard(self) -> None:
        """Drop everything held: the connection is going away."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued_bytes = 0

    # -- internals

    def _hold(self, data: bytes | _Eof, toxic: Toxic | None) -> None:
        proxy = self.proxy
        queue = self.queue
        arrived = release = self.loop.time()
        if toxic is not None and self.to_client and (toxic.delay or toxic.jitter):
            release += max(0.0, toxic.delay + random.uniform(-toxic.jitter, toxic.jitter))
        if queue and queue[-1].epoch == proxy._epoch:
            # Never release a chunk before the one in front of it.
            release = max(release, queue[-1].release_at)
        queue.append(_Pending(release, proxy._epoch, data, arrived))
        if isinstance(data, bytes):
            self.queued_bytes += len(data)
        if len(queue) == 1:
            self._pump()  # a new head: nothing is scheduled for it yet
        elif self.queued_bytes > _MAX_PENDING_BYTES:
            self._update_reading()

    def _pump(self) -> None:
        """Write out the queued chunks that are due, in order; arm the timer for the next one."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        wake_at = self._release_due()
        if wake_at is not None:
            self.timer = self.loop.call_at(wake_at, self._on_timer)
        self._update_reading()

    def _on_timer(self) -> None:
        self.timer = None
        self._pump()

    def _release_due(self) -> float | None:
        """Release due chunks; return when to look again, or None to wait for an event."""
        proxy = self.proxy
        loop = self.loop
        queue = self.queue
        while queue and not self.dst_full:  # a full dst wakes us up with resume()
            item = queue[0]
            if item.epoch == proxy._epoch and item.release_at - loop.time() > _RELEASE_SLACK_S:
                # The loop rounds sleeps up to the next millisecond; aim half a slack early so
                # releases land on time on average instead of ~0.5 ms late.
                return item.release_at - _RELEASE_SLACK_S / 2
            data = item.data
            if self.to_client and item.epoch == proxy._epoch:
                proxy.held.observe(loop.time() - item.arrived)
            if isinstance(data, _Eof):
                queue.popleft()
                self._end()
                return None
            toxic = proxy._current
            rate = toxic.bandwidth if toxic is not None else None
            if rate is None:
                queue.popleft()
                self.queued_bytes -= len(data)
                self._write(data)
                continue
            n = min(len(data), self.bucket.piece(rate))
            now = loop.time()
            wait = self.bucket.wait_for(n, rate, now)
            if wait > 0:
                return now + wait
            if n == len(data):
                queue.popleft()
            else:
                item.data, data = data[n:], data[:n]
            self.queued_bytes -= n
            self._write(data)
        return None

    def _write(self, data: bytes) -> None:
        # May call pause() synchronously, through the destination protocol's pause_writing().
        self.dst.write(data)
        if self.to_client:
            self.proxy.stats.bytes_to_client += len(data)
        else:
            self.proxy.stats.bytes_to_upstream += len(data)

    def _end(self) -> None:
        """Pass the half-close on; the connection closes once both directions have ended."""
        self.ended = True
        try:
            if self.dst.can_write_eof():
                self.dst.write_eof()
        except OSError:
            self.conn.reset()  # the peer is already gone
            return
        self.conn.flow_ended()

    def _update_reading(self) -> None:
        if self.src_ended:
            return
        paused = self.dst_full or self.queued_bytes > _MAX_PENDING_BYTES
        if paused != self.src_paused:
            self.src_paused = paused
            if paused:
                self.src.pause_reading()
            else:
                self.src.resume_reading()


class _Side(asyncio.Protocol):
    """The protocol of one socket of a connection: feeds one flow, is the sink of the other."""

    # Set by _Connection.upstream_made(); the transport does not read before then.
    inbound: _Flow  # the flow this socket's bytes go into
    outbound: _Flow  # the flow that writes to this socket

    def data_received(self, data: bytes) -> None:
        self.inbound.feed(data)

    def eof_received(self) -> bool:
        self.inbound.feed_eof()
        return True  # keep the transport open: the other direction may still be sending

    def pause_writing(self) -> None:
        self.outbound.pause()

    def resume_writing(self) -> None:
        self.outbound.resume()


class _ClientSide(_Side):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.conn: _Connection | None = None  # None when the connection was refused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = self.proxy._accept(cast(asyncio.Transport, transport), self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.lost()


class _UpstreamSide(_Side):
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn.upstream_made(cast(asyncio.Transport, transport), self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost()


class _Connection:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: asyncio.Transport, side: _ClientSide) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.client_side = side
        self.upstream: asyncio.Transport | None = None
        self.flows: list[_Flow] = []  # [client -> upstream, upstream -> client] once connected
        self.closing = False
        self.open_sides = 1  # transports made and not yet lost; the client is open already
        self.connecting: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()

    def start(self) -> None:
        # Leave the client's bytes in its socket until there is somewhere to send them.
        self.client.pause_reading()
        self.connecting = self.loop.create_task(self._connect())
        self.connecting.add_done_callback(self._connect_done)

    async def _connect(self) -> None:
        proxy = self.proxy
        host, port = proxy.upstream
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                await self.loop.create_connection(lambda: _UpstreamSide(self), host, port)
        except (OSError, TimeoutError):
            # Behave like the real service being down: the client sees its connection end now.
            proxy.stats.upstream_failures += 1
            self.closing = True
            _abort_with_rst(self.client)
            return
        if self.closing:
            return  # reset or stopped while connecting; upstream_made() dropped the upstream
        if proxy._current is not None and proxy._current.reset:
            # A reset toxic was set while we were connecting.
            proxy.stats.connections_reset += 1
            self.reset()
            return
        self.flows[0].start_reading()  # the client -> upstream flow

    def _connect_done(self, task: asyncio.Task[None]) -> None:
        self.connecting = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A bug rather than a network error: report it, and do not leave the client hanging.
            self.loop.call_exception_handler(
                {"message": f"{self.proxy!r}: upstream connect failed", "exception": exc}
            )
            self.reset()
        self._check_finished()

    def upstream_made(self, transport: asyncio.Transport, side: _UpstreamSide) -> None:
        self.upstream = transport
        self.open_sides += 1
        if self.closing:
            transport.abort()
            return
        up = _Flow(self, self.client, transport, to_client=False, src_paused=True)
        down = _Flow(self, transport, self.client, to_client=True, src_paused=False)
        self.client_side.inbound = side.outbound = up
        side.inbound = self.client_side.outbound = down
        self.flows = [up, down]

    def flow_ended(self) -> None:
        if not self.closing and all(flow.ended for flow in self.flows):
            # Both directions are done: close after what is still buffered has been sent.
            self.closing = True
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()

    def lost(self) -> None:
        """One transport is closed (connection_lost)."""
        self.open_sides -= 1
        if not self.closing:
            # One side broke without us closing it; pass the breakage on as a reset.
            self.reset()
        self._check_finished()

    def reset(self, *, rst: bool = True) -> None:
        """Drop both sides at once: with a reset (the reset toxic, a broken peer), or plainly
        (stop())."""
        self.closing = True
        for flow in self.flows:
            flow.discard()
        for transport in (self.client, self.upstream):
            if transport is None:
                continue
            if rst:
                _abort_with_rst(transport)
            else:
                transport.abort()
        task = self.connecting
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _check_finished(self) -> None:
        if self.open_sides == 0 and self.connecting is None and not self.closed.done():
            for flow in self.flows:
                flow.discard()
            self.proxy._connections.discard(self)
            self.proxy.stats.connections_active -= 1
            self.closed.set_result(None)


class FaultProxy:
    """A TCP proxy from ``listen`` to ``upstream`` that can add latency, throttle and reset."""

    def __init__(self, name: str, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.stats = ProxyStats()
        #: Hold times of response data since the toxic last changed.
        self.held = HeldStats()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[_Connection] = set()
        self._current: Toxic | None = None
        # Bumped by clear(): chunks queued under an older epoch are released at once.
        self._epoch = 0
        self._expiry: asyncio.TimerHandle | None = None
        self._address: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"FaultProxy({self.name!r}, listen={self.listen}, upstream={self.upstream})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listen address and start accepting connections."""
        if self._server is not None:
            return
        self._loop = loop = asyncio.get_running_loop()
        host, port = self.listen
        try:
            server = await loop.create_server(
                lambda: _ClientSide(self),
                host,
                port,
                reuse_address=True,
                backlog=512,
                start_serving=False,  # accept only once self._server is set (see _accept)
            )
        except OSError as exc:
            where = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise PlatformError(
                    f"proxy {self.name!r} cannot listen on {where}: {where} is already in use by "
                    "another process; stop it or pick another listen address",
                    hint=f"find the owner with: ss -ltnp 'sport = :{port}'",
                ) from exc
            if exc.errno == errno.EACCES:
                raise PlatformError(
                    f"proxy {self.name!r} cannot listen on {where}: permission denied "
                    "(ports below 1024 need root or CAP_NET_BIND_SERVICE)",
                    hint="pick a listen port above 1024",
                ) from exc
            if exc.errno == errno.EADDRNOTAVAIL:
                raise PlatformError(
                    f"proxy {self.name!r} cannot listen on {where}: no local interface has "
                    f"address {host}",
                    hint="listen on 127.0.0.1 or an address shown by `ip -br addr`",
                ) from exc
            raise PlatformError(
                f"proxy {self.name!r} cannot listen on {where}: {exc.strerror or exc}",
            ) from exc
        self._server = server
        current = self._current
        if current is not None and current.expires_in is not None and self._expiry is None:
            # set_toxic() before start(): arm the dead-man's switch now that there is a loop.
            self._expiry = loop.call_later(current.expires_in, self._expire, current)
        sockname = server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        await server.start_serving()

    @property
    def address(self) -> tuple[str, int]:
        """The address actually bound (useful when the listen port was 0)."""
        if self._address is None:
            raise PlatformError(
                f"proxy {self.name!r} has no address yet: it has not been started",
                hint="await proxy.start() first",
            )
        return self._address

    async def stop(self) -> None:
        """Close the listener and every connection; safe to call more than once."""
        self._cancel_expiry()
        self._current = None
        self._epoch += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for conn in connections:
            conn.reset(rst=False)
        if connections:
            # abort() reports connection_lost on the next loop iteration; this is quick.
            await asyncio.wait([conn.closed for conn in connections], timeout=_STOP_TIMEOUT_S)
        if server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    # -- faults ------------------------------------------------------------------------------

    def set_toxic(
        self,
        *,
        delay: float = 0.0,
        jitter: float = 0.0,
        bandwidth: float | None = None,
        reset: bool = False,
        expires_in: float | None = None,
    ) -> None:
        """Replace the current toxic. ``delay``/``jitter`` in seconds, ``bandwidth`` in bytes/s.

        ``expires_in`` (seconds) is a dead-man's switch: the toxic clears itself after that long.
        """
        if delay < 0 or jitter < 0:
            raise ValueError(f"delay and jitter must be >= 0, got delay={delay} jitter={jitter}")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0 bytes/s, got {bandwidth}")
        if expires_in is not None and expires_in <= 0:
            raise ValueError(f"expires_in must be > 0 seconds, got {expires_in}")
        toxic = Toxic(delay, jitter, bandwidth, reset, expires_in)
        self._in_loop(lambda: self._apply(toxic))

    def clear(self) -> None:
        """Back to transparent pass-through now; queued delayed chunks are released in order."""
        self._in_loop(lambda: self._apply(None))

    @property
    def queued(self) -> int:
        """Chunks held in the proxy right now, across every connection and direction."""
        return sum(len(flow.queue) for conn in self._connections for flow in conn.flows)

    @property
    def toxic(self) -> dict[str, object] | None:
        """The current toxic's settings, or None when the proxy is transparent."""
        current = self._current
        return None if current is None else current.as_dict()

    # -- internals ---------------------------------------------------------------------------

    def _in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            fn()
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or not loop.is_running():
            fn()
        else:
            done = threading.Event()

            def call() -> None:
                try:
                    fn()
                finally:
                    done.set()

            loop.call_soon_threadsafe(call)
            done.wait(5.0)

    def _apply(self, toxic: Toxic | None) -> None:
        self._cancel_expiry()
        self._current = toxic
        self.held = HeldStats()
        if toxic is None or (toxic.delay == 0 and toxic.jitter == 0):
            # Stop holding chunks that were stamped under a delay no longer in force.
            self._epoch += 1
        if toxic is not None and toxic.expires_in is not None and self._loop is not None:
            self._expiry = self._loop.call_later(toxic.expires_in, self._expire, toxic)
        if toxic is not None and toxic.reset:
            for conn in list(self._connections):
                self.stats.connections_reset += 1
                conn.reset()
        if self._loop is not None and not self._loop.is_closed():
            # What held data waits for (its epoch, the bandwidth cap) may have changed.
            for conn in list(self._connections):
                for flow in conn.flows:
                    flow.kick()

    def _expire(self, toxic: Toxic) -> None:
        self._expiry = None
        if self._current is toxic:
            self._apply(None)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _accept(self, transport: asyncio.Transport, side: _ClientSide) -> _Connection | None:
        """A client connected (from its protocol's connection_made); None if it is refused."""
        self.stats.connections_accepted += 1
        if self._server is None:
            _abort_with_rst(transport)  # accepted while stop() was closing the listener
            return None
        if self._current is not None and self._current.reset:
            self.stats.connections_reset += 1
            _abort_with_rst(transport)
            return None
        conn = _Connection(self, transport, side)
        self._connections.add(conn)
        self.stats.connections_active += 1
        conn.start()
        return conn


# -- looking at a proxy from outside, the way a client does ------------------------------------


async def _first_read(address: tuple[str, int], *, half_close: bool) -> bytes:
    """Connect as a client, optionally half-close at once, and read the first byte back."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        if half_close:
            writer.write_eof()
        return await reader.read(1)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def first_response(address: tuple[str, int], timeout: float) -> float | None:
    """Seconds from connecting through the proxy (and half-closing at once, sending nothing) to
    the first thing coming back: a byte, or the upstream's end of stream. None when nothing came
    within ``timeout`` (an upstream that keeps half-closed connections open and sends nothing
    first). This is what a delay toxic must hold back, measured on a real connection."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(timeout):
            await _first_read(address, half_close=True)
    except TimeoutError:
        return None
    except OSError:
        pass  # a reset is a response too: it came back through the proxy
    return loop.time() - started


async def gets_reset(address: tuple[str, int], timeout: float) -> str | None:
    """Connect through the proxy and read: what shows the connection was reset (None: it was
    not, within ``timeout``)."""
    try:
        async with asyncio.timeout(timeout):
            data = await _first_read(address, half_close=False)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return "the connection was reset"
    except OSError as exc:
        return f"the connection failed: {exc.strerror or exc}"
    return None if data else "the connection was closed at once"
