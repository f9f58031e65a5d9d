"""Malformed and smuggling-shaped requests are refused before anything is forwarded."""

from __future__ import annotations

import pytest

from bearerd.emulator import EmulatorStack
from support.inprocess import Running
from support.wire import raw_problem

GOOD_HEAD = "GET /secretapi/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
CLOSE = b"Connection: close\r\n\r\n"


@pytest.mark.parametrize(
    ("name", "request_bytes"),
    [
        (
            "CRLF injected into a header value",
            b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Injected: 1\r\n\r\n",
        ),
        ("bare LF header injection", b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nX-A: b\nX-B: c\r\n\r\n"),
        (
            "Transfer-Encoding with Content-Length (smuggling)",
            b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different Content-Length headers",
            b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        ("obsolete line folding", b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n"),
        ("NUL in the target", b"GET /secretapi/api\x00/status HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("space in the target", b"GET /secretapi/a b HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("encoded CRLF in the path", b"GET /secretapi/a%0d%0aX-Evil:%201 HTTP/1.1\r\nHost: a\r\n" + CLOSE),
        ("backslash in the path", b"GET /secretapi/..\\otherapi/x HTTP/1.1\r\nHost: a\r\n" + CLOSE),
        ("oversized header", (GOOD_HEAD + "X-Big: " + "a" * 9000 + "\r\n\r\n").encode()),
        ("too many headers", (GOOD_HEAD + "".join(f"X-{i}: v\r\n" for i in range(150)) + "\r\n").encode()),
        ("duplicate Host", b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        (
            "invalid chunk size",
            b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ),
    ],
)
async def test_refused_with_4xx_and_never_forwarded(
    running: Running, stack: EmulatorStack, name: str, request_bytes: bytes
) -> None:
    seen = sum(len(app.requests_seen) for app in stack.apps.values())
    status, _ = await raw_problem(running.address, request_bytes + b"")
    assert 400 <= status < 500, name
    assert sum(len(app.requests_seen) for app in stack.apps.values()) == seen, name
    async with running.session.get(running.admin + "/healthz") as resp:
        assert resp.status == 200


async def test_header_limit_is_configurable(stack: EmulatorStack, write_config: object) -> None:
    from bearerd.config.loader import load_config
    from support.configs import render_toml, stack_tables
    from support.inprocess import start

    assert callable(write_config)
    tables = stack_tables(stack)
    tables["server"]["max_header_bytes"] = 2048
    path = write_config(tables)
    path.write_text(render_toml(tables))
    async with start(load_config(path)) as running:
        ok = (GOOD_HEAD + "X-Mid: " + "a" * 1500 + "\r\nConnection: close\r\n\r\n").encode()
        too_big = (GOOD_HEAD + "X-Big: " + "a" * 3000 + "\r\nConnection: close\r\n\r\n").encode()
        assert (await raw_problem(running.address, ok))[0] == 200
        assert 400 <= (await raw_problem(running.address, too_big))[0] < 500
