"""An asyncio TCP proxy that injects network faults between a client and one upstream service.

The proxy is transparent until a *toxic* is set. A toxic can add latency (with jitter) to the
response direction, cap bandwidth in both directions, or reset connections. Every toxic may carry a
dead-man's switch (``expires_in``) so that a crashed or stuck runner cannot leave the fault active.

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

from chaos.errors import PlatformError

__all__ = ["FaultProxy", "ProxyStats", "Toxic"]

_READ_SIZE = 64 * 1024
# Bytes of delayed response data held in memory per connection before we stop reading upstream.
_MAX_PENDING_BYTES = 4 * 1024 * 1024
_CONNECT_TIMEOUT_S = 5.0
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
class ProxyStats:
    """Counters since :meth:`FaultProxy.start`."""

    connections_accepted: int = 0
    connections_active: int = 0
    connections_reset: int = 0
    upstream_failures: int = 0
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0


class _Eof:
    """Marker queued after the last delayed chunk when the upstream half-closes."""


_EOF = _Eof()


@dataclass
class _Pending:
    release_at: float
    epoch: int
    data: bytes | _Eof


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


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close a connection so that the peer sees a reset, not an orderly end of stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


class _Connection:
    """One client connection and its upstream connection."""

    def __init__(
        self,
        proxy: FaultProxy,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
    ) -> None:
        self.proxy = proxy
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.pending: collections.deque[_Pending] = collections.deque()
        self.pending_bytes = 0
        # Items queued or being written by the delayed writer; 0 allows the direct fast path.
        self.backlog = 0
        self.pending_ready = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        self.up_bucket = _Bucket()
        self.down_bucket = _Bucket()
        self.was_reset = False

    def reset(self, *, rst: bool = True) -> None:
        """Drop both sides at once: with a reset (the reset toxic), or plainly (stop())."""
        self.was_reset = True
        for writer in (self.client_writer, self.upstream_writer):
            if writer is None:
                continue
            if rst:
                _abort_with_rst(writer)
            else:
                writer.transport.abort()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    async def run(self) -> None:
        proxy = self.proxy
        _set_nodelay(self.client_writer)
        host, port = proxy.upstream
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), _CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            # Behave like the real service being down: the client sees its connection end now.
            proxy.stats.upstream_failures += 1
            _abort_with_rst(self.client_writer)
            return
        self.upstream_writer = upstream_writer
        _set_nodelay(upstream_writer)
        if proxy._current is not None and proxy._current.reset:
            # A reset toxic was set while we were connecting.
            proxy.stats.connections_reset += 1
            self.reset()
            return

        tasks = [
            asyncio.ensure_future(self._pump_up(upstream_writer)),
            asyncio.ensure_future(self._read_down(upstream_reader)),
            asyncio.ensure_future(self._write_down()),
        ]
        try:
            await asyncio.gather(*tasks)
        except (OSError, asyncio.IncompleteReadError):
            # One side broke; pass the breakage on to the other side as a reset.
            self.reset()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self.was_reset:
                self.client_writer.close()
                upstream_writer.close()

    async def _pump_up(self, upstream_writer: asyncio.StreamWriter) -> None:
        """Client -> upstream: only the bandwidth limit applies."""
        reader = self.client_reader
        proxy = self.proxy
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                if upstream_writer.can_write_eof():
                    upstream_writer.write_eof()
                return
            await self._emit(upstream_writer, self.up_bucket, data)
            proxy.stats.bytes_to_upstream += len(data)

    async def _read_down(self, upstream_reader: asyncio.StreamReader) -> None:
        """Upstream -> client, reading side: write directly, or stamp and queue when delayed."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        while True:
            data = await upstream_reader.read(_READ_SIZE)
            toxic = proxy._current
            delayed = toxic is not None and (toxic.delay > 0 or toxic.jitter > 0)
            if data and not delayed and self.backlog == 0:
                # Fast path: nothing is queued ahead of this chunk, so writing now keeps order.
                await self._emit(self.client_writer, self.down_bucket, data)
                proxy.stats.bytes_to_client += len(data)
                continue
            release = loop.time()
            if delayed and toxic is not None:
                release += max(0.0, toxic.delay + random.uniform(-toxic.jitter, toxic.jitter))
            if self.pending and self.pending[-1].epoch == proxy._epoch:
                # Never release a chunk before the one in front of it.
                release = max(release, self.pending[-1].release_at)
            self._enqueue(_Pending(release, proxy._epoch, data if data else _EOF))
            if not data:
                return
            while self.pending_bytes > _MAX_PENDING_BYTES:
                self.space.clear()
                await self.space.wait()

    def _enqueue(self, item: _Pending) -> None:
        self.backlog += 1
        if isinstance(item.data, bytes):
            self.pending_bytes += len(item.data)
        self.pending.append(item)
        self.pending_ready.set()

    async def _write_down(self) -> None:
        """Upstream -> client, writing side: release queued chunks at their time, in order."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending:
                self.pending_ready.clear()
                await self.pending_ready.wait()
            item = self.pending[0]
            while item.epoch == proxy._epoch:
                remaining = item.release_at - loop.time()
                if remaining <= _RELEASE_SLACK_S:
                    break
                # The loop rounds sleeps up to the next millisecond; aim half a slack early so
                # releases land on time on average instead of ~0.5 ms late.
                await proxy._sleep_or_change(remaining - _RELEASE_SLACK_S / 2)
            self.pending.popleft()
            if isinstance(item.data, _Eof):
                # Half-close: the upstream finished sending; the client may still be sending.
                if self.client_writer.can_write_eof():
                    self.client_writer.write_eof()
                self.backlog -= 1
                return
            self.pending_bytes -= len(item.data)
            if self.pending_bytes <= _MAX_PENDING_BYTES:
                self.space.set()
            await self._emit(self.client_writer, self.down_bucket, item.data)
            proxy.stats.bytes_to_client += len(item.data)
            self.backlog -= 1

    async def _emit(self, writer: asyncio.StreamWriter, bucket: _Bucket, data: bytes) -> None:
        """Write ``data`` honouring the bandwidth limit in force at each moment."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        offset = 0
        while offset < len(data):
            toxic = proxy._current
            rate = toxic.bandwidth if toxic is not None else None
            if rate is None:
                writer.write(data[offset:] if offset else data)
                break
            n = min(len(data) - offset, bucket.piece(rate))
            wait = bucket.wait_for(n, rate, loop.time())
            if wait > 0:
                await proxy._sleep_or_change(wait)
                continue
            writer.write(data[offset : offset + n])
            offset += n
            await writer.drain()
        await writer.drain()


