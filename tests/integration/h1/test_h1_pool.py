"""The upstream pool over real sockets, alone and behind a forwarding server: framing both
ways, 1xx, close-delimited answers, limits, stale-connection retry, expiry, timeouts, errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bearerd.h1 import (
    PoolBusy,
    PoolOptions,
    Request,
    Responder,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from support.h1 import (
    WAIT,
    RawUpstream,
    Seen,
    connect,
    echo,
    exchange,
    forwarder,
    read_request_head,
    read_response,
    read_to_eof,
    server,
)

FAST = PoolOptions(tick_s=0.02)


@contextlib.asynccontextmanager
async def pool_for(url: str, options: PoolOptions = FAST, **kwargs: object) -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(url, options=options, **kwargs)  # type: ignore[arg-type]
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def proxied(url: str, options: PoolOptions = FAST) -> AsyncIterator[tuple[int, UpstreamPool]]:
    async with pool_for(url, options) as pool, server(forwarder(pool)) as front:
        yield front.port, pool


async def backend_handler(request: Request, responder: Responder) -> None:
    body = await request.read()
    if request.target == "/stream":
        await responder.start(200, "OK", [("X-Up", "1")])
        for piece in (b"one,", b"two,", b"three"):
            await responder.write(piece)
        await responder.end([("X-Digest", "abc")])
    elif request.target.startswith("/status/"):
        await responder.start(int(request.target[8:]), "Whatever", [("ETag", '"e"')], length=5)
        await responder.write(b"12345")
        await responder.end()
    else:
        await responder.send(
            200,
            "OK",
            [("X-Seen-Host", request.get("host") or ""), ("X-Seen-Fwd", request.get("x-forwarded-by") or "")],
            request.method.encode() + b" " + body,
        )


async def test_forwarding_content_length_and_chunked_both_ways() -> None:
    async with server(backend_handler) as up, proxied(f"http://127.0.0.1:{up.port}") as (port, pool):
        async with connect(port) as (reader, writer):
            writer.write(b"POST /echo HTTP/1.1\r\nHost: front\r\nContent-Length: 5\r\n\r\nhello")
            plain = await read_response(reader)
            writer.write(
                b"POST /echo HTTP/1.1\r\nHost: front\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2;name=val\r\nab\r\n3\r\ncde\r\n0\r\nX-Req-Trailer: dropped\r\n\r\n"
            )
            rechunked = await read_response(reader)
            writer.write(b"GET /stream HTTP/1.1\r\nHost: front\r\n\r\n")
            streamed = await read_response(reader)
        assert plain.body == b"POST hello" and plain.get("content-length") == "10"
        assert plain.get("x-seen-host") == f"127.0.0.1:{up.port}"  # the pool's Host, not the client's
        assert plain.get("x-seen-fwd") == "h1"
        assert rechunked.body == b"POST abcde"
        assert streamed.chunked and streamed.body == b"one,two,three"
        assert streamed.trailers == [("X-Digest", "abc")]  # response trailers are forwarded
        assert pool.stats["open"] == 1  # one kept-alive upstream connection served all three


async def test_head_204_304_through_the_pool() -> None:
    async with (
        server(backend_handler) as up,
        proxied(f"http://127.0.0.1:{up.port}") as (port, _),
        connect(port) as (reader, writer),
    ):
        writer.write(b"HEAD /status/200 HTTP/1.1\r\nHost: f\r\n\r\n")
        head = await read_response(reader, head_request=True)
        writer.write(b"GET /status/204 HTTP/1.1\r\nHost: f\r\n\r\n")
        no_content = await read_response(reader)
        writer.write(b"GET /status/304 HTTP/1.1\r\nHost: f\r\n\r\n")
        not_modified = await read_response(reader)
        writer.write(b"GET /status/200 HTTP/1.1\r\nHost: f\r\n\r\n")
        full = await read_response(reader)
    assert head.status == 200 and head.get("content-length") == "5"
    assert no_content.status == 204 and no_content.get("content-length") is None
    assert not_modified.status == 304 and not_modified.get("etag") == '"e"'
    assert full.body == b"12345"


async def test_close_delimited_and_http10_upstream_answers() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _ = await read_request_head(reader)
        if "/v10" in line:
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold-style body")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with RawUpstream(script) as up, proxied(up.url) as (port, _):
        closing = await exchange(port, b"GET /close HTTP/1.1\r\nHost: f\r\n\r\n")
        old = await exchange(port, b"GET /v10 HTTP/1.1\r\nHost: f\r\n\r\n")
    assert closing.chunked and closing.body == b"until the end"
    assert old.body == b"old-style body"


async def test_upstream_1xx_skipped_or_passed_on() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        await writer.drain()
        await reader.read()

    async with RawUpstream(script) as up, proxied(up.url) as (port, _), connect(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: f\r\n\r\n")
        early = await read_response(reader)
        final = await read_response(reader)
    assert early.status == 103 and early.get("link") == "</a.css>; rel=preload"  # 100 was not passed on
    assert (final.status, final.body) == (200, b"ok")


async def test_upstream_dying_mid_body_truncates_the_client_answer() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async with RawUpstream(script) as up, proxied(up.url) as (port, _), connect(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: f\r\n\r\n")
        raw = await read_to_eof(reader)
    assert b"Content-Length: 100\r\n" in raw and raw.endswith(b"only ten b")  # cut, not completed


async def test_pool_limit_and_bounded_wait() -> None:
    release = asyncio.Event()
    seen = Seen()

    async def slow(request: Request, responder: Responder) -> None:
        seen.requests.append(request)
        seen.called.set()
        await release.wait()
        await responder.send(200, "OK", [], b"late")

    options = PoolOptions(max_connections=1, acquire_timeout_s=0.1, retry_after_s=3, tick_s=0.02)
    async with server(slow) as up, pool_for(f"http://127.0.0.1:{up.port}", options) as pool:
        first = asyncio.create_task(pool.request("GET", "/1", [], read_timeout_s=WAIT))
        await asyncio.wait_for(seen.called.wait(), WAIT)
        with pytest.raises(PoolBusy) as busy:
            await pool.request("GET", "/2", [], read_timeout_s=WAIT)
        assert busy.value.retry_after_s == 3
        waiting = asyncio.create_task(
            UpstreamPool.request(pool, "GET", "/3", [], read_timeout_s=WAIT)  # waits for /1's connection
        )
        await asyncio.sleep(0)
        release.set()
        assert await (await first).read() == b"late"
        assert await (await asyncio.wait_for(waiting, WAIT)).read() == b"late"
        assert len({r.peer for r in seen.requests}) == 1  # the waiter got the same connection


def _keep_then_drop_script() -> RawUpstream:
    """Connection 1 answers one request, then takes the next and closes without a byte."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = up.connections
        _line, fields = await read_request_head(reader)
        if "content-length" in fields:
            await reader.readexactly(int(fields["content-length"]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nconn%d" % (len(b"connN"), n))
        await writer.drain()
        if n == 1:
            await read_request_head(reader)
            writer.transport.abort()  # dies before answering the reused connection's request
            return
        while True:
            _, fields = await read_request_head(reader)
            if "content-length" in fields:
                await reader.readexactly(int(fields["content-length"]))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nconn%d" % n)

    up = RawUpstream(script)
    return up


async def test_stale_connection_retried_once_for_get() -> None:
    async with _keep_then_drop_script() as up, pool_for(up.url) as pool:
        assert await (await pool.request("GET", "/a", [], read_timeout_s=WAIT)).read() == b"conn1"
        assert await (await pool.request("GET", "/b", [], read_timeout_s=WAIT)).read() == b"conn2"
        assert up.connections == 2


async def test_stale_connection_not_retried_for_post() -> None:
    async with _keep_then_drop_script() as up, pool_for(up.url) as pool:
        assert await (await pool.request("POST", "/a", [], b"x", read_timeout_s=WAIT)).read() == b"conn1"
        with pytest.raises(UpstreamClosedError) as err:
            await pool.request("POST", "/b", [], b"x", read_timeout_s=WAIT)
        assert err.value.before_response
        assert up.connections == 1


async def test_fresh_connection_dying_is_not_retried() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.transport.abort()

    async with RawUpstream(script) as up, pool_for(up.url) as pool:
        with pytest.raises(UpstreamClosedError):
            await pool.request("GET", "/", [], read_timeout_s=WAIT)
        assert up.connections == 1


async def test_idle_connections_expire_by_the_pool_clock() -> None:
    now = [1000.0]
    seen = Seen()
    options = PoolOptions(idle_timeout_s=30, tick_s=3600)  # the ticker never fires by itself here
    async with server(echo(seen)) as up, pool_for(f"http://127.0.0.1:{up.port}", options, clock=lambda: now[0]) as pool:
        await (await pool.request("GET", "/1", [], read_timeout_s=WAIT)).read()
        now[0] += 10
        await (await pool.request("GET", "/2", [], read_timeout_s=WAIT)).read()  # reused
        now[0] += 31
        await (await pool.request("GET", "/3", [], read_timeout_s=WAIT)).read()  # expired on checkout
        assert seen.requests[0].peer == seen.requests[1].peer != seen.requests[2].peer
        assert pool.stats["idle"] == 1
        now[0] += 31
        assert pool._ticker is not None
        pool._ticker.sweep()  # the periodic sweep closes it without a request
        assert pool.stats["idle"] == 0


async def test_timeouts_for_the_head_and_the_body() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _ = await read_request_head(reader)
        if "/body" in line:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await reader.read()  # then silence

    async with RawUpstream(script) as up, pool_for(up.url) as pool:
        with pytest.raises(UpstreamTimeoutError) as head:
            await pool.request("GET", "/head", [], read_timeout_s=0.1)
        assert head.value.phase == "response"
        resp = await pool.request("GET", "/body", [], read_timeout_s=0.1)
        with pytest.raises(UpstreamTimeoutError) as body:
            await resp.read()
        assert body.value.phase == "body"


@pytest.mark.parametrize(
    "answer",
    [b"NOT HTTP\r\n\r\n", b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 70000 + b"\r\n\r\n"],
    ids=["garbage", "oversized-head"],
)
async def test_invalid_answers_are_protocol_errors(answer: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(answer)
        await writer.drain()
        await reader.read()

    async with RawUpstream(script) as up, pool_for(up.url) as pool:
        with pytest.raises(UpstreamProtocolError) as err:
            await pool.request("GET", "/", [("X-Secret", "s3cr3t")], read_timeout_s=WAIT)
        assert "s3cr3t" not in str(err.value)


async def test_connect_refused() -> None:
    async with server(echo()) as gone:
        port = gone.port
    async with pool_for(f"http://127.0.0.1:{port}") as pool:
        with pytest.raises(UpstreamConnectError):
            await pool.request("GET", "/", [], read_timeout_s=WAIT)
        assert pool.stats["open"] == 0  # the slot was given back


async def test_early_answer_while_uploading() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
        await writer.drain()

    gate = asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        yield b"first"
        await gate.wait()
        yield b"never needed"

    async with RawUpstream(script) as up, pool_for(up.url) as pool:
        task = asyncio.create_task(pool.request("POST", "/", [], upload(), read_timeout_s=WAIT))
        await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 0.2)
        gate.set()
        resp = await asyncio.wait_for(task, WAIT)
        assert resp.status == 413 and await resp.read() == b"big"


async def test_slow_consumer_pauses_the_upstream() -> None:
    size = 16 << 20

    async def big(request: Request, responder: Responder) -> None:
        await responder.start(200, "OK", [], length=size)
        chunk = b"q" * 65536
        for _ in range(size // len(chunk)):
            await responder.write(chunk)
        await responder.end()

    options = PoolOptions(high_water=256 * 1024, tick_s=0.02)
    async with server(big) as up, pool_for(f"http://127.0.0.1:{up.port}", options) as pool:
        resp = await pool.request("GET", "/", [], read_timeout_s=WAIT)
        conn = resp._conn
        async with asyncio.timeout(WAIT):
            while conn._reading:  # noqa: ASYNC110 - waiting on the transport's state, bounded
                await asyncio.sleep(0.005)
        assert resp._buffered <= options.high_water + 256 * 1024
        total = 0
        async for piece in resp.chunks():
            total += len(piece)
        assert total == size
