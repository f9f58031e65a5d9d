"""A bounded keep-alive pool of connections to one upstream origin, and its request entry point.

The bound (``max_connections``, connecting ones included) is what keeps memory bounded: each
TLS connection costs ~256 KiB of transport buffers. A request takes the most recently used
idle connection (warmest, and lets the rest expire), opens one if under the bound, or waits
in line up to ``acquire_timeout_s`` (then ``PoolBusy``). A freed connection is handed straight
to the first waiter; a closed one frees a slot for it.

Retry rule: a *reused* connection that dies before any response byte (the upstream closed it
while idle, racing our request) is retried once on a new connection, for idempotent methods
with a replayable body (none or bytes) only. Nothing else is retried here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from . import wire
from .client import Body, InformationalHook, UpstreamConnection, UpstreamResponse
from .connect import EgressProxy, Origin, open_connection
from .errors import PoolBusy, UpstreamClosedError, UpstreamConnectError
from .ticker import Ticker

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class PoolOptions:
    max_connections: int = 64
    acquire_timeout_s: float = 5.0
    idle_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    happy_eyeballs_delay_s: float | None = 0.25
    max_response_head: int = 64 * 1024
    max_response_headers: int = 100
    # One field over this is a misbehaving upstream (nginx refuses a head over 4-8 KiB in all):
    # 502, rather than passing a header on that clients would refuse themselves.
    max_response_field: int = 16 * 1024
    # Response body bytes buffered before the upstream is paused.
    high_water: int = 512 * 1024
    # Suggested to clients when the pool is exhausted (PoolBusy.retry_after_s).
    retry_after_s: float = 1.0
    # How often idle expiry and per-connection deadlines are checked.
    tick_s: float = 0.5


class _Pooled(Protocol):
    deadline: float

    @property
    def usable(self) -> bool: ...


C = TypeVar("C", bound=_Pooled)


class PoolBook(Generic[C]):
    """The pool's counts and idle stack: no I/O, the clock passed in, so it's testable alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0  # open or opening
        self.idle: list[C] = []

    def take_idle(self, now: float) -> tuple[C | None, list[C]]:
        """The freshest usable idle connection, and those found dead or expired (to close)."""
        stale: list[C] = []
        while self.idle:
            conn = self.idle.pop()
            if conn.usable and (conn.deadline == 0 or conn.deadline > now):
                return conn, stale
            stale.append(conn)
        return None, stale

    def reserve(self) -> bool:
        if self.total >= self.limit:
            return False
        self.total += 1
        return True

    def put_idle(self, conn: C) -> None:
        self.idle.append(conn)

    def release_slot(self) -> None:
        self.total -= 1

    def remove_idle(self, conn: C) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)


