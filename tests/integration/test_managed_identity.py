"""managed_identity credentials: MSAL's managed-identity client pointed at the emulator by the
same environment variables Azure hosts set."""

from __future__ import annotations

from pathlib import Path

import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import MANAGED_IDENTITY_VARIABLES, render_toml, stack_tables
from support.inprocess import start


def _point_at_emulator(stack: EmulatorStack, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Only the variables of one Azure host, pointing at the emulator (never the real IMDS)."""
    for name in MANAGED_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in stack.managed_identity_environment(source).items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("source", "identity"),
    [("app_service", {}), ("app_service", {"client_id": "user"}), ("imds", {}), ("imds", {"client_id": "user"})],
)
async def test_managed_identity_request(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, identity: dict[str, str]
) -> None:
    _point_at_emulator(stack, monkeypatch, source)
    tables = stack_tables(stack, credential="mi")
    credential: dict[str, object] = {"kind": "managed_identity", "ca_file": str(stack.ca_file)}
    if identity:
        credential["client_id"] = stack.user_identity_id
    tables["credentials.mi"] = credential
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    async with (
        start(load_config(path)) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 200
    expected = stack.user_identity_id if identity else stack.system_identity_id
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == expected
    call = [c for c in stack.entra.calls if c.grant_type == "managed_identity"][-1]
    assert call.auth_method == source and call.status == 200
    # The v1 resource is the scope without "/.default", double slash and all.
    assert call.scope == stack.apps["secretapi"].app_id_uri


def test_managed_identity_needs_a_single_default_scope(stack: EmulatorStack, tmp_path: Path) -> None:
    from bearerd.errors import ConfigError

    tables = stack_tables(stack, credential="mi", scopes=["a/.default", "b/.default"])
    tables["credentials.mi"] = {"kind": "managed_identity"}
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[routes.secretapi] scopes" in str(info.value)


async def test_managed_identity_with_app_id_asks_for_the_guid_resource_and_is_never_challenged(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """App Service's token service takes no client capabilities, so the token has no xms_cc and App
    Proxy sends it no claims challenge (only CAE-capable clients get those)."""
    _point_at_emulator(stack, monkeypatch, "app_service")
    app = stack.apps["secretapi"]
    tables = stack_tables(stack, credential="mi", app_id=app.app_id)
    tables["routes.secretapi"].pop("scopes")
    tables["credentials.mi"] = {"kind": "managed_identity", "ca_file": str(stack.ca_file)}
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    app.require_auth_context("c1")
    async with (
        start(load_config(path)) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 200
    claims = app.requests_seen[-1].claims
    assert claims["aud"] == app.app_id and "xms_cc" not in claims and app.challenges == 0
    call = [c for c in stack.entra.calls if c.grant_type == "managed_identity"][-1]
    assert call.scope == app.app_id  # the v1 resource: app_id itself
