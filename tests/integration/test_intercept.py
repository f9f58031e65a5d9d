"""CONNECT for configured hosts: TLS terminated with the local CA's certificate for exactly that host,
each request inside handled as the route's (token verified by the App Proxy emulator), blind
tunnels for tunnel_hosts only, everything else refused with no outbound connection."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import intercept_tables, local_ca_file, write_intercept_config
from support.h1 import ConnectProxy, RawUpstream
from support.inprocess import Running, start
from support.waiting import eventually
from support.wire import log_events, raw_problem


def app_url(stack: EmulatorStack, path: str, *, app: str = "secretapi", host: str = "127.0.0.1") -> str:
    """The URL a tool has compiled in: the app's own external https URL."""
    return stack.apps[app].external_url.replace("127.0.0.1", host).rstrip("/") + path


def trust(tmp_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(local_ca_file(tmp_path)))


@contextlib.asynccontextmanager
async def intercepting(stack: EmulatorStack, tmp_path: Path, **server: Any) -> AsyncIterator[Running]:
    by_name = server.pop("by_name", False)
    path = write_intercept_config(stack, tmp_path, intercept_tables(stack, by_name=by_name, **server))
    async with start(load_config(path)) as running:
        yield running


def access_lines(log_stream: io.StringIO) -> list[dict[str, Any]]:
    return [e for e in log_events(log_stream) if e.get("event") == "request"]


async def test_https_through_bearerd_as_proxy_gets_the_routes_token(
    stack: EmulatorStack, tmp_path: Path, log_stream: io.StringIO
) -> None:
    async with intercepting(stack, tmp_path) as running:
        ctx, session = trust(tmp_path), running.session
        async with session.get(app_url(stack, "/api/status"), proxy=running.base, ssl=ctx) as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok", "service": "secretapi"}
        # The path goes upstream unchanged, byte for byte, like the forward-proxy absolute form.
        target = "/echo/a%2Fb/caf%C3%A9?x=%2F&y=a+b"
        async with session.get(URL(app_url(stack, target), encoded=True), proxy=running.base,
                               ssl=ctx) as resp:  # fmt: skip
            assert (await resp.json())["raw_path"] == target
        async with session.get(app_url(stack, "/api/status", app="otherapi"), proxy=running.base, ssl=ctx) as resp:
            assert resp.status == 200
        async with session.get(running.admin + "/metrics") as resp:  # counted like any routed request
            metrics = await resp.text()
        assert 'bearerd_requests_total{method="GET",route="secretapi",status_class="2xx"} 2.0' in metrics
        assert 'bearerd_requests_total{method="GET",route="otherapi",status_class="2xx"} 1.0' in metrics
    for name, client_id in (("secretapi", stack.secret_client_id), ("otherapi", stack.cert_client_id)):
        seen = stack.apps[name].requests_seen[-1]
        assert seen.claims["appid"] == client_id and seen.claims["aud"] == stack.apps[name].app_id_uri
    lines = access_lines(log_stream)
    inner = [e for e in lines if e.get("via") == "connect" and e["method"] == "GET"]
    assert [(e["route"], e["path"], e["status"]) for e in inner] == [
        ("secretapi", "/api/status", 200), ("secretapi", "/echo/a%2Fb/caf%C3%A9", 200), ("otherapi", "/api/status", 200)
    ]  # fmt: skip
    tunnels = [e for e in lines if e["method"] == "CONNECT"]
    assert {(e["via"], e["route"], e["status"]) for e in tunnels} == {("connect", "secretapi", 200),
                                                                     ("connect", "otherapi", 200)}  # fmt: skip


