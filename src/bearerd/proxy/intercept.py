"""CONNECT, for tools whose https URL is fixed and which only take a proxy setting (``HTTPS_PROXY``).

What a ``CONNECT host:port`` gets, decided here and nowhere else::

    a route's https upstream     (intercept_https)  200, then TLS with the local CA's certificate for
                                                     exactly that host (a client SNI naming another
                                                     host is refused), then every request inside is
                                                     handled as one of that route's — token, refusal
                                                     retry, cookies, streaming, WebSockets — with
                                                     its path unchanged, ``via=connect``
    a ``tunnel_hosts`` pattern                       connect (through the egress proxy when one is
                                                     set for the host), 200, bytes relayed, no token;
                                                     one access line per tunnel (destination, bytes,
                                                     duration), ``via=tunnel``
    anything else                                    403, and no outbound connection at all

A request inside an intercepted tunnel must name the tunnel's host in ``Host``: anything else is
refused, never forwarded elsewhere. Which route a request inside belongs to is looked up again
for each request in the current routing, so a reload applies inside open tunnels too.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from bearerd.config.environment import Egress
from bearerd.config.schema import ServerSettings
from bearerd.errors import BadRequest, CaNameNotPermitted, Forbidden, UpstreamUnreachable
from bearerd.h1 import (
    ClientTLSError,
    EgressProxy,
    Request,
    Responder,
    Tunnel,
    open_tunnel,
    relay,
    serve_tunnel_tls,
)
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.routes import Route, RouteTable, split_target
from bearerd.proxy.upstream import upstream_errors

if TYPE_CHECKING:  # cryptography loads only when the local CA is used
    from bearerd.proxy.localca import LocalCA

log = structlog.get_logger("bearerd.intercept")
Handler = Callable[[Request, Responder], Awaitable[None]]

TUNNEL_CONNECT_TIMEOUT_S = 10.0
# A blind tunnel nobody sends a byte through for this long is closed (both sides).
TUNNEL_IDLE_TIMEOUT_S = 3600.0
# Leaf certificates live 90 days (localca.LEAF_LIFETIME); a long-running daemon mints new ones well before.
REMINT_AFTER_S = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ConnectTarget:
    """A CONNECT's authority-form target: host (lower-case, IPv6 without brackets) and port."""

    host: str
    port: int

    @classmethod
    def parse(cls, target: str) -> ConnectTarget:
        host, port = _host_port(target)
        if port is None or not host:
            raise BadRequest("a CONNECT target is host:port, e.g. CONNECT secretapi-contoso.msappproxy.net:443")
        return cls(host, port)

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def is_named_by(self, host_header: str | None) -> bool:
        """Whether a request's ``Host`` names this target (the port may be left out for 443)."""
        if not host_header:
            return False
        try:
            host, port = _host_port(host_header)
        except BadRequest:
            return False
        return host == self.host and (port or 443) == self.port


