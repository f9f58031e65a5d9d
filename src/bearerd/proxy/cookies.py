"""Cookies across the proxy: App Proxy's own stay inside bearerd, the backend's reach the client.

App Proxy sets ``AzureAppProxy*`` cookies (session, access, analytics). They are bearerd's
business with App Proxy, not the local client's: they are kept in a per-route jar, sent back
upstream on later requests of that route, and never handed to (or accepted from) local clients.
The backend's own cookies pass through with ``Domain`` removed (the client talks to a local host,
not the app's external one) and ``Path`` moved under the route's local prefix.
"""

from __future__ import annotations

import threading

APP_PROXY_PREFIX = "azureappproxy"


def _is_app_proxy(name: str) -> bool:
    return name.strip().lower().startswith(APP_PROXY_PREFIX)


class AppProxyJar:
    def __init__(self) -> None:
        self._cookies: dict[str, str] = {}
        self._lock = threading.Lock()

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
        pairs.extend(f"{name}={value}" for name, value in self._cookies.items())
        return "; ".join(pairs) if pairs else None

    def response_cookie(self, set_cookie: str, local_prefix: str | None) -> str | None:
        """One upstream ``Set-Cookie``: App Proxy's is kept here (None: not for the client); the
        backend's is rewritten for the local client."""
        first, _, attributes = set_cookie.partition(";")
        name, _, cookie_value = first.partition("=")
        if not _is_app_proxy(name):
            return _localize(first, attributes, local_prefix)
        with self._lock:
            if "max-age=0" in attributes.lower().replace(" ", ""):
                self._cookies.pop(name.strip(), None)
            else:
                self._cookies[name.strip()] = cookie_value.strip()
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
