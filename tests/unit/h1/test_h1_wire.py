"""Pure wire rules: heads, framing decisions, codings — no sockets."""

from __future__ import annotations

import pytest

from bearerd.h1 import wire


@pytest.mark.parametrize(
    ("head", "status", "http11", "length", "expected"),
    [
        (False, 200, True, 5, (wire.LENGTH, "Content-Length: 5\r\n")),
        (False, 200, True, None, (wire.CHUNKED, "Transfer-Encoding: chunked\r\n")),
        (False, 200, False, None, (wire.UNTIL_CLOSE, "")),
        (False, 200, False, 0, (wire.LENGTH, "Content-Length: 0\r\n")),
        (True, 200, True, 42, (wire.NO_BODY, "Content-Length: 42\r\n")),
        (True, 200, True, None, (wire.NO_BODY, "")),
        (False, 304, True, 42, (wire.NO_BODY, "Content-Length: 42\r\n")),
        (False, 204, True, 42, (wire.NO_BODY, "")),
        (False, 103, True, None, (wire.NO_BODY, "")),
    ],
)
def test_response_framing(head: bool, status: int, http11: bool, length: int | None, expected: tuple[int, str]) -> None:
    assert wire.response_framing(head, status, http11, length) == expected


def test_response_head_drops_framing_and_connection_headers_of_the_caller() -> None:
    head = wire.response_head(
        200,
        "OK",
        [
            ("Content-Type", "a/b"),
            ("content-length", "9"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "x"),
            ("Keep-Alive", "t=1"),
            ("X-Connection-Id", "7"),
        ],
        "Content-Length: 3\r\n",
        "",
    )
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nX-Connection-Id: 7\r\nContent-Length: 3\r\n\r\n"


def test_heads_are_latin1_and_status_is_checked() -> None:
    assert wire.raw_head(101, "Switching Protocols", [("Upgrade", "ws")]) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n"
    )
    assert wire.response_head(200, "OK", [("X", "caf\xe9")], "", "") == b"HTTP/1.1 200 OK\r\nX: caf\xe9\r\n\r\n"
    with pytest.raises(ValueError):
        wire.status_line(1000, "x")


@pytest.mark.parametrize(
    ("method", "headers", "length", "streamed", "framing", "declared"),
    [
        ("GET", [], None, False, b"", None),
        ("POST", [], None, False, b"Content-Length: 0\r\n", None),
        ("POST", [("Content-Length", "9")], 3, False, b"Content-Length: 3\r\n", 9),
        ("PUT", [], None, True, b"Transfer-Encoding: chunked\r\n", None),
        ("PUT", [("content-length", "7"), ("Transfer-Encoding", "chunked")], None, True, b"Content-Length: 7\r\n", 7),
    ],
)
def test_request_head_framing(
    method: str,
    headers: list[tuple[str, str]],
    length: int | None,
    streamed: bool,
    framing: bytes,
    declared: int | None,
) -> None:
    head, got = wire.request_head(method, "/p?q", headers, "up.example", length, streamed)
    assert head == b"%s /p?q HTTP/1.1\r\nHost: up.example\r\n%s\r\n" % (method.encode(), framing)
    assert got == declared


def test_request_head_keeps_the_callers_host() -> None:
    head, _ = wire.request_head("GET", "/", [("Host", "mine"), ("X", "1")], "default", None, False)
    assert head == b"GET / HTTP/1.1\r\nHost: mine\r\nX: 1\r\n\r\n"


def test_chunks_and_trailers() -> None:
    assert b"".join(wire.chunk(b"x" * 26)) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert wire.last_chunk(None) == b"0\r\n\r\n"
    assert wire.last_chunk([("X-Sum", "1")]) == b"0\r\nX-Sum: 1\r\n\r\n"


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        (["chunked"], True),
        (["Chunked "], True),
        (["identity, chunked"], False),
        (["gzip", "chunked"], False),
        (["chunked, chunked"], False),
        ([], False),
    ],
)
def test_only_chunked(values: list[str], ok: bool) -> None:
    assert wire.only_chunked(values) is ok


def test_small_parsers() -> None:
    assert wire.content_length("12 ") == 12
    assert wire.content_length("١٢") is None  # non-ASCII digits are not a length
    assert wire.has_token("keep-alive, Upgrade", "upgrade")
    assert not wire.has_token("upgraded", "upgrade")
