"""The daemon as a whole: cold start, admin endpoints, failures seen by clients, secrets in logs."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack, Fault
from support.configs import ConfigWriter
from support.inprocess import Running, start
from support.waiting import eventually
from support.wire import log_events, raw_problem


async def test_thousand_concurrent_first_requests_one_token_call(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    # Keep the first token call in flight while 1,000 requests arrive that all need it.
    stack.entra.faults.push(Fault(delay_s=0.5), times=1)
    settings = load_config(write_config())
    async with start(settings) as running:

        async def one() -> int:
            async with running.session.get(running.url("/secretapi/api/status")) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(1000)))
        assert statuses == [200] * 1000
        assert stack.entra.token_calls(stack.secret_client_id) == 1
        assert len(stack.apps["secretapi"].requests_seen) == 1000


async def test_healthz_and_readyz(running: Running) -> None:
    async with running.session.get(running.admin + "/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
    assert await running.daemon.wait_ready(within_s=5)
    async with running.session.get(running.admin + "/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["ready"] is True
    assert set(body["routes"]) == {"secretapi", "otherapi"}
    assert body["routes"]["secretapi"]["token_expires_in_s"] > 3000


async def test_identity_provider_down_gives_503_and_not_ready(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    stack.entra.faults.set(Fault(status=503, retry_after_s=7))
    settings = load_config(write_config())
    async with start(settings) as running:
        provider = running.daemon.providers.for_route("secretapi")
        await eventually(lambda: provider.status().last_error is not None, what="the warm-up attempt failing")
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 503
            assert resp.content_type == "application/problem+json"
            assert int(resp.headers["Retry-After"]) >= 6
            body = await resp.json()
        assert body["type"] == "urn:bearerd:problem:token-unavailable"
        assert body["route"] == "secretapi"
        async with running.session.get(running.admin + "/readyz") as resp:
            assert resp.status == 503
            ready = await resp.json()
        assert ready["routes"]["secretapi"]["ready"] is False
        assert ready["routes"]["secretapi"]["last_error"] == "identity provider failed (server_error)"
        # No request storm: the backoff window holds every caller back.
        calls = stack.entra.token_calls(stack.secret_client_id)
        for _ in range(20):
            async with running.session.get(running.url("/secretapi/api/status")) as resp:
                assert resp.status == 503
        assert stack.entra.token_calls(stack.secret_client_id) == calls


async def test_streamed_body_refused_token_gives_502_and_new_token(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    settings = load_config(write_config(replay_max_bytes=1024))
    async with start(settings) as running:
        assert await running.daemon.wait_ready(within_s=5)
        calls = stack.entra.token_calls(stack.secret_client_id)
        stack.apps["secretapi"].reject_next(1)
        async with running.session.post(running.url("/secretapi/upload"), data=b"x" * 100_000) as resp:
            assert resp.status == 502
            assert (await resp.json())["type"] == "urn:bearerd:problem:token-rejected"
        await eventually(lambda: stack.entra.token_calls(stack.secret_client_id) == calls + 1, what="a new token")
        assert stack.entra.token_calls(stack.secret_client_id) == calls + 1
        async with running.session.post(running.url("/secretapi/upload"), data=b"x" * 100_000) as resp:
            assert resp.status == 200
            assert (await resp.json())["bytes"] == 100_000


async def test_no_secret_in_any_log_line_or_error_body(
    stack: EmulatorStack, write_config: ConfigWriter, log_stream: io.StringIO
) -> None:
    settings = load_config(write_config())
    bodies: list[str] = []
    async with start(settings) as running:
        session = running.session
        for target in ("/secretapi/api/status", "/otherapi/api/status", "/nope", "/secretapi/%2e%2e/x"):
            async with session.get(running.url(target), headers={"Authorization": "Bearer client-supplied"}) as r:
                bodies.append(await r.text())
        stack.apps["secretapi"].reject_next(1)
        async with session.get(running.url("/secretapi/api/status")) as r:
            bodies.append(await r.text())
        stack.entra.faults.set(Fault(status=500))
        provider = running.daemon.providers.for_route("secretapi")
        if provider.reject(stack.entra.issued_tokens[-1]):  # forced at most every 10 s: maybe not now
            await eventually(lambda: provider.status().last_error is not None, what="the refresh failing")
        async with session.get(running.url("/secretapi/api/status")) as r:
            bodies.append(await r.text())
    secrets = list(stack.entra.issued_tokens)
    secrets.append(stack.client_secret_file.read_text())
    key_body = "".join(stack.key_file.read_text().splitlines()[1:-1])
    text = log_stream.getvalue()
    assert len(log_events(log_stream)) > 5
    for secret in secrets:
        assert secret not in text
        assert all(secret not in body for body in bodies)
    assert key_body[:40] not in text
    assert "client-supplied" not in text


async def test_upstream_via_https_proxy_and_no_proxy(
    stack: EmulatorStack, write_config: ConfigWriter, monkeypatch: object, tmp_path: Path
) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    tunnels: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        if method != "CONNECT":
            writer.close()
            return
        tunnels.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        settings = load_config(write_config())
        async with start(settings) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        entra_port = stack.authority.split(":")[2].split("/")[0]
        app_port = stack.apps["secretapi"].external_url.rstrip("/").rsplit(":", 1)[1]
        assert f"127.0.0.1:{entra_port}" in tunnels
        assert f"127.0.0.1:{app_port}" in tunnels

        tunnels.clear()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        settings = load_config(write_config())
        async with start(settings) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        assert tunnels == []
    finally:
        server.close()
        await server.wait_closed()


async def test_connect_is_refused_with_explanation(running: Running) -> None:
    status, body = await raw_problem(
        running.address,
        b"CONNECT secretapi-contoso.msappproxy.net:443 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert status == 405
    assert body["type"] == "urn:bearerd:problem:connect-not-supported"
    assert "tunnel" in str(body["detail"])


async def test_absolute_form_for_unknown_host_never_forwarded(running: Running, stack: EmulatorStack) -> None:
    seen = len(stack.apps["secretapi"].requests_seen)
    status, body = await raw_problem(
        running.address,
        b"GET http://evil.example/secretapi/api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    assert status == 403
    assert body["type"] == "urn:bearerd:problem:not-a-route"
    assert len(stack.apps["secretapi"].requests_seen) == seen


async def test_duplicate_host_header_refused(running: Running) -> None:
    status, _ = await raw_problem(
        running.address, b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    assert status == 400
    _ = aiohttp
