"""The request path: one handler for every proxied request, in the order the request needs it.

route → header hygiene → cookies and CORS → token → body → ``send_with_token`` → App Proxy's own
error page recognised (``appproxy_errors.py``) → response back.
It runs on bearerd's own HTTP/1.1 core (``bearerd.h1``): the core has already refused what is
malformed, and owns framing, keep-alive and flow control. Failures are ``ProxyError``s from
wherever they arise and become problem+json here and only here, with the route the request was
for. Bodies are streamed in both directions, never buffered, except a small request body kept so
the request can be replayed once if the upstream refuses the token, and a small response body
sent in the same write as its head. The request's ``Routing`` snapshot is read once and used to
the end of its response; the ``Exchange`` record is accounted for after the response has left.
A ``CONNECT`` goes to ``intercept.py`` when ``intercept_https``/``tunnel_hosts`` are set; the
requests inside an intercepted tunnel come back here, ``inside`` naming the tunnel's target.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from bearerd.errors import PROBLEM_CONTENT_TYPE, BadRequest, Forbidden, MethodNotAllowed, NoRoute, ProxyError
from bearerd.h1 import ClientGone, Request, Responder, UpstreamError, UpstreamResponse
from bearerd.proxy import appproxy_errors, cors, upstream
from bearerd.proxy.accounting import Accounting
from bearerd.proxy.clientkey import ClientKeyCheck
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.headers import downstream_headers, upstream_headers
from bearerd.proxy.intercept import ConnectTarget, Interceptor, route_inside
from bearerd.proxy.retry import answer_refusal, refusable
from bearerd.proxy.routes import Route, split_absolute, split_target
from bearerd.proxy.routing import Routing, Upstream
from bearerd.proxy.websocket import proxy_websocket

# Response bodies up to this size (with a Content-Length) leave in the same write as their head.
SMALL_BODY_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})

Handler = Callable[[Request, Responder], Awaitable[None]]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


async def send_problem(responder: Responder, error: ProxyError, route: str | None) -> None:
    headers = [("Content-Type", PROBLEM_CONTENT_TYPE), ("Cache-Control", "no-store"), *error.headers().items()]
    await responder.send(error.status, _reason(error.status), headers, error.body(route))


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~0.4 µs more to build, per request
class _Target:
    """Where a request goes: its route, the checked path and query, and for forward-proxy clients
    the authority they asked for."""

    upstream: Upstream
    path: str
    query: str
    forward_authority: str | None
    intercepted: bool = False  # inside a CONNECT tunnel: the client already uses the upstream's own URLs

    @property
    def route(self) -> Route:
        return self.upstream.route

    def upstream_target(self) -> str:
        if self.forward_authority is not None:
            return self.path + self.query
        return self.route.upstream_target(self.path, self.query)


class Proxy:
    """Forwards requests for the routes of one or more listeners."""

    def __init__(
        self,
        routing: Routing,
        accounting: Accounting,
        client_key: ClientKeyCheck | None = None,
        interceptor: Interceptor | None = None,
    ) -> None:
        self.routing = routing
        self.accounting = accounting
        self._client_key = client_key
        self._interceptor = interceptor

    def handler(self, listener: str) -> Handler:
        """The core's handler for one listener (its routes are ``routing.tables[listener]``); a
        partial rather than a wrapping coroutine, one frame less on every request."""
        return functools.partial(self.handle, listener=listener)

    def _inside(self, listener: str) -> Callable[[ConnectTarget], Handler]:
        def handler_for(target: ConnectTarget) -> Handler:
            async def handle(request: Request, responder: Responder) -> None:
                await self.handle(request, responder, listener, target)

            return handle

        return handler_for

    async def handle(
        self, request: Request, responder: Responder, listener: str, inside: ConnectTarget | None = None
    ) -> None:
        """One request; ``inside``: it came through the intercepted CONNECT tunnel to that target."""
        exchange = Exchange(request.method, time.perf_counter())
        routing = self.routing  # one snapshot for the whole request, response included
        self.accounting.started()
        # No request outlives its client: when the connection goes, the handling (a wait for the
        # upstream, a token, a pool slot) is cancelled, and with it the upstream request.
        task = request.task  # (asyncio.current_task(), without its cost on Python 3.11)
        assert task is not None  # noqa: S101 - the core runs every handler in a task
        request.cancel_when_gone()
        try:
            await self._forward(request, responder, routing, listener, exchange, inside)
        except asyncio.CancelledError:
            if not request.is_gone or task.uncancel() > 0:
                raise  # a shutdown past its grace period, not the client leaving
            exchange.client_closed = True
        except ProxyError as exc:
            if request.is_gone:
                exchange.client_closed = True  # the failure was the client leaving (e.g. mid-upload)
            elif not responder.started:
                exchange.problem = exc.slug
                if exc.status >= 500:
                    exchange.detail = exc.detail
                await send_problem(responder, exc, exchange.route)
            else:
                responder.abort()  # too late for a problem document: cut the answer short instead
        except ClientGone:
            exchange.client_closed = True
        finally:
            # 499: nginx's convention for "the client closed the connection"; 500: the core answers a
            # handler's surprise with a 500 problem of its own.
            exchange.status = 499 if exchange.client_closed else (responder.status or 500)
            # A relay (blind tunnel, WebSocket) counted its own bytes; everything else is the responder's.
            exchange.bytes_out = exchange.bytes_out or responder.body_bytes
            # Metrics and the access line once the response has been written (the core wrote it
            # as it was sent, and starts a pipelined next request itself): no client waits for them.
            self.accounting.finished(routing, exchange)

    def _route(
        self, request: Request, routing: Routing, listener: str, exchange: Exchange, inside: ConnectTarget | None
    ) -> _Target:
        if request.method == "CONNECT":
            raise MethodNotAllowed(
                "bearerd adds the token to each HTTP request, which it can do inside a CONNECT tunnel only with "
                "[server] intercept_https = true; else point the client at http://127.0.0.1:<port>/<route prefix>/"
                if inside is None
                else "a CONNECT inside a CONNECT tunnel is not served"
            )
        if inside is not None:  # the CONNECT carried the client key, if one is required
            exchange.via = "connect"
            chosen, path, query = route_inside(routing.tables.get(listener), inside, request)
            exchange.path, exchange.route = path, chosen.name
            return _Target(routing.upstreams[chosen.name], path, query, inside.authority, intercepted=True)
        if self._client_key is not None:
            self._client_key.verify(request.get)
        target = request.target
        hosts = request.getall("host")
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
        self,
        request: Request,
        responder: Responder,
        routing: Routing,
        listener: str,
        exchange: Exchange,
        inside: ConnectTarget | None,
    ) -> None:
        if request.method == "CONNECT" and inside is None and self._interceptor is not None:
            if self._client_key is not None:
                self._client_key.verify(request.get)
            table = routing.tables.get(listener)
            await self._interceptor.connect(request, responder, table, exchange, self._inside(listener))
            return
        target = self._route(request, routing, listener, exchange, inside)
        up = target.upstream
        headers, cookies, add_token = upstream_headers(request.headers, request.index, up.headers)
        cookie = up.jar.request_cookie(cookies)
        if cookie is not None:
            headers.append(("Cookie", cookie))
        origin = up.cors.allowed(request.get("origin"))
        if origin is not None:
            asked = cors.preflight_method(request.method, request.get)
            if asked is not None:  # App Proxy would redirect a preflight to sign-in: answer it here
                preflight = up.cors.preflight(origin, asked, request.get("access-control-request-headers"))
                await responder.send(204, "No Content", preflight)
                return

        token: str | None = None
        if add_token:
            token = up.provider.current()
            exchange.auth = "memory"
            if token is None:
                exchange.auth = "refresh"
                token = await up.provider.fetch()
        else:
            exchange.auth = "client"

        if request.method == "GET" and (request.get("upgrade") or "").lower() == "websocket":
            exchange.websocket = True
            await proxy_websocket(request, responder, up, target.upstream_target(), headers, token, exchange)
            return

        body, replayable = await self._request_body(request, up, exchange) if request.has_body else (None, True)
        path = target.upstream_target()

        method, pool, read_timeout_s = request.method, up.pool, up.read_timeout_s

        async def attempt(with_token: str | None) -> UpstreamResponse:
            # Redirects are never followed: a token goes to this route's upstream and nowhere else.
            sent = headers if with_token is None else [*headers, ("Authorization", "Bearer " + with_token)]
            with upstream.upstream_errors(read_timeout_s):
                return await pool.request(method, path, sent, body, read_timeout_s=read_timeout_s)

        upstream_started = time.perf_counter()
        response = await attempt(token)
        if token is not None:  # the one retry flow (retry.py), entered only for a 401 or a redirect
            answer = refusable(response)
            if answer is not None:
                response, exchange.retried = await answer_refusal(
                    response, answer, attempt, refusable, UpstreamResponse.release, token=token,
                    provider=up.provider, hosts=up.sign_in_hosts, replayable=replayable,
                )  # fmt: skip
        exchange.upstream_ms = round((time.perf_counter() - upstream_started) * 1000, 2)
        try:
            head = await _app_proxy_page(response, up) if response.status in appproxy_errors.STATUSES else b""
            await self._relay(request, responder, response, target, origin, exchange, head)
        finally:
            response.release()

    async def _request_body(self, request: Request, up: Upstream, exchange: Exchange) -> tuple[upstream.Body, bool]:
        """The body to send and whether it can be sent twice (kept in memory when small)."""
        if not request.has_body:
            return None, True
        length = request.content_length
        if length is not None and length <= up.replay_max_bytes:
            body = await request.read(up.replay_max_bytes)
            exchange.bytes_in = len(body)
            return body, True
        return upstream.stream_body(request, exchange), False

    async def _relay(
        self,
        request: Request,
        responder: Responder,
        response: UpstreamResponse,
        target: _Target,
        origin: str | None,
        exchange: Exchange,
        head: bytes,
    ) -> None:
        """The upstream's answer to the client; ``head``: body bytes already read from it."""
        route, jar = target.route, target.upstream.jar
        local_prefix = route.local_prefix if target.forward_authority is None else None
        if target.intercepted:

            def location(value: str) -> str:
                return value
        elif target.forward_authority is not None:
            authority = target.forward_authority

            def location(value: str) -> str:
                return route.forward_location(value, authority)
        else:

            def location(value: str) -> str:  # the local origin is worked out only for a Location
                return route.local_location(value, f"{request.scheme}://{request.get('host') or 'localhost'}")

        headers = downstream_headers(
            response.headers, response.index, lambda v: jar.response_cookie(v, local_prefix), location
        )
        if origin is not None:
            headers.extend(cors.answer_headers(origin))
        status, reason, length = response.status, response.reason, response.content_length
        if request.method == "HEAD" or status in _NO_BODY_STATUSES:
            await responder.send(status, reason, headers, b"", length=length)
        elif length is not None and length <= SMALL_BODY_BYTES:
            with upstream.upstream_errors(target.upstream.read_timeout_s):
                body = head + await response.read(SMALL_BODY_BYTES)
            await responder.send(status, reason, headers, body)
        else:
            await self._stream(responder, response, headers, exchange, head)

    async def _stream(
        self,
        responder: Responder,
        response: UpstreamResponse,
        headers: list[tuple[str, str]],
        exchange: Exchange,
        head: bytes,
    ) -> None:
        await responder.start(response.status, response.reason, headers, length=response.content_length)
        if head:
            await responder.write(head)
        try:
            async for chunk in response.chunks():
                await responder.write(chunk)
        except UpstreamError as exc:
            # The upstream failed after the head was out: the only honest signal left is to cut the
            # connection, so the client sees a truncated body instead of a complete-looking one.
            exchange.upstream_error = type(exc).__name__
            self.accounting.body_failed(exchange)
            responder.abort()
            return
        await responder.end(response.trailers)


async def _app_proxy_page(response: UpstreamResponse, up: Upstream) -> bytes:
    """Raise the problem App Proxy's own error page means; otherwise return the body bytes this had
    to read to tell (only for answers whose status and headers already point at App Proxy)."""
    if response.status not in appproxy_errors.STATUSES:
        return b""
    fields = {name: values[0] for name, values in response.index.items()}
    if not appproxy_errors.worth_a_look(response.status, fields):
        return b""
    with upstream.upstream_errors(up.read_timeout_s):
        head = await upstream.read_head(response, appproxy_errors.PEEK_BYTES)
    problem = appproxy_errors.classify(response.status, fields, head)
    if problem is not None:
        raise problem
    return head
