"""The one exception tree of bearerd, and its rendering as RFC 9457 problem+json.

Every failure a caller can see is a ``ProxyError``; foreign errors (client-library errors,
MSAL error dicts, ``requests`` exceptions) are translated into one of these at exactly one
boundary each (``proxy/upstream.py`` for the upstream, ``tokens/identity.py`` and
``tokens/provider.py`` for the identity provider), with ``raise ... from exc`` so the operator's
log keeps the cause while the caller sees none of it. The route a failed request was for is
added once, when the problem is rendered (``body(route)``)::

    BearerdError
    ├── ConfigError                   config file/env invalid: refuse to start
    └── ProxyError                    rendered to the caller as problem+json
        ├── BadRequest          400   malformed request or target, path escape, forbidden header
        ├── ClientAuthRejected  401   client sent Authorization on a `reject` route
        ├── ClientKeyRequired   401/407 the listener requires the shared client key
        ├── Forbidden           403   absolute-form request for a host that is no route
        ├── CorsOriginRefused   403   browser Origin not in the route's cors_origins
        ├── NotAssigned         403   App Proxy's own page: the user/app is not assigned to the app
        ├── CaNameNotPermitted  403   CONNECT to a route's host the local CA's name constraints don't cover
        ├── NoRoute             404   no route matches
        ├── MethodNotAllowed    405   CONNECT without intercept_https/tunnel_hosts (or inside a tunnel)
        ├── HeadersTooLarge     431   request line, a header or the whole header block over the limits
        ├── NotImplementedCoding 501  a transfer coding bearerd doesn't implement (RFC 9112 §6.1)
        ├── UpstreamUnreachable 502   connect refused/reset, TLS failure, bad response
        ├── TokenRejected       502   the upstream refused a fresh token
        ├── AppProxyBackend     502   App Proxy's own page: its connector can't reach the backend (or no connector)
        ├── TokenUnavailable    503   no usable token (identity provider failing)
        │   └── LoginRequired   503   a user credential has no signed-in user: run `bearerd login`
        ├── UpstreamBusy        503   every pooled upstream connection stayed busy (has Retry-After)
        ├── UpstreamTimeout     504   upstream too slow
        └── AppProxyTimeout     504   App Proxy's own page: the app's backend timeout (85 s / 180 s) expired

The ``type`` URIs are stable: clients and alerting may key on them, so never rename one.
Messages (``detail``) are written for the person at the terminal and never carry a token,
a secret or the query string of the request.
"""

from __future__ import annotations

import json
from typing import ClassVar

PROBLEM_TYPE_BASE = "urn:bearerd:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# Exit statuses of every command: success, a runtime failure, an invalid configuration or usage.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def first_line(value: object, limit: int = 240) -> str:
    """The first line of a message from elsewhere (an exception, an identity provider's
    description), cut to ``limit``: enough to say what happened, never a multi-line dump."""
    text = str(value).strip()
    return (text.splitlines() or [""])[0][:limit]


class BearerdError(Exception):
    """Base of everything bearerd raises on purpose."""


class ConfigError(BearerdError):
    """The configuration can't be used; ``str()`` names file, location, field and the fix."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        lines = [f"invalid configuration in {file}:"] + [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class ProxyError(BearerdError):
    """A failure the caller sees as a problem+json response."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after

    @property
    def type_uri(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug

    def headers(self) -> dict[str, str]:
        """Extra response headers; Retry-After is whole seconds, at least 1 (RFC 9110 §10.2.3)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, int(self.retry_after + 0.999)))}

    def body(self, route: str | None = None) -> bytes:
        """The problem+json document; ``route`` names the route the request was for, when known."""
        problem: dict[str, object] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if route is not None:
            problem["route"] = route
        return json.dumps(problem).encode()


class BadRequest(ProxyError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class ClientAuthRejected(ProxyError):
    status = 401
    slug = "client-authorization-rejected"
    title = "Client Authorization header not allowed on this route"


class ClientKeyRequired(ProxyError):
    """The listener requires a shared client key and the request had none, or a wrong one."""

    status = 401
    slug = "client-key-required"
    title = "Client key required"

    def __init__(self, detail: str, *, proxy_auth: bool) -> None:
        super().__init__(detail)
        self.proxy_auth = proxy_auth
        if proxy_auth:
            self.status = 407  # type: ignore[misc]

    def headers(self) -> dict[str, str]:
        if self.proxy_auth:
            return {"Proxy-Authenticate": 'Basic realm="bearerd", charset="UTF-8"'}
        return {}


class Forbidden(ProxyError):
    status = 403
    slug = "not-a-route"
    title = "Host is not a configured route"


class CorsOriginRefused(ProxyError):
    status = 403
    slug = "cors-origin-not-allowed"
    title = "Origin not allowed"


class NotAssigned(ProxyError):
    """App Proxy's "This corporate app can't be accessed" 403: the caller isn't assigned to the app."""

    status = 403
    slug = "not-assigned"
    title = "Not assigned to the App Proxy app"


class CaNameNotPermitted(ProxyError):
    """A CONNECT to a route's upstream host that bearerd's local CA may not sign for (its name constraints
    predate the route): ``bearerd ca rotate``."""

    status = 403
    slug = "local-ca-not-permitted"
    title = "bearerd's local CA may not sign for this host"


class NoRoute(ProxyError):
    status = 404
    slug = "no-route"
    title = "No route matches this request"


class MethodNotAllowed(ProxyError):
    status = 405
    slug = "connect-not-supported"
    title = "CONNECT is not supported"


class HeadersTooLarge(ProxyError):
    status = 431
    slug = "headers-too-large"
    title = "Request header fields too large"


class NotImplementedCoding(ProxyError):
    status = 501
    slug = "transfer-coding-not-implemented"
    title = "Transfer coding not implemented"


class UpstreamUnreachable(ProxyError):
    status = 502
    slug = "upstream-unreachable"
    title = "Upstream unreachable"


class TokenRejected(ProxyError):
    status = 502
    slug = "token-rejected"
    title = "The upstream refused the access token"


class AppProxyBackend(ProxyError):
    """App Proxy's own 502/504 page: its connector can't reach the backend, or it has no connector."""

    status = 502
    slug = "app-proxy-backend"
    title = "App Proxy could not reach the app's backend"


class TokenUnavailable(ProxyError):
    status = 503
    slug = "token-unavailable"
    title = "No access token available"


class LoginRequired(TokenUnavailable):
    slug = "login-required"
    title = "A user must sign in"


class UpstreamBusy(ProxyError):
    status = 503
    slug = "upstream-busy"
    title = "Upstream connections busy"


class UpstreamTimeout(ProxyError):
    status = 504
    slug = "upstream-timeout"
    title = "Upstream timed out"


class AppProxyTimeout(ProxyError):
    """App Proxy's own 504 page: the backend didn't answer within the app's backend timeout."""

    status = 504
    slug = "app-proxy-timeout"
    title = "App Proxy's backend timeout expired"
