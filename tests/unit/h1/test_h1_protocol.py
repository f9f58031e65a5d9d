"""The server protocol driven without sockets: bytes in through a fake transport, what it
writes back, and which requests reach the handler — keep-alive decisions and limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bearerd.h1 import Request, Responder, ServerLimits
from bearerd.h1.server import ServerConnection, Shared


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.out += line

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.1", 5555), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading


async def drive(raw: bytes, limits: ServerLimits | None = None) -> tuple[list[Request], bytes, bool]:
    seen: list[Request] = []

    async def handler(request: Request, responder: Responder) -> None:
        seen.append(request)
        await responder.send(200, "OK", [], b"ok")

    shared = Shared(handler, limits or ServerLimits(), lambda r, e: None, None)
    conn = ServerConnection(shared)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(raw)
    for _ in range(20):  # let the handler tasks run
        await asyncio.sleep(0)
    return seen, bytes(transport.out), transport.closed


@pytest.mark.parametrize(
    ("request_head", "keep", "connection_header"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True, None),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False, b"close"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: te, Close\r\n\r\n", False, b"close"),
        (b"GET / HTTP/1.0\r\n\r\n", False, b"close"),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True, b"keep-alive"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab", False, b"close"),  # body not all read
    ],
)
async def test_keep_alive_decisions(request_head: bytes, keep: bool, connection_header: bytes | None) -> None:
    seen, out, closed = await drive(request_head)
    assert len(seen) == 1
    head = out.split(b"\r\n\r\n", 1)[0]
    lines = {line.split(b": ", 1)[0].lower(): line.split(b": ", 1)[1] for line in head.split(b"\r\n")[1:]}
    assert lines.get(b"connection") == connection_header
    assert closed is not keep


@pytest.mark.parametrize(
    ("limits", "raw"),
    [
        (ServerLimits(max_header_count=2), b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"),
        (ServerLimits(max_header_field=20), b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"x" * 30 + b"\r\n\r\n"),
        (ServerLimits(max_header_bytes=30), b"GET / HTTP/1.1\r\nHost: h\r\nA: 0123456789\r\nB: 0123456789\r\n\r\n"),
        (ServerLimits(max_request_line=10), b"GET /0123456789 HTTP/1.1\r\nHost: h\r\n\r\n"),
    ],
)
async def test_limits_refuse_with_431(limits: ServerLimits, raw: bytes) -> None:
    seen, out, closed = await drive(raw, limits)
    assert seen == [] and closed
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_exactly_at_the_limits_is_fine() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n"
    seen, out, _ = await drive(raw, ServerLimits(max_header_count=2))
    assert len(seen) == 1 and out.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_head_still_arriving_is_bounded_before_its_fields_complete() -> None:
    limits = ServerLimits(max_header_bytes=1024, max_request_line=64, max_header_field=100_000)
    seen: list[Request] = []

    async def handler(request: Request, responder: Responder) -> None:
        seen.append(request)

    conn = ServerConnection(Shared(handler, limits, lambda r, e: None, None))
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: h\r\nX-Endless: ")
    for _ in range(3):
        conn.data_received(b"v" * 512)  # one unfinished field, never reported by llhttp
    assert transport.out.startswith(b"HTTP/1.1 431 ") and transport.closed
    assert seen == []


async def test_endless_trailer_or_chunk_extension_is_bounded() -> None:
    limits = ServerLimits(max_header_bytes=1024, max_request_line=64)
    for tail in (b"0\r\nX-Endless: ", b"5;ext="):
        got: list[BaseException] = []
        conn = ServerConnection(Shared(_reader_into(got), limits, lambda r, e: None, None))
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n" + tail)
        for _ in range(4):
            conn.data_received(b"v" * 512)
        for _ in range(20):
            await asyncio.sleep(0)
        assert transport.out.startswith(b"HTTP/1.1 400 ") and transport.closed
        # The body broke before the handler's task ran: it never sees the request at all.
        assert got == []


def _reader_into(got: list[BaseException]) -> Callable[[Request, Responder], Awaitable[None]]:
    async def handler(request: Request, responder: Responder) -> None:
        try:
            await request.read()
        except Exception as exc:
            got.append(exc)
            raise

    return handler
