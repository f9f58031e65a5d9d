"""Deadlines, flow control both ways, a client that goes away, graceful close.

Nothing here asserts a duration: short timeouts make the waits short, and every wait is
bounded by support.WAIT so a regression fails instead of hanging."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable

from bearerd.h1 import ClientGone, H1Server, Request, Responder, ServerLimits, serve_tcp
from support.h1 import WAIT, connect, echo, other_tasks, read_response, read_to_eof, server

SHORT = ServerLimits(header_timeout_s=0.3, keepalive_timeout_s=0.3, linger_s=0.3)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition on another party's state (a transport paused, a connection gone)
    that has no event of its own; bounded by WAIT, and never a fixed sleep standing in for it."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def closed_while_dribbling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drip: bytes) -> bytes:
    """Keep sending ``drip`` until the server closes; what it sent back."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                return await asyncio.wait_for(reader.read(), 0.05)
            except TimeoutError:
                with contextlib.suppress(ConnectionError):
                    writer.write(drip)
            except ConnectionResetError:
                return b""


async def test_header_deadline_closes_a_slow_head() -> None:
    async with server(echo(), SHORT) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n")
        assert await closed_while_dribbling(reader, writer, b"X") == b""


async def test_leading_empty_lines_do_not_escape_the_header_deadline() -> None:
    limits = ServerLimits(header_timeout_s=0.3, keepalive_timeout_s=30)
    async with server(echo(), limits) as srv, connect(srv.port) as (reader, writer):
        assert await closed_while_dribbling(reader, writer, b"\r\n") == b""


async def test_header_deadline_applies_to_a_later_request_on_a_kept_connection() -> None:
    limits = ServerLimits(header_timeout_s=0.3, keepalive_timeout_s=30)
    async with server(echo(), limits) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await read_response(reader)).status == 200
        writer.write(b"GET /2 HTTP/1.1\r\n")
        assert await closed_while_dribbling(reader, writer, b"X-A: 1\r\n") == b""

    async with server(echo(), limits) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await read_response(reader)).status == 200
        assert await closed_while_dribbling(reader, writer, b"\r\n") == b""


async def test_idle_keep_alive_connection_is_closed() -> None:
    async with server(echo(), SHORT) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await read_response(reader)).status == 200
        assert await read_to_eof(reader) == b""
        await until(lambda: srv.connections == 0)


async def test_body_timeout_fails_the_read_with_client_gone() -> None:
    got: list[BaseException] = []

    async def handler(request: Request, responder: Responder) -> None:
        try:
            await request.read()
        except ClientGone as exc:
            got.append(exc)
            raise

    limits = ServerLimits(body_timeout_s=0.2)
    async with server(handler, limits) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        assert await read_to_eof(reader) in (b"", b"<reset>")
    assert len(got) == 1


async def test_slow_reader_pauses_the_handler_writes() -> None:
    chunk = b"x" * 65536
    total = 256 * len(chunk)  # 16 MiB: far more than any socket buffer
    state = {"written": 0, "max_buffered": 0}
    conns: list[object] = []

    async def handler(request: Request, responder: Responder) -> None:
        transport = responder._conn._transport
        conns.append(responder._conn)
        await responder.start(200, "OK", [], length=total)
        while state["written"] < total:
            await responder.write(chunk)
            state["written"] += len(chunk)
            state["max_buffered"] = max(state["max_buffered"], transport.get_write_buffer_size())
        await responder.end()

    async with server(handler) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        await until(lambda: bool(conns) and conns[0]._write_paused)  # type: ignore[attr-defined]
        assert state["written"] < total  # the client isn't reading, so the handler waits
        high = responder_high_water()
        assert state["max_buffered"] <= high + len(chunk)
        resp = await read_response(reader)
    assert len(resp.body) == total and state["written"] == total


def responder_high_water() -> int:
    return 64 * 1024  # asyncio's and uvloop's default transport high-water mark


