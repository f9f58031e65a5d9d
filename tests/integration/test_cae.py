"""Claims challenges (continuous access evaluation): bearerd declares the cp1 capability, so its
tokens carry xms_cc and App Proxy challenges them; one token request with the claims, one retry.
A client that doesn't declare cp1 is never challenged (the emulator's App Proxy, like the real
resource, sends challenges only to CAE-capable clients)."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack, Fault
from bearerd.emulator.issuer import Caller
from support.configs import ConfigWriter, federated_credential, stack_tables, user_config
from support.inprocess import start
from support.processes import run_login


@pytest.mark.parametrize("credential", ["emu-secret", "emu-cert", "federated"])
async def test_every_app_credential_declares_cp1_and_its_challenge_is_answered(
    stack: EmulatorStack, write_config: ConfigWriter, credential: str
) -> None:
    tables = stack_tables(stack, credential=credential)
    tables["credentials.federated"] = federated_credential(stack)
    app = stack.apps["secretapi"]
    async with start(load_config(write_config(tables))) as running:
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        assert app.requests_seen[-1].claims["xms_cc"] == ["cp1"]
        app.require_auth_context("c1")
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
    assert app.challenges == 1
    assert app.requests_seen[-1].claims["acrs"] == ["c1"] and app.requests_seen[-1].claims["xms_cc"] == ["cp1"]


async def test_clients_without_cp1_are_never_challenged(stack: EmulatorStack) -> None:
    app = stack.apps["secretapi"]
    app.require_auth_context("c1")
    capable = Caller(stack.secret_client_id, "1", capabilities=["cp1"])
    unaware = Caller(stack.secret_client_id, "1")
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        for caller, status in ((unaware, 200), (capable, 401)):
            token = stack.entra.tokens.app_token(app.registration, app.app_id_uri, caller, [], "oid")
            headers = {"Authorization": "Bearer " + token}
            async with session.get(app.external_url + "api/status", headers=headers, allow_redirects=False) as resp:
                assert resp.status == status
    assert app.challenges == 1


async def test_app_token_claims_challenge_answered_and_retried(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    app = stack.apps["secretapi"]
    async with start(load_config(write_config())) as running:
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        app.require_auth_context("c1")
        for _ in range(3):
            async with running.session.post(running.url("/secretapi/echo/x"), data=b"small") as resp:
                assert resp.status == 200
        assert app.challenges == 1  # answered once; later requests carry the new token
        assert app.requests_seen[-1].claims["acrs"] == ["c1"]


async def test_user_token_claims_challenge(stack: EmulatorStack, tmp_path: Path) -> None:
    config, settings = user_config(stack, tmp_path)
    assert (await run_login(stack, config))[0] == 0
    app = stack.apps["secretapi"]
    app.require_auth_context("c2")
    async with start(settings) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
    assert app.requests_seen[-1].claims["acrs"] == ["c2"]
    assert app.requests_seen[-1].claims["upn"] == stack.user
    assert app.requests_seen[-1].claims["xms_cc"] == ["cp1"] and app.challenges == 1


async def test_unanswerable_challenge_passes_the_401_through(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    app = stack.apps["secretapi"]
    async with start(load_config(write_config())) as running:
        assert await running.daemon.wait_ready(within_s=5)
        app.require_auth_context("c3")
        stack.entra.faults.set(Fault(status=400))
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 401
            assert 'error="insufficient_claims"' in resp.headers["WWW-Authenticate"]
