"""Match a request to a route and build its upstream URL without ever leaving the route.

Pure code, no sockets: everything here is computed from the request target and the Host
header. Per-route values (origin, base path, prefix) are computed once when the table is
built so the per-request work is a dict lookup, a short prefix loop and string slicing.

The request target is forwarded byte for byte (``%2F`` stays ``%2F``, the query is untouched);
safety comes from *refusing* targets that could mean something else to the upstream — dot
segments (also percent-encoded), empty segments, backslashes, control characters — never from
rewriting them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from bearerd.config.schema import RouteSettings, Settings
from bearerd.errors import BadRequest

MAX_TARGET_LENGTH = 8190
# Anything but printable ASCII, and backslash and '#' (never sent by a client that means a path).
_FORBIDDEN_CHAR = re.compile(r"[^\x21-\x7e]|[\\#]")
_FORBIDDEN_DECODED = re.compile(rb"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True, slots=True)
class Route:
    """A route with everything the request path needs precomputed."""

    name: str
    settings: RouteSettings
    upstream_origin: str  # "https://host[:port]", no trailing slash
    upstream_base: str  # upstream path without trailing slash ("" for the root)
    upstream_root: str  # the upstream path for the route's own root ("/" or "/base/")
    upstream_host: str  # value for the Host header
    local_prefix: str | None  # "/secretapi" for path routes (no trailing slash), else None

    @classmethod
    def build(cls, name: str, settings: RouteSettings) -> Route:
        url = urlsplit(settings.upstream)
        scheme = url.scheme.lower()
        host = (url.hostname or "").lower()
        default_port = 443 if scheme == "https" else 80
        netloc = f"[{host}]" if ":" in host else host
        if url.port is not None and url.port != default_port:
            netloc = f"{netloc}:{url.port}"
        base = url.path.rstrip("/")
        root = url.path if url.path.endswith("/") else (url.path + "/" if url.path else "/")
        prefix = settings.match.path_prefix
        return cls(
            name=name,
            settings=settings,
            upstream_origin=f"{scheme}://{netloc}",
            upstream_base=base,
            upstream_root=root,
            upstream_host=netloc,
            local_prefix=prefix.rstrip("/") if prefix is not None else None,
        )

    def upstream_target(self, path: str, query: str) -> str:
        """The upstream request target (already percent-encoded) for a checked local path and raw query."""
        rest = path[len(self.local_prefix) :] if self.local_prefix is not None else path
        return (self.upstream_base + rest if rest else self.upstream_root) + query

    def local_location(self, location: str, local_origin: str) -> str:
        """Map an upstream ``Location`` back to the local entry point so the client stays on bearerd.

        Locations elsewhere are returned unchanged: the daemon never follows them, and a client that
        does follow one gets no token from us.
        """
        local_base = self.local_prefix or ""
        if location.startswith("/") and not location.startswith("//"):
            rest = self._strip_base(location)
            return location if rest is None else local_base + rest
        n = len(self.upstream_origin)
        if location[:n].lower() == self.upstream_origin and location[n : n + 1] in ("", "/", "?"):
            rest = self._strip_base(location[n:] or "/")
            if rest is not None:
                return local_origin + local_base + rest
        return location

    def forward_location(self, location: str, authority: str) -> str:
        """For forward-proxy clients: the upstream's https URLs become the http URLs they asked for."""
        n = len(self.upstream_origin)
        if location[:n].lower() == self.upstream_origin and location[n : n + 1] in ("", "/", "?"):
            return f"http://{authority}{location[n:] or '/'}"
        return location

    def _strip_base(self, path: str) -> str | None:
        if not self.upstream_base:
            return path
        if path == self.upstream_base or path.startswith(self.upstream_base + "/"):
            return path[len(self.upstream_base) :] or "/"
        if path.startswith(self.upstream_base + "?"):
            return "/" + path[len(self.upstream_base) :]
        return None


