"""Bytes on the wire and lines in the log, read the way an independent client or operator would."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any


def log_events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


async def raw_exchange(address: tuple[str, int], request: bytes, within_s: float = 10) -> tuple[int, bytes, bytes]:
    """Send exact bytes, read until the server closes; (status, head, body) of the first answer."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), within_s)  # the daemon closes after a refusal or Connection: close
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


async def raw_problem(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, Any]]:
    """``raw_exchange`` for refusals: the status and the problem+json document (``{}`` if none)."""
    status, _, body = await raw_exchange(address, request)
    return status, json.loads(body) if body.startswith(b"{") else {}
