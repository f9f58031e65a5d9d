"""Assemble a running bearerd from settings: credentials, token providers, proxy, listeners.

``Daemon`` is an async context manager that owns every resource it creates (the upstream
client session, MSAL sessions, token timers, listening sockets) and releases them in reverse
order, so tests and ``server.py`` start and stop it the same way. It holds no signal handling:
that is ``server.py``'s job. ``reload()`` applies a new configuration without dropping
in-flight requests or the tokens of unchanged credentials.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web

from bearerd.config.schema import UNIX_PREFIX, Settings, parse_hostport
from bearerd.daemon.admin import admin_app
from bearerd.daemon.metrics import Metrics
from bearerd.proxy.handler import Proxy, Routing, Upstream, refuse_redirects
from bearerd.proxy.routes import Route, RouteTable
from bearerd.proxy.slowloris import DeadlineTCPSite
from bearerd.tokens.provider import Providers

if TYPE_CHECKING:
    from bearerd.tokens.fleet import Fleet

log = structlog.get_logger("bearerd.app")

# Headers aiohttp would add on its own; a proxy forwards what the client sent, nothing more.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
SHARED_LISTENER = "shared"
# How much of a streamed body may wait in bearerd per direction before the sender is paused.
# aiohttp's 64 KiB made a 1 GiB transfer pause and resume the socket ~16,000 times; 512 KiB
# measured ~10% faster in bench/ for ~5 MB more peak RSS (1 MiB: no faster, ~10 MB more).
STREAM_BUFFER_BYTES = 1 << 19


def _bind_host(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def route_entry(settings: Settings, route: str) -> str:
    """How a client reaches a route, for banners and tables."""
    match = settings.routes[route].match
    if match.path_prefix is not None:
        return f"{', '.join(settings.server.listen)} {match.path_prefix}"
    if match.host is not None:
        return f"Host: {match.host}"
    return f"{match.listen} (own port)"


class Daemon:
    """All of bearerd that runs: started by ``async with``, stopped on exit."""

    def __init__(self, settings: Settings, trace_configs: list[aiohttp.TraceConfig] | None = None) -> None:
        self.settings = settings
        # Observers of every outbound upstream request (tests use one to check where tokens go).
        self._trace_configs = trace_configs
        self.metrics = Metrics()
        self.fleet: Fleet | None = None
        if settings.cache.backend == "redis":
            from bearerd.tokens.fleet import Fleet  # imports the Redis client: ~6 MB, only for fleets

            self.fleet = Fleet(settings.cache, settings.source_file, on_connected=self.metrics.observe_fleet)
        self.providers = Providers(settings, on_attempt=self.metrics.observe_acquisition, fleet=self.fleet)
        self.routes = {name: Route.build(name, rs) for name, rs in settings.routes.items()}
        self.started_at = time.time()
        self.ready = False
        self.listen_addresses: list[tuple[str, int]] = []
        self.unix_sockets: list[str] = []
        self.tls_addresses: list[tuple[str, int]] = []
        self.route_addresses: dict[str, tuple[str, int]] = {}
        self.admin_address: tuple[str, int] | None = None
        # Set by server.py: re-reads the config file and applies it; returns (applied, message).
        self.reload_hook: Callable[[], Awaitable[tuple[bool, str]]] | None = None
        self._stack = AsyncExitStack()
        self.session: aiohttp.ClientSession | None = None
        self.proxy: Proxy | None = None
        self.metrics.watch_token_expiry(self._token_expiry)

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
        if self.fleet is not None:
            self._stack.push_async_callback(self.fleet.close)
            await self.fleet.start()
        self._stack.push_async_callback(lambda: self.providers.aclose())
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector,
            read_bufsize=STREAM_BUFFER_BYTES,
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # never share one client's cookies with another
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            trace_configs=self._trace_configs,
        )
        self._stack.push_async_callback(self.session.close)
        ws_session = aiohttp.ClientSession(
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            middlewares=(refuse_redirects,),
            trace_configs=self._trace_configs,
        )
        self._stack.push_async_callback(ws_session.close)
        self.proxy = Proxy(
            self._routing(self.settings, self.providers),
            self.session,
            self.metrics,
            self.settings.server.client_auth,
            ws_session=ws_session,
            stream_buffer_bytes=STREAM_BUFFER_BYTES,
        )

        timeout = self.settings.server.shutdown_timeout_s
        for address in self.settings.server.listen:
            if address.startswith(UNIX_PREFIX):
                self.unix_sockets.append(await self._listen_unix(address[len(UNIX_PREFIX) :], timeout))
            else:
                self.listen_addresses.append(await self._listen(address, SHARED_LISTENER, timeout))
        if self.settings.server.tls_listen:
            context = self._tls_context()
            for address in self.settings.server.tls_listen:
                self.tls_addresses.append(await self._listen(address, SHARED_LISTENER, timeout, context))
        for route in self.routes.values():
            if route.settings.match.listen is not None:
                self.route_addresses[route.name] = await self._listen(route.settings.match.listen, route.name, timeout)
        if self.settings.server.admin:
            self.admin_address = await self._serve_admin(self.settings.server.admin)
        for name, client in self.providers.clients.items():
            cache = client.persistent_cache
            if cache is not None:
                # Say how the refresh tokens are protected (cache_protection).
                log.info("token_cache", credential=name, path=str(cache.path), protection=cache.protection)
        # Get every token now, in the background: the first request shouldn't wait, and /readyz
        # should tell the truth from the start.
        for provider in self.providers.all():
            provider.warm_up()
        self.ready = True

    def _routing(self, settings: Settings, providers: Providers) -> Routing:
        routes = {name: Route.build(name, rs) for name, rs in settings.routes.items()}
        tables = {SHARED_LISTENER: RouteTable(r for r in routes.values() if r.settings.match.listen is None)}
        for route in routes.values():
            if route.settings.match.listen is not None:
                tables[route.name] = RouteTable([route])
        upstreams = {name: self._upstream(settings, providers, route) for name, route in routes.items()}
        return Routing(tables=tables, upstreams=upstreams)

    def _upstream(self, settings: Settings, providers: Providers, route: Route) -> Upstream:
        rs = route.settings
        provider = providers.for_route(route.name)
        client = provider.client
        return Upstream(
            route=route,
            provider=provider,
            ssl=client.ssl_context if route.upstream_origin.startswith("https://") else False,
            proxy=settings.egress.proxy_for(route.upstream_origin + "/"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=rs.connect_timeout_s, sock_read=rs.timeout_s),
            sign_in_hosts=client.credential.sign_in_hosts,
            policy=rs.client_authorization,
            replay_max_bytes=rs.replay_max_bytes,
            access_log=rs.access_log,
            access_log_sample=rs.access_log_sample,
            cors_origins=frozenset(rs.cors_origins),
            cors_max_age_s=rs.cors_max_age_s,
        )

    def _tls_context(self) -> ssl.SSLContext:
        assert self.settings.state_dir is not None  # noqa: S101 - load_settings always sets it
        from bearerd.proxy.localca import LocalCA  # cryptography: loaded only for tls_listen

        ca = LocalCA(self.settings.state_dir / "tls")
        hosts = [r.match.host.rsplit(":", 1)[0] for r in self.settings.routes.values() if r.match.host]
        log.info("local_tls", ca=str(ca.cert_file), hosts=hosts)
        return ca.server_context(hosts)

    async def _runner(self, listener: str, shutdown_timeout: float, scheme: str = "http") -> web.ServerRunner:
        assert self.proxy is not None  # noqa: S101 - set in _start before listeners
        server = self.settings.server
        handler = self.proxy.handler(listener, (server.max_header_bytes, server.max_headers), scheme)
        runner = web.ServerRunner(handler, shutdown_timeout=shutdown_timeout)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        return runner

    async def _listen_unix(self, path: str, shutdown_timeout: float) -> str:
        runner = await self._runner(SHARED_LISTENER, shutdown_timeout)
        site = web.UnixSite(runner, path)
        mode = int(self.settings.server.unix_socket_mode, 8)
        # The file mode is the access control: the socket is created with no more than the final
        # mode (umask), so there is no moment in which others could connect.
        previous = os.umask(0o777 & ~mode)
        try:
            await site.start()
        finally:
            os.umask(previous)
        os.chmod(path, mode)
        self._stack.callback(lambda: Path(path).unlink(missing_ok=True))
        log.info("listening", address=f"unix:{path}", mode=self.settings.server.unix_socket_mode)
        return path

    async def _listen(
        self, address: str, listener: str, shutdown_timeout: float, tls: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        host, port = parse_hostport(address)
        runner = await self._runner(listener, shutdown_timeout, "https" if tls else "http")
        site = DeadlineTCPSite(
            runner, _bind_host(host), port, ssl_context=tls, header_timeout_s=self.settings.server.header_timeout_s
        )
        await site.start()
        bound = runner.addresses[-1]
        log.info("listening", address=f"{host}:{bound[1]}", listener=listener)
        return str(bound[0]), int(bound[1])

    async def _serve_admin(self, address: str) -> tuple[str, int]:
        runner = web.AppRunner(admin_app(self), access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        host, port = parse_hostport(address)
        site = web.TCPSite(runner, _bind_host(host), port)
        await site.start()
        bound = runner.addresses[-1]
        return str(bound[0]), int(bound[1])

    # -- reload --------------------------------------------------------------------------------

    async def reload(self, new: Settings) -> list[str]:
        """Apply ``new``: routes and credentials change; listeners need a restart to change.

        Requests in flight finish with the configuration they started with; unchanged credentials
        keep their MSAL app and their tokens. Returns what could not be applied (for the log).
        """
        assert self.proxy is not None  # noqa: S101 - only called on a started daemon
        not_applied: list[str] = []
        if new.server != self.settings.server:
            not_applied.append("[server] changes take effect at the next restart")
        old_own = {n: r.match.listen for n, r in self.settings.routes.items() if r.match.listen}
        new_own = {n: r.match.listen for n, r in new.routes.items() if r.match.listen}
        if old_own != new_own:
            not_applied.append("routes with their own `listen` port change at the next restart")
            new = new.model_copy(
                update={
                    "routes": {
                        n: r
                        for n, r in new.routes.items()
                        if r.match.listen is None or old_own.get(n) == r.match.listen
                    }
                }
            )
        if new.cache != self.settings.cache:
            not_applied.append("[cache] changes take effect at the next restart")
            new = new.model_copy(update={"cache": self.settings.cache})
        providers = Providers(new, on_attempt=self.metrics.observe_acquisition, reuse=self.providers, fleet=self.fleet)
        routing = self._routing(new, providers)
        old = self.providers
        self.proxy.routing = routing
        self.providers = providers
        self.routes = {name: upstream.route for name, upstream in routing.upstreams.items()}
        self.settings = new.model_copy(update={"server": self.settings.server})
        await providers.close_unused(old)
        for provider in providers.all():
            provider.warm_up()
        return not_applied

    # -- readiness -----------------------------------------------------------------------------

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
            elif not status.has_token:
                entry["reason"] = "no token yet (acquisition in progress)"
            all_ready = all_ready and status.has_token
            routes[name] = entry
        return all_ready, {"ready": all_ready, "routes": routes}

    def _token_expiry(self) -> list[tuple[str, str, float | None]]:
        return [
            (name, self.settings.routes[name].credential, self.providers.for_route(name).status().expires_in_s)
            for name in self.routes
        ]

    async def wait_ready(self, within_s: float) -> bool:
        """Wait until every route has a token (used by `demo`, `check --acquire` and tests)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.readiness()[0]:
                return True
            await asyncio.sleep(0.05)
        return self.readiness()[0]
