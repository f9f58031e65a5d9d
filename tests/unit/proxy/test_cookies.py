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
