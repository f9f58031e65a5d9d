"""The HTTP client MSAL uses: our trust, our proxy, our timeouts, our retries — and the Retry-After it saw.

``requests`` lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` silently replace a session's CA file,
and MSAL's own timeout and retry adapter don't apply to a custom session (MSAL-NOTES.md). This
session fixes all three from the settings, and it remembers the identity provider's
``Retry-After`` for the acquisition running in the calling thread, because MSAL's results and
exceptions don't carry it.

**Stale connections.** The identity provider closes pooled connections it finds idle (Entra's
front ends after seconds); a request sent as that close crosses it on the wire fails with
``SSLEOFError`` or a reset. During ``bearerd login`` that lost the user's approval: the final
poll failed after the user had signed in. A call that is safe to send twice is retried, at once,
on a new connection, when — and only when — the server closed the connection before answering:
reads (discovery, JWKS, managed identity's GET endpoints), starting a device-code sign-in, and
token requests that spend nothing (the device-code poll, client credentials). A refresh-token
or authorization-code redemption is never resent: it may have been spent. Refused connections,
timeouts and certificate failures are not retried here: the token provider backs off on its own.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ProtocolError, SSLError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from bearerd.config.environment import Egress


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """System trust plus the configured CA file: ``ca_file`` adds trust, it doesn't replace it."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (delay-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# How often a safe call is resent after the server closed the connection under it.
STALE_CONNECTION_RETRIES = 2
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Token requests that spend nothing: asking again only mints another token (or says "pending").
_REPEATABLE_GRANTS = frozenset({"urn:ietf:params:oauth:grant-type:device_code", "client_credentials"})
_CLOSED_BY_PEER = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.RemoteDisconnected)
_SSL_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


def repeatable(method: str, url: str, body: object) -> bool:
    """Whether sending this request twice does no harm (see the module docstring)."""
    method = method.upper()
    if method in _SAFE_METHODS:
        return True
    if method != "POST":
        return False
    if urlsplit(url).path.endswith("/devicecode"):
        return True  # a second code replaces a first nobody has seen
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body if isinstance(body, str) else ""
    return bool(set(parse_qs(text).get("grant_type", [])) & _REPEATABLE_GRANTS)


def closed_by_peer(error: Exception | None) -> bool:
    """Whether urllib3's ``error`` means the server closed the connection before answering."""
    if isinstance(error, ProtocolError) and len(error.args) > 1:
        return isinstance(error.args[1], _CLOSED_BY_PEER)
    if isinstance(error, SSLError) and error.args:
        return isinstance(error.args[0], _SSL_CLOSED)
    return False


class StaleConnectionRetry(Retry):
    """A ``Retry`` that resends only when the server closed the connection before answering."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> StaleConnectionRetry:
        if error is not None and not closed_by_peer(error):
            # Refused, timed out, certificate: raised exactly as without retries.
            _NO_RETRY.increment(method, url, response, error, _pool, _stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


# What requests' adapter uses when told ``max_retries=0``: the first error is raised.
_NO_RETRY = Retry(0, read=False)


_STALE_RETRY = StaleConnectionRetry(
    total=STALE_CONNECTION_RETRIES,
    connect=0,
    read=STALE_CONNECTION_RETRIES,
    other=STALE_CONNECTION_RETRIES,
    status=0,
    allowed_methods=None,  # only ever used for calls ``repeatable`` chose
    raise_on_status=False,
    raise_on_redirect=False,
)


class _ContextAdapter(HTTPAdapter):
    """An adapter whose connection pools verify with our SSL context, and that resends safe calls
    once the server closed a pooled connection under them (``repeatable``)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._per_thread = threading.local()  # the Retry of the request being sent in this thread
        self._no_retry = _NO_RETRY
        super().__init__(max_retries=0)

    @property
    def max_retries(self) -> Retry:
        retries: Retry | None = getattr(self._per_thread, "retries", None)
        return retries if retries is not None else self._no_retry

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._no_retry = value

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        safe = repeatable(request.method or "GET", request.url or "", request.body)
        self._per_thread.retries = _STALE_RETRY if safe else None
        try:
            return super().send(request, *args, **kwargs)
        finally:
            self._per_thread.retries = None

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **proxy_kwargs)


class MsalSession(requests.Session):
    """The HTTP client MSAL uses for one credential.

    ``trust_env`` is off so the CA variables cannot override our trust; the outbound proxy the
    environment asked for is applied explicitly from the settings instead.
    """

    def __init__(self, context: ssl.SSLContext, egress: Egress, connect_timeout: float, timeout: float) -> None:
        super().__init__()
        self.trust_env = False
        self._egress = egress
        self._timeout = (connect_timeout, timeout)
        self._seen = threading.local()
        self.mount("https://", _ContextAdapter(context))

    def begin(self) -> None:
        """Start of an acquisition in this thread: forget an earlier Retry-After and status."""
        self._seen.retry_after = None
        self._seen.status = None

    def last_status(self) -> int | None:
        """The HTTP status of the last answer during this thread's acquisition (MSAL drops it)."""
        value: int | None = getattr(self._seen, "status", None)
        return value

    def retry_after(self) -> float | None:
        """The identity provider's Retry-After (429/503) during this thread's acquisition."""
        value: float | None = getattr(self._seen, "retry_after", None)
        return value

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        kwargs.setdefault("timeout", self._timeout)
        proxy = self._egress.proxy_for(target)
        if proxy and not kwargs.get("proxies"):
            kwargs["proxies"] = {"https": proxy, "http": proxy}
        response = super().request(method, url, *args, **kwargs)
        self._seen.status = response.status_code
        if response.status_code in (429, 503):
            seconds = parse_retry_after(response.headers.get("Retry-After"))
            if seconds is not None:
                self._seen.retry_after = seconds
        return response
