"""App Proxy's own error pages, told apart from the backend's answers and explained.

When App Proxy itself refuses a request it answers with an HTML page a person reads in a browser
("This corporate app can't be accessed", Status Code: Forbidden / BadGateway / GatewayTimeout —
Microsoft's "Troubleshoot 'corporate app can't be accessed' error in application proxy"). An API
client can do nothing with that page, so bearerd answers with a problem+json that says what it
means and what fixes it. A *backend's* own 403/502/504 must reach the client untouched, so the
recognition keys on what only App Proxy's cloud service sends:

* App Proxy adds ``x-ms-proxy-*`` headers to every answer (``x-ms-proxy-app-id``,
  ``-transaction-id``, ``-subscription-id``…); ``x-ms-proxy-connector-id`` is there when a
  connector handled the request (so a backend's answer always has it), and
  ``x-ms-proxy-error-details`` (``BackendTimeOut``, ``EmptyConnectorGroup``…) only when App Proxy
  itself failed (Microsoft's App Proxy support notes on its response headers);
* so an answer is *worth a look* only with status 403/502/504, App Proxy's headers, and either
  ``x-ms-proxy-error-details`` or no connector ID — decided from status and headers alone, so no
  other answer's body is ever read;
* and it *is* App Proxy's page only when its first bytes say "corporate app can't / cannot be
  accessed" as App Proxy's pages do.

Pure: the caller (``handler.py``, ``websocket.py``, ``doctor.py``) reads at most ``PEEK_BYTES`` of
the body of an answer worth a look and passes them in; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bearerd.errors import AppProxyBackend, AppProxyTimeout, NotAssigned, ProxyError

PEEK_BYTES = 16 * 1024
STATUSES = frozenset({403, 502, 504})
HEADER_PREFIX = "x-ms-proxy-"
ERROR_DETAILS = "x-ms-proxy-error-details"
CONNECTOR_ID = "x-ms-proxy-connector-id"
# "can't" with any apostrophe App Proxy's pages use (U+2019, ', &#39;, &rsquo;), or "cannot".
_MARKER = re.compile(
    r"corporate app(?:lication)? can(?:'|\u2019|&#39;|&#x27;|&rsquo;|no)t be accessed"
    r"|can(?:'|\u2019|&#39;|&#x27;|&rsquo;)t access this corporate app",
    re.IGNORECASE,
)
# x-ms-proxy-error-details values that mean "no working connector", as opposed to the backend.
_NO_CONNECTOR = ("emptyconnectorgroup", "noactiveconnector", "connectornotavailable")
_NO_CONNECTOR_TEXT = re.compile(r"connector is (?:properly )?installed|no (?:active|working) connector", re.I)
_TIMEOUT_TEXT = re.compile(r"timed out|time-?out", re.I)

TIMEOUT_FIX = (
    "the app's backend timeout is 85 s by default and 180 s when set to Long (Entra → Enterprise apps → the app → "
    "Application proxy → Backend Application Timeout); make the backend answer sooner, or set it to Long"
)
NO_CONNECTOR_FIX = (
    "install and register a private network connector in the app's connector group (or assign the app to a group "
    "with an active one) and let it reach *.msappproxy.net and *.servicebus.windows.net outbound"
)
BACKEND_FIX = (
    "check the app's internal URL (Entra → Enterprise apps → the app → Application proxy) and that the backend "
    "answers from the connector's machine"
)
NOT_ASSIGNED_FIX = (
    "assign the signed-in user (or a group) to the app (Entra → Enterprise apps → the app → Users and groups); for "
    "an app-only credential grant bearerd's app an app role of the App Proxy app (API permissions → Application "
    "permissions, admin consent)"
)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def worth_a_look(status: int, headers: Mapping[str, str]) -> bool:
    """Whether status and headers alone point at App Proxy's own error page (then read its first bytes)."""
    if status not in STATUSES:
        return False
    names = _lower(headers)
    if not any(name.startswith(HEADER_PREFIX) for name in names):
        return False
    return ERROR_DETAILS in names or CONNECTOR_ID not in names


def classify(status: int, headers: Mapping[str, str], head: bytes) -> ProxyError | None:
    """The problem App Proxy's page means, or None when the answer is not App Proxy's own page
    (then it goes to the client untouched). ``head``: the first bytes of the body."""
    if not worth_a_look(status, headers):
        return None
    text = head.decode("utf-8", "replace")
    if not _MARKER.search(text):
        return None
    lowered = _lower(headers)
    details = lowered.get(ERROR_DETAILS, "").strip()[:64]
    ref = _reference(lowered, details)
    if status == 403:
        return NotAssigned(
            "App Proxy refused the request: the identity bearerd signs in as is not assigned to this app "
            f"(App Proxy's 403 page \"This corporate app can't be accessed\"{ref}) — fix: {NOT_ASSIGNED_FIX}"
        )
    if details.lower() in _NO_CONNECTOR or (not details and _NO_CONNECTOR_TEXT.search(text)):
        return AppProxyBackend(
            f"App Proxy has no working connector for this app (its {status} page{ref}) — fix: {NO_CONNECTOR_FIX}"
        )
    if status == 504 and (details.lower() == "backendtimeout" or not details or _TIMEOUT_TEXT.search(details)):
        return AppProxyTimeout(
            f"App Proxy's backend timeout expired: the backend did not answer in time (its 504 page{ref}) — "
            f"fix: {TIMEOUT_FIX}"
        )
    return AppProxyBackend(
        f"App Proxy's connector could not reach the app's backend (its {status} page{ref}) — fix: {BACKEND_FIX}"
    )


def _reference(headers: dict[str, str], details: str) -> str:
    """What identifies the failure to Microsoft support: the error name and App Proxy's transaction ID."""
    parts = [details] if details else []
    transaction = headers.get("x-ms-proxy-transaction-id")
    if transaction:
        parts.append(f"transaction {transaction[:64]}")
    return f", {', '.join(parts)}" if parts else ""
