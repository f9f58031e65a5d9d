"""bearerd's own HTTP/1.1 core: a strict llhttp server, a bounded keep-alive upstream pool and
byte tunnels, on plain asyncio Protocols (uvloop when installed), built for per-request cost.

    listen.py    serve_tcp / serve_unix, graceful close            H1Server
    server.py    one client connection: parse, refuse, dispatch   ServerConnection
    exchange.py  what a handler gets                              Request, Responder
    pool.py      bounded keep-alive pool per upstream origin      UpstreamPool, PoolOptions
    client.py    one upstream connection and its response         UpstreamResponse
    connect.py   direct / CONNECT-through-proxy / TLS, errors     Origin, EgressProxy
    tunnel.py    connections that left HTTP, and relaying them    Tunnel, relay
    wire.py      pure head/framing rules                          (tested without sockets)
    ticker.py    one timer for every deadline of a listener/pool
    limits.py    ServerLimits
    errors.py    the core's exception tree
"""

from .client import UpstreamResponse
from .connect import EgressProxy, Origin
from .errors import (
    BodyTooLarge,
    ClientGone,
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
from .listen import H1Server, serve_tcp, serve_unix
from .pool import PoolOptions, UpstreamPool
from .tunnel import Tunnel, relay

__all__ = [
    "BodyTooLarge",
    "ClientGone",
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
    "relay",
    "serve_tcp",
    "serve_unix",
]
