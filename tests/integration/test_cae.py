"""Claims challenges (continuous access evaluation): one token request with the claims, one retry."""

from __future__ import annotations

from pathlib import Path

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack, Fault
from support.configs import ConfigWriter, user_config
from support.inprocess import start
from support.processes import run_login


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


async def test_unanswerable_challenge_passes_the_401_through(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    app = stack.apps["secretapi"]
    async with start(load_config(write_config())) as running:
        assert await running.daemon.wait_ready(within_s=5)
        app.require_auth_context("c3")
        stack.entra.faults.set(Fault(status=400))
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 401
            assert 'error="insufficient_claims"' in resp.headers["WWW-Authenticate"]
