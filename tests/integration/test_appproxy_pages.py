"""App Proxy's own refusals become explained problems; the backend's own 403/502/504 pages — even
ones worded like App Proxy's, and bodies bearerd had to peek at — reach the client untouched."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from bearerd.emulator.backend import lookalike_page
from support.configs import ConfigWriter
from support.inprocess import Running, start


async def problem_of(running: Running, target: str = "/secretapi/api/status") -> tuple[int, dict[str, Any]]:
    async with running.session.get(running.url(target)) as resp:
        assert resp.headers["Content-Type"] == "application/problem+json"
        return resp.status, await resp.json()


async def test_not_assigned_app_gets_403_with_the_fix_and_assignment_lets_it_in(
    running: Running, stack: EmulatorStack
) -> None:
    app = stack.apps["secretapi"]
    app.registration.assignment_required = True
    status, problem = await problem_of(running)
    assert status == 403 and problem["type"] == "urn:bearerd:problem:not-assigned"
    assert "grant bearerd's app an app role of the App Proxy app" in problem["detail"]
    assert "assign the signed-in user" in problem["detail"] and problem["route"] == "secretapi"
    assert app.pages == ["Forbidden"]  # App Proxy served its page; bearerd explained it
    app.registration.assign(stack.secret_client_id)
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200


async def test_unreachable_backend_is_502_app_proxy_backend(running: Running, stack: EmulatorStack) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused while we hold it
        closed.bind(("127.0.0.1", 0))
        stack.apps["secretapi"].backend_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        status, problem = await problem_of(running)
    assert status == 502 and problem["type"] == "urn:bearerd:problem:app-proxy-backend"
    assert "BackendServiceUnavailable" in problem["detail"] and "internal URL" in problem["detail"]


async def test_no_connector_is_502_app_proxy_backend(running: Running, stack: EmulatorStack) -> None:
    stack.apps["secretapi"].connector_group_empty = True
    status, problem = await problem_of(running)
    assert status == 502 and problem["type"] == "urn:bearerd:problem:app-proxy-backend"
    assert "no working connector" in problem["detail"] and "connector group" in problem["detail"]


async def test_backend_timeout_is_504_naming_the_apps_timeout_setting(running: Running, stack: EmulatorStack) -> None:
    stack.apps["secretapi"].backend_timeout_s = 0.2  # stands in for 85 s (default) / 180 s (long)
    status, problem = await problem_of(running, "/secretapi/slow?seconds=2")
    assert status == 504 and problem["type"] == "urn:bearerd:problem:app-proxy-timeout"
    assert "85 s by default and 180 s when set to Long" in problem["detail"]
    assert stack.apps["secretapi"].pages == ["BackendTimeOut"]


@pytest.mark.parametrize("code", [403, 502, 504])
@pytest.mark.parametrize("mimic", [False, True])
async def test_a_backends_own_error_page_passes_through_untouched(
    running: Running, stack: EmulatorStack, code: int, mimic: bool
) -> None:
    target = f"/secretapi/error-page/{code}" + ("?mimic=1" if mimic else "")
    async with running.session.get(running.url(target)) as resp:
        body = await resp.text()
        assert resp.status == code and resp.headers["Content-Type"].startswith("text/html")
        assert resp.headers["x-ms-proxy-connector-id"] == stack.apps["secretapi"].connector_id
    assert body == lookalike_page(code, mimic)
    assert stack.apps["secretapi"].pages == []


@pytest.mark.parametrize("chunked", ["0", "1"])
@pytest.mark.parametrize("size", [200, 300_000])
async def test_an_answer_bearerd_peeked_at_is_relayed_byte_for_byte(
    stack: EmulatorStack, write_config: ConfigWriter, chunked: str, size: int
) -> None:
    """App Proxy's header without a connector ID makes bearerd read the first bytes; when they
    aren't App Proxy's page, every byte still reaches the client, small or streamed."""
    async with start(load_config(write_config(upstream=stack.backend_url + "/"))) as running:
        target = f"/secretapi/proxy-lookalike?size={size}&chunked={chunked}"
        async with running.session.get(running.url(target)) as resp:
            body = await resp.read()
            assert resp.status == 502 and resp.headers["Content-Type"] == "text/html"
        async with running.session.get(stack.backend_url + target.removeprefix("/secretapi")) as direct:
            expected = await direct.read()  # what the backend sends, fetched without bearerd
    assert len(body) == size and hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
    assert body.startswith(b"<html><body>\x00\x01\x02")


async def test_websocket_handshake_refused_by_app_proxy_is_explained(running: Running, stack: EmulatorStack) -> None:
    stack.apps["secretapi"].registration.assignment_required = True
    url = running.base + "/secretapi/ws"
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    async with running.session.get(url, headers=headers) as resp:
        assert resp.status == 403
        assert (await resp.json(content_type=None))["type"] == "urn:bearerd:problem:not-assigned"
