"""client_assertion credentials (workload identity federation) against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from bearerd.config.loader import load_config
from bearerd.config.schema import ClientAssertionCredential
from bearerd.emulator import EmulatorStack
from bearerd.errors import TokenUnavailable
from bearerd.tokens.backoff import REFUSAL_BASE_S
from bearerd.tokens.registry import Providers
from support.configs import federated_credential, render_toml, stack_tables
from support.inprocess import start
from support.tokens import accepted


def federated_tables(stack: EmulatorStack) -> dict[str, dict[str, object]]:
    tables = stack_tables(stack, credential="federated")
    tables["credentials.federated"] = federated_credential(stack)
    return tables


async def test_request_with_federated_token(stack: EmulatorStack, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(render_toml(federated_tables(stack)))
    async with (
        start(load_config(path)) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 200
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == stack.federated_client_id


async def test_token_file_is_reread_so_rotation_is_picked_up(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.write_federated_token(lifetime_s=-600)  # stale: the platform hasn't rotated it yet
    path = tmp_path / "c.toml"
    path.write_text(render_toml(federated_tables(stack)))
    providers = Providers(load_config(path))
    try:
        provider = providers.for_route("secretapi")
        with pytest.raises(TokenUnavailable) as info:
            await provider.fetch()
        assert "AADSTS700024" in info.value.detail
        # Refused as it is, it would be refused again: no retry before the refusal's backoff...
        assert info.value.retry_after is not None and info.value.retry_after >= REFUSAL_BASE_S / 2
        with pytest.raises(TokenUnavailable):
            await provider.fetch()
        stack.write_federated_token()  # ...unless the file changes: rotated, so asked again at once
        assert accepted(stack.apps["secretapi"], await provider.fetch())["appid"] == stack.federated_client_id
        assert [c.status for c in stack.entra.calls if c.client_id == stack.federated_client_id] == [400, 200]
    finally:
        await providers.aclose()


def test_workload_identity_environment_fills_the_credential(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, tenant = stack.authority.rsplit("/", 1)
    monkeypatch.setenv("AZURE_CLIENT_ID", stack.federated_client_id)
    monkeypatch.setenv("AZURE_TENANT_ID", tenant)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(stack.federated_token_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", host + "/")
    tables = stack_tables(stack, credential="federated")
    tables["credentials.federated"] = {"kind": "client_assertion", "ca_file": str(stack.ca_file)}
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    cred = load_config(path).settings.credentials["federated"]
    assert isinstance(cred, ClientAssertionCredential)
    assert cred.client_id == stack.federated_client_id
    assert cred.authority_url == stack.authority
    assert cred.token_file == stack.federated_token_file


def test_missing_token_file_is_a_config_error(stack: EmulatorStack, tmp_path: Path) -> None:
    from bearerd.errors import ConfigError

    tables = federated_tables(stack)
    tables["credentials.federated"]["token_file"] = str(tmp_path / "absent")
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[credentials.federated]" in str(info.value) and "AZURE_FEDERATED_TOKEN_FILE" in str(info.value)
