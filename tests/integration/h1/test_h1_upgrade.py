"""101 upgrades end to end: client ↔ forwarding server (takeover) ↔ pool.upgrade ↔ backend
(takeover), bytes relayed both ways with back-pressure and half-close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bearerd.h1 import PoolOptions, Request, Responder, Tunnel, UpstreamPool, relay
from support.h1 import HOP, WAIT, connect, read_response, read_to_eof, server

UPGRADE_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade")]


async def upper_echo(request: Request, responder: Responder) -> None:
    """The backend: after 101, answers every piece upper-cased; at EOF says bye and closes."""
    if request.get("upgrade") != "websocket":
        await responder.send(403, "Forbidden", [], b"no upgrade")
        return
    tunnel = await responder.takeover(101, "Switching Protocols", UPGRADE_HEADERS)
    if request.target == "/flood":
        for _ in range(256):
            tunnel.write(b"f" * 65536)
            await tunnel.drain()
        tunnel.close()
        return
    while data := await tunnel.read():
        tunnel.write(data.upper())
        await tunnel.drain()
    tunnel.write(b"bye")
    tunnel.close()


@contextlib.asynccontextmanager
async def front(
    relays: list[tuple[int, int]], tunnels: list[tuple[Tunnel, Tunnel]] | None = None
) -> AsyncIterator[int]:
    async with server(upper_echo) as back:
        pool = UpstreamPool(f"http://127.0.0.1:{back.port}", options=PoolOptions(tick_s=0.05))

        async def handler(request: Request, responder: Responder) -> None:
            headers = [(n, v) for n, v in request.headers if n.lower() not in HOP]
            if request.upgrade:
                headers += [("Upgrade", request.get("upgrade") or ""), ("Connection", "Upgrade")]
            up = await pool.upgrade(request.method, request.target, headers, read_timeout_s=WAIT)
            if up.tunnel is None:
                await responder.send(
                    up.status, up.reason, [(n, v) for n, v in up.headers if n.lower() not in HOP], await up.read()
                )
                return
            client = await responder.takeover(101, up.reason, UPGRADE_HEADERS)
            if tunnels is not None:
                tunnels.append((client, up.tunnel))
            relays.append(await relay(client, up.tunnel, idle_timeout_s=WAIT))

        try:
            async with server(handler) as srv:
                yield srv.port
        finally:
            await pool.close()


async def test_websocket_style_upgrade_relays_both_ways_with_half_close() -> None:
    relays: list[tuple[int, int]] = []
    async with front(relays) as port, connect(port) as (reader, writer):
        writer.write(b"GET /ws HTTP/1.1\r\nHost: f\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly bytes;")
        head = await read_response(reader)
        assert head.status == 101 and head.get("upgrade") == "websocket"
        assert await reader.readexactly(len(b"EARLY BYTES;")) == b"EARLY BYTES;"  # sent before the 101
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"HELLO"
        writer.write_eof()  # half-close: the backend still answers after our EOF
        assert await read_to_eof(reader) == b"bye"
    assert relays == [(len(b"early bytes;hello"), len(b"EARLY BYTES;HELLObye"))]


async def test_refused_upgrade_is_an_ordinary_answer_then_close() -> None:
    async with front([]) as port, connect(port) as (reader, writer):
        writer.write(b"GET /ws HTTP/1.1\r\nHost: f\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        resp = await read_response(reader)
        assert (resp.status, resp.body) == (403, b"no upgrade")
        assert resp.get("connection") == "close"
        assert await read_to_eof(reader) == b""


async def test_relay_back_pressure_pauses_the_fast_side() -> None:
    relays: list[tuple[int, int]] = []
    tunnels: list[tuple[Tunnel, Tunnel]] = []
    async with front(relays, tunnels) as port, connect(port) as (reader, writer):
        writer.write(b"GET /flood HTTP/1.1\r\nHost: f\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        assert (await read_response(reader)).status == 101
        # We don't read: the relay must stop reading the upstream rather than buffer 16 MiB.
        async with asyncio.timeout(WAIT):
            while not tunnels or tunnels[0][1].transport.is_reading():  # noqa: ASYNC110 - bounded wait on state
                await asyncio.sleep(0.005)
        client_side, _ = tunnels[0]
        assert client_side.transport.get_write_buffer_size() <= 64 * 1024 + 256 * 1024
        total = 0
        async with asyncio.timeout(WAIT):
            while data := await reader.read(1 << 20):
                total += len(data)
    assert total == 256 * 65536
    assert relays == [(0, total)]
