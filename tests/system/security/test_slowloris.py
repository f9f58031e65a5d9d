"""Slow headers: a connection that doesn't deliver its first request's headers in time is closed."""

from __future__ import annotations

import asyncio
import time

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, render_toml, stack_tables
from support.inprocess import start


async def test_trickled_headers_are_cut_off(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    tables = stack_tables(stack)
    tables["server"]["header_timeout_s"] = 0.5
    path = write_config(tables)
    path.write_text(render_toml(tables))
    async with start(load_config(path)) as running:
        host, port = running.daemon.listeners.listen_addresses[0]
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        closed_after = None
        for piece in (b"GET /secretapi/api/status HTTP/1.1\r\n", b"Host: a\r\n", b"X-Slow: 1\r\n", b"X-Slow: 2\r\n"):
            try:
                writer.write(piece)
                await writer.drain()
                data = await asyncio.wait_for(reader.read(100), 0.3)
                if data == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
        writer.close()
        assert closed_after is not None and closed_after < 1.5
        # A client that sends its headers in one go is unaffected, also on a reused connection later.
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        await asyncio.sleep(0.7)
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
