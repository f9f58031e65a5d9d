"""The request path: one handler for every proxied request, in the order the request needs it.

route → header hygiene → cookies and CORS → token → body → ``send_with_token`` → App Proxy's own
error page recognised (``appproxy_errors.py``) → response back.
Failures are ``ProxyError``s from wherever they arise and become problem+json here and only here,
with the route the request was for. Bodies are streamed in both directions, never buffered,
except a small request body kept so the request can be replayed once if the upstream refuses the
token. The request's ``Routing`` snapshot is read once and used to the end of its response.
Metrics and the access line are recorded from the request's ``Exchange`` after the response left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from bearerd.errors import BadRequest, Forbidden, MethodNotAllowed, NoRoute, ProxyError
from bearerd.proxy import appproxy_errors, cors, upstream
from bearerd.proxy.accounting import Accounting
from bearerd.proxy.clientkey import ClientKeyCheck
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.headers import downstream_headers, upstream_headers
from bearerd.proxy.retry import Answer, send_with_token
from bearerd.proxy.routes import Route, split_absolute, split_target
from bearerd.proxy.routing import Routing, Upstream
from bearerd.proxy.upstream import ClientGone
from bearerd.proxy.websocket import proxy_websocket

PROBLEM_HEADERS = {"Content-Type": "application/problem+json", "Cache-Control": "no-store"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Response bodies up to this size (with a Content-Length) are relayed in one piece, not streamed.
SMALL_BODY_BYTES = 64 * 1024


def problem_response(error: ProxyError, route: str | None) -> web.Response:
    headers = dict(PROBLEM_HEADERS)
    headers.update(error.headers())
    return web.Response(status=error.status, body=error.body(route), headers=headers)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a request goes: its route, the checked path and query, and for forward-proxy clients
    the authority they asked for."""

    upstream: Upstream
    path: str
    query: str
    forward_authority: str | None

    @property
    def route(self) -> Route:
        return self.upstream.route

    def url(self) -> URL:
        if self.forward_authority is not None:
            return URL(self.route.upstream_origin + self.path + self.query, encoded=True)
        return URL(self.route.upstream_target(self.path, self.query), encoded=True)


