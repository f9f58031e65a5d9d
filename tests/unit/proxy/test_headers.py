"""Header hygiene: pure, no sockets."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from bearerd.errors import ClientAuthRejected
from bearerd.proxy.headers import downstream_headers, upstream_headers


def h(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_hop_by_hop_and_connection_named_headers_dropped() -> None:
    incoming = h(
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
        ("X-Keep", "b"),
    )
    out, add = upstream_headers(incoming, "replace", "api.example")
    assert add
    assert out["Host"] == "api.example"
    assert out.getall("X-Keep") == ["a", "b"]
    for gone in (
        "Connection",
        "X-Secret-Hop",
        "Keep-Alive",
        "TE",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "Expect",
    ):
        assert gone not in out


def test_replace_drops_client_authorization() -> None:
    out, add = upstream_headers(h(("Authorization", "Basic dXNlcjpwdw==")), "replace", "u")
    assert "Authorization" not in out and add


def test_move_carries_client_authorization_in_named_header() -> None:
    out, add = upstream_headers(
        h(("Authorization", "Basic dXNlcjpwdw=="), ("X-Original-Authorization", "forged")),
        "move:X-Original-Authorization",
        "u",
    )
    assert add
    assert out.getall("X-Original-Authorization") == ["Basic dXNlcjpwdw=="]
    assert "Authorization" not in out


def test_move_without_client_authorization_drops_forged_header() -> None:
    out, _ = upstream_headers(h(("X-Original-Authorization", "forged")), "move:X-Original-Authorization", "u")
    assert "X-Original-Authorization" not in out


def test_reject_refuses_client_authorization() -> None:
    with pytest.raises(ClientAuthRejected):
        upstream_headers(h(("Authorization", "Bearer x")), "reject", "u")
    _, add = upstream_headers(h(), "reject", "u")
    assert add


def test_passthrough_keeps_client_token_and_adds_none() -> None:
    out, add = upstream_headers(h(("Authorization", "Bearer client")), "passthrough", "u")
    assert out["Authorization"] == "Bearer client" and not add
    _, add = upstream_headers(h(), "passthrough", "u")
    assert add


def test_downstream_drops_hop_by_hop() -> None:
    out = downstream_headers(
        h(
            ("Connection", "close, X-Hop"),
            ("X-Hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        )
    )
    assert list(out.items()) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
