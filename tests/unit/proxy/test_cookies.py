"""App Proxy's cookies stay in the route's jar; the backend's are rewritten for the local client."""

from __future__ import annotations

from multidict import CIMultiDict

from bearerd.proxy.cookies import AppProxyJar


def test_app_proxy_cookies_are_kept_and_sent_back_never_handed_out() -> None:
    jar = AppProxyJar()
    response = CIMultiDict(
        [
            ("Set-Cookie", "AzureAppProxyAccessCookie_x=abc; path=/; secure; HttpOnly"),
            ("Set-Cookie", "session=s1; Domain=app-contoso.msappproxy.net; Path=/app; HttpOnly"),
        ]
    )
    jar.absorb(response, "/secretapi")
    assert response.getall("Set-Cookie") == ["session=s1; Path=/secretapi/app; HttpOnly"]
    request = CIMultiDict([("Cookie", "AzureAppProxyAccessCookie_x=forged; theme=dark")])
    jar.apply(request)
    assert request.getall("Cookie") == ["theme=dark; AzureAppProxyAccessCookie_x=abc"]


def test_max_age_zero_removes_a_jar_cookie() -> None:
    jar = AppProxyJar()
    jar.absorb(CIMultiDict([("Set-Cookie", "AzureAppProxySession=1; path=/")]), None)
    jar.absorb(CIMultiDict([("Set-Cookie", "AzureAppProxySession=; Max-Age=0")]), None)
    request: CIMultiDict[str] = CIMultiDict()
    jar.apply(request)
    assert "Cookie" not in request


def test_forward_proxy_clients_keep_the_backend_path() -> None:
    response = CIMultiDict([("Set-Cookie", "a=1; Path=/x; Domain=example")])
    AppProxyJar().absorb(response, None)
    assert response.getall("Set-Cookie") == ["a=1; Path=/x"]


def test_expired_app_proxy_cookies_are_no_longer_sent() -> None:
    """App Proxy's persistent access cookie lasts as long as its token (Max-Age, else Expires)."""
    now = [1_900_000_000.0]
    jar = AppProxyJar(clock=lambda: now[0])
    jar.absorb(
        CIMultiDict(
            [
                ("Set-Cookie", "AzureAppProxyAccessCookie_a_1.1=s1; max-age=60; expires=Thu, 01 Jan 2099 00:00:00 GMT"),
                ("Set-Cookie", "AzureAppProxyAnalyticCookie_a=x; expires=Thu, 01 Mar 2040 00:00:00 GMT"),
                ("Set-Cookie", "AzureAppProxySession=z; path=/"),
            ]
        ),
        None,
    )
    sent: CIMultiDict[str] = CIMultiDict()
    jar.apply(sent)
    assert (
        sent["Cookie"] == "AzureAppProxyAccessCookie_a_1.1=s1; AzureAppProxyAnalyticCookie_a=x; AzureAppProxySession=z"
    )
    now[0] += 61  # Max-Age wins over Expires; the session cookie has no expiry
    later: CIMultiDict[str] = CIMultiDict()
    jar.apply(later)
    assert later["Cookie"] == "AzureAppProxyAnalyticCookie_a=x; AzureAppProxySession=z"
    now[0] = 1_900_000_000.0 + 10**9  # past the Expires date too
    last: CIMultiDict[str] = CIMultiDict()
    jar.apply(last)
    assert last["Cookie"] == "AzureAppProxySession=z"
