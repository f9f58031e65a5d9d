"""Header hygiene: one pass each way over plain header pairs, no sockets."""

from __future__ import annotations

import pytest

from bearerd.errors import ClientAuthRejected
from bearerd.proxy.headers import UpstreamRules, downstream_headers, upstream_headers


def index(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value)
    return out


def up(
    pairs: list[tuple[str, str]], policy: str = "replace", own: tuple[str, ...] = ()
) -> tuple[list[tuple[str, str]], list[str], bool]:
    return upstream_headers(pairs, index(pairs), UpstreamRules.of("api.example", policy, own))


def test_hop_by_hop_and_connection_named_headers_dropped() -> None:
    out, cookies, add = up(
        [
            ("Host", "127.0.0.1:8080"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic abc"),
            ("Expect", "100-continue"),
            ("X-Keep", "a"),
            ("Cookie", "a=1"),
            ("X-Keep", "b"),
            ("Content-Length", "3"),
        ]
    )
    assert add and cookies == ["a=1"]
    assert out == [("Host", "api.example"), ("X-Keep", "a"), ("X-Keep", "b"), ("Content-Length", "3")]


def test_bearerds_own_headers_are_never_forwarded() -> None:
    out, _, _ = up([("X-Bearerd-Key", "k"), ("X-Other", "v")], own=("x-bearerd-key",))
    assert out == [("Host", "api.example"), ("X-Other", "v")]


def test_replace_drops_client_authorization() -> None:
    out, _, add = up([("Authorization", "Basic dXNlcjpwdw==")])
    assert out == [("Host", "api.example")] and add


def test_move_carries_client_authorization_in_named_header() -> None:
    out, _, add = up(
        [("Authorization", "Basic dXNlcjpwdw=="), ("X-Original-Authorization", "forged")],
        "move:X-Original-Authorization",
    )
    assert add
    assert out == [("Host", "api.example"), ("X-Original-Authorization", "Basic dXNlcjpwdw==")]


def test_move_without_client_authorization_drops_forged_header() -> None:
    out, _, _ = up([("x-original-authorization", "forged")], "move:X-Original-Authorization")
    assert out == [("Host", "api.example")]


def test_reject_refuses_client_authorization() -> None:
    with pytest.raises(ClientAuthRejected):
        up([("Authorization", "Bearer x")], "reject")
    assert up([], "reject")[2]


def test_passthrough_keeps_client_token_and_adds_none() -> None:
    out, _, add = up([("Authorization", "Bearer client")], "passthrough")
    assert out == [("Host", "api.example"), ("Authorization", "Bearer client")] and not add
    assert up([], "passthrough")[2]


def test_downstream_drops_hop_by_hop_and_routes_cookies_and_location() -> None:
    pairs = [
        ("Connection", "close, X-Hop"),
        ("X-Hop", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "AzureAppProxyAccessCookie=x"),
        ("Location", "https://app/x"),
        ("X-Kept", "y"),
    ]
    out = downstream_headers(
        pairs,
        index(pairs),
        lambda v: None if v.startswith("Azure") else v + "; seen",
        lambda v: v.replace("app", "local"),
    )
    assert out == [("Set-Cookie", "a=1; seen"), ("Location", "https://local/x"), ("X-Kept", "y")]


def rules_with_static(policy: str = "replace") -> UpstreamRules:
    return UpstreamRules.of(
        "api.example",
        policy,
        add=[("PRIVATE-TOKEN", "glpat-route-secret"), ("X-Tenant", "contoso")],
        remove=["X-Debug", "x-forwarded-for"],
    )


def test_set_headers_are_added_and_the_clients_copies_dropped() -> None:
    pairs = [
        ("private-token", "forged-by-client"),
        ("X-TENANT", "other"),
        ("Connection", "PRIVATE-TOKEN"),  # naming it hop-by-hop doesn't remove ours
        ("X-Keep", "1"),
    ]
    out, _, add = upstream_headers(pairs, index(pairs), rules_with_static())
    assert add
    assert out == [("Host", "api.example"), ("X-Keep", "1"), ("PRIVATE-TOKEN", "glpat-route-secret"),
                   ("X-Tenant", "contoso")]  # fmt: skip


def test_remove_headers_are_dropped_whatever_their_case() -> None:
    pairs = [("x-debug", "1"), ("X-Forwarded-For", "10.0.0.1"), ("X-Debugger", "kept")]
    out, _, _ = upstream_headers(pairs, index(pairs), rules_with_static())
    assert [n for n, _ in out] == ["Host", "X-Debugger", "PRIVATE-TOKEN", "X-Tenant"]


def test_set_headers_go_with_every_authorization_policy() -> None:
    pairs = [("Authorization", "Basic dXNlcjpwdw==")]
    out, _, add = upstream_headers(pairs, index(pairs), rules_with_static("passthrough"))
    assert not add and out[1:] == [("PRIVATE-TOKEN", "glpat-route-secret"), ("X-Tenant", "contoso"),
                                   ("Authorization", "Basic dXNlcjpwdw==")]  # fmt: skip
    out, _, add = upstream_headers(pairs, index(pairs), rules_with_static("move:X-Original-Authorization"))
    assert add and ("PRIVATE-TOKEN", "glpat-route-secret") in out
    with pytest.raises(ClientAuthRejected):
        upstream_headers(pairs, index(pairs), rules_with_static("reject"))


def test_rules_never_show_header_values() -> None:
    assert "glpat-route-secret" not in repr(rules_with_static())
    assert "glpat-route-secret" not in str(rules_with_static())
