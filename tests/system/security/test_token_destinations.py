"""Every outbound request that carries a token goes to the upstream of the route it was acquired for."""

from __future__ import annotations

import types
from typing import Any

import aiohttp
import jwt
from yarl import URL

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter
from support.inprocess import start
from support.wire import raw_problem


async def test_tokens_only_reach_their_routes_upstream(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    outbound: list[tuple[URL, str | None]] = []

    async def on_start(session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: Any) -> None:
        outbound.append((params.url, params.headers.get("Authorization")))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with start(load_config(write_config()), [trace]) as running:
        session, url = running.session, running.url
        hostile = [
            (url("/secretapi/api/status"), {"Host": "evil.example"}),
            (url("/otherapi/api/status"), {"Host": "evil.example:443", "X-Forwarded-Host": "evil.example"}),
            (url("/secretapi/redirect?to=/api/status"), {}),
            (url("/secretapi/echo/x"), {"Authorization": "Bearer client-token"}),
        ]
        for target, headers in hostile:
            async with session.get(target, headers=headers, allow_redirects=False) as resp:
                await resp.read()
        for raw in (
            b"GET http://evil.example/api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
        ):
            await raw_problem(running.address, raw)
    origins = {name: app.external_url.rstrip("/") for name, app in stack.apps.items()}
    assert outbound, "no outbound request observed"
    for target, authorization in outbound:
        assert authorization is not None and authorization.startswith("Bearer ")
        audience = jwt.decode(authorization.removeprefix("Bearer "), options={"verify_signature": False})["aud"]
        origin = f"{target.scheme}://{target.host}:{target.port}"
        # The token's audience is the app this origin publishes: never another app, never elsewhere.
        assert origin in origins.values()
        assert audience == next(a.app_id_uri for a in stack.apps.values() if a.external_url.rstrip("/") == origin)
