"""Secrets and certificates from Key Vault: the SDK's clients against the emulator's vault (challenge,
its own token check, grants), read with the host's managed identity or another credential."""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path
from typing import Any

import pytest

from bearerd.config.loader import Config, load_config
from bearerd.emulator import EmulatorStack
from bearerd.emulator.keyvault import VAULT_RESOURCE
from bearerd.tokens.registry import Providers
from support import certs
from support.configs import MANAGED_IDENTITY_VARIABLES, Tables, stack_tables, write_tables
from support.inprocess import start

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("azure") is None or importlib.util.find_spec("azure.keyvault.secrets") is None,
    reason="the keyvault extra is not installed (pip install -e '.[keyvault]'; `make test` installs it)",
)


@pytest.fixture
def host_identity(stack: EmulatorStack, monkeypatch: pytest.MonkeyPatch) -> str:
    """This machine's managed identity (App Service style), pointed at the emulator; returns its client ID."""
    for name in MANAGED_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in stack.managed_identity_environment("app_service").items():
        monkeypatch.setenv(name, value)
    return stack.system_identity_id


def vault_tables(stack: EmulatorStack, **credential: Any) -> Tables:
    tables = stack_tables(stack, credential="vaulted")
    tables["credentials.vaulted"] = {
        "kind": "client_secret",
        "authority": stack.authority,
        "client_id": stack.secret_client_id,
        "client_secret_keyvault": f"{stack.keyvault.url}/secrets/bearerd-secret",
        "ca_file": str(stack.ca_file),
        **credential,
    }
    return tables


def config_of(tmp_path: Path, tables: Tables) -> Config:
    return load_config(write_tables(tmp_path / "vault.toml", tables))


def rotate_client_secret(stack: EmulatorStack) -> str:
    """Entra gets a new secret for the app (the old one stops working) and the vault a new version of it."""
    new = secrets.token_urlsafe(32)
    stack.entra.clients[stack.secret_client_id].secret = new
    stack.keyvault.set_secret("bearerd-secret", new)
    return new


async def test_client_secret_from_the_vault_read_with_the_hosts_managed_identity(
    stack: EmulatorStack, tmp_path: Path, host_identity: str
) -> None:
    stack.keyvault.set_secret("bearerd-secret", stack.client_secret_file.read_text())
    stack.keyvault.grant(host_identity)
    async with (
        start(config_of(tmp_path, vault_tables(stack))) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 200
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == stack.secret_client_id
    # The SDK's challenge: one request without a token (401), then with the vault token.
    assert [(c.status, c.caller) for c in stack.keyvault.calls] == [(401, None), (200, host_identity)]
    vault_token = [c for c in stack.entra.calls if c.scope == VAULT_RESOURCE]
    assert len(vault_token) == 1 and vault_token[0].grant_type == "managed_identity"


async def test_a_secret_rotated_in_the_vault_is_fetched_again_on_invalid_client(
    stack: EmulatorStack, tmp_path: Path, host_identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bearerd.tokens.material.STALE_REFETCH_MIN_S", 0.0)
    stack.keyvault.set_secret("bearerd-secret", stack.client_secret_file.read_text())
    stack.keyvault.grant(host_identity)
    providers = Providers(config_of(tmp_path, vault_tables(stack)))
    try:
        provider = providers.for_route("secretapi")
        first = await provider.fetch()
        rotate_client_secret(stack)
        second = await provider.refresh_rejected(first)  # as when the upstream refuses a token: a new one
        assert second is not None and second != first
    finally:
        await providers.aclose()
    statuses = [c.status for c in stack.entra.calls if c.client_id == stack.secret_client_id]
    assert statuses == [200, 401, 200]  # the old secret refused (invalid_client), the vault's new one accepted
    assert stack.keyvault.secret_calls() == 2


async def test_certificate_from_the_vault_read_with_another_credential(stack: EmulatorStack, tmp_path: Path) -> None:
    cert, key = certs.load_pair(stack.cert_file, stack.key_file)
    stack.keyvault.set_certificate("bearerd-cert", pfx=certs.pfx(cert, key, None))
    stack.keyvault.grant(stack.secret_client_id)
    tables = stack_tables(stack, credential="vault-cert")
    tables["credentials.vault-cert"] = {
        "kind": "certificate",
        "authority": stack.authority,
        "client_id": stack.cert_client_id,
        "certificate_keyvault": f"{stack.keyvault.url}/certificates/bearerd-cert",
        "keyvault_credential": "emu-secret",
        "ca_file": str(stack.ca_file),
    }
    async with (
        start(config_of(tmp_path, tables)) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 200
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == stack.cert_client_id
    paths = [c.path for c in stack.keyvault.calls if c.status == 200]
    assert paths[0] == "/certificates/bearerd-cert/" and paths[1].startswith("/secrets/bearerd-cert/")


async def test_a_reader_without_secret_read_gets_the_fix_in_the_503(
    stack: EmulatorStack, tmp_path: Path, host_identity: str
) -> None:
    stack.keyvault.set_secret("bearerd-secret", "whatever")
    async with (
        start(config_of(tmp_path, vault_tables(stack))) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        body = await resp.json()
    assert resp.status == 503 and body["type"] == "urn:bearerd:problem:token-unavailable"
    assert "403 Forbidden" in body["detail"] and "'Key Vault Secrets User' role" in body["detail"]
    assert stack.entra.token_calls(stack.secret_client_id) == 0  # no secret, no call to Entra


def test_a_vault_identifier_of_the_wrong_shape_is_a_config_error(stack: EmulatorStack, tmp_path: Path) -> None:
    from bearerd.errors import ConfigError

    tables = vault_tables(stack, client_secret_keyvault=f"{stack.keyvault.url}/keys/bearerd-secret")
    with pytest.raises(ConfigError) as info:
        config_of(tmp_path, tables)
    assert "[credentials.vaulted] client_secret_keyvault" in str(info.value)
    assert "https://NAME.vault.azure.net/secrets/NAME[/VERSION]" in str(info.value)


async def test_a_reload_keeps_the_fetched_secret_and_its_vault_reader(
    stack: EmulatorStack, tmp_path: Path, host_identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bearerd.tokens.provider.FORCED_REFRESH_MIN_INTERVAL_S", 0.0)
    stack.keyvault.set_secret("bearerd-secret", stack.client_secret_file.read_text())
    stack.keyvault.grant(host_identity)
    async with start(config_of(tmp_path, vault_tables(stack))) as running:
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        await running.daemon.reload(config_of(tmp_path, vault_tables(stack)))
        provider = running.daemon.providers.for_route("secretapi")
        current = provider.current()
        assert current is not None  # the token survived the reload
        assert await provider.refresh_rejected(current) not in (None, current)  # and a new one needs no new fetch
    assert stack.keyvault.secret_calls() == 1
    assert len([c for c in stack.entra.calls if c.scope == VAULT_RESOURCE]) == 1
