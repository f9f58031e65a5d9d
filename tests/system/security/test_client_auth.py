"""Local client authentication: a shared key, compared in constant time, never forwarded."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import pytest
import requests

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from bearerd.errors import ConfigError
from support.configs import render_toml, stack_tables
from support.inprocess import start
from support.wire import raw_problem

KEY = "k3y-for-local-clients-0123456789"


def auth_config(stack: EmulatorStack, tmp_path: Path, **server: Any) -> Path:
    key_file = tmp_path / "client.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    header = server.pop("_header", None)
    tables = stack_tables(stack)
    tables["server"].update(server)
    path = tmp_path / "c.toml"
    text = render_toml(tables)
    auth = f'\n[server.client_auth]\nkey_file = "{key_file}"\n' + (f'header = "{header}"\n' if header else "")
    path.write_text(text.replace("\n[credentials.emu-secret]", auth + "\n[credentials.emu-secret]", 1))
    return path


async def test_proxy_authorization_key(stack: EmulatorStack, tmp_path: Path) -> None:
    # Bound to every interface (allowed: allow_remote + client_auth); the test still talks over loopback.
    path = auth_config(stack, tmp_path, listen=["0.0.0.0:0"], allow_remote=True)
    async with start(load_config(path)) as running:
        url = running.url("/secretapi/api/status")
        for headers in ({}, {"Proxy-Authorization": "Bearer wrong"}, {"Proxy-Authorization": "Basic !!"}):
            async with running.session.get(url, headers=headers) as resp:
                assert resp.status == 407
                assert resp.headers["Proxy-Authenticate"].startswith("Basic")
                assert (await resp.json())["type"] == "urn:bearerd:problem:client-key-required"
        basic = base64.b64encode(f"bearerd:{KEY}".encode()).decode()
        for headers in ({"Proxy-Authorization": f"Bearer {KEY}"}, {"Proxy-Authorization": f"Basic {basic}"}):
            async with running.session.get(url, headers=headers) as resp:
                assert resp.status == 200
        port = running.daemon.listeners.listen_addresses[0][1]
        proxied = await asyncio.to_thread(
            requests.get,
            stack.apps["secretapi"].external_url.replace("https://", "http://") + "api/status",
            proxies={"http": f"http://bearerd:{KEY}@127.0.0.1:{port}"},
            timeout=10,
        )
        assert proxied.status_code == 200


async def test_custom_header_key_is_not_forwarded(stack: EmulatorStack, tmp_path: Path) -> None:
    path = auth_config(stack, tmp_path, _header="X-Bearerd-Key")
    async with start(load_config(path)) as running:
        async with running.session.get(running.url("/secretapi/echo/x")) as resp:
            assert resp.status == 401
        async with running.session.get(running.url("/secretapi/echo/x"), headers={"X-Bearerd-Key": KEY}) as resp:
            assert resp.status == 200
            echo = await resp.json()
    assert all(name.lower() != "x-bearerd-key" for name, _ in echo["headers"])
    assert KEY not in str(echo)


def test_remote_listener_needs_client_auth(stack: EmulatorStack, tmp_path: Path) -> None:
    tables = stack_tables(stack)
    tables["server"].update(listen=["0.0.0.0:8080"], allow_remote=True)
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[server]" in str(info.value) and "client_auth" in str(info.value)


def test_loose_key_file_refused(stack: EmulatorStack, tmp_path: Path) -> None:
    path = auth_config(stack, tmp_path)
    (tmp_path / "client.key").chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[server.client_auth] key_file" in str(info.value) and "chmod 600" in str(info.value)


async def test_connect_needs_the_key_and_the_tunnel_carries_it(stack: EmulatorStack, tmp_path: Path) -> None:
    """HTTPS_PROXY=http://bearerd:KEY@127.0.0.1:8080: the key comes once, on the CONNECT; the requests inside
    the tunnel (which no client sends Proxy-Authorization on) are the authenticated client's."""
    path = auth_config(stack, tmp_path, intercept_https=True)
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n' + path.read_text())
    async with start(load_config(path)) as running:
        app = stack.apps["secretapi"]
        authority = app.external_url.removeprefix("https://").rstrip("/")
        connect = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n".encode()
        status, body = await raw_problem(running.address, connect + b"\r\n")
        assert (status, body["type"]) == (407, "urn:bearerd:problem:client-key-required")
        status, _ = await raw_problem(running.address, connect + b"Proxy-Authorization: Bearer wrong\r\n\r\n")
        assert status == 407
        trust = ssl.create_default_context(cafile=str(tmp_path / "state" / "tls" / "local-ca.pem"))
        basic = {"Proxy-Authorization": "Basic " + base64.b64encode(f"bearerd:{KEY}".encode()).decode()}
        async with running.session.get(app.external_url + "echo/k", proxy=running.base, proxy_headers=basic,
                                       ssl=trust) as resp:  # fmt: skip
            assert resp.status == 200
            assert KEY not in await resp.text()  # never forwarded
