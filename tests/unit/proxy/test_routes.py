"""Route matching and upstream URL building: pure, no sockets."""

from __future__ import annotations

import pytest

from bearerd.config.schema import RouteMatch, RouteSettings
from bearerd.errors import BadRequest
from bearerd.proxy.routes import Route, RouteTable, split_target


def route(name: str, upstream: str = "https://api-contoso.msappproxy.net/", **match: str) -> Route:
    settings = RouteSettings(
        match=RouteMatch(**match),
        upstream=upstream,
        credential="c",
        scopes=["https://api-contoso.msappproxy.net//.default"],
    )
    return Route.build(name, settings)


def test_longest_prefix_wins_regardless_of_order() -> None:
    table = RouteTable(
        [route("root", path_prefix="/"), route("api", path_prefix="/api/"), route("v2", path_prefix="/api/v2/")]
    )
    assert table.match(None, "/api/v2/x").name == "v2"  # type: ignore[union-attr]
    assert table.match(None, "/api/v1/x").name == "api"  # type: ignore[union-attr]
    assert table.match(None, "/other").name == "root"  # type: ignore[union-attr]


def test_prefix_matches_whole_segments_only() -> None:
    table = RouteTable([route("api", path_prefix="/api/")])
    assert table.match(None, "/api").name == "api"  # type: ignore[union-attr]
    assert table.match(None, "/apix/y") is None
    assert table.match(None, "/") is None


def test_host_match_with_and_without_port() -> None:
    table = RouteTable(
        [
            route("any", host="secretapi.localhost"),
            route("exact", host="other.localhost:8080"),
            route("p", path_prefix="/p/"),
        ]
    )
    assert table.match("SecretAPI.localhost:9999", "/x").name == "any"  # type: ignore[union-attr]
    assert table.match("secretapi.localhost", "/x").name == "any"  # type: ignore[union-attr]
    assert table.match("other.localhost:8080", "/x").name == "exact"  # type: ignore[union-attr]
    assert table.match("other.localhost:8081", "/x") is None
    assert table.match("127.0.0.1:8080", "/p/x").name == "p"  # type: ignore[union-attr]


def test_prefix_stripped_and_base_prepended() -> None:
    r = route("api", upstream="https://x.msappproxy.net/base/", path_prefix="/secretapi/")
    assert r.upstream_target("/secretapi/a/b", "?q=1") == "/base/a/b?q=1"
    assert r.upstream_target("/secretapi", "") == "/base/"
    assert r.upstream_target("/secretapi/", "") == "/base/"


def test_root_upstream_and_default_port_dropped() -> None:
    r = route("api", upstream="https://X.msappproxy.net:443", path_prefix="/s/")
    assert r.upstream_host == "x.msappproxy.net" and r.upstream_origin == "https://x.msappproxy.net"
    assert r.upstream_target("/s/status", "") == "/status"
    r2 = route("api", upstream="https://127.0.0.1:8443/", path_prefix="/s/")
    assert r2.upstream_host == "127.0.0.1:8443"


def test_percent_encoding_and_query_preserved_byte_for_byte() -> None:
    r = route("api", path_prefix="/s/")
    path, query = split_target("/s/a%2Fb%20c/%C3%A9?x=%2F&y=a+b&&z")
    assert r.upstream_target(path, query) == "/a%2Fb%20c/%C3%A9?x=%2F&y=a+b&&z"


@pytest.mark.parametrize(
    "target",
    [
        "/s/../other/x",
        "/s/%2e%2e/other",
        "/s/%2E%2e%2Fother",
        "/s/..%2fother",
        "/s/./x",
        "/s/x/..",
        "/s//x",
        "/s/a\\b",
        "/s/a%5cb",
        "/s/a%00b",
        "/s/a%0d%0ab",
        "/s/a b",
        "/s/\u00e9",
        "s/x",
        "/s/x#frag",
        "/s/" + "a" * 9000,
    ],
)
def test_escaping_targets_are_refused(target: str) -> None:
    with pytest.raises(BadRequest):
        split_target(target)


def test_location_rewritten_to_local_entry() -> None:
    r = route("api", upstream="https://x.msappproxy.net/base/", path_prefix="/secretapi/")
    local = "http://127.0.0.1:8080"
    assert (
        r.local_location("https://x.msappproxy.net/base/next?a=1", local) == "http://127.0.0.1:8080/secretapi/next?a=1"
    )
    assert r.local_location("/base/next", local) == "/secretapi/next"
    assert r.local_location("https://X.msappproxy.net/base", local) == "http://127.0.0.1:8080/secretapi/"
    # Elsewhere: left alone (and never followed by the daemon).
    assert (
        r.local_location("https://login.microsoftonline.com/t/oauth2", local)
        == "https://login.microsoftonline.com/t/oauth2"
    )
    assert r.local_location("https://x.msappproxy.net.evil/base/", local) == "https://x.msappproxy.net.evil/base/"
    assert r.local_location("/elsewhere", local) == "/elsewhere"


def test_location_for_host_route_keeps_path() -> None:
    r = route("h", upstream="https://x.msappproxy.net/", host="secretapi.localhost")
    assert r.local_location("https://x.msappproxy.net/a", "http://secretapi.localhost:8080") == (
        "http://secretapi.localhost:8080/a"
    )
