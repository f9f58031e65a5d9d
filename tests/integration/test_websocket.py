"""WebSockets: token on the handshake (verified by the App Proxy emulator), frames both ways, close codes."""

from __future__ import annotations

import asyncio

import aiohttp

from bearerd.emulator import EmulatorStack
from bearerd.emulator.backend import WS_CLOSES
from support.inprocess import Running


async def test_websocket_through_bearerd(running: Running, stack: EmulatorStack) -> None:
    url = running.base.replace("http://", "ws://") + "/secretapi/ws"
    async with running.session.ws_connect(url, protocols=("chat",)) as ws:
        assert ws.protocol == "chat"
        await ws.send_str("hello")
        assert (await ws.receive_str(timeout=5)) == "echo:hello"
        payload = bytes(range(256)) * 4096  # 1 MiB binary frame
        await ws.send_bytes(payload)
        assert (await ws.receive_bytes(timeout=5)) == payload
        await ws.send_str("close:4001:bye")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == 4001 and msg.extra == "bye"
    seen = stack.apps["secretapi"].requests_seen[-1]
    assert seen.raw_path == "/ws" and seen.claims["appid"] == stack.secret_client_id


async def test_client_close_code_reaches_upstream_and_daemon_stays_healthy(
    running: Running, stack: EmulatorStack
) -> None:
    url = running.base.replace("http://", "ws://") + "/secretapi/ws"
    async with running.session.ws_connect(url) as ws:
        await ws.send_str("x")
        assert (await ws.receive_str(timeout=5)) == "echo:x"
        await ws.close(code=4002, message=b"client done")
    for _ in range(50):
        if 4002 in stack.backend_app[WS_CLOSES]:
            break
        await asyncio.sleep(0.05)
    assert 4002 in stack.backend_app[WS_CLOSES]  # passed through two relays: bearerd and App Proxy
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200


async def test_refused_handshake_token_is_refreshed_once(running: Running, stack: EmulatorStack) -> None:
    assert await running.daemon.wait_ready(within_s=5)
    calls = stack.entra.token_calls(stack.secret_client_id)
    stack.apps["secretapi"].reject_next(1)
    url = running.base.replace("http://", "ws://") + "/secretapi/ws"
    async with running.session.ws_connect(url) as ws:
        await ws.send_str("again")
        assert (await ws.receive_str(timeout=5)) == "echo:again"
    assert stack.entra.token_calls(stack.secret_client_id) == calls + 1
