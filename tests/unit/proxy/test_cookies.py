"""App Proxy's cookies stay in the route's jar; the backend's are rewritten for the local client."""

from __future__ import annotations

from bearerd.proxy.cookies import AppProxyJar


def test_app_proxy_cookies_are_kept_and_sent_back_never_handed_out() -> None:
    jar = AppProxyJar()
    assert jar.response_cookie("AzureAppProxyAccessCookie_x=abc; path=/; secure; HttpOnly", "/secretapi") is None
    backend = jar.response_cookie("session=s1; Domain=app-contoso.msappproxy.net; Path=/app; HttpOnly", "/secretapi")
    assert backend == "session=s1; Path=/secretapi/app; HttpOnly"
    sent = jar.request_cookie(["AzureAppProxyAccessCookie_x=forged; theme=dark"])
    assert sent == "theme=dark; AzureAppProxyAccessCookie_x=abc"


def test_max_age_zero_removes_a_jar_cookie() -> None:
    jar = AppProxyJar()
    jar.response_cookie("AzureAppProxySession=1; path=/", None)
    assert jar.request_cookie([]) == "AzureAppProxySession=1"
    jar.response_cookie("AzureAppProxySession=; Max-Age=0", None)
    assert jar.request_cookie([]) is None


def test_forward_proxy_clients_keep_the_backend_path() -> None:
    assert AppProxyJar().response_cookie("a=1; Path=/x; Domain=example", None) == "a=1; Path=/x"


def test_a_client_sending_only_app_proxy_cookies_sends_none() -> None:
    assert AppProxyJar().request_cookie(["AzureAppProxyAccessCookie=forged"]) is None