async def test_unread_request_body_pauses_the_client() -> None:
    limits = ServerLimits(body_high_water=128 * 1024)
    go = asyncio.Event()
    requests: list[Request] = []

    async def handler(request: Request, responder: Responder) -> None:
        requests.append(request)
        await go.wait()
        body = await request.read(limit=64 << 20)
        await responder.send(200, "OK", [], str(len(body)).encode())

    size = 16 << 20
    async with server(handler, limits) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size)
        sender = asyncio.create_task(_send(writer, b"y" * size))
        await until(lambda: bool(requests) and not requests[0]._conn._reading)
        # Paused with at most the high-water mark plus one read buffered.
        assert requests[0]._buffered <= limits.body_high_water + 256 * 1024
        assert not sender.done()
        go.set()
        resp = await read_response(reader)
        await sender
    assert resp.body == str(size).encode()


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def test_client_gone_mid_upload() -> None:
    got: list[BaseException] = []
    started = asyncio.Event()

    async def handler(request: Request, responder: Responder) -> None:
        started.set()
        try:
            async for _ in request.body():
                pass
        except ClientGone as exc:
            got.append(exc)
            raise

    async with server(handler) as srv:
        async with connect(srv.port) as (_, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\npartial")
            await asyncio.wait_for(started.wait(), WAIT)
        await until(lambda: bool(got))
        await until(lambda: srv.connections == 0 and not srv._shared.tasks)
    assert isinstance(got[0], ClientGone)
    assert other_tasks() == set()


async def test_client_gone_mid_download_and_gone_future() -> None:
    got: list[BaseException] = []
    gone_seen = asyncio.Event()
    conns: list[object] = []

    async def handler(request: Request, responder: Responder) -> None:
        if request.target == "/wait":
            never = asyncio.get_running_loop().create_future()
            done, _ = await asyncio.wait({request.gone, never}, return_when=asyncio.FIRST_COMPLETED)
            assert request.gone in done and request.is_gone
            never.cancel()
            gone_seen.set()
            return
        conns.append(responder._conn)
        await responder.start(200, "OK", [])
        try:
            while True:
                await responder.write(b"z" * 65536)
        except ClientGone as exc:
            got.append(exc)

    async with server(handler) as srv:
        async with connect(srv.port) as (_, writer):
            writer.write(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
            await until(lambda: bool(conns) and conns[0]._write_paused)  # type: ignore[attr-defined]
        await until(lambda: bool(got))
        async with connect(srv.port) as (_, writer):
            writer.write(b"GET /wait HTTP/1.1\r\nHost: h\r\n\r\n")
            await until(lambda: srv.connections == 1 and bool(srv._shared.tasks))
        await asyncio.wait_for(gone_seen.wait(), WAIT)
        await until(lambda: not srv._shared.tasks)
    assert other_tasks() == set()


async def test_cancel_when_gone_cancels_the_handler_when_its_client_leaves() -> None:
    """A handler that opted in is cancelled in the middle of a wait that has nothing to do with
    the client — on a plain request and after a takeover (the connection is a tunnel by then)."""
    cancelled: list[str] = []
    waiting: list[str] = []

    async def handler(request: Request, responder: Responder) -> None:
        assert request.task is asyncio.current_task()
        request.cancel_when_gone()
        if request.target == "/tunnel":
            await responder.takeover(101, "Switching Protocols", [("Upgrade", "x"), ("Connection", "upgrade")])
        waiting.append(request.target)
        try:
            await asyncio.get_running_loop().create_future()  # nothing but a cancellation ends this
        except asyncio.CancelledError:
            cancelled.append(request.target)
            raise

    async with server(handler) as srv:
        for target, head in (
            ("/plain", b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n"),
            ("/tunnel", b"GET /tunnel HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"),
        ):
            async with connect(srv.port) as (_, writer):
                writer.write(head)
                await until(lambda t=target: t in waiting)  # type: ignore[misc]
                assert target not in cancelled
                # A reset, not a FIN: a tunnel passes an EOF on as a half-close, it does not end there.
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            await until(lambda t=target: t in cancelled)  # type: ignore[misc]
        await until(lambda: not srv._shared.tasks)
    assert cancelled == ["/plain", "/tunnel"]
    assert other_tasks() == set()


async def test_graceful_close() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def handler(request: Request, responder: Responder) -> None:
        if request.target == "/slow":
            entered.set()
            await release.wait()
        await responder.send(200, "OK", [], b"fine")

    srv = await _serve(handler)
    async with connect(srv.port) as (idle_reader, idle_writer), connect(srv.port) as (reader, writer):
        idle_writer.write(b"GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await read_response(idle_reader)).status == 200
        writer.write(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        await asyncio.wait_for(entered.wait(), WAIT)
        closing = asyncio.create_task(srv.close(grace_s=WAIT))
        assert await read_to_eof(idle_reader) == b""  # idle keep-alive: closed at once
        assert not closing.done()
        release.set()
        resp = await read_response(reader)
        assert resp.body == b"fine" and resp.get("connection") == "close"
        await asyncio.wait_for(closing, WAIT)
    # New connections are refused now.
    try:
        async with connect(srv.port):
            raise AssertionError("still accepting")
    except OSError:
        pass


async def test_graceful_close_cancels_what_outlives_the_grace_period() -> None:
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    async def handler(request: Request, responder: Responder) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    srv = await _serve(handler)
    async with connect(srv.port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        await asyncio.wait_for(entered.wait(), WAIT)
        await asyncio.wait_for(srv.close(grace_s=0.1), WAIT)
        assert cancelled.is_set()
        assert await read_to_eof(reader) in (b"", b"<reset>")
    assert other_tasks() == set()


async def _serve(handler: Callable[[Request, Responder], Awaitable[None]]) -> H1Server:
    return await serve_tcp("127.0.0.1", 0, handler)
