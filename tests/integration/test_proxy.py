"""The request path end to end: client → bearerd → App Proxy emulator (verifies the token) → backend."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables
from support.inprocess import Running, start
from support.waiting import eventually

PROBLEM = "application/problem+json"


async def test_get_through_app_proxy_with_verified_token(running: Running, stack: EmulatorStack) -> None:
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "service": "secretapi"}
    app = stack.apps["secretapi"]
    seen = app.requests_seen[-1]
    assert seen.claims["aud"] == app.app_id_uri
    assert seen.claims["appid"] == stack.secret_client_id


async def test_certificate_credential_route(running: Running, stack: EmulatorStack) -> None:
    async with running.session.get(running.url("/otherapi/api/status")) as resp:
        assert resp.status == 200
    seen = stack.apps["otherapi"].requests_seen[-1]
    assert seen.claims["appid"] == stack.cert_client_id
    assert seen.claims["aud"] == stack.apps["otherapi"].app_id_uri


async def test_path_and_query_forwarded_byte_for_byte(running: Running) -> None:
    target = "/secretapi/echo/a%2Fb/%7Euser/caf%C3%A9?x=%2F&y=a+b&&z=%zz"
    async with running.session.get(running.url(target)) as resp:
        assert resp.status == 200
        echo = await resp.json()
    assert echo["raw_path"] == "/echo/a%2Fb/%7Euser/caf%C3%A9?x=%2F&y=a+b&&z=%zz"


async def test_hop_by_hop_dropped_and_client_authorization_replaced(running: Running, stack: EmulatorStack) -> None:
    headers = {
        "Connection": "X-Hop-Secret",
        "X-Hop-Secret": "1",
        "Authorization": "Basic Y2xpZW50OnB3",
        "X-End-To-End": "kept",
    }
    async with running.session.get(running.url("/secretapi/echo/h"), headers=headers) as resp:
        echo = await resp.json()
    names = {name.lower(): value for name, value in echo["headers"]}
    assert names["x-end-to-end"] == "kept"
    assert "x-hop-secret" not in names
    # The app proxy emulator validated *our* token (a Basic header would have been refused with a 302).
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == stack.secret_client_id
    assert "Y2xpZW50OnB3" not in json.dumps(echo)


async def test_move_policy_keeps_client_authorization(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    settings = load_config(write_config(client_authorization="move:X-Original-Authorization"))
    async with start(settings) as running:
        headers = {"Authorization": "Basic Y2xpZW50OnB3"}
        async with running.session.get(running.url("/secretapi/echo/m"), headers=headers) as resp:
            assert resp.status == 200
            echo = await resp.json()
        names = {name.lower(): value for name, value in echo["headers"]}
        assert names["x-original-authorization"] == "Basic Y2xpZW50OnB3"


async def test_reject_policy_refuses_client_authorization(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    settings = load_config(write_config(client_authorization="reject"))
    async with start(settings) as running:
        async with running.session.get(running.url("/secretapi/api/status"), headers={"Authorization": "x"}) as resp:
            assert resp.status == 401
            assert resp.content_type == PROBLEM
            body = await resp.json()
        assert body["type"] == "urn:bearerd:problem:client-authorization-rejected"
        assert body["route"] == "secretapi"


async def test_unknown_route_is_404_problem(running: Running) -> None:
    async with running.session.get(running.url("/nothing/here")) as resp:
        assert resp.status == 404
        assert resp.content_type == PROBLEM
        body = await resp.json()
    assert body["type"] == "urn:bearerd:problem:no-route"
    assert body["status"] == 404
    assert "msappproxy" not in json.dumps(body) and "127.0.0.1" not in json.dumps(body)


@pytest.mark.parametrize(
    "target", ["/secretapi/../otherapi/api/status", "/secretapi/%2e%2e/otherapi/x", "/secretapi//x"]
)
async def test_escape_attempts_are_400(running: Running, stack: EmulatorStack, target: str) -> None:
    before = len(stack.apps["otherapi"].requests_seen) + len(stack.apps["secretapi"].requests_seen)
    async with running.session.get(running.url(target)) as resp:
        assert resp.status == 400
        assert (await resp.json())["type"] == "urn:bearerd:problem:bad-request"
    assert len(stack.apps["otherapi"].requests_seen) + len(stack.apps["secretapi"].requests_seen) == before


async def test_location_rewritten_to_local_url(running: Running) -> None:
    async with running.session.get(running.url("/secretapi/redirect?to=/api/status"), allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == running.base + "/secretapi/api/status"


async def test_redirects_are_not_followed(running: Running, stack: EmulatorStack) -> None:
    count = len(stack.apps["secretapi"].requests_seen)
    async with running.session.get(running.url("/secretapi/redirect?to=/api/status"), allow_redirects=False) as resp:
        assert resp.status == 302
    assert len(stack.apps["secretapi"].requests_seen) == count + 1


async def test_streamed_upload_and_download(running: Running) -> None:
    size = 32 * 1024 * 1024
    chunk = bytes(range(256)) * 256

    async def body() -> object:
        for _ in range(size // len(chunk)):
            yield chunk

    async with running.session.post(running.url("/secretapi/upload"), data=body()) as resp:
        assert resp.status == 200
        result = await resp.json()
    expected = hashlib.sha256()
    for _ in range(size // len(chunk)):
        expected.update(chunk)
    assert result == {"bytes": size, "sha256": expected.hexdigest()}

    got = 0
    async with running.session.get(running.url(f"/secretapi/download?bytes={size}")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(size)
        async for part in resp.content.iter_any():
            got += len(part)
    assert got == size


async def test_token_refused_once_is_refreshed_and_retried(running: Running, stack: EmulatorStack) -> None:
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
    calls = stack.entra.token_calls(stack.secret_client_id)
    stack.apps["secretapi"].reject_next(1)
    async with running.session.post(running.url("/secretapi/echo/p"), data=b"small body") as resp:
        assert resp.status == 200
        assert (await resp.json())["body_len"] == 10
    assert stack.entra.token_calls(stack.secret_client_id) == calls + 1


async def test_token_for_wrong_app_gives_502_token_rejected(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    # The route's scope names the other app: App Proxy redirects to sign-in however often we retry.
    settings = load_config(write_config(scopes=[stack.apps["otherapi"].scope]))
    async with start(settings) as running:
        async with running.session.get(running.url("/secretapi/api/status"), allow_redirects=False) as resp:
            assert resp.status == 502
            body = await resp.json()
        assert body["type"] == "urn:bearerd:problem:token-rejected"
        assert "login.microsoftonline.com" not in json.dumps(body)


async def test_upstream_unreachable_is_502(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_config(write_config(upstream=f"https://127.0.0.1:{port}/"))
    async with start(settings) as running, running.session.get(running.url("/secretapi/x")) as resp:
        assert resp.status == 502
        assert (await resp.json())["type"] == "urn:bearerd:problem:upstream-unreachable"


async def test_upstream_timeout_is_504(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    settings = load_config(write_config(timeout_s=0.5))
    async with start(settings) as running, running.session.get(running.url("/secretapi/slow?seconds=3")) as resp:
        assert resp.status == 504
        assert (await resp.json())["type"] == "urn:bearerd:problem:upstream-timeout"


async def test_client_disconnect_mid_download_is_not_an_error(running: Running, log_stream: object) -> None:
    from support.wire import log_events

    async with running.session.get(running.url("/secretapi/download?bytes=200000000")) as resp:
        await resp.content.read(1024 * 1024)
        resp.close()

    def accounted() -> bool:  # the daemon noticed: its access line for the download is out
        return any(e.get("path") == "/secretapi/download" for e in log_events(log_stream))  # type: ignore[arg-type]

    await eventually(accounted, what="the download's access line")
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
    events = log_events(log_stream)  # type: ignore[arg-type]
    assert not any("exception" in e or e.get("level") == "error" for e in events)


def test_stack_tables_are_valid(stack: EmulatorStack, tmp_path: Path) -> None:
    from support.configs import render_toml

    path = tmp_path / "c.toml"
    path.write_text(render_toml(stack_tables(stack)))
    config = load_config(path)
    assert set(config.settings.routes) == {"secretapi", "otherapi"} and config.warnings == ()
    _ = aiohttp  # imported for type annotations in sibling tests


async def test_host_route(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    settings = load_config(write_config(match={"host": "secretapi.localhost"}))
    async with start(settings) as running:
        port = running.daemon.listeners.listen_addresses[0][1]
        headers = {"Host": f"secretapi.localhost:{port}"}
        async with running.session.get(running.url("/echo/x?y=1"), headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["raw_path"] == "/echo/x?y=1"
        async with running.session.get(running.url("/otherapi/api/status"), headers={"Host": "other:1"}) as resp:
            assert resp.status == 200  # prefix routes still match for other hosts


async def test_route_on_its_own_port_passes_paths_unchanged(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    # Its own listener on port 0 ("localhost", so it differs from the shared "127.0.0.1:0").
    settings = load_config(write_config(match={"listen": "localhost:0"}))
    async with start(settings) as running:
        port = running.daemon.listeners.route_addresses["secretapi"][1]
        assert port != running.address[1]
        async with running.session.get(URL(f"http://127.0.0.1:{port}/echo/a%2Fb?q=1", encoded=True)) as resp:
            assert resp.status == 200
            assert (await resp.json())["raw_path"] == "/echo/a%2Fb?q=1"
        # The shared listener doesn't serve it.
        async with running.session.get(running.url("/echo/x")) as resp:
            assert resp.status == 404


async def test_a_full_pool_answers_503_upstream_busy_with_retry_after(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    """With every pooled connection busy, a request waits ``pool_wait_s`` and then gets 503
    ``upstream-busy`` with Retry-After, without reaching the upstream; the request holding the
    connection completes, and the next one after it gets the connection back."""
    settings = load_config(write_config(pool_max_connections=1, pool_wait_s=0.3))
    app = stack.apps["secretapi"]
    async with start(settings) as running:

        async def slow() -> int:
            async with running.session.get(running.url("/secretapi/slow?seconds=1.5")) as resp:
                await resp.read()
                return resp.status

        seen = len(app.requests_seen)
        holding = asyncio.create_task(slow())
        await app.wait_for_requests(seen + 1)
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 503
            assert resp.headers["Content-Type"] == PROBLEM
            assert int(resp.headers["Retry-After"]) >= 1
            body = await resp.json()
        assert body["type"] == "urn:bearerd:problem:upstream-busy"
        assert "pool_max_connections" in body["detail"]
        assert await holding == 200
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
    assert len(app.requests_seen) == seen + 2  # the refused request never reached the upstream
