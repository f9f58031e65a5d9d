"""The HTTP client MSAL uses: our trust, our proxy, our timeouts — and the Retry-After it saw.

``requests`` lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` silently replace a session's CA file,
and MSAL's own timeout and retry adapter don't apply to a custom session (MSAL-NOTES.md). This
session fixes all three from the settings, and it remembers the identity provider's
``Retry-After`` for the acquisition running in the calling thread, because MSAL's results and
exceptions don't carry it.
"""

from __future__ import annotations

import ssl
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

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


class _ContextAdapter(HTTPAdapter):
    """An adapter whose connection pools verify with our SSL context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)

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
        """Start of an acquisition in this thread: forget an earlier Retry-After."""
        self._seen.retry_after = None

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
        if response.status_code in (429, 503):
            seconds = parse_retry_after(response.headers.get("Retry-After"))
            if seconds is not None:
                self._seen.retry_after = seconds
        return response
