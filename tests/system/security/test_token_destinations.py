"""Every request that carries a token goes to the upstream of the route it was acquired for.

Observed from outside bearerd: all its outbound traffic goes through an egress proxy (as in a
corporate network, ``HTTPS_PROXY``) that records every destination, and each App Proxy app
records the token of every request it received. Hostile ``Host`` headers, absolute-form targets,
redirects and ``CONNECT`` — refused, or intercepted for a route's host — must not move a token anywhere else.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, local_ca_file, write_intercept_config
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


async def test_intercepted_tunnels_send_tokens_only_to_their_routes_upstream(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """intercept_https on: requests inside each app's tunnel, a tunnel whose requests name the other app or
    another host, CONNECTs to hosts that are no route — observed from the egress proxy and the apps."""
    async with ConnectProxy() as egress:
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", egress.url)
        async with start(load_config(write_intercept_config(stack, tmp_path))) as running:
            trust = ssl.create_default_context(cafile=str(local_ca_file(tmp_path)))
            for app in stack.apps.values():
                url = app.external_url + "redirect?to=/api/status"
                async with running.session.get(url, proxy=running.base, ssl=trust, allow_redirects=False) as resp:
                    assert resp.status == 302
            secretapi = stack.apps["secretapi"].external_url.removeprefix("https://").rstrip("/")
            otherapi = stack.apps["otherapi"].external_url.removeprefix("https://").rstrip("/")
            for host in (otherapi, "evil.example", "login.microsoftonline.com"):
                reader, writer = await asyncio.open_connection(*running.address)
                writer.write(f"CONNECT {secretapi} HTTP/1.1\r\nHost: {secretapi}\r\n\r\n".encode())
                await reader.readuntil(b"\r\n\r\n")
                await writer.start_tls(trust)
                writer.write(f"GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 403 ")
                writer.close()
            for target in ("evil.example:443", "login.microsoftonline.com:443", f"{secretapi.split(':')[0]}:1"):
                raw = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode()
                assert (await raw_problem(running.address, raw))[0] == 403
    apps = {app.external_url.rstrip("/").removeprefix("https://"): app for app in stack.apps.values()}
    identity_provider = stack.authority.removeprefix("https://").split("/")[0]
    assert set(egress.connects) <= {*apps, identity_provider}, egress.connects
    assert {t for t in egress.connects if t in apps} == set(apps)
    for app in stack.apps.values():
        assert app.requests_seen
        for seen in app.requests_seen:
            assert seen.claims["aud"] == app.app_id_uri
            assert seen.raw_path == "/redirect?to=/api/status"  # the refused requests inside never left
