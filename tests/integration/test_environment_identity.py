"""`kind = "environment"` end to end: the AZURE_* variables (secret, or a PFX with its password) sign in
against the emulator through an in-process daemon."""

from __future__ import annotations

from pathlib import Path

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support import certs
from support.configs import stack_tables, write_tables
from support.inprocess import start


async def _request(stack: EmulatorStack, tmp_path: Path, env: dict[str, str]) -> str:
    tables = stack_tables(stack, credential="from-env")
    tables["credentials.from-env"] = {"kind": "environment", "ca_file": str(stack.ca_file)}
    config = load_config(write_tables(tmp_path / "env.toml", tables), environ=env)
    assert config.identities["from-env"].written == "environment"
    async with (
        start(config) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        assert resp.status == 200
    return str(stack.apps["secretapi"].requests_seen[-1].claims["appid"])


def _tenant(stack: EmulatorStack) -> dict[str, str]:
    # The emulator's authority is https://127.0.0.1:PORT/TENANT: AZURE_AUTHORITY_HOST is its host part.
    return {"AZURE_TENANT_ID": stack.tenant_id, "AZURE_AUTHORITY_HOST": stack.authority.rsplit("/", 1)[0]}


async def test_environment_secret(stack: EmulatorStack, tmp_path: Path) -> None:
    env = {
        **_tenant(stack),
        "AZURE_CLIENT_ID": stack.secret_client_id,
        "AZURE_CLIENT_SECRET": stack.client_secret_file.read_text(),
    }
    assert await _request(stack, tmp_path, env) == stack.secret_client_id
    assert [c.auth_method for c in stack.entra.calls if c.client_id == stack.secret_client_id] == ["secret"]


async def test_environment_pfx_certificate_with_password(stack: EmulatorStack, tmp_path: Path) -> None:
    pfx = certs.write_pfx(tmp_path / "client.pfx", stack.cert_file, stack.key_file, b"pfx-password")
    env = {
        **_tenant(stack),
        "AZURE_CLIENT_ID": stack.cert_client_id,
        "AZURE_CLIENT_CERTIFICATE_PATH": str(pfx),
        "AZURE_CLIENT_CERTIFICATE_PASSWORD": "pfx-password",
    }
    assert await _request(stack, tmp_path, env) == stack.cert_client_id
    calls = [c for c in stack.entra.calls if c.client_id == stack.cert_client_id]
    # Both routes use certificate credentials here (otherapi: the standard PEM one): the same app.
    assert all(c.auth_method == "assertion" and c.status == 200 and "x5t" in c.assertion_header for c in calls)
