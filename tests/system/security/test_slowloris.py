"""Slow headers: a request whose headers don't arrive within header_timeout_s is cut off — counted
from its first byte, leading empty lines included, and for every request of a kept-alive connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables
from support.inprocess import Running, start

REQUEST = b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\nX-Slow: 2\r\n\r\n"


@pytest.fixture
async def strict(stack: EmulatorStack, write_config: ConfigWriter) -> AsyncIterator[Running]:
    tables = stack_tables(stack)
    tables["server"]["header_timeout_s"] = 0.5
    async with start(load_config(write_config(tables))) as running:
        yield running


async def trickle(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, data: bytes) -> bool:
    """Send ``data`` a byte every 0.1 s (a slowloris client); True when the server cut us off first."""
    for i in range(len(data)):
        try:
            writer.write(data[i : i + 1])
            await writer.drain()
        except ConnectionError:
            return True
        try:
            if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


async def test_trickled_headers_are_cut_off(strict: Running) -> None:
    reader, writer = await asyncio.open_connection(*strict.address)
    assert await trickle(writer, reader, REQUEST)  # ~7 s of trickling; the deadline is 0.5 s
    writer.close()
    # A client that sends its headers in one go is unaffected.
    async with strict.session.get(strict.url("/secretapi/api/status")) as resp:
        assert resp.status == 200


async def test_leading_empty_lines_do_not_reset_the_deadline(strict: Running) -> None:
    """Issue 16, item 5: "\\r\\n\\r\\n" first used to switch the guard off for good."""
    reader, writer = await asyncio.open_connection(*strict.address)
    writer.write(b"\r\n\r\n")
    await writer.drain()
    assert await trickle(writer, reader, REQUEST)
    writer.close()


async def test_every_request_of_a_kept_alive_connection_is_bounded(strict: Running) -> None:
    reader, writer = await asyncio.open_connection(*strict.address)
    writer.write(REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(
        next(v for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n")) if k.lower() == b"content-length")
    )
    await asyncio.wait_for(reader.readexactly(length), 10)
    assert await trickle(writer, reader, REQUEST)  # the second request of the connection: cut off too
    writer.close()