class UpstreamPool:
    def __init__(
        self,
        origin: str | Origin,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | EgressProxy | None = None,
        options: PoolOptions | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.origin = origin if isinstance(origin, Origin) else Origin.parse(origin)
        self.proxy = EgressProxy.parse(proxy) if isinstance(proxy, str) else proxy
        self.options = options or PoolOptions()
        # One context for every connection (building one loads the trust store).
        if ssl_context is None and self.origin.scheme == "https":
            ssl_context = ssl.create_default_context()
        self._ssl = ssl_context
        self._clock = clock
        self._book: PoolBook[UpstreamConnection] = PoolBook(self.options.max_connections)
        self._waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self._ticker: Ticker[UpstreamConnection] | None = None
        self._closed = False
        self._all_gone: asyncio.Event | None = None

    @property
    def clock(self) -> Callable[[], float]:
        return self._ticker_().clock

    def _ticker_(self) -> Ticker[UpstreamConnection]:
        if self._ticker is None:
            loop = asyncio.get_running_loop()
            self._ticker = Ticker(loop, self.options.tick_s, clock=self._clock)
        return self._ticker

    @property
    def stats(self) -> dict[str, int]:
        return {"open": self._book.total, "idle": len(self._book.idle), "waiting": len(self._waiters)}

    # -- requests -------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        target: str,
        headers: wire.Headers,
        body: Body = None,
        *,
        read_timeout_s: float,
        on_informational: InformationalHook | None = None,
    ) -> UpstreamResponse:
        """Send one request; the headers are final except framing (and Host, added if absent)."""
        return await self._request(method, target, headers, body, read_timeout_s, on_informational, False)

    async def upgrade(
        self, method: str, target: str, headers: wire.Headers, *, read_timeout_s: float
    ) -> UpstreamResponse:
        """An upgrade request (e.g. WebSocket): on 101, ``response.tunnel`` is the raw upstream
        connection, which never returns to the pool (nor counts against its bound)."""
        return await self._request(method, target, headers, None, read_timeout_s, None, True)

    async def _request(
        self,
        method: str,
        target: str,
        headers: wire.Headers,
        body: Body,
        read_timeout_s: float,
        on_informational: InformationalHook | None,
        upgrade: bool,
    ) -> UpstreamResponse:
        length = len(body) if isinstance(body, bytes) else None
        head, declared = wire.request_head(
            method, target, headers, self.origin.authority, length, body is not None and length is None
        )
        conn, reused = await self._acquire(fresh=False)
        try:
            return await conn.exchange(method, head, body, declared, read_timeout_s, on_informational, upgrade)
        except UpstreamClosedError as exc:
            replayable = body is None or isinstance(body, bytes)
            if not (exc.before_response and reused and replayable and method in IDEMPOTENT):
                raise
        conn, _ = await self._acquire(fresh=True)
        return await conn.exchange(method, head, body, declared, read_timeout_s, on_informational, upgrade)

    # -- bookkeeping ----------------------------------------------------------------------------

    async def _acquire(self, *, fresh: bool) -> tuple[UpstreamConnection, bool]:
        if self._closed:
            raise UpstreamConnectError("pool closed")
        book = self._book
        if not fresh:
            conn, stale = book.take_idle(self.clock())
            for dead in stale:
                dead._close()
            if conn is not None:
                return conn, True
        if book.reserve():
            return await self._open(), False
        waiter: asyncio.Future[UpstreamConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.options.acquire_timeout_s):
                handed = await waiter
        except BaseException as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled():
                got = waiter.result()  # handed over just as we gave up: pass it on
                if got is None:
                    self._slot_freed()
                else:
                    self._checkin(got)
            if isinstance(exc, TimeoutError):
                raise PoolBusy(self.options.retry_after_s) from None
            raise
        if handed is None:  # a slot was reserved for us
            return await self._open(), False
        return handed, True

    async def _open(self) -> UpstreamConnection:
        """Open a connection in an already reserved slot."""
        try:
            conn = await open_connection(
                lambda: UpstreamConnection(self),
                self.origin,
                ssl_context=self._ssl,
                proxy=self.proxy,
                timeout_s=self.options.connect_timeout_s,
                happy_eyeballs_delay_s=self.options.happy_eyeballs_delay_s,
            )
        except BaseException:
            self._slot_freed()
            raise
        ticker = self._ticker_()
        ticker.members.add(conn)
        ticker.start()
        return conn

    def _checkin(self, conn: UpstreamConnection) -> None:
        """A connection finished a response and can serve another."""
        if self._closed:
            conn._close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle(self.options.idle_timeout_s)
        self._book.put_idle(conn)

    def _slot_freed(self) -> None:
        """A slot came free: reserve it for the first waiter, or give it back."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._book.release_slot()

    def _forget(self, conn: UpstreamConnection) -> None:
        """``conn`` closed (it calls this once, from ``connection_lost``)."""
        if self._ticker is not None and conn in self._ticker.members:
            self._ticker.members.discard(conn)
            self._book.remove_idle(conn)
            self._slot_freed()
            if self._closed and not self._ticker.members:
                self._ticker.stop()
                if self._all_gone is not None:
                    self._all_gone.set()

    def _detach(self, conn: UpstreamConnection) -> None:
        """``conn`` became a tunnel: it leaves the pool and frees its slot."""
        self._forget(conn)

    def retire(self) -> None:
        """No new requests (nobody uses this pool any more, e.g. after a reload): idle
        connections close now, busy ones as soon as their answer is complete."""
        self._fail_waiters()
        idle, self._book.idle = self._book.idle, []
        for conn in idle:
            conn._close()
        if self._ticker is not None and not self._ticker.members:
            self._ticker.stop()

    def _fail_waiters(self) -> None:
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamConnectError("pool closed"))

    async def close(self) -> None:
        """Close every connection; waiters and later requests fail."""
        self._fail_waiters()
        self._book.idle.clear()
        if self._ticker is not None:
            self._ticker.stop()
            if self._ticker.members:
                self._all_gone = asyncio.Event()
                for conn in list(self._ticker.members):
                    conn._abort()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._all_gone.wait()
