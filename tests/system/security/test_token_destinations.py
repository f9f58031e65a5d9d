"""Every request that carries a token goes to the upstream of the route it was acquired for.

Observed from outside bearerd: all its outbound traffic goes through an egress proxy (as in a
corporate network, ``HTTPS_PROXY``) that records every destination, and each App Proxy app
records the token of every request it received. Hostile ``Host`` headers, absolute-form targets,
redirects and ``CONNECT`` must not move a token anywhere else.
"""

from __future__ import annotations

import asyncio

import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter
from support.h1 import ConnectProxy
from support.inprocess import start
from support.wire import raw_problem


async def test_tokens_only_reach_their_routes_upstream(
    stack: EmulatorStack, write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ConnectProxy() as egress:
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", egress.url)
        async with start(load_config(write_config())) as running:
            session, url = running.session, running.url
            hostile = [
                (url("/secretapi/api/status"), {"Host": "evil.example"}),
                (url("/otherapi/api/status"), {"Host": "evil.example:443", "X-Forwarded-Host": "evil.example"}),
                (url("/secretapi/redirect?to=/api/status"), {}),
                (url("/secretapi/echo/x"), {"Authorization": "Bearer client-token"}),
            ]
            for target, headers in hostile:
                async with session.get(target, headers=headers, allow_redirects=False) as resp:
                    assert resp.status in (200, 302)
                    await resp.read()
            for raw in (
                b"GET http://evil.example/api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
                b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
            ):
                status, _ = await raw_problem(running.address, raw)
                assert status in (403, 405)
            await asyncio.sleep(0)
    apps = {app.external_url.rstrip("/").removeprefix("https://"): app for app in stack.apps.values()}
    identity_provider = stack.authority.removeprefix("https://").split("/")[0]
    assert egress.connects, "no outbound connection observed"
    assert set(egress.connects) <= {*apps, identity_provider}, egress.connects  # nowhere else, ever
    assert {t for t in egress.connects if t in apps} == set(apps)  # both apps were reached through it
    for app in stack.apps.values():
        assert app.requests_seen
        for seen in app.requests_seen:  # what arrived at each app carried a token for that app only
            assert seen.claims["aud"] == app.app_id_uri
