"""Listeners: bind TCP or a Unix socket to a handler, and close them gracefully.

Shutdown, in order: stop accepting; close idle keep-alive connections at once and let busy
ones finish the answer in progress (then close); wait up to the grace period; abort whatever
is left (tunnels included) and cancel its handler tasks.

``serve_tunnel_tls`` adds one more connection to a listener from inside a CONNECT tunnel: TLS
terminated on the client's transport, then HTTP served on it like any accepted connection —
same limits and deadlines, same shutdown, same accounting — with a handler of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl as _ssl
from types import TracebackType
from typing import Any, TypedDict, Unpack

import structlog

from .errors import ClientTLSError
from .exchange import Request
from .limits import ServerLimits
from .server import ErrorHook, Handler, RefusalHook, ServerConnection, Shared

log = structlog.get_logger("bearerd.h1")


def log_handler_error(request: Request, exc: BaseException) -> None:
    """Default ``on_error``: one line, no traceback, no target (queries may carry secrets)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{os.path.basename(frame.tb_frame.f_code.co_filename)}:{frame.tb_lineno}" if frame else "?"
    log.error("handler_failed", method=request.method, error=type(exc).__name__, detail=str(exc)[:200], at=where)


class H1Server:
    """A bound listener. ``port`` is the one the OS chose when asked for port 0."""

    def __init__(self, shared: Shared, server: asyncio.Server) -> None:
        self._shared = shared
        self._server = server
        self._sockets = tuple(server.sockets)
        self._address = self._sockets[0].getsockname()
        shared.ticker.start()

    @property
    def sockets(self) -> tuple[Any, ...]:
        return self._sockets

    @property
    def address(self) -> Any:
        """The first bound address (host, port) — or the path, for a Unix socket."""
        return self._address

    @property
    def port(self) -> int:
        return int(self.address[1])

    @property
    def connections(self) -> int:
        return len(self._shared.conns)

    async def close(self, grace_s: float = 10.0) -> None:
        shared = self._shared
        shared.closing = True
        self._server.close()
        for conn in list(shared.conns):
            conn.shutdown()
        if shared.conns or shared.tasks:
            shared.all_closed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await shared.all_closed.wait()
        for conn in list(shared.conns):
            conn._abort()
        tasks = list(shared.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        shared.ticker.stop()

    async def __aenter__(self) -> H1Server:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()


def _shared(
    handler: Handler, limits: ServerLimits, on_error: ErrorHook | None, on_refusal: RefusalHook | None
) -> Shared:
    return Shared(handler, limits, on_error or log_handler_error, on_refusal)


def capture_sni(context: _ssl.SSLContext) -> None:
    """Make the SNI name visible as ``request.server_name``, keeping any existing callback."""
    previous = context.sni_callback
    if getattr(previous, "_bearerd_sni", False):
        return

    def remember(obj: Any, name: str | None, ctx: _ssl.SSLContext) -> int | None:
        obj.bearerd_sni = name
        return previous(obj, name, ctx) if previous is not None else None  # type: ignore[arg-type]

    remember._bearerd_sni = True  # type: ignore[attr-defined]
    context.sni_callback = remember


class ServeOptions(TypedDict, total=False):
    """What every listener kind takes besides its address, handler and limits."""

    ssl: _ssl.SSLContext | None
    on_error: ErrorHook | None
    on_refusal: RefusalHook | None
    backlog: int


def _prepared(handler: Handler, limits: ServerLimits | None, options: ServeOptions) -> Shared:
    context = options.get("ssl")
    if context is not None:
        capture_sni(context)
    return _shared(handler, limits or ServerLimits(), options.get("on_error"), options.get("on_refusal"))


async def serve_tcp(
    host: str | None,
    port: int,
    handler: Handler,
    limits: ServerLimits | None = None,
    *,
    reuse_port: bool = False,
    **options: Unpack[ServeOptions],
) -> H1Server:
    shared = _prepared(handler, limits, options)
    server = await shared.loop.create_server(
        lambda: ServerConnection(shared),
        host,
        port,
        ssl=options.get("ssl"),
        backlog=options.get("backlog", 1024),
        reuse_port=reuse_port or None,
    )
    return H1Server(shared, server)


async def serve_unix(
    path: str, handler: Handler, limits: ServerLimits | None = None, **options: Unpack[ServeOptions]
) -> H1Server:
    shared = _prepared(handler, limits, options)
    server = await shared.loop.create_unix_server(
        lambda: ServerConnection(shared), path, ssl=options.get("ssl"), backlog=options.get("backlog", 1024)
    )
    return H1Server(shared, server)


async def serve_tunnel_tls(request: Request, handler: Handler, context: _ssl.SSLContext) -> None:
    """HTTP/1.1 over TLS inside the tunnel a CONNECT ``request`` was answered with (``takeover``).

    The client's transport is upgraded server-side with ``context`` (handshake within the listener's
    ``header_timeout_s``) and becomes a connection of the listener that accepted the CONNECT: its
    limits and deadlines, counted among its connections, closed gracefully with it and cut with it
    after the grace period. Its requests go to ``handler``; ``request.server_name`` is the SNI name.
    Returns when that connection has ended; ``ClientTLSError`` if the handshake fails. As for any
    tunnel, the client connection is closed when the CONNECT's handler returns.
    """
    tunnel = request._tunnel
    if tunnel is None:
        raise RuntimeError("serve_tunnel_tls() needs responder.takeover() first")
    shared = request._conn._shared
    transport, early = tunnel.hand_over()
    if early:
        # A ClientHello sent before our 200 came with the CONNECT head: start_tls can't be given it.
        raise ClientTLSError("the client sent TLS bytes before the tunnel was established")
    capture_sni(context)
    inner = ServerConnection(shared, handler)
    try:
        tls = await shared.loop.start_tls(
            transport, inner, context, server_side=True, ssl_handshake_timeout=shared.limits.header_timeout_s
        )
    except (OSError, TimeoutError, _ssl.SSLError) as exc:  # ConnectionAbortedError: the handshake timed out
        transport.abort()
        raise ClientTLSError(_handshake_failure(exc)) from exc
    if tls is None:  # pragma: no cover - the loop closed the transport under us
        raise ClientTLSError("connection closed during the handshake")
    inner.connection_made(tls)
    await inner.gone_future()


def _handshake_failure(exc: BaseException) -> str:
    if isinstance(exc, _ssl.SSLError):
        return str(exc.reason or exc.strerror or type(exc).__name__)  # e.g. TLSV1_ALERT_UNKNOWN_CA
    if isinstance(exc, ConnectionAbortedError | TimeoutError):
        return "the handshake took longer than header_timeout_s"
    return "the client closed the connection during the handshake (does it trust the certificate?)"