class FaultProxy:
    """A TCP proxy from ``listen`` to ``upstream`` that can add latency, throttle and reset."""

    def __init__(self, name: str, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[_Connection] = set()
        self._current: Toxic | None = None
        # Bumped by clear(): chunks queued under an older epoch are released at once.
        self._epoch = 0
        self._changed: asyncio.Future[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._address: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"FaultProxy({self.name!r}, listen={self.listen}, upstream={self.upstream})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listen address and start accepting connections."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        host, port = self.listen
        try:
            server = await asyncio.start_server(
                self._accept, host, port, reuse_address=True, backlog=512
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
            self._expiry = self._loop.call_later(current.expires_in, self._expire, current)
        sockname = server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))

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
        tasks = [c.task for c in connections if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._notify()

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
        if toxic is None or (toxic.delay == 0 and toxic.jitter == 0):
            # Stop holding chunks that were stamped under a delay no longer in force.
            self._epoch += 1
        if toxic is not None and toxic.expires_in is not None and self._loop is not None:
            self._expiry = self._loop.call_later(toxic.expires_in, self._expire, toxic)
        if toxic is not None and toxic.reset:
            for conn in list(self._connections):
                self.stats.connections_reset += 1
                conn.reset()
        self._notify()

    def _expire(self, toxic: Toxic) -> None:
        self._expiry = None
        if self._current is toxic:
            self._apply(None)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    async def _sleep_or_change(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early when the toxic changes."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.wait([self._changed], timeout=timeout)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections_accepted += 1
        if self._server is None:
            _abort_with_rst(writer)
            return
        if self._current is not None and self._current.reset:
            self.stats.connections_reset += 1
            _abort_with_rst(writer)
            return
        conn = _Connection(self, reader, writer)
        conn.task = asyncio.current_task()
        self._connections.add(conn)
        self.stats.connections_active += 1
        try:
            await conn.run()
        except asyncio.CancelledError:
            if not conn.was_reset:
                raise
        finally:
            self._connections.discard(conn)
            self.stats.connections_active -= 1
