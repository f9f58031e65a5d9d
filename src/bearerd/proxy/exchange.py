"""The typed record of one proxied request, filled in as it travels and read once at the end.

Every stage of the request path writes what it learnt here (route, how the token was found,
whether it was retried, bytes, upstream latency, the problem if any); after the response has
left, metrics and the access line read it. Nothing that steers the request lives here —
this is what happened, not what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bearerd.logs import render_value

TokenUse = Literal["memory", "refresh", "client"]
RetryKind = Literal["refused", "claims"]
# route: a local entry point; forward_proxy: http_proxy absolute form; connect: an intercepted CONNECT (and each
# request inside it); tunnel: a blind tunnel (tunnel_hosts).
Via = Literal["route", "forward_proxy", "connect", "tunnel"]


@dataclass(slots=True)
class Exchange:
    method: str
    started: float  # perf_counter at the first byte of handling
    path: str | None = None
    route: str | None = None
    via: Via = "route"
    auth: TokenUse | None = None  # where the token came from: held in memory, refreshed now, or the client's own
    websocket: bool = False
    retried: RetryKind | None = None  # sent again with a new token after a refusal or a claims challenge
    upstream_ms: float | None = None  # until the upstream's response headers
    bytes_in: int = 0
    bytes_out: int = 0
    status: int = 0
    problem: str | None = None  # the problem type's slug when bearerd answered with one
    detail: str | None = None  # the problem's detail, for 5xx (the operator needs the reason)
    client_closed: bool = False
    upstream_error: str | None = None  # the upstream failed after the response had started

    def access_fields(self, duration_ms: float) -> dict[str, object]:
        """The access line's fields: always the same keys first, optional ones only when set."""
        fields: dict[str, object] = {"method": self.method}
        if self.via != "route":
            fields["via"] = self.via
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value:  # None, 0, False: nothing happened, nothing to say
                fields[name] = value
        fields["status"] = self.status
        fields["duration_ms"] = duration_ms
        return fields

    def access_json(self, duration_ms: float) -> str:
        """The same fields as ``access_fields``, rendered as JSON object members, for the hot path:
        bearerd's own names (route, auth, problem…) come from a cache of rendered fragments, and
        only what a client chose (the path, an odd method) is scrubbed and escaped each time."""
        parts = [
            _fragment("method", self.method) if self.method in _METHODS else '"method": ' + render_value(self.method)
        ]
        if self.via != "route":
            parts.append(_fragment("via", self.via))
        if self.path is not None:
            parts.append('"path": ' + render_value(self.path))
        if self.route is not None:
            parts.append(_fragment("route", self.route))
        if self.auth is not None:
            parts.append(_fragment("auth", self.auth))
        if self.websocket:
            parts.append('"websocket": true')
        if self.retried is not None:
            parts.append(_fragment("retried", self.retried))
        if self.upstream_ms is not None:
            parts.append(f'"upstream_ms": {self.upstream_ms!r}')
        if self.bytes_in:
            parts.append(f'"bytes_in": {self.bytes_in}')
        if self.bytes_out:
            parts.append(f'"bytes_out": {self.bytes_out}')
        if self.problem is not None:
            parts.append(_fragment("problem", self.problem))
        if self.detail is not None:
            parts.append('"detail": ' + render_value(self.detail))
        if self.client_closed:
            parts.append('"client_closed": true')
        if self.upstream_error is not None:
            parts.append(_fragment("upstream_error", self.upstream_error))
        parts.append(f'"status": {self.status}, "duration_ms": {duration_ms!r}')
        return ", ".join(parts)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
# Rendered '"key": "value"' members for bearerd's own values: a bounded set (routes, slugs, literals).
_FRAGMENTS: dict[tuple[str, str], str] = {}


def _fragment(key: str, value: str) -> str:
    fragment = _FRAGMENTS.get((key, value))
    if fragment is None:
        fragment = f'"{key}": {render_value(value)}'
        if len(_FRAGMENTS) < 4096:
            _FRAGMENTS[(key, value)] = fragment
    return fragment


# In the order they appear in the access line, after method and via.
_OPTIONAL_FIELDS = (
    "path", "route", "auth", "websocket", "retried", "upstream_ms", "bytes_in", "bytes_out",
    "problem", "detail", "client_closed", "upstream_error",
)  # fmt: skip
