"""What request handling reads, built from a configuration and swapped as one object on reload.

A request reads ``Routing`` once and uses that snapshot to the end of its response, so it sees
the old configuration or the new one, never a mix. Each route's runtime companions — its token
provider, upstream pool, header rules, timeouts, cookie jar, CORS policy — are computed once per
configuration, not per request. A route whose token provider survives a reload (same credential,
same scopes) and whose upstream is unchanged keeps its App Proxy cookie jar too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bearerd.config.loader import Config
from bearerd.h1 import PoolOptions, UpstreamPool
from bearerd.proxy.cookies import AppProxyJar
from bearerd.proxy.cors import CorsPolicy
from bearerd.proxy.headers import UpstreamRules
from bearerd.proxy.pools import Pools
from bearerd.proxy.retry import sign_in_hosts
from bearerd.proxy.routes import Route, RouteTable
from bearerd.tokens.provider import TokenProvider
from bearerd.tokens.registry import Providers

SHARED_LISTENER = "shared"


@dataclass(frozen=True, slots=True)
class Upstream:
    """A route with its runtime companions."""

    route: Route
    provider: TokenProvider
    pool: UpstreamPool
    read_timeout_s: float
    sign_in_hosts: frozenset[str]
    headers: UpstreamRules
    replay_max_bytes: int
    access_log: str
    access_log_sample: float
    jar: AppProxyJar
    cors: CorsPolicy


@dataclass(frozen=True, slots=True)
class Routing:
    tables: dict[str, RouteTable]  # listener key -> its routes
    upstreams: dict[str, Upstream]  # route name -> runtime values

    def pools(self) -> Iterable[UpstreamPool]:
        return (u.pool for u in self.upstreams.values())


def build_routing(config: Config, providers: Providers, pools: Pools, previous: Routing | None = None) -> Routing:
    routes = {name: Route.build(name, rs) for name, rs in config.settings.routes.items()}
    tables = {SHARED_LISTENER: RouteTable(r for r in routes.values() if r.settings.match.listen is None)}
    for route in routes.values():
        if route.settings.match.listen is not None:
            tables[route.name] = RouteTable([route])
    auth = config.settings.server.client_auth
    own = [auth.header.lower()] if auth is not None else []
    upstreams = {name: _upstream(config, providers, pools, route, own, previous) for name, route in routes.items()}
    return Routing(tables=tables, upstreams=upstreams)


def _upstream(
    config: Config, providers: Providers, pools: Pools, route: Route, own: list[str], previous: Routing | None
) -> Upstream:
    rs = route.settings
    provider = providers.for_route(route.name)
    client = providers.client(rs.credential)
    cred = client.credential
    https = route.upstream_origin.startswith("https://")
    options = PoolOptions(
        max_connections=rs.pool_max_connections,
        acquire_timeout_s=rs.pool_wait_s,
        connect_timeout_s=rs.connect_timeout_s,
    )
    pool = pools.get(
        route.upstream_origin,
        client.ssl_context if https else None,
        config.egress.proxy_for(route.upstream_origin + "/"),
        options,
    )
    before = previous.upstreams.get(route.name) if previous is not None else None
    same_identity = before is not None and before.provider is provider and before.route.settings.upstream == rs.upstream
    return Upstream(
        route=route,
        provider=provider,
        pool=pool,
        read_timeout_s=rs.timeout_s,
        sign_in_hosts=sign_in_hosts(getattr(cred, "authority_url", None)),
        headers=UpstreamRules.of(
            route.upstream_host,
            rs.client_authorization,
            own,
            add=((h.name, h.value.get_secret_value()) for h in config.secrets.headers_for(route.name)),
            remove=rs.remove_headers,
        ),
        replay_max_bytes=rs.replay_max_bytes,
        access_log=rs.access_log,
        access_log_sample=rs.access_log_sample,
        jar=before.jar if before is not None and same_identity else AppProxyJar(),
        cors=CorsPolicy.of(rs.cors_origins, rs.cors_max_age_s),
    )
