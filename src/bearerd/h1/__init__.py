"""bearerd's own HTTP/1.1 core: a strict llhttp server, a bounded keep-alive upstream pool and
byte tunnels, on plain asyncio Protocols (uvloop when installed), built for per-request cost.

    listen.py    serve_tcp / serve_unix, graceful close            H1Server
                 serve_tunnel_tls: HTTP inside a CONNECT tunnel
    server.py    one client connection: parse, refuse, dispatch   ServerConnection
    exchange.py  what a handler gets                              Request, Responder
    pool.py      bounded keep-alive pool per upstream origin      UpstreamPool, PoolOptions
    client.py    one upstream connection and its response         UpstreamResponse
    connect.py   direct / CONNECT-through-proxy / TLS, errors     Origin, EgressProxy, open_tunnel
    tunnel.py    connections that left HTTP, and relaying them    Tunnel, relay
    wire.py      pure head/framing rules                          (tested without sockets)
    ticker.py    one timer for every deadline of a listener/pool
    limits.py    ServerLimits
    errors.py    the core's exception tree

A forwarding handler, in short (hop-by-hop filtering and error mapping are the caller's)::

    pool = UpstreamPool("https://api.example/", ssl_context=ctx, proxy=None)

    async def handler(request: Request, responder: Responder) -> None:
        headers = [(n, v) for n, v in request.headers if n.lower() not in HOP] + [("Authorization", bearer)]
        if request.upgrade:
            up = await pool.upgrade(request.method, request.target, headers + ws_headers, read_timeout_s=85)
            if up.tunnel is not None:
                client = await responder.takeover(101, up.reason, ws_headers)
                await relay(client, up.tunnel, idle_timeout_s=600)
                return
        else:
            body = request.body() if request.has_body else None
            up = await pool.request(request.method, request.target, headers, body, read_timeout_s=85)
        async with up:
            out = [(n, v) for n, v in up.headers if n.lower() not in HOP]
            await responder.start(up.status, up.reason, out, length=up.content_length)
            try:
                async for chunk in up.chunks():
                    await responder.write(chunk)
            except UpstreamError:
                responder.abort()  # the client sees a cut answer, never a complete-looking one
                raise
            await responder.end(up.trailers)
"""

from .client import UpstreamResponse
from .connect import EgressProxy, Origin, open_tunnel
from .errors import (
    BodyTooLarge,
    ClientGone,
    ClientTLSError,
    H1Error,
    PoolBusy,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamTLSError,
)
from .exchange import Request, Responder
from .limits import ServerLimits
from .listen import H1Server, serve_tcp, serve_tunnel_tls, serve_unix
from .pool import PoolOptions, UpstreamPool
from .tunnel import Tunnel, relay

__all__ = [
    "BodyTooLarge",
    "ClientGone",
    "ClientTLSError",
    "EgressProxy",
    "H1Error",
    "H1Server",
    "Origin",
    "PoolBusy",
    "PoolOptions",
    "Request",
    "Responder",
    "ServerLimits",
    "Tunnel",
    "UpstreamClosedError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "UpstreamTLSError",
    "UpstreamTimeoutError",
    "open_tunnel",
    "relay",
    "serve_tcp",
    "serve_tunnel_tls",
    "serve_unix",
]
