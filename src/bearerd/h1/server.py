"""The server side of one client connection: parse (llhttp, strict), refuse, dispatch, keep alive.

``ServerConnection`` is the ``asyncio.Protocol``; llhttp calls it back per message part and it
fills a ``Request`` (see ``exchange.py``) with no extra pass. Anything the strictness rules
forbid is answered here with problem+json from ``bearerd.errors`` and the connection closed, so
a handler only ever sees well-formed, unambiguous requests.

Requests are answered strictly in order: a request parsed while another is being handled
waits in a small queue and reading pauses until its turn (pipelining without buffering more
than one read ahead). Deadlines (head, idle, body, linger) are one float per connection,
checked by the listener's one ticker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import httptools

from bearerd.errors import (
    PROBLEM_CONTENT_TYPE,
    BadRequest,
    HeadersTooLarge,
    NotImplementedCoding,
    ProxyError,
)

from . import wire
from .errors import ClientGone
from .exchange import Request, Responder
from .head import HeadParsing
from .limits import ServerLimits
from .ticker import Ticker
from .tunnel import Tunnel

Handler = Callable[[Request, Responder], Awaitable[None]]
ErrorHook = Callable[[Request, BaseException], None]
RefusalHook = Callable[[ProxyError], None]

# Connection phases; the phase also says what an expired deadline means.
HEAD, IDLE, BUSY, LINGER, TUNNEL, CLOSED = range(6)
# What data_received does with bytes once they are no longer parsed as HTTP.
PARSE, DISCARD, HOLD = range(3)

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")}


class _Stop(Exception):
    """Raised inside a parser callback to stop llhttp; the reason is in ``_refusal``."""


class Shared:
    """What every connection of one listener shares."""

    def __init__(
        self,
        handler: Handler,
        limits: ServerLimits,
        on_error: ErrorHook,
        on_refusal: RefusalHook | None,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.on_error = on_error
        self.on_refusal = on_refusal
        self.loop = asyncio.get_running_loop()
        self.ticker: Ticker[ServerConnection] = Ticker(self.loop, limits.tick())
        self.conns = self.ticker.members
        self.tasks: set[asyncio.Task[None]] = set()  # every handler task, until it ends
        self.closing = False
        self.all_closed: asyncio.Event | None = None

    def forget(self, conn: ServerConnection) -> None:
        self.conns.discard(conn)
        self._check_idle()

    def task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._check_idle()

    def _check_idle(self) -> None:
        if self.all_closed is not None and not self.conns and not self.tasks:
            self.all_closed.set()


class ServerConnection(HeadParsing, asyncio.Protocol):
    # Slots, and a list rather than a deque for the (short, bounded) pipeline: an idle keep-alive
    # connection is what a busy host has thousands of, and each costs ~2 KB less this way.
    __slots__ = (
        "__weakref__",
        "_clock",
        "_current",
        "_deferred",
        "_drain_waiter",
        "_gone",
        "_handler",
        "_handling",
        "_head_cap",
        "_limits",
        "_lost",
        "_mode",
        "_p_req",
        "_parser",
        "_pending",
        "_phase",
        "_reading",
        "_refusal",
        "_rx_extra",
        "_shared",
        "_tls",
        "_transport",
        "_tunnel",
        "_upgrade_buf",
        "_url",
        "_write_paused",
        "deadline",
        "local_addr",
        "peer",
        "scheme",
        "server_name",
    )

    def __init__(self, shared: Shared, handler: Handler | None = None) -> None:
        """``handler``: this connection's own (a TLS connection inside a CONNECT tunnel), else the listener's."""
        self._shared = shared
        self._handler = handler or shared.handler
        self._limits = shared.limits
        self._clock = shared.ticker.clock
        self._head_cap = shared.limits.max_request_line + shared.limits.max_header_bytes
        self.deadline = 0.0
        self._phase = HEAD
        self._mode = PARSE
        self._lost = False
        self._reading = True
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._gone: asyncio.Future[None] | None = None
        self._current: Request | None = None  # being answered
        self._handling: Request | None = None  # whose handler runs (also after a take-over)
        self._p_req: Request | None = None  # its body being parsed
        self._pending: list[Request] = []  # at most max_pipelined
        self._deferred: ProxyError | None = None  # a refusal waiting for its turn
        self._refusal: ProxyError | None = None  # set by a callback before _Stop
        self._upgrade_buf = bytearray()
        self._tunnel: Tunnel | None = None
        self._rx_extra = False
        self._body_seen = False
        self._parser = httptools.HttpRequestParser(self)
        self._reset_head()

    # -- connection facts -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.local_addr = transport.get_extra_info("sockname")
        ssl_object = transport.get_extra_info("ssl_object")
        self._tls = ssl_object is not None
        self.scheme = "https" if self._tls else "http"
        self.server_name: str | None = getattr(ssl_object, "bearerd_sni", None)
        self.deadline = self._clock() + self._limits.header_timeout_s
        self._shared.conns.add(self)
        if self._shared.closing:
            transport.close()

    def _reset_head(self) -> None:
        super()._reset_head()
        self._url = b""

    # -- bytes in -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._mode != PARSE:
            if self._mode == HOLD:
                self._upgrade_buf += data
                if len(self._upgrade_buf) > self._limits.body_high_water:
                    self._pause()
            return
        if self._phase == IDLE:
            self._phase = HEAD
            self.deadline = self._clock() + self._limits.header_timeout_s
        elif self._p_req is None and self._phase == BUSY:
            self._rx_extra = True  # a next request (or empty lines) began while answering
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._mode = HOLD
            self._upgrade_buf += data[exc.args[0] :]
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
        else:
            # Bound what llhttp buffers for a field still in progress (completed fields are checked
            # exactly in on_url/on_header), and chunk framing and trailers without body bytes the
            # same way (httptools buffers an unfinished trailer field; extensions are unlimited).
            req = self._p_req
            overflow = self._feed_overflow(len(data), self._head_cap, req is not None and req.chunked)
            if overflow == "head":
                self._fail(HeadersTooLarge("request header block too large"))
            elif overflow == "metadata":
                self._fail(BadRequest("chunk metadata or trailers too large"))

    def eof_received(self) -> bool:
        # A client's EOF counts as leaving (as nginx and uvicorn treat it): whatever it waits
        # for is abandoned, so the handler hears ClientGone instead of working for nobody.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._phase = CLOSED
        self.deadline = 0.0
        gone = ClientGone("client connection closed")
        for req in (self._current, self._p_req):
            if req is not None:
                req._fail(gone)
        handling = self._handling
        if handling is not None and handling._cancel_when_gone and handling.task is not None:
            handling.task.cancel()
        self._pending.clear()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(gone)
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        self._parser = None  # type: ignore[assignment]  # break the parser <-> protocol cycle
        self._shared.forget(self)

    # -- llhttp callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_head()
        self._in_head = True
        self._head_first = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_request_line:
            self._stop(HeadersTooLarge("request line too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        size = len(name) + len(value) + 2
        self._hbytes += size + 2
        if size > limits.max_header_field:
            self._stop(HeadersTooLarge("a header field is too large"))
        if self._hbytes > limits.max_header_bytes:
            self._stop(HeadersTooLarge("request header block too large"))
        if len(self._headers) >= limits.max_header_count:
            self._stop(HeadersTooLarge("too many header fields"))
        if not self._in_head:
            return  # a trailer field of a chunked request body: counted, then dropped
        n = name.decode("latin-1")
        v = value.rstrip(b" \t").decode("latin-1")  # llhttp keeps trailing OWS
        self._headers.append((n, v))
        key = n.lower()
        values = self._index.get(key)
        if values is None:
            self._index[key] = [v]
        else:
            values.append(v)

    def on_headers_complete(self) -> None:
        parser = self._parser
        index = self._index
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._stop(BadRequest(f"HTTP/{version} is not supported"))
        content_length = chunked = None
        te = index.get("transfer-encoding")
        if te is not None:
            if version == "1.0":
                self._stop(BadRequest("Transfer-Encoding in an HTTP/1.0 request"))
            if not wire.only_chunked(te):
                self._stop(NotImplementedCoding("only the chunked transfer coding is implemented"))
            chunked = True
        cl = index.get("content-length")
        if cl is not None:
            content_length = wire.content_length(cl[0])
        hosts = index.get("host")
        if hosts is None:
            if version == "1.1":
                self._stop(BadRequest("HTTP/1.1 request without Host"))
        elif len(hosts) > 1:
            self._stop(BadRequest("more than one Host header"))
        upgrade = "upgrade" in index
        if upgrade and (chunked or content_length):
            self._stop(BadRequest("an upgrade request can't carry a body"))
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        expect = index.get("expect")
        req = Request(
            self,
            method,
            self._url.decode("latin-1"),
            version,
            self._headers,
            index,
            parser.should_keep_alive(),
            content_length,
            bool(chunked),
            upgrade,
            expect is not None and expect[0].lower() == "100-continue",
            parser.should_upgrade(),
        )
        self._in_head = False
        self._head_tail = 0
        self._p_req = req
        if self._current is None:
            self._start(req)
        else:
            if len(self._pending) >= self._limits.max_pipelined:
                # Stop parsing; what is queued is answered, then the connection closes.
                self._mode = DISCARD
                raise _Stop
            self._pending.append(req)
            self._pause()

    def on_body(self, body: bytes) -> None:
        req: Request = self._p_req  # type: ignore[assignment]  # llhttp reports headers first
        req._chunks.append(body)
        req._buffered += len(body)
        self._body_seen = True
        if req._buffered > self._limits.body_high_water and self._reading:
            self._pause()
        if req._waiter is not None:
            req._wake()

    def on_message_complete(self) -> None:
        req = self._p_req
        if req is None:  # pragma: no cover - llhttp always reports headers first
            return
        self._p_req = None
        req._complete = True
        if req._waiter is not None:
            req._wake()
        if not req.keep_alive:
            self._mode = DISCARD  # nothing after this message is a request

    def _stop(self, err: ProxyError) -> None:
        self._refusal = err
        raise _Stop

    # -- refusals -------------------------------------------------------------------------------

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        err = self._refusal
        self._refusal = None
        if err is None:
            if self._mode == DISCARD:
                return  # data after a last message, or past the pipelining limit: ignored
            if isinstance(exc, httptools.HttpParserCallbackError):
                raise exc  # a bug of ours; don't disguise it as the client's fault
            reason = str(exc) or "malformed request"
            if "Transfer-Encoding" in reason and "Content-Length" not in reason:
                err = NotImplementedCoding(f"unsupported Transfer-Encoding: {reason}")
            else:
                err = BadRequest(f"malformed request: {reason}")
        self._fail(err)

    def _fail(self, err: ProxyError) -> None:
        """The stream is unusable from here: answer ``err`` when its turn comes, then close."""
        self._mode = DISCARD
        self._pause()
        req = self._p_req
        if req is not None:
            self._p_req = None
            if req is self._current:
                req._fail(ClientGone("malformed request body"))
            else:
                self._pending.remove(req)  # never reaches a handler
        if self._shared.on_refusal is not None:
            self._shared.on_refusal(err)
        if self._current is None and not self._pending:
            self._refuse(err)
        else:
            self._deferred = err

    def _refuse(self, err: ProxyError) -> None:
        if self._lost:
            return
        body = err.body()
        headers = [("Content-Type", PROBLEM_CONTENT_TYPE), ("Cache-Control", "no-store"), *err.headers().items()]
        head = wire.response_head(
            err.status,
            HTTPStatus(err.status).phrase,
            headers,
            f"Content-Length: {len(body)}\r\n",
            "Connection: close\r\n",
        )
        self._transport.write(head + body)
        self._close(linger=True)

    # -- dispatch -------------------------------------------------------------------------------

    def _start(self, req: Request) -> None:
        self._current = self._handling = req
        self._phase = BUSY
        self.deadline = 0.0
        self._rx_extra = False
        responder = Responder(self, req)
        req._responder = responder
        shared = self._shared
        task = req.task = shared.loop.create_task(self._run(req, responder))
        shared.tasks.add(task)
        task.add_done_callback(shared.task_done)

    async def _run(self, req: Request, responder: Responder) -> None:
        ok = False
        try:
            # A body already found malformed in the same read as its head (say, a bad chunk size):
            # the handler never sees the request, and the deferred refusal goes out instead.
            if req._error is None:
                await self._handler(req, responder)
                ok = True
        except ClientGone:
            pass
        except asyncio.CancelledError:
            self._abort()
            raise
        except Exception as exc:
            self._shared.on_error(req, exc)
        finally:
            self._handler_returned(req, responder, ok)

    def _handler_returned(self, req: Request, responder: Responder, ok: bool) -> None:
        if self._handling is req:
            self._handling = None
        if req._tunnel is not None:
            req._tunnel.close()  # the handler's relay is over
        state = responder._state
        if state == Responder.DONE:
            return
        responder._state = Responder.DONE
        if self._lost or self._phase == CLOSED:
            return
        if state == Responder.STARTED:
            if ok and responder._can_end():
                responder._finish(None)
            else:
                self._abort()  # a body cut short must not look complete
            return
        self._current = None
        if self._deferred is not None:
            err, self._deferred = self._deferred, None
            self._refuse(err)
            return
        if ok:
            self._shared.on_error(req, RuntimeError("handler returned without a response"))
        self._refuse(ProxyError("the request handler failed"))

    def _response_done(self, keep_alive: bool) -> None:
        req = self._current
        self._current = None
        if self._lost:
            return
        if not keep_alive or req is None or not req._complete or self._shared.closing:
            self._close(linger=req is not None and not req._complete)
        elif self._write_paused:
            # Start the next one when the client has read this answer (bounded by the idle timeout).
            self._phase = BUSY
            self.deadline = self._clock() + self._limits.keepalive_timeout_s
        else:
            self._next()

    def _next(self) -> None:
        if self._pending:
            self._start(self._pending.pop(0))
            self._resume()
        elif self._deferred is not None:
            err, self._deferred = self._deferred, None
            self._refuse(err)
        elif self._mode != PARSE:
            self._close(linger=False)
        else:
            if self._in_head or self._rx_extra:
                self._phase = HEAD  # those bytes' deadline runs from the end of this response
                self.deadline = self._clock() + self._limits.header_timeout_s
            else:
                self._phase = IDLE
                self.deadline = self._clock() + self._limits.keepalive_timeout_s
            self._resume()

    # -- flow control ---------------------------------------------------------------------------

    def _pause(self) -> None:
        if self._reading and not self._lost:
            self._reading = False
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._reading or self._lost or self._pending or (self._mode == DISCARD and self._phase != LINGER):
            return
        req = self._p_req
        if req is not None and req._buffered > self._limits.body_high_water // 4:
            return
        if self._mode == HOLD and len(self._upgrade_buf) > self._limits.body_high_water:
            return
        self._reading = True
        self._transport.resume_reading()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self._current is None and self._phase == BUSY and not self._lost:
            self._next()

    async def _drain(self) -> None:
        if self._lost:
            raise ClientGone("client connection closed")
        waiter = self._drain_waiter = self._shared.loop.create_future()
        try:
            await waiter
        finally:
            self._drain_waiter = None

    # -- endings --------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        phase = self._phase
        if phase == BUSY:  # a handler waited too long for body bytes
            req = self._current
            if req is not None:
                req._fail(ClientGone("request body timed out"))
            self._abort()
        elif phase in (HEAD, IDLE):
            self._transport.close()
        else:
            self._abort()

    def _close(self, *, linger: bool) -> None:
        """Close after what was written; with ``linger``, half-close and read and discard for a
        while first, so unread request bytes don't turn into a reset that loses the answer."""
        if self._phase in (LINGER, CLOSED):
            return
        self._mode = DISCARD
        transport = self._transport
        if linger and not self._tls and transport.can_write_eof():
            self._phase = LINGER
            try:
                transport.write_eof()
            except OSError:  # the peer is already gone
                self._abort()
                return
            self.deadline = self._clock() + self._limits.linger_s
            self._resume()
        else:
            self._phase = CLOSED
            transport.close()

    def _abort(self) -> None:
        if not self._lost:
            self._phase = CLOSED
            self._transport.abort()

    def shutdown(self) -> None:
        """Graceful close: idle connections go now, busy ones after the answer in progress."""
        if self._phase in (HEAD, IDLE) and self._current is None:
            self._close(linger=False)
        else:
            self._pending.clear()
            if self._mode == PARSE:
                self._mode = DISCARD

    def gone_future(self) -> asyncio.Future[None]:
        if self._gone is None:
            self._gone = self._shared.loop.create_future()
            if self._lost:
                self._gone.set_result(None)
        return self._gone

    def _take_over(self, req: Request) -> Tunnel:
        self._current = None
        self._phase = TUNNEL
        self.deadline = 0.0
        self._mode = DISCARD
        leftover = bytes(self._upgrade_buf)
        self._upgrade_buf = bytearray()
        tunnel = Tunnel(
            self._transport,
            leftover,
            high_water=self._limits.body_high_water,
            write_paused=self._write_paused,
            on_close=self._tunnel_closed,
        )
        self._tunnel = req._tunnel = tunnel
        return tunnel

    def _tunnel_closed(self) -> None:
        self.connection_lost(None)
