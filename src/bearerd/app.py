"""Assemble a running bearerd from settings: credentials, token providers, proxy, listeners.

``Daemon`` is an async context manager that owns every resource it creates (the upstream
client session, MSAL sessions, token timers, listening sockets) and releases them in reverse
order, so tests and ``server.py`` start and stop it the same way. It holds no signal handling:
that is ``server.py``'s job.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from bearerd.config import Settings, parse_hostport
from bearerd.proxy import Proxy, Upstream
from bearerd.routes import Route, RouteTable
from bearerd.tokens import Providers

log = structlog.get_logger("bearerd.app")

# Headers aiohttp would add on its own; a proxy forwards what the client sent, nothing more.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


def _bind_host(host: str) -> str:
    return host if host not in ("localhost",) else "127.0.0.1"


class Daemon:
    """All of bearerd that runs: started by ``async with``, stopped on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = Providers(settings)
        self.routes = {name: Route.build(name, rs) for name, rs in settings.routes.items()}
        self.started_at = time.time()
        self.ready = False
        self.listen_addresses: list[tuple[str, int]] = []
        self.route_addresses: dict[str, tuple[str, int]] = {}
        self.admin_address: tuple[str, int] | None = None
        self._stack = AsyncExitStack()
        self.session: aiohttp.ClientSession | None = None
        self.proxy: Proxy | None = None

    async def __aenter__(self) -> Daemon:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ready = False
        await self._stack.aclose()

    async def _start(self) -> None:
        self._stack.push_async_callback(self.providers.aclose)
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=False)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # never share one client's cookies with another
            skip_auto_headers=_SKIP_AUTO_HEADERS,
        )
        self._stack.push_async_callback(self.session.close)
        upstreams = {name: self._upstream(route) for name, route in self.routes.items()}
        self.proxy = Proxy(upstreams, self.session)

        shared = [r for r in self.routes.values() if r.settings.match.listen is None]
        shared_table = RouteTable(shared)
        timeout = self.settings.server.shutdown_timeout_s
        for address in self.settings.server.listen:
            self.listen_addresses.append(await self._listen(address, shared_table, timeout))
        for route in self.routes.values():
            if route.settings.match.listen is not None:
                self.route_addresses[route.name] = await self._listen(
                    route.settings.match.listen, RouteTable([route]), timeout
                )
        if self.settings.server.admin:
            self.admin_address = await self._serve_admin(self.settings.server.admin)
        # Get every token now, in the background: the first request shouldn't wait, and /readyz
        # should tell the truth from the start.
        for provider in self.providers.all():
            provider.warm_up()
        self.ready = True

    def _upstream(self, route: Route) -> Upstream:
        rs = route.settings
        provider = self.providers.for_route(route.name)
        client = provider.client
        scheme_is_https = route.upstream_origin.startswith("https://")
        return Upstream(
            route=route,
            provider=provider,
            ssl=client.ssl_context if scheme_is_https else False,
            proxy=self.settings.egress.proxy_for(route.upstream_origin + "/"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=rs.connect_timeout_s, sock_read=rs.timeout_s),
            sign_in_hosts=client.credential.sign_in_hosts,
            policy=rs.client_authorization,
            replay_max_bytes=rs.replay_max_bytes,
        )

    async def _listen(self, address: str, table: RouteTable, shutdown_timeout: float) -> tuple[str, int]:
        assert self.proxy is not None  # noqa: S101 - set in _start before listeners
        host, port = parse_hostport(address)
        runner = web.ServerRunner(self.proxy.handler(table), shutdown_timeout=shutdown_timeout)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, _bind_host(host), port)
        await site.start()
        bound = runner.addresses[-1]
        log.info("listening", address=f"{host}:{bound[1]}", routes=sorted(_names(table)))
        return str(bound[0]), int(bound[1])

    async def _serve_admin(self, address: str) -> tuple[str, int]:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        host, port = parse_hostport(address)
        site = web.TCPSite(runner, _bind_host(host), port)
        await site.start()
        bound = runner.addresses[-1]
        return str(bound[0]), int(bound[1])

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_s": round(time.time() - self.started_at)})

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        routes: dict[str, Any] = {}
        all_ready = self.ready
        for name in self.routes:
            status = self.providers.for_route(name).status()
            entry: dict[str, Any] = {"ready": status.has_token, "credential": self.settings.routes[name].credential}
            if status.expires_in_s is not None:
                entry["token_expires_in_s"] = round(status.expires_in_s)
            if status.last_error is not None:
                entry["last_error"] = status.last_error
                entry["retry_in_s"] = round(status.retry_in_s or 0)
            all_ready = all_ready and status.has_token
            routes[name] = entry
        return all_ready, {"ready": all_ready, "routes": routes}

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, body = self.readiness()
        return web.json_response(body, status=200 if ready else 503)

    async def wait_ready(self, within_s: float) -> bool:
        """Wait until every route has a token (used by `demo`, `check --acquire` and tests)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.readiness()[0]:
                return True
            await asyncio.sleep(0.05)
        return self.readiness()[0]


def _names(table: RouteTable) -> list[str]:
    return [r.name for r in table.routes()]
