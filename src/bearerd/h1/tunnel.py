"""A connection that left HTTP (101 upgrade, CONNECT): a raw byte pipe, and relaying two of them.

``Tunnel`` becomes the transport's protocol (``set_protocol``) so bytes arrive without any HTTP
code in the way. It can be read and written directly, or two tunnels can be joined by
``relay``, which forwards in the transports' callbacks — no task, no copy, no buffer of its own:
a destination whose write buffer fills pauses reading on the source until it drains.
Half-close is passed through (EOF one way → ``write_eof`` the other way where the transport can;
TLS can't, so there EOF ends the relay). Either side closing or failing closes both.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .errors import ClientGone


class Tunnel(asyncio.Protocol):
    def __init__(
        self,
        transport: asyncio.Transport,
        leftover: bytes = b"",
        *,
        high_water: int = 256 * 1024,
        write_paused: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self._high = high_water
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._lost = False
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = write_paused
        self._drain_waiter: asyncio.Future[None] | None = None
        self._relay: _Relay | None = None
        self._on_close = on_close
        self._handed_over = False
        self._tls = transport.get_extra_info("sslcontext") is not None
        if leftover:
            self._chunks.append(leftover)
            self._buffered = len(leftover)
        transport.set_protocol(self)
        if transport.is_closing():
            self._lost = self._eof = True
        elif self._buffered < self._high and not transport.is_reading():
            transport.resume_reading()

    # -- transport callbacks ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._relay is not None:
            self._relay.forward(self, data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._high:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        if self._relay is not None:
            self._relay.ended(self)
        self._wake()
        return not self._tls  # keep the write side open; TLS can't half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._eof = True
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ClientGone("tunnel closed"))
        if self._relay is not None:
            self._relay.finish()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._relay is not None:
            self._relay.other(self).transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._relay is not None:
            source = self._relay.other(self)
            if not source._lost:
                source.transport.resume_reading()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- user side ------------------------------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    @property
    def closed(self) -> bool:
        return self._lost

    async def read(self) -> bytes:
        """The next bytes received; ``b""`` once the peer sent EOF or the connection ended."""
        while not self._chunks:
            if self._eof:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered < self._high // 4 and not self._lost and not self.transport.is_reading():
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self._lost:
            raise ClientGone("tunnel closed")
        self.transport.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ClientGone("tunnel closed")
        if self._write_paused:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def can_write_eof(self) -> bool:
        return not self._lost and not self._tls and self.transport.can_write_eof()

    def write_eof(self) -> None:
        if self.can_write_eof():
            self.transport.write_eof()

    def hand_over(self) -> tuple[asyncio.Transport, bytes]:
        """Give the transport to another protocol (TLS terminated inside a CONNECT tunnel): the bytes
        received so far, and from now on nothing reaches this tunnel. ``close()``/``abort()`` still end
        it — the connection counts as gone then, since its new protocol reports to someone else."""
        if self._relay is not None or self._handed_over:
            raise RuntimeError("tunnel already relayed or handed over")
        self._handed_over = True
        leftover = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return self.transport, leftover

    def close(self) -> None:
        """Close after pending writes are flushed."""
        self.transport.close()
        self._ended_elsewhere()

    def abort(self) -> None:
        self.transport.abort()
        self._ended_elsewhere()

    def _ended_elsewhere(self) -> None:
        if self._handed_over and not self._lost:
            self.connection_lost(None)  # its protocol is another's now: nobody else will say it ended

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Relay:
    def __init__(self, a: Tunnel, b: Tunnel) -> None:
        self.a, self.b = a, b
        self.sent = {id(a): 0, id(b): 0}  # bytes forwarded *from* each side
        self.ended_sides: set[int] = set()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def other(self, side: Tunnel) -> Tunnel:
        return self.b if side is self.a else self.a

    def forward(self, source: Tunnel, data: bytes) -> None:
        dest = self.other(source)
        if dest._lost:
            self.finish()
            return
        dest.transport.write(data)
        self.sent[id(source)] += len(data)
        if dest._write_paused:
            source.transport.pause_reading()

    def ended(self, source: Tunnel) -> None:
        """EOF from ``source``: pass it on, and finish once both directions are over."""
        self.ended_sides.add(id(source))
        dest = self.other(source)
        if len(self.ended_sides) == 2 or not dest.can_write_eof():
            self.finish()
        else:
            dest.write_eof()

    def finish(self) -> None:
        if self.done.done():
            return
        self.done.set_result(None)
        for side in (self.a, self.b):
            if not side._lost:
                side.transport.close()


async def relay(a: Tunnel, b: Tunnel, *, idle_timeout_s: float | None = None) -> tuple[int, int]:
    """Pump bytes both ways until both sides ended or either closed; (a→b bytes, b→a bytes).

    With ``idle_timeout_s``, a relay with no byte either way for that long is closed. Cancelling
    the caller closes both sides.
    """
    if a._relay is not None or b._relay is not None:
        raise RuntimeError("tunnel already relayed")
    r = _Relay(a, b)
    a._relay = b._relay = r
    for source in (a, b):  # what arrived before the relay began, then any EOF already seen
        dest = r.other(source)
        while source._chunks:
            r.forward(source, source._chunks.popleft())
        source._buffered = 0
        if not dest._write_paused and not source._lost and not source.transport.is_reading():
            source.transport.resume_reading()
    for source in (a, b):
        if source._lost:
            r.finish()
        elif source._eof:
            r.ended(source)
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None

    def check(last: int) -> None:
        nonlocal timer
        total = sum(r.sent.values())
        if total == last:
            r.finish()
        elif idle_timeout_s is not None:
            timer = loop.call_later(idle_timeout_s, check, total)

    if idle_timeout_s is not None:
        timer = loop.call_later(idle_timeout_s, check, sum(r.sent.values()))
    try:
        await r.done
    finally:
        if timer is not None:
            timer.cancel()
        r.finish()
    return r.sent[id(a)], r.sent[id(b)]
