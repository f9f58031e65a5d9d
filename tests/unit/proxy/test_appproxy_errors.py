"""App Proxy's own error pages are recognised by what only App Proxy sends; a backend's own
403/502/504 — even one worded like App Proxy's — is never reclassified and never even peeked at."""

from __future__ import annotations

import pytest

from bearerd.errors import AppProxyBackend, AppProxyTimeout, NotAssigned, ProxyError
from bearerd.proxy.appproxy_errors import classify, worth_a_look

TX = "0e5a0000-0000-4000-8000-00000000beef"
APP_PROXY = {  # on every App Proxy answer (its support notes on Fiddler traces)
    "Content-Type": "text/html; charset=utf-8",
    "x-ms-proxy-app-id": "1b4f0000-0000-4000-8000-0000000000aa",
    "x-ms-proxy-subscription-id": "7e5a1f00-0000-4000-8000-00000000b0d1",
    "x-ms-proxy-transaction-id": TX,
}
CONNECTOR = {"x-ms-proxy-connector-id": "c0000000-0000-4000-8000-000000000001"}
# The wording of App Proxy's pages ("Troubleshoot application proxy problems and error messages").
FORBIDDEN = (
    "<html><body><h1>This corporate app can\u2019t be accessed.</h1><p>You are not authorized to access this "
    "application. Authorization failed.</p><p>Status Code: Forbidden</p></body></html>"
).encode()
TIMED_OUT = (
    "<html><body><h1>This corporate app can&rsquo;t be accessed right now.</h1><p>Please try again later\u2026 The "
    "connector timed out.</p><p>Status Code: GatewayTimeout</p></body></html>"
).encode()
BAD_GATEWAY = b"<html><body><h1>This corporate app can't be accessed right now.</h1><p>Status Code: BadGateway</p>"
NO_CONNECTOR = (
    b"<html><body>GatewayTimeout: The corporate app cannot be accessed. Make sure the Microsoft Entra private "
    b"network connector is properly installed and registered</body></html>"
)


@pytest.mark.parametrize(
    ("status", "extra", "body", "kind", "says"),
    [
        (403, {}, FORBIDDEN, NotAssigned, "grant bearerd's app an app role"),
        (504, CONNECTOR | {"x-ms-proxy-error-details": "BackendTimeOut"}, TIMED_OUT, AppProxyTimeout, "85 s"),
        (504, {}, TIMED_OUT, AppProxyTimeout, "180 s when set to Long"),
        (502, CONNECTOR | {"x-ms-proxy-error-details": "BackendServiceUnavailable"}, BAD_GATEWAY, AppProxyBackend,
         "internal URL"),
        (504, {"x-ms-proxy-error-details": "EmptyConnectorGroup"}, NO_CONNECTOR, AppProxyBackend, "connector group"),
        (504, {}, NO_CONNECTOR, AppProxyBackend, "private network connector"),
    ],
)  # fmt: skip
def test_app_proxy_pages_are_explained(
    status: int, extra: dict[str, str], body: bytes, kind: type[ProxyError], says: str
) -> None:
    headers = APP_PROXY | extra
    assert worth_a_look(status, headers)
    problem = classify(status, headers, body)
    assert type(problem) is kind
    assert problem.status == {NotAssigned: 403, AppProxyBackend: 502, AppProxyTimeout: 504}[kind]
    assert says in problem.detail and " — fix: " in problem.detail
    assert f"transaction {TX}" in problem.detail  # what Microsoft support asks for


def test_problem_types_are_the_documented_ones() -> None:
    assert NotAssigned("x").type_uri == "urn:bearerd:problem:not-assigned"
    assert AppProxyBackend("x").type_uri == "urn:bearerd:problem:app-proxy-backend"
    assert AppProxyTimeout("x").type_uri == "urn:bearerd:problem:app-proxy-timeout"


@pytest.mark.parametrize("status", [403, 502, 504])
@pytest.mark.parametrize("body", [FORBIDDEN, b"<html><h1>502 Bad Gateway</h1><center>nginx</center></html>"])
def test_a_backend_answer_relayed_by_app_proxy_is_never_looked_at(status: int, body: bytes) -> None:
    """Through App Proxy a backend's answer carries a connector ID and no error details: status and
    headers decide, so even a page worded exactly like App Proxy's passes (and its body is not read)."""
    headers = APP_PROXY | CONNECTOR
    assert not worth_a_look(status, headers)
    assert classify(status, headers, body) is None


def test_without_app_proxy_headers_nothing_is_app_proxy() -> None:
    plain = {"Content-Type": "text/html"}
    for status in (403, 502, 504):
        assert not worth_a_look(status, plain)
        assert classify(status, plain, FORBIDDEN) is None


def test_other_statuses_and_bodies_without_the_page_pass() -> None:
    assert not worth_a_look(200, APP_PROXY) and classify(200, APP_PROXY, FORBIDDEN) is None
    assert not worth_a_look(500, APP_PROXY)
    assert worth_a_look(502, APP_PROXY)  # App Proxy headers, no connector: worth its first bytes…
    assert classify(502, APP_PROXY, b"<html><body>" + b"x" * 1000) is None  # …which are not App Proxy's page


def test_header_names_are_case_insensitive_and_every_apostrophe_counts() -> None:
    headers = {k.upper(): v for k, v in APP_PROXY.items()}
    for apostrophe in ("'", "\u2019", "&#39;", "&#x27;", "&rsquo;"):
        body = f"<h1>This Corporate App Can{apostrophe}t Be Accessed</h1>".encode()
        assert isinstance(classify(403, headers, body), NotAssigned), apostrophe
    assert isinstance(classify(403, headers, b"Can't Access this Corporate Application"), NotAssigned)
