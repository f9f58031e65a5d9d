"""The server side over real sockets: framing, keep-alive, HTTP/1.0, 1xx, 100-continue,
pipelining, handler failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog.testing

from bearerd.h1 import Request, Responder, ServerLimits, serve_unix
from support.h1 import Seen, connect, echo, exchange, read_response, read_to_eof, server


async def test_content_length_request_and_keep_alive() -> None:
    seen = Seen()
    async with server(echo(seen)) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"POST /a?x=%2F HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        first = await read_response(reader)
        writer.write(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        second = await read_response(reader)
    assert first.status == 200
    assert first.json() == {"method": "POST", "target": "/a?x=%2F", "version": "1.1", "len": 5}
    assert first.get("connection") is None  # HTTP/1.1 keeps alive by default
    assert second.json()["target"] == "/b"
    assert seen.bodies == [b"hello", b""]
    assert seen.requests[0].headers == [("Host", "h"), ("Content-Length", "5")]
    assert seen.requests[0].get("content-length") == "5"
    assert seen.requests[0].content_length == 5


async def test_chunked_request_body_is_unframed() -> None:
    seen = Seen()
    raw = (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with server(echo(seen)) as srv:
        resp = await exchange(srv.port, raw)
    assert resp.json()["len"] == 7
    assert seen.bodies == [b"abcdefg"]
    assert seen.requests[0].chunked


async def test_streamed_answer_is_chunked_for_http11_with_trailers() -> None:
    async def handler(request: Request, responder: Responder) -> None:
        await responder.start(200, "OK", [("Content-Length", "1"), ("Transfer-Encoding", "gzip")])
        await responder.write(b"abc")
        await responder.write(b"")
        await responder.write(b"def")
        await responder.end([("X-Checksum", "1")])

    async with server(handler) as srv:
        resp = await exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert resp.chunked and resp.body == b"abcdef"
    assert resp.trailers == [("X-Checksum", "1")]
    names = [n.lower() for n, _ in resp.headers]
    assert names.count("transfer-encoding") == 1 and "content-length" not in names  # never two framings


async def test_http10_client_close_delimited_and_keep_alive() -> None:
    async def handler(request: Request, responder: Responder) -> None:
        await responder.start(200, "OK", [("X-V", request.version)])
        await responder.write(b"streamed")
        await responder.end([("X-Dropped", "1")])

    async with server(handler) as srv:
        async with connect(srv.port) as (reader, writer):
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            raw = await read_to_eof(reader)
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close\r\n" in raw and b"Transfer-Encoding" not in raw
        assert raw.endswith(b"\r\n\r\nstreamed")

    async with server(echo()) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = await read_response(reader)
        writer.write(b"GET /2 HTTP/1.0\r\n\r\n")
        second = await read_response(reader)
        assert await read_to_eof(reader) == b""
    assert first.get("connection") == "keep-alive" and first.get("content-length") is not None
    assert second.get("connection") == "close"


async def test_connection_close_from_client_and_handler() -> None:
    async with server(echo()) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        resp = await read_response(reader)
        assert resp.get("connection") == "close"
        assert await read_to_eof(reader) == b""

    async def closing(request: Request, responder: Responder) -> None:
        await responder.send(200, "OK", [], b"bye", close=True)

    async with server(closing) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        resp = await read_response(reader)
        assert resp.get("connection") == "close" and resp.body == b"bye"
        assert await read_to_eof(reader) == b""


async def test_no_body_for_head_204_304_and_length_announced() -> None:
    async def handler(request: Request, responder: Responder) -> None:
        status = int(request.target[1:])
        await responder.start(status, "X", [("ETag", '"1"')], length=42)
        await responder.write(b"x" * 42)  # dropped: this answer has no body
        await responder.end()

    async with server(handler) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"HEAD /200 HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await read_response(reader, head_request=True)
        writer.write(b"GET /204 HTTP/1.1\r\nHost: h\r\n\r\n")
        no_content = await read_response(reader)
        writer.write(b"GET /304 HTTP/1.1\r\nHost: h\r\n\r\n")
        not_modified = await read_response(reader)
        writer.write(b"GET /200 HTTP/1.1\r\nHost: h\r\n\r\n")
        full = await read_response(reader)  # proves no stray body bytes came before it
    assert head.get("content-length") == "42"
    assert no_content.get("content-length") is None and no_content.get("transfer-encoding") is None
    assert not_modified.get("content-length") == "42"
    assert full.body == b"x" * 42


async def test_informational_then_final() -> None:
    async def handler(request: Request, responder: Responder) -> None:
        responder.informational(103, [("Link", "</style.css>; rel=preload")])
        await responder.send(200, "OK", [], b"done")

    async with server(handler) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        early = await read_response(reader)
        final = await read_response(reader)
    assert early.status == 103 and early.get("link") == "</style.css>; rel=preload"
    assert (final.status, final.body) == (200, b"done")


async def test_100_continue_only_when_the_handler_reads() -> None:
    async with server(echo()) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = await read_response(reader)
        assert interim.status == 100
        writer.write(b"data")
        final = await read_response(reader)
        assert final.json()["len"] == 4

    async def refuse(request: Request, responder: Responder) -> None:
        await responder.send(413, "Content Too Large", [], b"no")

    async with server(refuse) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        final = await read_response(reader)
        # No 100 was sent; the body may never come, so the connection is not kept.
        assert final.status == 413 and final.get("connection") == "close"
        assert await read_to_eof(reader) == b""


async def test_pipelined_requests_answered_in_order() -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def handler(request: Request, responder: Responder) -> None:
        order.append(request.target)
        if request.target == "/slow":
            await release.wait()
        body = await request.read()
        await responder.send(200, "OK", [], request.target.encode() + b":" + body)

    raw = (
        b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /three HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    async with server(handler) as srv, connect(srv.port) as (reader, writer):
        writer.write(raw)
        await asyncio.sleep(0)
        assert order in ([], ["/slow"])  # the others wait for /slow's answer
        release.set()
        answers = [await read_response(reader) for _ in range(3)]
    assert [a.body for a in answers] == [b"/slow:", b"/two:hi", b"/three:"]
    assert order == ["/slow", "/two", "/three"]


async def test_handler_error_is_500_problem_and_one_log_line() -> None:
    errors: list[tuple[str, str]] = []

    async def failing(request: Request, responder: Responder) -> None:
        raise KeyError("boom")

    async def silent(request: Request, responder: Responder) -> None:
        return

    for handler in (failing, silent):
        async with server(handler, on_error=lambda r, e: errors.append((r.method, type(e).__name__))) as srv:
            resp = await exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert resp.status == 500
            assert resp.get("content-type") == "application/problem+json"
            assert resp.get("connection") == "close"
            # The server is still up and answering.
            assert (await exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")).status == 500
    assert errors == [("GET", "KeyError"), ("GET", "KeyError"), ("GET", "RuntimeError"), ("GET", "RuntimeError")]


async def test_error_after_start_aborts_instead_of_completing() -> None:
    async def handler(request: Request, responder: Responder) -> None:
        await responder.start(200, "OK", [], length=10)
        await responder.write(b"12345")
        raise RuntimeError("upstream died")

    async with server(handler, on_error=lambda r, e: None) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        raw = await read_to_eof(reader)
    assert raw.endswith(b"\r\n\r\n12345")  # truncated, then the connection was cut


async def test_request_facts_and_lookup() -> None:
    seen = Seen()
    async with server(echo(seen), ServerLimits()) as srv:
        await exchange(srv.port, b"GET http://h/x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2 \r\nCookie: c\r\n\r\n")
    req = seen.requests[0]
    assert req.target == "http://h/x"
    assert req.getall("x-a") == ["1", "2"] and req.get("cookie") == "c" and req.get("missing") is None
    assert req.scheme == "http" and req.server_name is None
    assert req.peer[0] == "127.0.0.1" and req.local_addr[1] == srv.port
    assert not req.has_body and not req.upgrade and req.keep_alive


async def test_send_announces_a_length_for_head_and_serve_unix(tmp_path: Path) -> None:
    async def handler(request: Request, responder: Responder) -> None:
        await responder.send(200, "OK", [("Content-Length", "1")], length=321)

    srv = await serve_unix(str(tmp_path / "h1.sock"), handler)
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "h1.sock"))
        writer.write(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await read_response(reader, head_request=True)
        get = await read_response(reader)
        writer.close()
    finally:
        await srv.close()
    assert head.get("content-length") == "321"
    assert get.get("content-length") == "0" and get.body == b""  # a GET answer has the body it has
    assert srv.address == str(tmp_path / "h1.sock")


async def test_default_error_hook_logs_one_line_without_the_target() -> None:
    async def failing(request: Request, responder: Responder) -> None:
        raise ValueError("bad thing")

    with structlog.testing.capture_logs() as logs:
        async with server(failing) as srv:
            resp = await exchange(srv.port, b"GET /secret?token=abc HTTP/1.1\r\nHost: h\r\n\r\n")
    assert resp.status == 500
    assert len(logs) == 1
    line = logs[0]
    assert line["event"] == "handler_failed" and line["error"] == "ValueError" and line["log_level"] == "error"
    assert line["at"].startswith("test_h1_server.py:")
    assert "token=abc" not in repr(line) and "exc_info" not in line
