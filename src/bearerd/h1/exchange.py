"""What a handler gets per request: the parsed ``Request`` and the ``Responder`` that answers it.

Both are thin views on their ``ServerConnection``: the request's body chunks are the parser's
own ``bytes`` objects (no copy), reading them drives flow control, and every write goes straight
to the transport. The core owns framing: the responder picks Content-Length, chunked or
close-delimited and drops any framing or connection header the handler passes.

``ClientGone`` is how a lost client shows up: any pending or later body read or write raises it,
and ``request.gone`` is a future the handler can race against an upstream wait. The handler
task is cancelled for it only when the handler asked (``request.cancel_when_gone()``, as the
proxy does), or by a server shutdown past its grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from . import wire
from .errors import ClientGone
from .message import Message
from .tunnel import Tunnel

if TYPE_CHECKING:
    from .server import ServerConnection

Headers = Sequence[tuple[str, str]]


class Request(Message):
    __slots__ = (
        "_cancel_when_gone",
        "_conn",
        "_continue_sent",
        "_responder",
        "_switchable",
        "_tunnel",
        "chunked",
        "content_length",
        "expect_continue",
        "keep_alive",
        "method",
        "target",
        "task",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        conn: ServerConnection,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[str, str]],
        index: dict[str, list[str]],
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        upgrade: bool,
        expect_continue: bool,
        switchable: bool,
    ) -> None:
        self._conn = conn
        self.method = method
        #: The request target exactly as sent (origin-, absolute-, authority- or asterisk-form).
        self.target = target
        self.version = version
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.upgrade = upgrade
        self.expect_continue = expect_continue
        self._switchable = switchable  # llhttp saw Connection: upgrade + Upgrade, or CONNECT
        super().__init__(headers, index)
        self._continue_sent = False
        self._responder: Responder | None = None
        self._tunnel: Tunnel | None = None
        #: The task the core runs this request's handler in (set as it starts; one per request).
        self.task: asyncio.Task[None] | None = None
        self._cancel_when_gone = False

    # -- fields and connection facts ------------------------------------------------------------

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def peer(self) -> Any:
        return self._conn.peer

    @property
    def local_addr(self) -> Any:
        return self._conn.local_addr

    @property
    def scheme(self) -> str:
        return self._conn.scheme

    @property
    def server_name(self) -> str | None:
        """The TLS SNI name the client asked for (None on plain HTTP or without SNI)."""
        return self._conn.server_name

    @property
    def is_gone(self) -> bool:
        return self._conn._lost

    def cancel_when_gone(self) -> None:
        """Have the core cancel the handler's task as soon as the client connection is lost, so
        whatever it waits for (an upstream, a token, a pool slot) is abandoned — not only the next
        read or write failing with ``ClientGone``. Cheaper than a callback on ``gone`` per request."""
        self._cancel_when_gone = True

    @property
    def gone(self) -> asyncio.Future[None]:
        """Resolves when the client connection is lost; await it alongside upstream waits."""
        return self._conn.gone_future()

    # -- body -----------------------------------------------------------------------------------

    def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked framing and extensions removed); flow-controlled."""
        return self.chunks()

    def _taken(self) -> None:
        conn = self._conn
        if not conn._reading and self._buffered <= conn._limits.body_high_water // 4:
            conn._resume()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        conn = self._conn
        if conn._lost:
            raise ClientGone("client connection closed")
        if self.expect_continue and not self._continue_sent:
            self._send_continue()
        timeout = conn._limits.body_timeout_s
        if timeout is not None:
            conn.deadline = conn._clock() + timeout
        waiter = self._waiter = conn._shared.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
            if timeout is not None:
                conn.deadline = 0.0

    def _send_continue(self) -> None:
        self._continue_sent = True
        responder = self._responder
        if responder is not None and responder._state == Responder.NONE and self.version == "1.1":
            self._conn._transport.write(wire.CONTINUE_100)


