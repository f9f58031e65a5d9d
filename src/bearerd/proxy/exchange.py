"""The typed record of one proxied request, filled in as it travels and read once at the end.

Every stage of the request path writes what it learnt here (route, how the token was found,
whether it was retried, bytes, upstream latency, the problem if any); after the response has
left, metrics and the access line read it. Nothing that steers the request lives here —
this is what happened, not what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


# In the order they appear in the access line, after method and via.
_OPTIONAL_FIELDS = (
    "path", "route", "auth", "websocket", "retried", "upstream_ms", "bytes_in", "bytes_out",
    "problem", "detail", "client_closed", "upstream_error",
)  # fmt: skip
