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


def test_expired_app_proxy_cookies_are_no_longer_sent() -> None:
    """App Proxy's persistent access cookie lasts as long as its token (Max-Age, else Expires)."""
    now = [1_900_000_000.0]
    jar = AppProxyJar(clock=lambda: now[0])
    for set_cookie in (
        "AzureAppProxyAccessCookie_a_1.1=s1; max-age=60; expires=Thu, 01 Jan 2099 00:00:00 GMT",
        "AzureAppProxyAnalyticCookie_a=x; expires=Thu, 01 Mar 2040 00:00:00 GMT",
        "AzureAppProxySession=z; path=/",
    ):
        assert jar.response_cookie(set_cookie, None) is None
    assert jar.request_cookie([]) == (
        "AzureAppProxyAccessCookie_a_1.1=s1; AzureAppProxyAnalyticCookie_a=x; AzureAppProxySession=z"
    )
    now[0] += 61  # Max-Age wins over Expires; the session cookie has no expiry
    assert jar.request_cookie([]) == "AzureAppProxyAnalyticCookie_a=x; AzureAppProxySession=z"
    now[0] = 1_900_000_000.0 + 10**9  # past the Expires date too
    assert jar.request_cookie([]) == "AzureAppProxySession=z"
