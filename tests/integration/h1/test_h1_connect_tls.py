"""HTTP inside a CONNECT tunnel (``serve_tunnel_tls``): TLS terminated on the client's transport,
then the tunnel is one more connection of the listener — its limits, its graceful close, its count."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import pytest

from bearerd.h1 import ClientTLSError, H1Server, Request, Responder, ServerLimits, serve_tcp, serve_tunnel_tls
from support.h1 import WAIT, Handler, Seen, echo, other_tasks, pki, read_response, read_to_eof, server
from support.waiting import eventually


def intercepting(inner: Handler, context: ssl.SSLContext, failures: list[ClientTLSError]) -> Handler:
    async def handler(request: Request, responder: Responder) -> None:
        assert request.method == "CONNECT"
        await responder.takeover(200, "Connection established")
        try:
            await serve_tunnel_tls(request, inner, context)
        except ClientTLSError as exc:
            failures.append(exc)

    return handler


@contextlib.asynccontextmanager
async def tunnel_to(
    srv: H1Server, client_ctx: ssl.SSLContext, name: str = "localhost"
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A client that CONNECTs, then speaks TLS inside (as curl does with HTTPS_PROXY)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(f"CONNECT {name}:443 HTTP/1.1\r\nHost: {name}:443\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 200 "), head
        await asyncio.wait_for(writer.start_tls(client_ctx, server_hostname=name), WAIT)
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_requests_inside_the_tunnel_reach_the_tunnel_handler_over_tls() -> None:
    tls = pki("localhost")
    seen, failures = Seen(), list[ClientTLSError]()
    names: list[tuple[str, str | None]] = []
    inner_echo = echo(seen)

    async def inner(request: Request, responder: Responder) -> None:
        names.append((request.scheme, request.server_name))
        await inner_echo(request, responder)

    async with server(intercepting(inner, tls.server_ctx, failures)) as srv:
        async with tunnel_to(srv, tls.client_ctx) as (reader, writer):
            for path in ("/one", "/two?x=1"):  # keep-alive inside the tunnel
                writer.write(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc".encode())
                resp = await read_response(reader)
                assert resp.status == 200
                assert resp.json() == {"method": "POST", "target": path, "version": "1.1", "len": 3}
            assert srv.connections == 2  # the CONNECT's connection and the one inside it
        await eventually(lambda: srv.connections == 0)
    assert names == [("https", "localhost"), ("https", "localhost")]
    assert failures == []


async def test_a_failed_handshake_is_reported_and_the_connection_released() -> None:
    tls, stranger = pki("localhost"), pki("localhost")  # the client trusts another CA
    failures: list[ClientTLSError] = []
    async with server(intercepting(echo(), tls.server_ctx, failures)) as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with tunnel_to(srv, stranger.client_ctx):
                pass
        await eventually(lambda: bool(failures) and srv.connections == 0)
    # OpenSSL's alert when it arrives before the client's reset, else the reset, said as such.
    assert "UNKNOWN_CA" in failures[0].reason.upper() or "trust the certificate" in failures[0].reason


async def test_inner_connections_obey_the_listeners_limits() -> None:
    tls = pki("localhost")
    limits = ServerLimits(max_header_count=8, header_timeout_s=0.5)
    async with server(intercepting(echo(), tls.server_ctx, []), limits) as srv:
        async with tunnel_to(srv, tls.client_ctx) as (reader, writer):
            many = "".join(f"X-{i}: v\r\n" for i in range(9))
            writer.write(f"GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n".encode())
            assert (await read_response(reader)).status == 431
        async with tunnel_to(srv, tls.client_ctx) as (reader, _):
            assert await read_to_eof(reader) in (b"", b"<reset>")  # no request within header_timeout_s: closed
        await eventually(lambda: srv.connections == 0)


async def test_graceful_close_lets_a_request_inside_a_tunnel_finish() -> None:
    tls = pki("localhost")
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(request: Request, responder: Responder) -> None:
        started.set()
        await release.wait()
        await responder.send(200, "OK", [], b"done")

    srv = await serve_tcp("127.0.0.1", 0, intercepting(slow, tls.server_ctx, []))
    try:
        async with tunnel_to(srv, tls.client_ctx) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await asyncio.wait_for(started.wait(), WAIT)
            closing = asyncio.create_task(srv.close(grace_s=WAIT))
            await eventually(lambda: srv._shared.closing)
            release.set()
            resp = await read_response(reader)
            assert (resp.status, resp.body, resp.get("connection")) == (200, b"done", "close")
            await asyncio.wait_for(closing, WAIT)
            assert srv.connections == 0
    finally:
        await srv.close(grace_s=0)


async def test_close_past_the_grace_period_cuts_the_tunnel_and_its_tasks() -> None:
    tls = pki("localhost")
    started = asyncio.Event()

    async def stuck(request: Request, responder: Responder) -> None:
        started.set()
        await asyncio.Event().wait()

    srv = await serve_tcp("127.0.0.1", 0, intercepting(stuck, tls.server_ctx, []))
    async with tunnel_to(srv, tls.client_ctx) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await asyncio.wait_for(started.wait(), WAIT)
        await srv.close(grace_s=0.05)
        assert srv.connections == 0
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            assert await read_to_eof(reader) in (b"", b"<reset>")
    assert not [t for t in other_tasks() if "ServerConnection" in repr(t)]


async def test_bytes_sent_before_the_tunnel_answer_are_refused() -> None:
    tls = pki("localhost")
    failures: list[ClientTLSError] = []
    async with server(intercepting(echo(), tls.server_ctx, failures)) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n\x16\x03\x01")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await read_to_eof(reader) in (b"", b"<reset>")
        writer.close()
        await eventually(lambda: bool(failures) and srv.connections == 0)
    assert "before the tunnel" in failures[0].reason
