"""One upstream connection (an ``asyncio.Protocol``) and the ``UpstreamResponse`` it produces.

A request goes out as one write when its body is bytes; a streamed body goes chunk by chunk,
waiting on ``drain`` when the socket is full. The response is parsed by llhttp into a
preallocated response object; body chunks queue on the response (no copy) and reading pauses
over a high-water mark until the consumer catches up. The connection goes back to its pool the
moment the response is complete, keep-alive and the request fully sent — the response keeps
its buffered body, so the caller's ``release()`` only matters for answers it abandons.

Timeouts are one deadline per connection (``ticker.py``): waiting for the head, waiting on a
full socket while sending, and silence while the caller waits for body bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

import httptools

from . import wire
from .errors import (
    H1Error,
    TimeoutPhase,
    UpstreamClosedError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from .head import HeadParsing
from .message import Message
from .tunnel import Tunnel

if TYPE_CHECKING:
    from .pool import UpstreamPool

Body = bytes | AsyncIterable[bytes] | None
InformationalHook = Callable[[int, list[tuple[str, str]]], None]


class _Stop(Exception):
    pass


class UpstreamResponse(Message):
    __slots__ = (
        "_conn",
        "_released",
        "chunked",
        "content_length",
        "keep_alive",
        "reason",
        "status",
        "trailers",
        "tunnel",
        "version",
    )

    def __init__(self, conn: UpstreamConnection) -> None:
        self._conn = conn
        self.status = 0
        self.reason = ""
        self.version = "1.1"
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = False
        #: Trailer fields of a chunked body, once it is complete (else empty).
        self.trailers: list[tuple[str, str]] = []
        #: The raw upstream connection after a 101 from ``pool.upgrade``.
        self.tunnel: Tunnel | None = None
        super().__init__([], {})
        self._released = False

    @property
    def complete(self) -> bool:
        """The whole body has arrived (it may still be buffered here)."""
        return self._complete

    def _too_large(self) -> None:
        self.release()  # the rest will never be read: the connection can't be reused

    def release(self) -> None:
        """Done with this response: an unfinished one closes its connection. Idempotent."""
        if self._released:
            return
        self._released = True
        self._chunks.clear()
        conn = self._conn
        if conn._resp is self:
            conn._abort()

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _taken(self) -> None:
        conn = self._conn
        if not conn._reading and conn._resp is self and self._buffered <= conn._high // 4:
            conn._reading = True
            conn._transport.resume_reading()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        if self._released:
            raise UpstreamClosedError("response released")
        conn = self._conn
        waiter = self._waiter = conn._loop.create_future()
        conn._arm("body")
        try:
            await waiter
        finally:
            self._waiter = None
            conn.deadline = 0.0


class UpstreamConnection(HeadParsing, asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        opts = pool.options
        self._loop = asyncio.get_running_loop()
        self._clock = pool.clock
        self._high = opts.high_water
        self._max_head = opts.max_response_head
        self._max_count = opts.max_response_headers
        self._max_field = opts.max_response_field
        self.deadline = 0.0
        self._phase: TimeoutPhase | None = None  # what an expired deadline means; None: idle
        self.served = 0
        self._resp: UpstreamResponse | None = None
        self._head_waiter: asyncio.Future[None] | None = None
        self._read_timeout = 0.0
        self._lost = False
        self._eof = False
        self._reading = True
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._got_bytes = False
        self._sending = False
        self._reusable = True
        self._head_request = False
        self._wants_upgrade = False
        self._switching = False
        self._informational = False
        self._on_informational: InformationalHook | None = None
        self._stop_reason = ""
        self._body_seen = False
        self._parser = httptools.HttpResponseParser(self)
        self._reset_head()

    @property
    def usable(self) -> bool:
        return not (self._lost or self._eof) and self._reusable

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]

    def _reset_head(self) -> None:
        super()._reset_head()
        self._reason = b""
        self._trailers: list[tuple[str, str]] | None = None

    # -- one exchange ---------------------------------------------------------------------------

    async def exchange(
        self,
        method: str,
        head: bytes,
        body: Body,
        declared: int | None,
        read_timeout_s: float,
        on_informational: InformationalHook | None,
        upgrade: bool = False,
    ) -> UpstreamResponse:
        resp = self._resp = UpstreamResponse(self)
        self.deadline = 0.0  # no longer idle
        self._head_request = method == "HEAD"
        self._wants_upgrade = upgrade
        self._on_informational = on_informational
        self._read_timeout = read_timeout_s
        self._got_bytes = False
        waiter = self._head_waiter = self._loop.create_future()
        transport = self._transport
        try:
            if body is None:
                transport.write(head)
            elif isinstance(body, bytes):
                if len(body) <= 65536:
                    transport.write(head + body)
                else:
                    transport.writelines((head, body))
            else:
                transport.write(head)
                self._sending = True
                if not await self._send_body(body, declared):
                    self._reusable = False
                self._sending = False
            if not waiter.done():
                self._arm("response")
            await waiter
        except BaseException as exc:
            self._sending = False
            self._reusable = False
            answered = waiter.done() and not waiter.cancelled() and waiter.exception() is None
            if not answered or isinstance(exc, asyncio.CancelledError):
                self._abort()
                if self._resp is resp:
                    self._resp = None
                raise
            # The answer came before the body was all sent (the upstream refused it early): use it.
        finally:
            if self._head_waiter is waiter:
                self._head_waiter = None
        return resp

    async def _send_body(self, body: AsyncIterable[bytes], declared: int | None) -> bool:
        """Stream ``body``; False when it stopped early because the answer already came."""
        try:
            return await self._send_chunks(body, declared)
        finally:
            aclose = getattr(body, "aclose", None)  # an async generator left half-read
            if aclose is not None:
                await aclose()

    async def _send_chunks(self, body: AsyncIterable[bytes], declared: int | None) -> bool:
        transport = self._transport
        sent = 0
        async for data in body:
            if self._lost or self._head_waiter is None or self._head_waiter.done():
                return False
            if not data:
                continue
            if declared is None:
                transport.writelines(wire.chunk(data))
            else:
                sent += len(data)
                if sent > declared:
                    raise ValueError("request body longer than its Content-Length")
                transport.write(data)
            if self._write_paused:
                self._arm("request")
                waiter = self._drain_waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    self._drain_waiter = None
                    self.deadline = 0.0
        if declared is None:
            transport.write(wire.LAST_CHUNK)
        elif sent != declared:
            raise ValueError("request body shorter than its Content-Length")
        return True

    def _arm(self, phase: TimeoutPhase) -> None:
        self._phase = phase
        self.deadline = self._clock() + self._read_timeout

    # -- bytes in -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._resp is None:  # nothing was asked: a broken upstream
            self._reusable = False
            self._abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            if self._resp is None:  # stopped on purpose after a HEAD answer's head
                return
            self._broken(UpstreamProtocolError(f"invalid response: {self._stop_reason or exc}"))
        else:
            # A head, or chunk framing and trailers without body bytes, bounded as they arrive.
            chunked = self._trailers is not None and self._resp is not None
            overflow = self._feed_overflow(len(data), self._max_head, chunked)
            if overflow == "head":
                self._broken(UpstreamProtocolError("response head too large"))
            elif overflow == "metadata":
                self._broken(UpstreamProtocolError("chunk metadata or trailers too large"))
        self._stop_reason = ""

    def _stop(self, reason: str) -> None:
        self._stop_reason = reason
        raise _Stop

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_first = True

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._hbytes += size
        if self._hbytes > self._max_head or len(self._headers) >= self._max_count:
            self._stop("response head too large")
        if size > self._max_field:
            self._stop("a response header field is too large")
        field = (name.decode("latin-1"), value.rstrip(b" \t").decode("latin-1"))
        if self._trailers is not None:
            self._trailers.append(field)
            return
        self._headers.append(field)
        key = field[0].lower()
        values = self._index.get(key)
        if values is None:
            self._index[key] = [field[1]]
        else:
            values.append(field[1])

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        resp = self._resp
        if resp is None:  # pragma: no cover - data_received guards this
            self._stop("response without request")
            return
        if status < 200 and status != 101:
            self._informational = True
            if self._on_informational is not None:
                self._on_informational(status, self._headers)
            self._reset_head()
            return
        resp.status = status
        resp.reason = self._reason.decode("latin-1")
        resp.version = parser.get_http_version()
        resp.headers = self._headers
        resp.index = index = self._index
        resp.keep_alive = parser.should_keep_alive()
        te = index.get("transfer-encoding")
        if te is not None:
            if not wire.only_chunked(te):
                self._stop("unsupported transfer coding")
            resp.chunked = True
        cl = index.get("content-length")
        if cl is not None:
            resp.content_length = wire.content_length(cl[0])
        if status == 101:
            if not self._wants_upgrade:
                self._stop("101 without an upgrade request")
            self._switching = True
            return  # resolved once llhttp hands over the bytes after the head
        self._in_head = False
        self._head_tail = 0
        self._trailers = [] if resp.chunked else None
        self.deadline = 0.0
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_result(None)
        if self._head_request:
            # llhttp can't know a HEAD answer has no body: end the message here, and don't
            # trust what may follow on this connection (httptools can't say where the head ended).
            self._reusable = False
            self._message_done(resp)
            raise _Stop

    def on_body(self, body: bytes) -> None:
        resp: UpstreamResponse = self._resp  # type: ignore[assignment]
        resp._chunks.append(body)
        resp._buffered += len(body)
        self._body_seen = True
        if resp._buffered > self._high and self._reading:
            self._reading = False
            self._transport.pause_reading()
        if resp._waiter is not None:
            resp._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        resp = self._resp
        if self._switching or resp is None:
            return
        if self._trailers:
            resp.trailers = self._trailers
        self._message_done(resp)

    def _message_done(self, resp: UpstreamResponse) -> None:
        resp._complete = True
        resp._wake()
        self._resp = None
        self.served += 1
        self._reset_head()
        if not self._reading:
            self._reading = True
            self._transport.resume_reading()
        if resp.keep_alive and self._reusable and not self._sending and not self._lost and not self._eof:
            self._pool._checkin(self)
        else:
            self._close()

    def _upgraded(self, leftover: bytes) -> None:
        resp = self._resp
        self._resp = None
        if resp is None or resp.status != 101:  # pragma: no cover - llhttp upgrades only on 101
            self._broken(UpstreamProtocolError("unexpected protocol switch"))
            return
        self._reusable = False
        self._pool._detach(self)
        resp.tunnel = Tunnel(self._transport, leftover, high_water=self._high, write_paused=self._write_paused)
        resp._complete = True
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_result(None)

    # -- endings --------------------------------------------------------------------------------

    def _broken(self, exc: H1Error) -> None:
        """The response can't continue: fail whoever waits and drop the connection."""
        self._reusable = False
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        resp = self._resp
        if resp is not None:
            resp._fail(exc)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(exc)
        self._abort()

    def eof_received(self) -> bool:
        self._eof = True
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._ended()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(UpstreamClosedError("upstream closed while the request was sent"))
        self._parser = None  # type: ignore[assignment]
        self._pool._forget(self)

    def _ended(self) -> None:
        resp = self._resp
        if resp is None:
            return
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                UpstreamClosedError("upstream closed before answering", before_response=not self._got_bytes)
            )
            self._resp = None
        elif not resp.chunked and resp.content_length is None and not self._switching:
            resp.keep_alive = False
            self._message_done(resp)  # a close-delimited body ends here
        else:
            self._resp = None
            resp._fail(UpstreamClosedError("upstream closed mid-body"))

    def expire(self, now: float) -> None:
        phase = self._phase
        if phase is None:  # idle too long
            self._pool._book.remove_idle(self)
            self._close()
            return
        self._broken(UpstreamTimeoutError(phase))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def idle(self, idle_timeout_s: float) -> None:
        self._phase = None
        self.deadline = self._clock() + idle_timeout_s

    def _close(self) -> None:
        self._reusable = False
        if not self._lost:
            self._transport.close()

    def _abort(self) -> None:
        self._reusable = False
        if not self._lost:
            self._transport.abort()