def _host_port(value: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` / ``[v6][:port]``; BadRequest for anything else (userinfo, paths, bad ports)."""
    port_text: str | None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadRequest("invalid IPv6 address in the authority") from None
        if not bracket or (rest and not rest.startswith(":")):
            raise BadRequest("invalid authority")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = value.partition(":")
        port_text = port_text if sep else None
        if not host or any(not (c.isalnum() or c in "-.") for c in host) or not host.isascii():
            raise BadRequest("invalid host in the authority")
    if port_text is None:
        return host.lower().rstrip("."), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadRequest("invalid port in the authority")
    return host.lower().rstrip("."), int(port_text)


def tunnel_allowed(patterns: Iterable[str], target: ConnectTarget) -> bool:
    """``tunnel_hosts``: ``host``, ``*.domain`` (its subdomains, not the domain itself), optional ``:port``
    (443 when left out)."""
    for pattern in patterns:
        host, port = _pattern(pattern)
        if (port or 443) != target.port:
            continue
        if host.startswith("*."):
            if target.host.endswith(host[1:]):
                return True
        elif host == target.host:
            return True
    return False


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> tuple[str, int | None]:
    """A ``tunnel_hosts`` entry (validated by the schema) as (host pattern, port or None)."""
    if pattern.startswith("["):
        return _host_port(pattern)
    host, sep, port = pattern.partition(":")
    return host.lower(), int(port) if sep else None


@functools.lru_cache(maxsize=256)
def _https_origin(origin: str) -> tuple[str, int] | None:
    """("host", port) of an ``https://host[:port]`` upstream origin; None for http:// upstreams."""
    if not origin.startswith("https://"):
        return None
    host, port = _host_port(origin[len("https://") :])
    return host, port or 443


def upstream_route(routes: Iterable[Route], target: ConnectTarget, path: str | None = None) -> Route | None:
    """The route whose https upstream is ``target``; when several share it, the one whose upstream path
    is the longest prefix of ``path`` (each has its own credential), else the first."""
    found: list[Route] = [r for r in routes if _https_origin(r.upstream_origin) == (target.host, target.port)]
    if len(found) <= 1 or path is None:
        return found[0] if found else None
    for route in sorted(found, key=lambda r: len(r.upstream_base), reverse=True):
        base = route.upstream_base
        if not base or path == base or path.startswith(base + "/"):
            return route
    return found[0]


def route_inside(table: RouteTable | None, target: ConnectTarget, request: Request) -> tuple[Route, str, str]:
    """The route, path and query of a request inside an intercepted tunnel, or the refusal."""
    if not request.target.startswith("/"):
        raise BadRequest("inside a CONNECT tunnel, requests use origin-form targets (GET /path HTTP/1.1)")
    if not target.is_named_by(request.get("host")):
        raise Forbidden(
            f"this tunnel is for {target.authority}; a request inside it can't name another host "
            "(bearerd forwards it nowhere else)"
        )
    path, query = split_target(request.target)
    route = upstream_route(table.routes(), target, path) if table is not None else None
    if route is None:
        raise Forbidden(f"{target.authority} is no longer a configured route's upstream (the config was reloaded)")
    return route, path, query


def _sni_must_name(host: str) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    """Refuse a handshake whose SNI names another host than the CONNECT's. No SNI is accepted: clients
    send none for IP addresses (RFC 6066) and some (Java) for dotless names, and the certificate they get
    is still only valid for the CONNECT's host."""

    def check(_: ssl.SSLObject, server_name: str | None, __: ssl.SSLContext) -> int | None:
        if server_name is not None and server_name.lower().rstrip(".") != host:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    return check


class Interceptor:
    """Answers CONNECT for the listeners of one daemon (``[server] intercept_https`` / ``tunnel_hosts``)."""

    def __init__(self, server: ServerSettings, egress: Egress, ca: LocalCA | None) -> None:
        if server.intercept_https and ca is None:
            raise ValueError("intercept_https needs the local CA")
        self.intercept = server.intercept_https
        self.tunnel_hosts = tuple(server.tunnel_hosts)
        self._egress = egress
        self._ca = ca
        self._contexts: dict[str, tuple[ssl.SSLContext, float]] = {}

    async def connect(
        self,
        request: Request,
        responder: Responder,
        table: RouteTable | None,
        exchange: Exchange,
        inside: Callable[[ConnectTarget], Handler],
    ) -> None:
        target = ConnectTarget.parse(request.target)
        exchange.path = target.authority
        route = upstream_route(table.routes(), target) if self.intercept and table is not None else None
        if route is not None:
            exchange.via, exchange.route = "connect", route.name
            context = await self._context(target)
            await responder.takeover(200, "Connection established")
            try:
                await serve_tunnel_tls(request, inside(target), context)
            except ClientTLSError as exc:
                exchange.detail = f"TLS handshake with the client failed: {exc.reason}"
                log.warning("intercept.handshake_failed", target=target.authority, route=route.name,
                            reason=exc.reason, hint=_hint(exc.reason))  # fmt: skip
            return
        if tunnel_allowed(self.tunnel_hosts, target):
            exchange.via = "tunnel"
            upstream = await self._open(target)
            try:
                client = await responder.takeover(200, "Connection established")
            except BaseException:
                upstream.abort()
                raise
            exchange.bytes_in, exchange.bytes_out = await relay(client, upstream, idle_timeout_s=TUNNEL_IDLE_TIMEOUT_S)
            return
        hint = "" if self.intercept else "; intercept_https = true in [server] serves the routes' upstream hosts"
        raise Forbidden(
            f"CONNECT to {target.authority} refused: bearerd serves only its routes' upstream hosts "
            f"(`bearerd routes`) and the [server] tunnel_hosts{hint}"
        )

    async def _context(self, target: ConnectTarget) -> ssl.SSLContext:
        """The TLS context with a certificate for exactly this host, minted once (and again before it expires)."""
        cached = self._contexts.get(target.host)
        now = time.time()
        if cached is not None and cached[1] > now:
            return cached[0]
        from bearerd.proxy.localca import NameNotPermitted

        assert self._ca is not None  # noqa: S101 - checked in __init__
        try:
            context = await asyncio.to_thread(self._ca.context, (target.host,))
        except NameNotPermitted:
            log.warning("local_ca.name_not_permitted", host=target.host, fix="bearerd ca rotate -c FILE, then restart")
            raise CaNameNotPermitted(
                f"bearerd's local CA may not sign for {target.host}: its name constraints predate this route. Run "
                "`bearerd ca rotate -c FILE`, restart bearerd and trust the new CA (`bearerd ca export`)"
            ) from None
        context.sni_callback = _sni_must_name(target.host)
        self._contexts[target.host] = (context, now + REMINT_AFTER_S)
        return context

    async def _open(self, target: ConnectTarget) -> Tunnel:
        proxy_url = self._egress.proxy_for(f"https://{target.authority}/")
        try:
            proxy = EgressProxy.parse(proxy_url) if proxy_url is not None else None
        except ValueError as exc:
            raise UpstreamUnreachable(f"the egress proxy for {target.authority} can't be used: {exc}") from None
        with upstream_errors(TUNNEL_CONNECT_TIMEOUT_S):
            return await open_tunnel(target.host, target.port, proxy=proxy, timeout_s=TUNNEL_CONNECT_TIMEOUT_S)


def _hint(reason: str) -> str:
    upper = reason.upper()
    if "UNRECOGNIZED_NAME" in upper or "CALLBACK" in upper:
        return "the client's TLS server name (SNI) named another host than its CONNECT"
    if "UNKNOWN_CA" in upper or "BAD_CERTIFICATE" in upper or "CERTIFICATE_UNKNOWN" in upper or "trust" in reason:
        return "the client doesn't trust bearerd's local CA: `bearerd ca export -c FILE` (README: Pointing your tool)"
    return "see the client's own error"
