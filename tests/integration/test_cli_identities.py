"""azure_cli / azure_developer_cli credentials: the stand-in CLIs on a PATH of the test's own,
getting real tokens from the emulator, behind an in-process daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bearerd.config.loader import Config, load_config
from bearerd.emulator import EmulatorStack
from bearerd.emulator.stack import AZURE_CLI_CLIENT_ID
from bearerd.errors import ConfigError
from bearerd.tokens.registry import Providers
from support import cli_standins
from support.cli_standins import StandIns
from support.configs import stack_tables, write_tables
from support.inprocess import start


def cli_config(stack: EmulatorStack, tmp_path: Path, standins: StandIns, kind: str, **extra: Any) -> Config:
    tables = stack_tables(stack, credential="dev")
    tables["credentials.dev"] = {"kind": kind, "ca_file": str(stack.ca_file), **extra}
    return load_config(write_tables(tmp_path / "cli.toml", tables), environ={"PATH": standins.path})


@pytest.mark.parametrize("kind", ["azure_cli", "azure_developer_cli"])
async def test_a_developer_signed_in_with_the_cli_needs_nothing_else(
    stack: EmulatorStack, tmp_path: Path, kind: str
) -> None:
    standins = cli_standins.install(stack, tmp_path)
    config = cli_config(stack, tmp_path, standins, kind, tenant_id=stack.tenant_id)
    assert getattr(config.settings.credentials["dev"], "command") == str(  # noqa: B009 - a CLI kind's field
        standins.bin / ("az" if kind == "azure_cli" else "azd")
    )
    async with start(config) as running:
        for _ in range(3):
            async with running.session.get(running.url("/secretapi/api/status")) as resp:
                assert resp.status == 200
    seen = stack.apps["secretapi"].requests_seen[-1].claims
    assert seen["appid"] == AZURE_CLI_CLIENT_ID and seen["aud"] == stack.apps["secretapi"].app_id_uri
    # Cached in memory like every token: three requests, one run of the CLI (warm-up included).
    runs = standins.runs()
    assert len(runs) == 1
    scope = stack.apps["secretapi"].scope
    tenant_flag = "--tenant" if kind == "azure_cli" else "--tenant-id"
    assert f"--scope {scope}" in runs[0] and f"{tenant_flag} {stack.tenant_id}" in runs[0]


@pytest.mark.parametrize(("kind", "command"), [("azure_cli", "az login"), ("azure_developer_cli", "azd auth login")])
async def test_signed_out_cli_is_503_login_required_naming_the_login_command(
    stack: EmulatorStack, tmp_path: Path, kind: str, command: str
) -> None:
    standins = cli_standins.install(stack, tmp_path, logged_in=False)
    async with (
        start(cli_config(stack, tmp_path, standins, kind)) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        body = await resp.json()
    assert resp.status == 503
    assert body["type"] == "urn:bearerd:problem:login-required"
    assert f"run: {command}" in body["detail"]
    assert int(resp.headers["Retry-After"]) >= 1


async def test_login_is_noticed_without_a_restart(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bearerd.tokens.cli_sources.LOGIN_RECHECK_S", 0.2)
    standins = cli_standins.install(stack, tmp_path, logged_in=False)
    providers = Providers(cli_config(stack, tmp_path, standins, "azure_cli"))
    try:
        provider = providers.for_route("secretapi")
        with pytest.raises(Exception, match="az login"):
            await provider.fetch()
        standins.log_in()
        async with asyncio.timeout(20):
            while provider.current() is None:
                try:
                    await provider.fetch()
                except Exception:
                    await asyncio.sleep(0.1)
    finally:
        await providers.aclose()


async def test_consent_missing_is_503_with_the_authorized_client_note(stack: EmulatorStack, tmp_path: Path) -> None:
    standins = cli_standins.install(stack, tmp_path)
    stack.entra.unconsented.add((AZURE_CLI_CLIENT_ID, stack.apps["secretapi"].app_id_uri))
    async with (
        start(cli_config(stack, tmp_path, standins, "azure_cli")) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        body = await resp.json()
    assert resp.status == 503
    assert body["type"] == "urn:bearerd:problem:token-unavailable"
    assert "AADSTS65001" in body["detail"]
    assert f"Add a client application → {AZURE_CLI_CLIENT_ID}" in body["detail"]
    assert "README" in body["detail"]


async def test_a_hanging_cli_is_killed_after_timeout_s(stack: EmulatorStack, tmp_path: Path) -> None:
    standins = cli_standins.install(stack, tmp_path)
    standins.hang()
    providers = Providers(cli_config(stack, tmp_path, standins, "azure_cli", timeout_s=1))
    try:
        with pytest.raises(Exception, match=r"did not answer within 1 s"):
            await providers.for_route("secretapi").fetch()
    finally:
        await providers.aclose()


def test_a_cli_not_on_path_is_a_config_error(stack: EmulatorStack, tmp_path: Path) -> None:
    tables = stack_tables(stack, credential="dev")
    tables["credentials.dev"] = {"kind": "azure_cli"}
    with pytest.raises(ConfigError) as info:
        load_config(write_tables(tmp_path / "c.toml", tables), environ={"PATH": str(tmp_path)})
    assert "[credentials.dev] command 'az' is not found on PATH: install the Azure CLI" in str(info.value)


async def test_the_cli_token_is_refreshed_early_while_the_old_one_is_served(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    stack.entra.tokens.token_lifetime_s = 4  # the CLI's answer says expires_on = now + 4 s: refresh after ~2 s
    standins = cli_standins.install(stack, tmp_path)
    providers = Providers(cli_config(stack, tmp_path, standins, "azure_cli"))
    try:
        provider = providers.for_route("secretapi")
        first = await provider.fetch()
        async with asyncio.timeout(20):
            while provider.current() in (None, first):
                assert provider.current() is not None, "the old token stopped being served before the new one came"
                await asyncio.sleep(0.05)
        assert len(standins.runs()) == 2
    finally:
        await providers.aclose()
