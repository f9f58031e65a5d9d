"""WebSockets: the token on the handshake (retried like any refused request), then bytes both ways.

The handshake goes through the same ``send_with_token`` flow as every request, so a refused
handshake gets one retry with a new token and a persisting sign-in redirect becomes
``TokenRejected``; a redirect is reported, never followed. Once the upstream answers 101, bearerd
answers the client 101 with the upstream's handshake headers and both connections leave HTTP:
frames are relayed as bytes, with back-pressure each way, until either side closes (so close
codes, pings and extensions pass through untouched). A handshake the upstream refuses for good
is relayed as the upstream's own answer.
"""

from __future__ import annotations

from bearerd.h1 import Request, Responder, UpstreamResponse, relay
from bearerd.proxy import appproxy_errors
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.retry import refusable, send_with_token
from bearerd.proxy.routing import Upstream
from bearerd.proxy.upstream import upstream_errors

# The handshake's own fields, which header hygiene drops as hop-by-hop and the 101 passes back.
_UPGRADE = [("Connection", "Upgrade"), ("Upgrade", "websocket")]
_HANDSHAKE_ANSWER = frozenset({"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol",
                               "sec-websocket-extensions"})  # fmt: skip
# A WebSocket that nobody speaks on for this long is closed (both sides).
IDLE_TIMEOUT_S = 3600.0


async def proxy_websocket(
    request: Request,
    responder: Responder,
    up: Upstream,
    target: str,
    headers: list[tuple[str, str]],
    token: str | None,
    exchange: Exchange,
) -> None:
    handshake = [*headers, *_UPGRADE]

    async def attempt(with_token: str | None) -> UpstreamResponse:
        sent = handshake if with_token is None else [*handshake, ("Authorization", "Bearer " + with_token)]
        with upstream_errors(up.read_timeout_s):
            return await up.pool.upgrade("GET", target, sent, read_timeout_s=up.read_timeout_s)

    response, exchange.retried = await send_with_token(
        attempt,
        refusable,
        UpstreamResponse.release,
        token=token,
        provider=up.provider,
        hosts=up.sign_in_hosts,
        replayable=True,
    )
    try:
        if response.status != 101 or response.tunnel is None:
            # Refused for good: App Proxy's own error page explained, or the upstream's answer as it is.
            with upstream_errors(up.read_timeout_s):
                body = await response.read()
            fields = {name: values[0] for name, values in response.index.items()}
            problem = appproxy_errors.classify(response.status, fields, body[: appproxy_errors.PEEK_BYTES])
            if problem is not None:
                raise problem
            kept = [(n, v) for n, v in response.headers if n.lower() not in _HANDSHAKE_ANSWER]
            await responder.send(response.status, response.reason, kept, body)
            return
        answer = [(n, v) for n, v in response.headers if n.lower() in _HANDSHAKE_ANSWER]
        upstream_tunnel = response.tunnel
        client_tunnel = await responder.takeover(101, response.reason, answer)
        exchange.bytes_in, exchange.bytes_out = await relay(
            client_tunnel, upstream_tunnel, idle_timeout_s=IDLE_TIMEOUT_S
        )
    finally:
        response.release()
