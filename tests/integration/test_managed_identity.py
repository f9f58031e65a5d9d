"""managed_identity credentials: MSAL's managed-identity client pointed at the emulator by the
same environment variables Azure hosts set."""

from __future__ import annotations

from pathlib import Path

import pytest

from bearerd.config.loader import Config, load_config
from bearerd.emulator import EmulatorStack
from support.configs import MANAGED_IDENTITY_VARIABLES, render_toml, stack_tables
from support.inprocess import start


def _point_at_emulator(stack: EmulatorStack, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Only the variables of one Azure host, pointing at the emulator (never the real IMDS)."""
    for name in MANAGED_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in stack.managed_identity_environment(source).items():
        monkeypatch.setenv(name, value)


def mi_config(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], user: bool = False
) -> Config:
    """A managed-identity route with only ``env`` as the host's variables (inherited ones stripped)."""
    for name in MANAGED_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tables = stack_tables(stack, credential="mi")
    credential: dict[str, object] = {"kind": "managed_identity", "ca_file": str(stack.ca_file)}
    if user:
        credential["client_id"] = stack.user_identity_id
    tables["credentials.mi"] = credential
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    return load_config(path)


@pytest.mark.parametrize(
    ("source", "identity"),
    [("app_service", {}), ("app_service", {"client_id": "user"}), ("imds", {}), ("imds", {"client_id": "user"})],
)
async def test_managed_identity_request(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, identity: dict[str, str]
) -> None:
    config = mi_config(stack, tmp_path, monkeypatch, stack.managed_identity_environment(source), bool(identity))
    async with (
        start(config) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 200
    expected = stack.user_identity_id if identity else stack.system_identity_id
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == expected
    call = [c for c in stack.entra.calls if c.grant_type == "managed_identity"][-1]
    assert call.auth_method == source and call.status == 200
    # The v1 resource is the scope without "/.default", double slash and all.
    assert call.scope == stack.apps["secretapi"].app_id_uri


async def mi_detail(stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    """The problem detail a request gets with only ``env`` as the host's managed-identity variables."""
    async with (
        start(mi_config(stack, tmp_path, monkeypatch, env)) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 503
        body = await resp.json()
    assert body["type"] == "urn:bearerd:problem:token-unavailable"
    detail = str(body["detail"])
    assert "invalid_scope" not in detail and "discovery document" not in detail  # not MSAL's relabelling
    return detail


async def test_a_wrong_identity_header_says_the_endpoint_refused_it(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = stack.managed_identity_environment("app_service") | {"IDENTITY_HEADER": "not-the-hosts-header"}
    detail = await mi_detail(stack, tmp_path, monkeypatch, env)
    assert f"App Service identity endpoint at {env['IDENTITY_ENDPOINT']} refused bearerd's request" in detail
    assert "401, Unauthorized" in detail and "IDENTITY_HEADER is not the one this host issued" in detail
    assert "not-the-hosts-header" not in detail and stack.entra.identity_header not in detail


async def test_no_managed_identity_environment_names_the_variables_to_set(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No host variables: MSAL asks IMDS, here a local server that is no IMDS (as a developer's
    # machine answers 169.254.169.254: not at all, or with some page).
    detail = await mi_detail(stack, tmp_path, monkeypatch, {"AZURE_POD_IDENTITY_AUTHORITY_HOST": stack.backend_url})
    assert detail.startswith("no access token for credential 'mi': no managed identity here: none of ")
    for variable in ("IDENTITY_ENDPOINT + IDENTITY_HEADER", "IDENTITY_ENDPOINT + IMDS_ENDPOINT", "MSI_ENDPOINT"):
        assert variable in detail
    assert f"the Azure instance metadata service (IMDS) at {stack.backend_url} gave no token" in detail


async def test_no_managed_identity_and_nothing_listening(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{closed.getsockname()[1]}"
        detail = await mi_detail(stack, tmp_path, monkeypatch, {"AZURE_POD_IDENTITY_AUTHORITY_HOST": host})
    assert "no managed identity here" in detail and "Connection refused" in detail


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
