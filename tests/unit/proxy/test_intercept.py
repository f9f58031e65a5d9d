"""What a CONNECT may reach: target parsing, tunnel_hosts patterns, the route a tunnel (and each
request inside it) belongs to. Pure functions, no sockets."""

from __future__ import annotations

import pytest

from bearerd.config.schema import RouteSettings
from bearerd.errors import BadRequest
from bearerd.proxy.intercept import ConnectTarget, tunnel_allowed, upstream_route
from bearerd.proxy.routes import Route


def route(name: str, upstream: str) -> Route:
    settings = RouteSettings(match={"path_prefix": f"/{name}/"}, upstream=upstream, credential="c")  # type: ignore[arg-type]
    return Route.build(name, settings)


@pytest.mark.parametrize(
    ("target", "host", "port", "authority"),
    [
        ("secretapi-contoso.msappproxy.net:443", "secretapi-contoso.msappproxy.net", 443,
         "secretapi-contoso.msappproxy.net:443"),
        ("API.Example.COM.:8443", "api.example.com", 8443, "api.example.com:8443"),
        ("127.0.0.1:9", "127.0.0.1", 9, "127.0.0.1:9"),
        ("[::1]:443", "::1", 443, "[::1]:443"),
    ],
)  # fmt: skip
def test_connect_targets(target: str, host: str, port: int, authority: str) -> None:
    parsed = ConnectTarget.parse(target)
    assert (parsed.host, parsed.port, parsed.authority) == (host, port, authority)


@pytest.mark.parametrize(
    "target",
    ["example.com", "example.com:", "example.com:0", "example.com:65536", "example.com:443/x", "user@example.com:443",
     "[::1]", "[nope]:443", "::1:443", "exa mple.com:443", "http://example.com:443", "café.example:443", ":443"],
)  # fmt: skip
def test_malformed_connect_targets_are_400(target: str) -> None:
    with pytest.raises(BadRequest):
        ConnectTarget.parse(target)


def test_a_host_header_names_the_target_with_or_without_the_default_port() -> None:
    https = ConnectTarget("api.example.com", 443)
    assert https.is_named_by("api.example.com") and https.is_named_by("API.example.com:443")
    assert not https.is_named_by("api.example.com:8443") and not https.is_named_by("other.example.com")
    assert not https.is_named_by(None) and not https.is_named_by("api.example.com:x")
    other_port = ConnectTarget("127.0.0.1", 8443)
    assert other_port.is_named_by("127.0.0.1:8443") and not other_port.is_named_by("127.0.0.1")
    assert ConnectTarget("::1", 443).is_named_by("[::1]") and ConnectTarget("::1", 443).is_named_by("[::1]:443")


def test_tunnel_patterns() -> None:
    patterns = ["*.example.com", "api.example.org:8443", "[::1]:9000"]
    allowed = ["a.example.com:443", "deep.a.example.com:443", "api.example.org:8443", "[::1]:9000"]
    refused = ["example.com:443", "a.example.com:8443", "evilexample.com:443", "a.example.com.evil.net:443",
               "api.example.org:443", "[::1]:443"]  # fmt: skip
    assert [t for t in allowed if tunnel_allowed(patterns, ConnectTarget.parse(t))] == allowed
    assert [t for t in refused if tunnel_allowed(patterns, ConnectTarget.parse(t))] == []
    assert not tunnel_allowed([], ConnectTarget.parse("a.example.com:443"))


def test_the_route_of_a_tunnel_is_the_one_whose_https_upstream_it_names() -> None:
    routes = [
        route("plain", "http://api.example.com/"),
        route("api", "https://api.example.com/"),
        route("admin", "https://api.example.com/admin/"),
        route("other", "https://api.example.com:8443/"),
    ]
    target = ConnectTarget.parse("api.example.com:443")
    assert upstream_route(routes, target).name == "api"  # type: ignore[union-attr]
    # Routes sharing the host: the longest upstream path that prefixes the request's path.
    assert upstream_route(routes, target, "/admin/users").name == "admin"  # type: ignore[union-attr]
    assert upstream_route(routes, target, "/administrator").name == "api"  # type: ignore[union-attr]
    assert upstream_route(routes, ConnectTarget.parse("api.example.com:8443")).name == "other"  # type: ignore[union-attr]
    assert upstream_route(routes, ConnectTarget.parse("api.example.com:80")) is None  # http upstreams: never
    assert upstream_route(routes, ConnectTarget.parse("example.com:443")) is None