async def test_refusal_retry_cookies_streaming_and_websockets_inside_the_tunnel(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    async with intercepting(stack, tmp_path) as running:
        ctx, session, proxy = trust(tmp_path), running.session, running.base
        assert await running.daemon.wait_ready(within_s=10)
        calls = stack.entra.token_calls(stack.secret_client_id)
        stack.apps["secretapi"].reject_next(1)
        async with session.post(app_url(stack, "/echo/p"), data=b"small body", proxy=proxy, ssl=ctx) as resp:
            assert resp.status == 200 and (await resp.json())["body_len"] == 10
        assert stack.entra.token_calls(stack.secret_client_id) == calls + 1  # refused once, refreshed, retried

        async with session.get(app_url(stack, "/set-cookie"), proxy=proxy, ssl=ctx) as resp:
            assert resp.status == 200
            assert not any("AzureAppProxy" in v for v in resp.headers.getall("Set-Cookie", ()))  # kept in the jar

        size, got = 8 * 1024 * 1024, hashlib.sha256()
        async with session.get(app_url(stack, f"/download?bytes={size}"), proxy=proxy, ssl=ctx) as resp:
            assert resp.headers["Content-Length"] == str(size)
            async for part in resp.content.iter_any():
                got.update(part)
        chunk = bytes(range(256)) * 256

        async def body() -> AsyncIterator[bytes]:
            for _ in range(size // len(chunk)):
                yield chunk

        async with session.post(app_url(stack, "/upload"), data=body(), proxy=proxy, ssl=ctx) as resp:
            assert (await resp.json())["bytes"] == size

        ws_url = app_url(stack, "/ws").replace("https://", "wss://")
        async with session.ws_connect(ws_url, proxy=proxy, ssl=ctx, protocols=("chat",)) as ws:
            await ws.send_str("through the tunnel")
            assert await ws.receive_str(timeout=5) == "echo:through the tunnel"
    assert stack.apps["secretapi"].requests_seen[-1].raw_path == "/ws"


async def test_sni_must_name_the_connect_host(stack: EmulatorStack, tmp_path: Path, log_stream: io.StringIO) -> None:
    async with intercepting(stack, tmp_path, by_name=True) as running:
        ctx = trust(tmp_path)
        url = app_url(stack, "/api/status", host="localhost")
        async with running.session.get(url, proxy=running.base, ssl=ctx) as resp:  # SNI: localhost
            assert resp.status == 200
        port = url.split(":")[2].split("/")[0]
        reader, writer = await asyncio.open_connection(*running.address)
        writer.write(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        with pytest.raises((ssl.SSLError, ConnectionError)):  # asyncio's server side resets rather than alerts
            await writer.start_tls(ctx, server_hostname="evil.example")
        writer.close()
        await eventually(lambda: any(e.get("event") == "intercept.handshake_failed" for e in log_events(log_stream)))
    failed = next(e for e in log_events(log_stream) if e.get("event") == "intercept.handshake_failed")
    assert failed["target"] == f"localhost:{port}" and "SNI" in failed["hint"], failed


async def test_a_request_inside_the_tunnel_for_another_host_is_refused(stack: EmulatorStack, tmp_path: Path) -> None:
    async with intercepting(stack, tmp_path) as running:
        seen = len(stack.apps["otherapi"].requests_seen)
        port = stack.apps["secretapi"].external_url.rstrip("/").rsplit(":", 1)[1]
        other = stack.apps["otherapi"].external_url.removeprefix("https://").rstrip("/")
        reader, writer = await asyncio.open_connection(*running.address)
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        await writer.start_tls(trust(tmp_path))
        writer.write(f"GET /api/status HTTP/1.1\r\nHost: {other}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 ")
        assert b"urn:bearerd:problem:not-a-route" in await reader.read(4096)
        writer.close()
    assert len(stack.apps["otherapi"].requests_seen) == seen


async def test_connect_to_an_unconfigured_host_is_403_and_never_leaves(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with ConnectProxy() as egress, RawUpstream(never) as listening:
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", egress.url)
        async with intercepting(stack, tmp_path, tunnel_hosts=["*.example.org"]) as running:
            app_port = stack.apps["secretapi"].external_url.rstrip("/").rsplit(":", 1)[1]
            for target in (f"127.0.0.1:{listening.port}", "evil.example:443", f"localhost:{app_port}",
                           "example.org:443", f"localhost:{listening.port}"):  # fmt: skip
                status, body = await raw_problem(
                    running.address, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
                )
                assert (status, body["type"]) == (403, "urn:bearerd:problem:not-a-route"), target
    assert listening.connections == 0
    assert not [t for t in egress.connects if t not in _identity_provider(stack)]


def _identity_provider(stack: EmulatorStack) -> set[str]:
    return {stack.authority.removeprefix("https://").split("/")[0]}


async def test_blind_tunnels_only_for_tunnel_hosts_through_the_egress_proxy(
    stack: EmulatorStack, tmp_path: Path, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner\n")  # a server-first protocol: its greeting must reach the client
        while data := await reader.read(65536):
            writer.write(data.upper())
        writer.close()

    async with ConnectProxy() as egress, RawUpstream(echo) as remote:
        port = remote.port
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", egress.url)
        async with intercepting(stack, tmp_path, tunnel_hosts=[f"127.0.0.1:{port}"]) as running:
            reader, writer = await asyncio.open_connection(*running.address)
            writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
            assert await reader.readexactly(7) == b"banner\n"
            writer.write(b"no token here")
            assert await reader.readexactly(13) == b"NO TOKEN HERE"
            writer.close()
            await eventually(lambda: any(e.get("via") == "tunnel" for e in access_lines(log_stream)))
    assert egress.connects.count(f"127.0.0.1:{port}") == 1  # the egress proxy carried it
    (line,) = [e for e in access_lines(log_stream) if e.get("via") == "tunnel"]
    assert (line["method"], line["path"], line["status"]) == ("CONNECT", f"127.0.0.1:{port}", 200)
    assert (line.get("bytes_in"), line.get("bytes_out")) == (13, 20) and "route" not in line, line


async def test_without_intercept_https_connect_stays_refused(stack: EmulatorStack, tmp_path: Path) -> None:
    async with intercepting(stack, tmp_path, intercept_https=False) as running:
        port = stack.apps["secretapi"].external_url.rstrip("/").rsplit(":", 1)[1]
        status, body = await raw_problem(
            running.address, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert (status, body["type"]) == (405, "urn:bearerd:problem:connect-not-supported")
        assert "intercept_https = true" in body["detail"]


async def test_a_route_outside_the_cas_constraints_is_refused_and_named_at_start(
    stack: EmulatorStack, tmp_path: Path, log_stream: io.StringIO
) -> None:
    async with start(load_config(write_intercept_config(stack, tmp_path))):
        pass  # the CA is made for the routes of that day
    tables = intercept_tables(stack)
    tables["routes.hr"] = dict(tables["routes.otherapi"], match={"path_prefix": "/hr/"},
                               upstream="https://hr-contoso.msappproxy.net/")  # fmt: skip
    async with start(load_config(write_intercept_config(stack, tmp_path, tables))) as running:
        warning = next(e for e in log_events(log_stream) if e.get("event") == "local_ca.names_not_covered")
        assert warning["hosts"] == ["hr-contoso.msappproxy.net"] and "bearerd ca rotate" in warning["fix"]
        raw = b"CONNECT hr-contoso.msappproxy.net:443 HTTP/1.1\r\nHost: hr-contoso.msappproxy.net:443\r\n\r\n"
        status, body = await raw_problem(running.address, raw)
        assert (status, body["type"]) == (403, "urn:bearerd:problem:local-ca-not-permitted")
        assert "bearerd ca rotate" in body["detail"]
        async with running.session.get(app_url(stack, "/api/status"), proxy=running.base, ssl=trust(tmp_path)) as resp:
            assert resp.status == 200  # the hosts it was made for still work
