"""Malformed and smuggling-shaped requests are refused before anything is forwarded."""

from __future__ import annotations

import json

import pytest

from bearerd.emulator import EmulatorStack
from support.inprocess import Running
from support.wire import raw_exchange, raw_problem

GOOD_HEAD = "GET /secretapi/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
CLOSE = b"Connection: close\r\n\r\n"


BAD = "urn:bearerd:problem:bad-request"
TOO_LARGE = "urn:bearerd:problem:headers-too-large"
CODING = "urn:bearerd:problem:transfer-coding-not-implemented"


@pytest.mark.parametrize(
    ("name", "request_bytes", "status", "problem"),
    [
        (
            "CRLF injected into a header value",
            b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Injected: 1\r\n\r\n",
            400,
            BAD,
        ),
        (
            "bare LF header injection",
            b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nX-A: b\nX-B: c\r\n\r\n",
            400,
            BAD,
        ),
        (
            "Transfer-Encoding with Content-Length (smuggling)",
            b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            BAD,
        ),
        (
            "two different Content-Length headers",
            b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            400,
            BAD,
        ),
        (
            "obsolete line folding",
            b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n",
            400,
            BAD,
        ),
        ("NUL in the target", b"GET /secretapi/api\x00/status HTTP/1.1\r\nHost: a\r\n\r\n", 400, BAD),
        ("space in the target", b"GET /secretapi/a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, BAD),
        ("encoded CRLF in the path", b"GET /secretapi/a%0d%0aX-Evil:%201 HTTP/1.1\r\nHost: a\r\n" + CLOSE, 400, BAD),
        ("backslash in the path", b"GET /secretapi/..\\otherapi/x HTTP/1.1\r\nHost: a\r\n" + CLOSE, 400, BAD),
        ("oversized header", (GOOD_HEAD + "X-Big: " + "a" * 9000 + "\r\n\r\n").encode(), 431, TOO_LARGE),
        (
            "too many headers",
            (GOOD_HEAD + "".join(f"X-{i}: v\r\n" for i in range(150)) + "\r\n").encode(),
            431,
            TOO_LARGE,
        ),
        # Issue 16, item 6: each header within the limits, the block as a whole far over 64 KiB.
        (
            "a 720 KB header block",
            (GOOD_HEAD + "".join(f"X-{i}: {'v' * 8000}\r\n" for i in range(90)) + "\r\n").encode(),
            431,
            TOO_LARGE,
        ),
        # Issue 16, item 7: a parser-level refusal is problem+json too.
        ("duplicate Host", b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, BAD),
        (
            "invalid chunk size",
            b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            BAD,
        ),
        # Issue 16, item 1: HTTP/1.0 with Transfer-Encoding is faulty framing (RFC 9112 §6.1); what
        # follows it must never be read as a second request.
        (
            "HTTP/1.0 with Transfer-Encoding smuggling a second request",
            b"POST /secretapi/h10 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n0\r\n\r\nGET /secretapi/h10-HIDDEN HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            BAD,
        ),
        # Issue 16, item 2: HTTP/0.9 has no headers, so no Host and no framing: refused, never forwarded.
        ("an HTTP/0.9 request line", b"GET /secretapi/x\r\n\r\n", 400, BAD),
        # Issue 16, item 3: a coding bearerd doesn't implement (RFC 9112 §6.1: 501).
        (
            "an unknown transfer coding",
            b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
            501,
            CODING,
        ),
        # Issue 16, item 4: a WebSocket handshake carrying a body (it used to hang forever).
        (
            "a WebSocket handshake with a body",
            b"GET /secretapi/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 1\r\n\r\nx",
            400,
            BAD,
        ),
    ],
)
async def test_refused_with_a_problem_and_never_forwarded(
    running: Running, stack: EmulatorStack, name: str, request_bytes: bytes, status: int, problem: str
) -> None:
    assert await running.daemon.wait_ready(within_s=5)
    seen = sum(len(app.requests_seen) for app in stack.apps.values())
    got, head, body = await raw_exchange(running.address, request_bytes)
    assert got == status, name
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head[:60]
    assert b"\r\ncontent-type: application/problem+json" in head.lower(), head
    assert json.loads(body)["type"] == problem, body
    assert sum(len(app.requests_seen) for app in stack.apps.values()) == seen, name  # nothing was forwarded
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
        assert (await raw_problem(running.address, too_big)) == (431, {
            "type": TOO_LARGE, "title": "Request header fields too large", "status": 431,
            "detail": (await raw_problem(running.address, too_big))[1]["detail"],
        })  # fmt: skip
