"""Upstream faults: the client gets a clean error or a cut stream; nothing leaks, the daemon stays up."""

from __future__ import annotations

import asyncio
import os
import random
import socket

import aiohttp
import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables
from support.inprocess import Running, start
from support.waiting import eventually


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_reset_mid_response(running: Running) -> None:
    # A small body is relayed in one piece, so a reset is still a clean 502 problem...
    async with running.session.get(running.url("/secretapi/reset?after=1000")) as resp:
        assert resp.status == 502
        assert (await resp.json())["type"] == "urn:bearerd:problem:upstream-unreachable"
    # ...a streamed one has its headers out already: the client sees the stream cut, not a clean end.
    with pytest.raises(aiohttp.ClientPayloadError):
        async with running.session.get(running.url("/secretapi/reset?after=100000")) as resp:
            assert resp.status == 200
            await resp.read()
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200  # the pool recovered


async def test_upstream_stalling_mid_body_is_cut_after_timeout(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    async with start(load_config(write_config(timeout_s=0.5))) as running:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with running.session.get(running.url("/secretapi/stream?chunks=3&interval=2")) as resp:
                assert resp.status == 200
                await resp.read()
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200


async def test_a_thousand_faults_leak_no_fds_or_tasks(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    # A bound socket that never listens: connecting to it is refused for as long as it is held.
    with socket.socket() as dead_socket:
        dead_socket.bind(("127.0.0.1", 0))
        tables = stack_tables(stack)
        tables["routes.dead"] = {
            **tables["routes.secretapi"],
            "match": {"path_prefix": "/dead/"},
            "upstream": f"https://127.0.0.1:{dead_socket.getsockname()[1]}/",
        }
        rng = random.Random(1)
        targets = ["/secretapi/reset?after=100", "/nope/x", "/secretapi/%2e%2e/x", "/dead/x", "/secretapi/status/502"]
        async with start(load_config(write_config(tables))) as running:
            assert await running.daemon.wait_ready(within_s=5)
            connector = aiohttp.TCPConnector(limit=20)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def one(target: str) -> int:
                    try:
                        async with session.get(running.url(target)) as resp:
                            await resp.read()
                            return resp.status
                    except aiohttp.ClientPayloadError:
                        return -1  # the reset, relayed as a cut stream

                async def burst(n: int) -> list[int]:
                    return await asyncio.gather(*(one(rng.choice(targets)) for _ in range(n)))

                await burst(200)  # the same load first: pools reach the size this load needs
                fds, tasks = open_fds(), len(asyncio.all_tasks())
                statuses = await burst(1000)
                assert 500 not in statuses  # never a 500 of bearerd's own
                assert set(statuses) <= {-1, 404, 400, 502}
                # Nothing left behind by a thousand faults: every task and descriptor they used is gone.
                await eventually(lambda: len(asyncio.all_tasks()) <= tasks + 2, what="tasks back to their count")
                await eventually(lambda: open_fds() <= fds + 5, what="file descriptors back to their count")
            async with running.session.get(running.url("/secretapi/api/status")) as resp:
                assert resp.status == 200


async def test_oversized_upstream_header_is_502(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    # Straight to the backend, so the daemon itself meets the misbehaving upstream.
    settings = load_config(write_config(upstream=stack.backend_url + "/"))
    async with start(settings) as running:
        async with running.session.get(running.url("/secretapi/big-header")) as resp:
            assert resp.status == 502
            assert (await resp.json())["type"] == "urn:bearerd:problem:upstream-unreachable"
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200


async def test_client_gone_mid_upload(stack: EmulatorStack, write_config: ConfigWriter, log_stream: object) -> None:

    # Straight to the backend: what is checked is the daemon's handling of the vanished client.
    settings = load_config(write_config(upstream=stack.backend_url + "/"))
    async with start(settings) as running:
        await _gone_mid_upload(running, log_stream)


async def _gone_mid_upload(running: Running, log_stream: object) -> None:
    from support.wire import log_events

    host, port = running.daemon.listeners.listen_addresses[0]
    _, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /secretapi/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1_000_000)
    await writer.drain()
    await eventually(lambda: running.daemon.metrics.in_flight == 1, what="the upload being forwarded")
    writer.transport.abort()  # gone mid-upload

    def uploads() -> list[dict[str, object]]:
        events = log_events(log_stream)  # type: ignore[arg-type]
        return [e for e in events if e.get("event") == "request" and e.get("path") == "/secretapi/upload"]

    await eventually(lambda: bool(uploads()), what="the upload's access line")
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
    events = log_events(log_stream)  # type: ignore[arg-type]
    assert not [e for e in events if "exception" in e or e.get("level") == "error"]
    assert uploads()[-1]["status"] in (499, 502)


async def test_a_request_never_outlives_its_client(stack: EmulatorStack, running: Running) -> None:
    """Issue 16, item 4: a client that leaves while bearerd waits for a slow upstream takes the request
    with it — it leaves bearerd_requests_in_flight at once, and the upstream connection is closed."""
    assert await running.daemon.wait_ready(within_s=5)
    app = stack.apps["secretapi"]
    seen = len(app.requests_seen)
    _, writer = await asyncio.open_connection(*running.address)
    writer.write(b"GET /secretapi/slow?seconds=60 HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    await app.wait_for_requests(seen + 1)
    assert running.daemon.metrics.in_flight == 1
    writer.transport.abort()
    await eventually(lambda: running.daemon.metrics.in_flight == 0, within_s=5, what="the request gone with its client")
    assert running.daemon.routing.upstreams["secretapi"].pool.stats["open"] == 0  # the upstream request was cut