class Responder:
    """Answers one request. ``send`` for a whole small answer (one write), or ``start`` /
    ``write`` / ``end`` to stream. Framing is the core's: pass end-to-end headers only."""

    __slots__ = ("_conn", "_keep", "_mode", "_remaining", "_req", "_state", "body_bytes", "status")

    NONE, STARTED, DONE = 0, 1, 2

    def __init__(self, conn: ServerConnection, req: Request) -> None:
        self._conn = conn
        self._req = req
        self._state = Responder.NONE
        self._mode = wire.NO_BODY
        self._remaining = 0
        self._keep = False
        self.status = 0
        self.body_bytes = 0

    @property
    def started(self) -> bool:
        return self._state != Responder.NONE

    @property
    def finished(self) -> bool:
        return self._state == Responder.DONE

    def _begin(self, status: int, close: bool) -> tuple[bool, str]:
        if self._state != Responder.NONE:
            raise RuntimeError("response already started")
        if status < 200:
            raise ValueError("use informational() or takeover() for 1xx")
        conn = self._conn
        if conn._lost:
            raise ClientGone("client connection closed")
        req = self._req
        keep = req.keep_alive and req._complete and not req._switchable and not close and not conn._shared.closing
        self.status = status
        http11 = req.version == "1.1"
        if not keep:
            return False, "Connection: close\r\n"
        return True, "" if http11 else "Connection: keep-alive\r\n"

    async def send(
        self,
        status: int,
        reason: str,
        headers: Headers = (),
        body: bytes = b"",
        *,
        length: int | None = None,
        close: bool = False,
    ) -> None:
        """The whole answer, head and body in one write, framed by Content-Length. ``length``
        only matters for answers without a body (HEAD, 304): the length to announce."""
        keep, connection = self._begin(status, close)
        req = self._req
        if body or not (req.method == "HEAD" or status == 304):
            length = len(body)
        mode, framing = wire.response_framing(req.method == "HEAD", status, req.version == "1.1", length)
        head = wire.response_head(status, reason, headers, framing, connection)
        transport = self._conn._transport
        if mode == wire.NO_BODY or not body:
            transport.write(head)
        elif len(body) <= 65536:
            transport.write(head + body)
            self.body_bytes = len(body)
        else:
            transport.writelines((head, body))
            self.body_bytes = len(body)
        self._state = Responder.DONE
        self._conn._response_done(keep)

    async def start(
        self, status: int, reason: str, headers: Headers = (), *, length: int | None = None, close: bool = False
    ) -> None:
        """Send the head; the body follows with ``write`` and ``end``. ``length`` None means
        chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0. For HEAD/304, ``length``
        is what the body would have been (sent as Content-Length, no body follows)."""
        keep, connection = self._begin(status, close)
        req = self._req
        mode, framing = wire.response_framing(req.method == "HEAD", status, req.version == "1.1", length)
        if mode == wire.UNTIL_CLOSE and keep:
            keep, connection = False, "Connection: close\r\n"
        self._mode = mode
        self._remaining = length or 0
        self._keep = keep
        self._conn._transport.write(wire.response_head(status, reason, headers, framing, connection))
        self._state = Responder.STARTED
        if self._conn._write_paused:
            await self._conn._drain()

    async def write(self, data: bytes) -> None:
        """One piece of body; waits while the client's socket is full (back-pressure)."""
        if self._state != Responder.STARTED:
            raise RuntimeError("write() needs start() first, and not after end()")
        conn = self._conn
        if conn._lost:
            raise ClientGone("client connection closed")
        if not data:
            return
        mode = self._mode
        if mode == wire.CHUNKED:
            conn._transport.writelines(wire.chunk(data))
        elif mode == wire.LENGTH:
            self._remaining -= len(data)
            if self._remaining < 0:
                self.abort()
                raise ValueError("more body than the Content-Length sent")
            conn._transport.write(data)
        elif mode == wire.UNTIL_CLOSE:
            conn._transport.write(data)
        else:
            return  # HEAD / 304: the length was announced, no body goes out
        self.body_bytes += len(data)
        if conn._write_paused:
            await conn._drain()

    async def end(self, trailers: Headers | None = None) -> None:
        """Finish the body. Trailers go out only in a chunked answer; otherwise dropped."""
        if self._state != Responder.STARTED:
            raise RuntimeError("end() needs start() first")
        if self._conn._lost:
            raise ClientGone("client connection closed")
        if not self._can_end():
            self.abort()
            raise ValueError("body shorter than the Content-Length sent")
        self._finish(trailers)

    def _can_end(self) -> bool:
        return self._mode != wire.LENGTH or self._remaining == 0

    def _finish(self, trailers: Headers | None) -> None:
        conn = self._conn
        if self._mode == wire.CHUNKED:
            conn._transport.write(wire.last_chunk(trailers))
        self._state = Responder.DONE
        conn._response_done(self._keep and self._mode != wire.UNTIL_CLOSE)

    def informational(self, status: int, headers: Headers = ()) -> None:
        """A 1xx (100, 103) before the final answer; not sent to HTTP/1.0 clients."""
        if self._state != Responder.NONE or not 100 <= status < 200 or status == 101:
            raise RuntimeError("informational() is for 1xx (not 101) before the answer")
        req = self._req
        if self._conn._lost or req.version != "1.1":
            return
        if status == 100:
            if req._continue_sent:
                return
            req._continue_sent = True
        self._conn._transport.write(wire.raw_head(status, _REASONS.get(status, "Informational"), headers))

    async def takeover(self, status: int = 101, reason: str = "Switching Protocols", headers: Headers = ()) -> Tunnel:
        """Answer 101 (or 2xx to CONNECT) and leave HTTP: the client connection becomes a
        ``Tunnel``. ``headers`` are written as given (Upgrade, Connection, Sec-WebSocket-*)."""
        req = self._req
        if not req._switchable:
            raise RuntimeError("takeover() needs an upgrade (Connection: upgrade) or CONNECT request")
        if status != 101 and not (req.method == "CONNECT" and 200 <= status < 300):
            raise ValueError("takeover() answers 101, or 2xx to CONNECT")
        if self._state != Responder.NONE:
            raise RuntimeError("response already started")
        conn = self._conn
        if conn._lost:
            raise ClientGone("client connection closed")
        conn._transport.write(wire.raw_head(status, reason, headers))
        self.status = status
        self._state = Responder.DONE
        return conn._take_over(req)

    def abort(self) -> None:
        """Cut the connection: the client sees a truncated answer, never a complete-looking one."""
        self._state = Responder.DONE
        self._conn._abort()


_REASONS = {100: "Continue", 102: "Processing", 103: "Early Hints"}