class Proxy:
    """Forwards requests for the routes of one or more listeners."""

    def __init__(
        self,
        routing: Routing,
        session: aiohttp.ClientSession,
        ws_session: aiohttp.ClientSession,
        accounting: Accounting,
        client_key: ClientKeyCheck | None = None,
        stream_buffer_bytes: int = 1 << 16,
    ) -> None:
        self.routing = routing
        self.session = session
        self.ws_session = ws_session
        self.accounting = accounting
        self.stream_buffer_bytes = stream_buffer_bytes
        self._client_key = client_key
        self._own_headers = frozenset({client_key.lower}) if client_key is not None else frozenset()

    def handler(self, listener: str, limits: tuple[int, int], local_scheme: str = "http") -> web.Server:
        """The aiohttp server for one listener; ``limits`` is (max header bytes, max header count)."""

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            return await self.handle(request, listener, local_scheme)

        max_bytes, max_count = limits
        return web.Server(
            handle,
            access_log=None,
            read_bufsize=self.stream_buffer_bytes,
            handler_cancellation=False,
            max_line_size=max_bytes,
            max_field_size=max_bytes,
            max_headers=max_count,
        )

    async def handle(self, request: web.BaseRequest, listener: str, local_scheme: str) -> web.StreamResponse:
        exchange = Exchange(request.method, time.perf_counter())
        routing = self.routing  # one snapshot for the whole request, response included
        self.accounting.started()
        try:
            response = await self._forward(request, routing, listener, local_scheme, exchange)
            exchange.status = response.status
            return response
        except ProxyError as exc:
            if request.transport is None or request.transport.is_closing():
                return self._client_left(exchange)  # the failure was the client leaving (e.g. mid-upload)
            exchange.status, exchange.problem = exc.status, exc.slug
            if exc.status >= 500:
                exchange.detail = exc.detail
            return problem_response(exc, exchange.route)
        except ClientGone:
            return self._client_left(exchange)
        finally:
            # Metrics and the access line once the response has left: aiohttp writes what we return
            # after this, in the same step of the task, so the client doesn't wait for bookkeeping.
            asyncio.get_running_loop().call_soon(self.accounting.finished, routing, exchange)

    @staticmethod
    def _client_left(exchange: Exchange) -> web.Response:
        exchange.status, exchange.client_closed = 499, True  # nginx's convention: the client closed
        return web.Response(status=499)  # the connection is gone; aiohttp drops it

    def _route(self, request: web.BaseRequest, routing: Routing, listener: str, exchange: Exchange) -> _Target:
        if request.method == "CONNECT":
            raise MethodNotAllowed(
                "bearerd adds the token to each HTTP request, which it can't do inside a CONNECT tunnel; "
                "point the client at http://127.0.0.1:<port>/<route prefix>/ instead of using it as an https proxy"
            )
        if self._client_key is not None:
            self._client_key.verify(request.headers)
        target = request.raw_path
        hosts = request.headers.getall("Host", ())
        if len(hosts) > 1:
            raise BadRequest("more than one Host header")
        table = routing.tables.get(listener)
        forward_authority: str | None = None
        if target.startswith("/"):
            path, query = split_target(target)
            route = table.match(hosts[0] if hosts else None, path) if table is not None else None
        else:
            # Forward-proxy use (http_proxy=…): "GET http://app.msappproxy.net/x". Served only for
            # hosts that are configured upstreams, upgraded to the route's https; never an open proxy.
            forward_authority, path, query = split_absolute(target)
            route = table.by_upstream_authority(forward_authority) if table is not None else None
            if route is None:
                raise Forbidden(
                    "this host is not a configured route; bearerd forwards only to its routes' upstreams "
                    "(`bearerd routes` lists them)"
                )
            exchange.via = "forward_proxy"
        exchange.path = path
        if route is None:
            raise NoRoute("no route matches this path or host; `bearerd routes` lists the configured entry points")
        exchange.route = route.name
        return _Target(routing.upstreams[route.name], path, query, forward_authority)

    async def _forward(
        self, request: web.BaseRequest, routing: Routing, listener: str, local_scheme: str, exchange: Exchange
    ) -> web.StreamResponse:
        target = self._route(request, routing, listener, exchange)
        up = target.upstream
        headers, add_token = upstream_headers(request.headers, up.policy, target.route.upstream_host, self._own_headers)
        up.jar.apply(headers)
        origin = up.cors.allowed(request.headers.get("Origin"))
        if origin is not None and cors.is_preflight(request.method, request.headers):
            return web.Response(status=204, headers=up.cors.preflight(origin, request.headers))

        token: str | None = None
        if add_token:
            token = up.provider.current()
            exchange.auth = "memory"
            if token is None:
                exchange.auth = "refresh"
                token = await up.provider.fetch()
        else:
            exchange.auth = "client"

        if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
            exchange.websocket = True
            return await proxy_websocket(self.ws_session, request, up, target.url(), headers, token, exchange)

        body, replayable = await self._request_body(request, up, exchange)
        url = target.url()

        async def attempt(with_token: str | None) -> aiohttp.ClientResponse:
            if with_token is not None:
                headers["Authorization"] = "Bearer " + with_token
            return await upstream.send(self.session, up, request.method, url, headers, body)

        upstream_started = time.perf_counter()
        response, exchange.retried = await send_with_token(
            attempt,
            _answer,
            _release,
            token=token,
            provider=up.provider,
            hosts=up.sign_in_hosts,
            replayable=replayable,
        )
        exchange.upstream_ms = round((time.perf_counter() - upstream_started) * 1000, 2)
        try:
            head = b""  # App Proxy's own error page is told apart by its first bytes (never a backend's)
            if appproxy_errors.worth_a_look(response.status, response.headers):
                head = await upstream.read_head(response, appproxy_errors.PEEK_BYTES)
                problem = appproxy_errors.classify(response.status, response.headers, head)
                if problem is not None:
                    raise problem
            return await self._relay(request, response, target, local_scheme, origin, exchange, head)
        finally:
            response.release()

    async def _request_body(
        self, request: web.BaseRequest, up: Upstream, exchange: Exchange
    ) -> tuple[bytes | AsyncIterator[bytes] | None, bool]:
        """The body to send and whether it can be sent twice (kept in memory when small)."""
        if not request.body_exists:
            return None, True
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(_CONTINUE)
        if request.content_length is not None and request.content_length <= up.replay_max_bytes:
            body = await upstream.read_small_body(request)
            exchange.bytes_in = len(body)
            return body, True
        return upstream.stream_body(request, exchange), False

    async def _relay(
        self,
        request: web.BaseRequest,
        response: aiohttp.ClientResponse,
        target: _Target,
        local_scheme: str,
        origin: str | None,
        exchange: Exchange,
        head: bytes = b"",
    ) -> web.StreamResponse:
        """The upstream's answer to the client; ``head``: body bytes already read from it."""
        route = target.route
        headers = downstream_headers(response.headers)
        target.upstream.jar.absorb(headers, route.local_prefix if target.forward_authority is None else None)
        if origin is not None:
            headers.update(cors.answer_headers(origin))
            headers.add("Vary", "Origin")
        location = headers.get("Location")
        if location is not None:
            if target.forward_authority is not None:
                headers["Location"] = route.forward_location(location, target.forward_authority)
            else:
                local_origin = f"{local_scheme}://{request.headers.get('Host', request.host)}"
                headers["Location"] = route.local_location(location, local_origin)
        length = response.content_length
        if length is not None and length <= SMALL_BODY_BYTES and request.method != "HEAD":
            # A small body in one piece: headers and body leave in a single write.
            with upstream.upstream_errors(None, "mid-response"):
                body = head + await response.read()
            headers.popall("Content-Length", None)
            exchange.bytes_out = len(body)
            return web.Response(status=response.status, reason=response.reason, headers=headers, body=body)
        return await self._stream_response(request, response, headers, exchange, head)

    async def _stream_response(
        self,
        request: web.BaseRequest,
        response: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        exchange: Exchange,
        head: bytes,
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=response.status, reason=response.reason, headers=headers)
        with upstream.client_errors():
            await out.prepare(request)
            if head:
                exchange.bytes_out += len(head)
                await out.write(head)
        try:
            # iter_any: whatever has arrived, joined. Fewer, larger writes beat avoiding the join's
            # copy (iter_chunks measured 1.1 vs 1.5 GB/s in bench/: per-chunk cost dominates).
            async for chunk in response.content.iter_any():
                exchange.bytes_out += len(chunk)
                with upstream.client_errors():
                    await out.write(chunk)
            with upstream.client_errors():
                await out.write_eof()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The upstream failed after the headers were out: the only honest signal left is to cut
            # the connection, so the client sees a truncated body instead of a complete-looking one.
            exchange.upstream_error = type(exc).__name__
            self.accounting.body_failed(exchange)
            if request.transport is not None:
                request.transport.close()
            raise ClientGone() from exc
        return out


def _answer(response: aiohttp.ClientResponse) -> Answer:
    return Answer(
        response.status, response.headers.get("Location"), tuple(response.headers.getall("WWW-Authenticate", ()))
    )


def _release(response: aiohttp.ClientResponse) -> None:
    response.release()
