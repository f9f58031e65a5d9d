"""WebSockets: the token on the handshake (retried like any refused request), then frames both ways.

The handshake goes through the same ``send_with_token`` flow as every request, so a refused
handshake gets one retry with a new token and a persisting sign-in redirect becomes
``TokenRejected``. A redirect is reported, never followed. After the handshake each direction is
one loop that awaits the send before reading the next frame, so a slow reader slows the writer
down (back-pressure) instead of growing a buffer; close codes and reasons pass through.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from bearerd.proxy import appproxy_errors
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.retry import REDIRECTS, Answer, send_with_token
from bearerd.proxy.routing import Upstream
from bearerd.proxy.upstream import read_head, upstream_errors

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
# Negotiated per hop: aiohttp negotiates its own with the upstream.
_PER_HOP = ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol")


class HandshakeRedirect(aiohttp.ClientError):
    """A WebSocket handshake answered with a redirect: reported, never followed."""

    def __init__(self, status: int, headers: CIMultiDictProxy[str]) -> None:
        super().__init__(f"redirect {status}")
        self.status = status
        self.headers = headers


async def refuse_redirects(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Client middleware for WebSocket handshakes: aiohttp's ws_connect would follow a redirect (and
    could take the token along); a token only ever goes to its route's upstream. It also sees the
    handshake's answer before ws_connect drops it, so App Proxy's own error page is recognised here."""
    response = await handler(request)
    if response.status in REDIRECTS:
        response.release()
        raise HandshakeRedirect(response.status, response.headers)
    if appproxy_errors.worth_a_look(response.status, response.headers):
        problem = appproxy_errors.classify(
            response.status, response.headers, await read_head(response, appproxy_errors.PEEK_BYTES)
        )
        if problem is not None:
            response.release()
            raise problem
    return response


@dataclass(frozen=True, slots=True)
class _Refused:
    answer: Answer


Handshake = aiohttp.ClientWebSocketResponse | _Refused


async def proxy_websocket(
    session: aiohttp.ClientSession,
    request: web.BaseRequest,
    upstream: Upstream,
    url: URL,
    headers: CIMultiDict[str],
    token: str | None,
    exchange: Exchange,
) -> web.StreamResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    for name in _PER_HOP:
        headers.popall(name, None)

    async def handshake(with_token: str | None) -> Handshake:
        if with_token is not None:
            headers["Authorization"] = "Bearer " + with_token
        with upstream_errors(None, "the WebSocket handshake"):
            try:
                return await session.ws_connect(
                    url,
                    headers=headers,
                    protocols=protocols,
                    ssl=upstream.ssl,
                    proxy=upstream.proxy,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10),
                    max_msg_size=0,
                    autoping=True,
                )
            except (aiohttp.WSServerHandshakeError, HandshakeRedirect) as exc:
                location = exc.headers.get("Location") if exc.headers else None
                challenges = tuple(exc.headers.getall("WWW-Authenticate", ())) if exc.headers else ()
                return _Refused(Answer(exc.status, location, challenges))

    remote, exchange.retried = await send_with_token(
        handshake,
        lambda h: h.answer if isinstance(h, _Refused) else Answer(101),
        _discard,
        token=token,
        provider=upstream.provider,
        hosts=upstream.sign_in_hosts,
        replayable=True,
    )
    if isinstance(remote, _Refused):
        status = remote.answer.status
        return web.Response(status=status, text=f"upstream refused the WebSocket handshake ({status})\n")
    client = web.WebSocketResponse(protocols=(remote.protocol,) if remote.protocol else (), max_msg_size=0)
    try:
        await client.prepare(request)
        await relay(client, remote)
    finally:
        await remote.close()
    return client


def _discard(handshake: Handshake) -> None:
    """Only refused handshakes are ever retried, and they hold no connection: nothing to release."""


async def _pump(src: Socket, dst: Socket) -> None:
    code: int = WSCloseCode.GOING_AWAY
    reason = ""
    while True:
        msg = await src.receive()
        if msg.type == WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == WSMsgType.CLOSE:
            code, reason = int(msg.data), str(msg.extra or "")
            break
        elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            code = src.close_code or WSCloseCode.GOING_AWAY
            break
    await dst.close(code=code, message=reason.encode())


async def relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    to_upstream = asyncio.ensure_future(_pump(client, upstream))
    to_client = asyncio.ensure_future(_pump(upstream, client))
    done, pending = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        # The other side is closing too; give its close handshake a moment, then stop waiting.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
            await task
    for task in done:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            task.result()
