"""Encryption at rest of a user's token cache, with the key in a real keyring (gnome-keyring)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bearerd.emulator import EmulatorStack
from bearerd.tokens.keyring import KEYRING, MAGIC
from support.configs import render_toml, stack_tables
from support.keyring_session import KeyringSession, require_keyring_extra
from support.processes import bearerd_cli, daemon_process, run_login


@pytest.fixture(autouse=True)
def _keyring_extra() -> None:
    """Every test here is about the keyring extra: skipped without it locally, failed without it in CI."""
    require_keyring_extra()


@pytest.fixture
async def keyring(tmp_path: Path) -> AsyncIterator[KeyringSession]:
    session = KeyringSession(tmp_path / "keyring")
    await session.start()
    try:
        yield session
    finally:
        await session.stop()


def user_tables(stack: EmulatorStack, protection: str) -> dict[str, dict[str, object]]:
    app = stack.apps["secretapi"]
    tables = stack_tables(stack, credential="alice", scopes=[app.app_id_uri + "/user_impersonation"])
    del tables["routes.otherapi"], tables["credentials.emu-cert"], tables["credentials.emu-secret"]
    tables["credentials.alice"] = {
        "kind": "device_code",
        "authority": stack.authority,
        "client_id": stack.public_client_id,
        "ca_file": str(stack.ca_file),
        "cache_protection": protection,
    }
    return tables


async def test_sealed_cache_holds_nothing_readable_and_a_restart_needs_no_login(
    stack: EmulatorStack, keyring: KeyringSession, tmp_path: Path
) -> None:
    env = {**keyring.env, "BEARERD_STATE_DIR": str(tmp_path / "state")}
    config = tmp_path / "user.toml"
    tables = user_tables(stack, "auto")
    config.write_text(render_toml(tables))
    code, _, err = await run_login(stack, config, env)
    assert code == 0, err
    cache = tmp_path / "state" / "alice.msal-cache.json"
    sealed = cache.read_bytes()
    assert sealed.startswith(MAGIC)
    for readable in (stack.user.encode(), b"RefreshToken", b"secret", b"eyJ", stack.public_client_id.encode()):
        assert readable not in sealed  # no user, no token, no app: a copied disk gives nothing
    async with daemon_process(config, tables, env) as d, aiohttp.ClientSession() as session:
        async with session.get(d.base + "/secretapi/api/status") as resp:
            assert resp.status == 200  # the daemon opened the sealed cache with the keyring's key
        d.proc.terminate()
        await d.wait(15)
    assert f'"protection": "{KEYRING}"'.encode() in d.output
    assert stack.apps["secretapi"].requests_seen[-1].claims["upn"] == stack.user
    resealed = cache.read_bytes()
    assert resealed != sealed and resealed.startswith(MAGIC)  # rewritten (rotated refresh token), still sealed


async def test_keyring_required_and_none_answers_refuses_to_start(stack: EmulatorStack, tmp_path: Path) -> None:
    config = tmp_path / "user.toml"
    tables = user_tables(stack, "keyring")
    tables["server"].update(listen=["127.0.0.1:0"], admin="")
    config.write_text(render_toml(tables))
    env = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus", "BEARERD_STATE_DIR": str(tmp_path / "s")}
    proc = await bearerd_cli("run", "-c", str(config), env=env)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    message = err.decode()
    assert "[credentials.alice] cache_protection" in message and "no keyring answered" in message


async def test_a_sealed_cache_is_never_overwritten_where_no_keyring_answers(
    stack: EmulatorStack, keyring: KeyringSession, tmp_path: Path
) -> None:
    state = {"BEARERD_STATE_DIR": str(tmp_path / "state")}
    config = tmp_path / "user.toml"
    tables = user_tables(stack, "auto")
    config.write_text(render_toml(tables))
    assert (await run_login(stack, config, {**keyring.env, **state}))[0] == 0  # sealed, in the "session"
    cache = tmp_path / "state" / "alice.msal-cache.json"
    sealed = cache.read_bytes()
    elsewhere = {**state, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}  # e.g. a system service
    async with daemon_process(config, tables, elsewhere, wait_ready=False) as d, aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.get(d.base + "/secretapi/api/status") as resp:
                body = await resp.json()
            if resp.status == 503 and "keyring" in body.get("detail", ""):
                break
            await asyncio.sleep(0.1)
        assert resp.status == 503 and body["type"] == "urn:bearerd:problem:login-required"
        assert "encrypted with a key kept in the keyring" in body["detail"]
    login = await bearerd_cli("login", "alice", "-c", str(config), env=elsewhere)
    _, err = await asyncio.wait_for(login.communicate(), 30)
    assert login.returncode == 1 and "keyring" in err.decode()
    assert cache.read_bytes() == sealed  # neither the daemon nor the login wrote over the sign-in
