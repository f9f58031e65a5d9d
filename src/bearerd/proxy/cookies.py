"""Cookies across the proxy: App Proxy's own stay inside bearerd, the backend's reach the client.

App Proxy sets ``AzureAppProxy*`` cookies (session, access, analytics). They are bearerd's
business with App Proxy, not the local client's: they are kept in a per-route jar, sent back
upstream on later requests of that route until they expire (``Max-Age``/``Expires``: App Proxy's
persistent access cookie lasts as long as the token it was issued for), and never handed to (or
accepted from) local clients.
The backend's own cookies pass through with ``Domain`` removed (the client talks to a local host,
not the app's external one) and ``Path`` moved under the route's local prefix.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

APP_PROXY_PREFIX = "azureappproxy"


def _is_app_proxy(name: str) -> bool:
    return name.strip().lower().startswith(APP_PROXY_PREFIX)


def expires_at(attributes: str, now: float) -> float | None:
    """When a cookie expires (wall clock), from ``Max-Age`` (which wins) or ``Expires``; None: session."""
    expires: float | None = None
    for attribute in attributes.split(";"):
        key, _, value = attribute.strip().partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                return now + int(value.strip())
            except ValueError:
                continue
        if key == "expires":
            try:
                expires = parsedate_to_datetime(value.strip()).timestamp()
            except (TypeError, ValueError):
                continue
    return expires


class AppProxyJar:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._cookies: dict[str, tuple[str, float | None]] = {}  # name -> (value, expires at)
        self._lock = threading.Lock()
        self._clock = clock

    def request_cookie(self, client_values: list[str]) -> str | None:
        """The ``Cookie`` header to send upstream: the client's own cookies (App Proxy's dropped:
        a client can't forge bearerd's session) followed by the jar's."""
        if not client_values and not self._cookies:
            return None
        pairs = [
            p.strip()
            for value in client_values
            for p in value.split(";")
            if p.strip() and not _is_app_proxy(p.split("=", 1)[0])
        ]
        if self._cookies:
            now = self._clock()
            with self._lock:
                for name, (value, expires) in list(self._cookies.items()):
                    if expires is not None and expires <= now:
                        del self._cookies[name]
                    else:
                        pairs.append(f"{name}={value}")
        return "; ".join(pairs) if pairs else None

    def response_cookie(self, set_cookie: str, local_prefix: str | None) -> str | None:
        """One upstream ``Set-Cookie``: App Proxy's is kept here (None: not for the client); the
        backend's is rewritten for the local client."""
        first, _, attributes = set_cookie.partition(";")
        name, _, cookie_value = first.partition("=")
        if not _is_app_proxy(name):
            return _localize(first, attributes, local_prefix)
        now = self._clock()
        expires = expires_at(attributes, now)
        with self._lock:
            if expires is not None and expires <= now:
                self._cookies.pop(name.strip(), None)
            else:
                self._cookies[name.strip()] = (cookie_value.strip(), expires)
        return None


def _localize(first: str, attributes: str, local_prefix: str | None) -> str:
    kept = [first.strip()]
    for attribute in attributes.split(";"):
        attribute = attribute.strip()
        if not attribute:
            continue
        key, _, value = attribute.partition("=")
        if key.strip().lower() == "domain":
            continue  # a host-only cookie for whichever local name the client used
        if key.strip().lower() == "path" and local_prefix:
            attribute = f"Path={local_prefix}{value.strip() if value.strip().startswith('/') else '/'}"
        kept.append(attribute)
    return "; ".join(kept)
