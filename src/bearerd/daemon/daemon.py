"""``Daemon``: assemble a running bearerd from a ``Config`` and own the lifetime of every part.

Tests and ``serve.py`` start and stop it the same way (``async with``). It holds no signal
handling and no admin listener — those are the process layer's (``serve.py``) — so tests drive it
without ports or signals they don't need. ``reload()`` applies a new configuration without
dropping in-flight requests or the tokens of unchanged credentials.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry

from bearerd import doctor
from bearerd.config.loader import Config
from bearerd.doctor import RouteReport
from bearerd.lifecycle import Lifecycle
from bearerd.logs import REDACTOR
from bearerd.logwriter import dropped_lines
from bearerd.metrics import Metrics
from bearerd.proxy.accounting import Accounting
from bearerd.proxy.clientkey import ClientKeyCheck
from bearerd.proxy.handler import Proxy
from bearerd.proxy.intercept import Interceptor
from bearerd.proxy.listeners import Listeners
from bearerd.proxy.pools import Pools
from bearerd.proxy.routing import build_routing
from bearerd.tokens.registry import Providers

if TYPE_CHECKING:
    from bearerd.proxy.localca import LocalCA
    from bearerd.tokens.fleet import Fleet

log = structlog.get_logger("bearerd.daemon")


class Daemon(Lifecycle):
    """All of bearerd that runs: started by ``async with``, stopped on exit."""

    def __init__(self, config: Config) -> None:
        self.config = config
        REDACTOR.register(config.secrets.values())  # however the daemon was assembled, its secrets stay out of logs
        self.metrics = Metrics()
        self.fleet: Fleet | None = None
        if config.settings.cache.backend == "redis":
            from bearerd.tokens.fleet import Fleet  # imports the Redis client: ~6 MB, only for fleets

            self.fleet = Fleet.for_config(config, on_connected=self.metrics.observe_fleet)
        self.providers = Providers(config, on_attempt=self.metrics.observe_acquisition, fleet=self.fleet)
        self.pools = Pools()
        self.routing = build_routing(config, self.providers, self.pools)
        self.started_at = time.time()
        self.ready = False
        self._proxy: Proxy | None = None
        self._listeners: Listeners | None = None
        self.metrics.watch_token_expiry(self._token_expiry)
        self.metrics.watch_log_drops(dropped_lines)

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    @property
    def listeners(self) -> Listeners:
        assert self._listeners is not None  # noqa: S101 - set by __aenter__
        return self._listeners

    async def _start(self) -> None:
        if self.fleet is not None:
            await self.fleet.start()
        server = self.config.settings.server
        auth = server.client_auth
        key = self.config.secrets.client_key
        ca: LocalCA | None = None
        if server.tls_listen or server.intercept_https:
            from bearerd.proxy.localca import open_local_ca  # cryptography: loaded only for the local CA

            ca = open_local_ca(self.config.settings, self.config.state_dir)
        self._proxy = Proxy(
            self.routing,
            Accounting(self.metrics),
            ClientKeyCheck(auth.header, key) if auth is not None and key is not None else None,
            Interceptor(server, self.config.egress, ca) if server.intercept_https or server.tunnel_hosts else None,
        )
        self._listeners = Listeners(self.config, self._proxy, ca)
        await self._listeners.start()
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

    async def _stop(self) -> None:
        """The stop order, each step after the previous has finished:

        1. not ready: ``/readyz`` turns 503 so a load balancer stops sending;
        2. listeners stop accepting, then requests in flight finish within ``shutdown_timeout_s``
           (they still need their tokens and upstream connections, so those go later);
        3. upstream connection pools close;
        4. token providers stop their timers and wait for acquisitions in their worker threads;
        5. the fleet's monitor stops and its Redis connection closes (providers no longer use it).
        """
        self.ready = False
        if self._listeners is not None:
            await self._listeners.close()
        await self.pools.close()
        await self.providers.aclose()
        if self.fleet is not None:
            await self.fleet.close()

    # -- reload --------------------------------------------------------------------------------

    async def reload(self, new: Config) -> list[str]:
        """Apply ``new``: routes and credentials change; listeners need a restart to change.

        Requests in flight finish with the configuration they started with; unchanged credentials
        keep their MSAL app and their tokens, unchanged routes their cookies. Returns what could not
        be applied (for the log).
        """
        assert self._proxy is not None  # noqa: S101 - only called on a started daemon
        current = self.config.settings
        settings = new.settings
        not_applied: list[str] = []
        if settings.server != current.server:
            not_applied.append("[server] changes take effect at the next restart")
        old_own = {n: r.match.listen for n, r in current.routes.items() if r.match.listen}
        new_own = {n: r.match.listen for n, r in settings.routes.items() if r.match.listen}
        update: dict[str, Any] = {"server": current.server}
        if old_own != new_own:
            not_applied.append("routes with their own `listen` port change at the next restart")
            update["routes"] = {
                n: r for n, r in settings.routes.items() if r.match.listen is None or old_own.get(n) == r.match.listen
            }
        if settings.cache != current.cache:
            not_applied.append("[cache] changes take effect at the next restart")
            update["cache"] = current.cache
        REDACTOR.register(new.secrets.values())  # a rotated secret or a new route's set_headers
        applied = Config(
            settings=settings.model_copy(update=update),
            secrets=new.secrets,
            egress=self.config.egress,
            runtime=self.config.runtime,
            source_file=new.source_file,
            state_dir=self.config.state_dir,
            warnings=new.warnings,
            managed_identity=self.config.managed_identity,
        )
        providers = Providers(
            applied, on_attempt=self.metrics.observe_acquisition, reuse=self.providers, fleet=self.fleet
        )
        routing = build_routing(applied, providers, self.pools, previous=self.routing)
        old = self.providers
        self._proxy.routing = self.routing = routing
        self.pools.retire_unused(routing.pools())
        self.providers = providers
        self.config = applied
        await providers.close_unused(old)
        kept = set(map(id, old.all()))
        for provider in providers.all():
            # A reload is what an operator does after fixing a refusal (a secret, a consent): ask
            # again now — also past the fleet's shared wait, which the reload may have outdated.
            if id(provider) in kept:
                provider.reset_backoff("reload")
            else:
                provider.lift_shared_failures()
            provider.warm_up()
        return not_applied

    # -- readiness -----------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        routes: dict[str, Any] = {}
        all_ready = self.ready
        for name, upstream in self.routing.upstreams.items():
            status = upstream.provider.status()
            entry: dict[str, Any] = {"ready": status.has_token, "credential": upstream.route.settings.credential}
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

    @property
    def config_file(self) -> str:
        return self.config.source_file

    async def route_reports(self, *, probe: bool) -> list[RouteReport]:
        """The doctor's report of this daemon (its own tokens; with ``probe``, one request per route)."""
        return await doctor.live_reports(self.config, self.routing, probe=probe)

    def _token_expiry(self) -> list[tuple[str, str, float | None]]:
        return [
            (name, up.route.settings.credential, up.provider.status().expires_in_s)
            for name, up in self.routing.upstreams.items()
        ]

    async def wait_ready(self, within_s: float) -> bool:
        """Wait until every route has a token (used by `demo`, `check --acquire` and tests)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.readiness()[0]:
                return True
            await asyncio.sleep(0.05)
        return self.readiness()[0]