def split_target(target: str) -> tuple[str, str]:
    """Check an origin-form request target; return (path, "?query" or "").

    Raises ``BadRequest`` for anything that could resolve to a different path upstream than
    the one we matched, or that a server might split into two requests. On the hot path: the
    common target (plain ASCII, no escapes, no dots) is checked with two regex scans.
    """
    if len(target) > MAX_TARGET_LENGTH:
        raise BadRequest("the request target is longer than 8190 characters")
    path, sep, query = target.partition("?")
    if not path.startswith("/"):
        raise BadRequest("the request target must be an absolute path such as /secretapi/status")
    if _FORBIDDEN_CHAR.search(target):
        raise BadRequest("the request target holds a control character, space, backslash, '#' or non-ASCII byte")
    decoded = path.encode("ascii")
    if "%" in path:
        try:
            decoded = unquote_to_bytes(path)
        except ValueError:  # pragma: no cover - unquote_to_bytes leaves bad escapes alone
            raise BadRequest("the path holds an invalid percent-escape") from None
        if _FORBIDDEN_DECODED.search(decoded):
            raise BadRequest("the path holds an encoded control character or backslash")
    if b"//" in decoded:
        raise BadRequest("the path holds '//', '.' or '..' segments (also percent-encoded); send a normalised path")
    if b"." in decoded:
        segments = decoded.split(b"/")
        # segments[0] is the empty string before the leading slash; a trailing slash gives one more "".
        if any(seg in (b".", b"..") for seg in segments):
            raise BadRequest("the path holds '.' or '..' segments (also percent-encoded); send a normalised path")
    return path, (sep + query)


def split_absolute(target: str) -> tuple[str, str, str]:
    """Check an absolute-form target (``http://host[:port]/path?query``); return (authority, path, query)."""
    if not target.lower().startswith("http://"):
        raise BadRequest("only http:// absolute-form requests are served (an https client uses bearerd's URL instead)")
    rest = target[len("http://") :]
    authority, slash, remainder = rest.partition("/")
    if not authority or "@" in authority or any(c in authority for c in "\\ ?#"):
        raise BadRequest("the request target has an invalid authority")
    path, query = split_target("/" + remainder if slash else "/")
    return authority.lower(), path, query


class RouteTable:
    """Routes of one listener, matched host first, then the longest path prefix."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._host_port: dict[str, Route] = {}
        self._host_any_port: dict[str, Route] = {}
        prefixed: list[Route] = []
        self.only: Route | None = None
        for route in routes:
            match = route.settings.match
            if match.listen is not None:
                self.only = route
            elif match.host is not None:
                host = match.host.lower()
                if _has_port(host):
                    self._host_port[host] = route
                else:
                    self._host_any_port[host] = route
            else:
                prefixed.append(route)
        # Most specific first, so matching is a plain first-match loop.
        self._prefixed = sorted(prefixed, key=lambda r: len(r.local_prefix or ""), reverse=True)

    def by_upstream_authority(self, authority: str) -> Route | None:
        """The route whose upstream is this host (forward-proxy use); ``host`` or ``host:80`` match too."""
        bare = authority.removesuffix(":80")
        for route in self.routes():
            if route.upstream_host in (authority, bare):
                return route
        return None

    def routes(self) -> list[Route]:
        every = [self.only] if self.only is not None else []
        return every + list(self._host_port.values()) + list(self._host_any_port.values()) + self._prefixed

    def match(self, host: str | None, path: str) -> Route | None:
        if self.only is not None:
            return self.only
        if host and (self._host_port or self._host_any_port):
            key = host.lower()
            route = self._host_port.get(key)
            if route is None:
                route = self._host_any_port.get(_strip_port(key))
            if route is not None:
                return route
        for route in self._prefixed:
            prefix = route.local_prefix or ""
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return route
        return None


def _has_port(host: str) -> bool:
    if host.startswith("["):
        return "]:" in host
    return host.count(":") == 1


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def describe_entry(settings: Settings, route: str) -> str:
    """How a client reaches a route, for banners and tables."""
    match = settings.routes[route].match
    if match.path_prefix is not None:
        return f"{', '.join(settings.server.listen)} {match.path_prefix}"
    if match.host is not None:
        return f"Host: {match.host}"
    return f"{match.listen} (own port)"
