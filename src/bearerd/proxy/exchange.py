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
Via = Literal["route", "forward_proxy"]


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
        if self.path is not None:
            fields["path"] = self.path
        if self.route is not None:
            fields["route"] = self.route
        if self.auth is not None:
            fields["auth"] = self.auth
        if self.websocket:
            fields["websocket"] = True
        if self.retried is not None:
            fields["retried"] = self.retried
        if self.upstream_ms is not None:
            fields["upstream_ms"] = self.upstream_ms
        if self.bytes_in:
            fields["bytes_in"] = self.bytes_in
        if self.bytes_out:
            fields["bytes_out"] = self.bytes_out
        if self.problem is not None:
            fields["problem"] = self.problem
        if self.detail is not None:
            fields["detail"] = self.detail
        if self.client_closed:
            fields["client_closed"] = True
        if self.upstream_error is not None:
            fields["upstream_error"] = self.upstream_error
        fields["status"] = self.status
        fields["duration_ms"] = duration_ms
        return fields
