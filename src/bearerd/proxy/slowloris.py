"""A deadline for a new connection's first request headers (slowloris protection).

aiohttp closes idle keep-alive connections, but a client that trickles the first request's
headers a byte at a time holds a connection (and a file descriptor) for as long as it likes. This
protocol wrapper gives each new connection ``header_timeout_s`` to deliver a complete header
block (``\\r\\n\\r\\n``); otherwise the connection is closed. Everything else is delegated to
aiohttp's own protocol untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

_END_OF_HEADERS = b"\r\n\r\n"


class _HeaderDeadline(asyncio.Protocol):
    def __init__(self, inner: RequestHandler, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._expire)
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if _END_OF_HEADERS in seen:
                self._timer.cancel()
                self._timer = None
                # Deadline met: step out of the way, so later reads go straight to aiohttp.
                if isinstance(self._transport, asyncio.Transport):
                    self._transport.set_protocol(self._inner)
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        self._inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class DeadlineTCPSite(web.TCPSite):
    """``web.TCPSite`` whose connections must send their first request headers in time."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def start(self) -> None:
        server = self._runner.server
        assert isinstance(server, web.Server)  # noqa: S101 - a ServerRunner's server
        timeout = self._header_timeout_s

        def factory() -> asyncio.Protocol:
            return _HeaderDeadline(server(), timeout)

        # BaseSite.start registers the site with its runner; then bind like TCPSite does, with our factory.
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
