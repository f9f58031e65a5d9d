"""Shared helpers for the h1 integration tests: servers on 127.0.0.1:0, raw-socket clients, an
independent (hand-written, not llhttp) response reader, a forwarding proxy, a TLS CA, and a
small CONNECT proxy that counts what it is asked."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trustme

from bearerd.h1 import (
    H1Server,
    Request,
    Responder,
    ServerLimits,
    UpstreamPool,
    serve_tcp,
)

Handler = Callable[[Request, Responder], Awaitable[None]]
HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "host"})
WAIT = 10.0  # generous bound for every wait in these tests; nothing asserts on durations


@dataclass
class Seen:
    """What a recording handler was called with."""

    requests: list[Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)


def echo(seen: Seen | None = None) -> Handler:
    """Answers with a JSON summary of the request (method, target, version, body length)."""

    async def handler(request: Request, responder: Responder) -> None:
        body = await request.read()
        if seen is not None:
            seen.requests.append(request)
            seen.bodies.append(body)
            seen.called.set()
        summary = {"method": request.method, "target": request.target, "version": request.version, "len": len(body)}
        await responder.send(200, "OK", [("Content-Type", "application/json")], json.dumps(summary).encode())

    return handler


@contextlib.asynccontextmanager
async def server(handler: Handler, limits: ServerLimits | None = None, **kwargs: Any) -> AsyncIterator[H1Server]:
    srv = await serve_tcp("127.0.0.1", 0, handler, limits, **kwargs)
    try:
        yield srv
    finally:
        await srv.close(grace_s=1.0)


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, *, head_request: bool = False) -> Response:
    """One response, parsed by hand (independent of llhttp). Skips nothing: 1xx are returned."""
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = [(n, v.strip()) for n, v in (line.split(":", 1) for line in lines[1:])]
        resp = Response(int(status), reason[0] if reason else "", headers, b"")
        code = resp.status
        te = resp.get("transfer-encoding")
        cl = resp.get("content-length")
        if head_request or code < 200 or code in (204, 304):
            return resp
        if te is not None:
            assert te == "chunked"
            resp.chunked = True
            body = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line[:-2], 16)
                if size == 0:
                    break
                body += await reader.readexactly(size)
                assert await reader.readexactly(2) == b"\r\n"
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, value = line[:-2].decode("latin-1").split(":", 1)
                resp.trailers.append((name, value.strip()))
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = await reader.readexactly(int(cl))
        else:
            resp.body = await reader.read()
        return resp


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def exchange(port: int, raw: bytes, *, head_request: bool = False) -> Response:
    async with connect(port) as (reader, writer):
        writer.write(raw)
        return await read_response(reader, head_request=head_request)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(WAIT):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b"<reset>"


def forwarder(pool: UpstreamPool, *, extra: tuple[str, str] = ("X-Forwarded-By", "h1")) -> Handler:
    """A forwarding handler: hop-by-hop dropped, one header added, both bodies streamed."""

    async def handler(request: Request, responder: Responder) -> None:
        headers = [(n, v) for n, v in request.headers if n.lower() not in HOP]
        headers.append(extra)
        body: bytes | AsyncIterator[bytes] | None = None
        if request.has_body:
            body = request.body() if request.chunked else await request.read()
        async with await pool.request(
            request.method,
            request.target,
            headers,
            body,
            read_timeout_s=WAIT,
            on_informational=lambda status, hs: responder.informational(status, hs) if status == 103 else None,
        ) as up:
            out = [(n, v) for n, v in up.headers if n.lower() not in HOP]
            await responder.start(up.status, up.reason, out, length=up.content_length)
            try:
                async for chunk in up.chunks():
                    await responder.write(chunk)
            except Exception:
                responder.abort()
                raise
            await responder.end(up.trailers)

    return handler


# -- TLS --------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: trustme.CA
    server_ctx: ssl.SSLContext
    client_ctx: ssl.SSLContext


def pki(*names: str) -> Pki:
    ca = trustme.CA()
    cert = ca.issue_cert(*(names or ("localhost", "127.0.0.1")))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return Pki(ca, server_ctx, client_ctx)


# -- an egress proxy ---------------------------------------------------------------------------


class _StreamServer:
    """A start_server wrapper that ends its connections by closing them, never by cancelling."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=WAIT)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ConnectProxy(_StreamServer):
    """A small HTTP CONNECT proxy: counts CONNECTs, checks Proxy-Authorization when given."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.connects: list[str] = []
        self.auth_seen: list[str | None] = []
        self._expected = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user is not None else None
        )

    async def __aenter__(self) -> ConnectProxy:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ")
        fields = {n.lower(): v.strip() for n, v in (line.split(":", 1) for line in head[1:] if line)}
        self.auth_seen.append(fields.get("proxy-authorization"))
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self._expected is not None and fields.get("proxy-authorization") != self._expected:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        self.connects.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._writers.add(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.write_eof()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.close()
            self._writers.discard(up_writer)


# -- a raw upstream ----------------------------------------------------------------------------


class RawUpstream(_StreamServer):
    """An upstream that answers each connection with a scripted function over raw streams."""

    def __init__(self, script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
        super().__init__()
        self.script = script
        self.connections = 0

    async def __aenter__(self) -> RawUpstream:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self.script(reader, writer)


async def read_request_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = {n.lower(): v.strip() for n, v in (line.split(":", 1) for line in head[1:] if line)}
    return head[0], fields


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks besides the test's own (a leak check)."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
