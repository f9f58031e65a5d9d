"""The emulator's WebSocket pass-through (App Proxy → backend): frames both ways until either side goes.

Each direction is one loop that awaits the send before reading the next frame, so a slow reader
slows the writer down (back-pressure) instead of growing a buffer. Close codes and reasons are
passed through; when one side ends, the other is closed and both loops finish.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pump(src: Socket, dst: Socket) -> None:
    code: int = WSCloseCode.GOING_AWAY
    reason = ""
    while True:
        msg = await src.receive()
        if msg.type == WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == WSMsgType.CLOSE:
            code, reason = int(msg.data), str(msg.extra or "")
            break
        elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            code = src.close_code or WSCloseCode.GOING_AWAY
            break
    await dst.close(code=code, message=reason.encode())


async def relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    to_upstream = asyncio.ensure_future(_pump(client, upstream))
    to_client = asyncio.ensure_future(_pump(upstream, client))
    done, pending = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        # The other side is closing too; give its close handshake a moment, then stop waiting.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
            await task
    for task in done:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            task.result()
