"""`environment` and `default` resolved from an environment mapping: what is chosen, and why not the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from bearerd.config.identities import NotResolvable, resolve
from bearerd.config.schema import (
    AzureCliCredential,
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    DefaultCredential,
    EnvironmentCredential,
    ManagedIdentityCredential,
)

APP = {"AZURE_TENANT_ID": "contoso.example", "AZURE_CLIENT_ID": "app-id"}


def environment(**fields: object) -> EnvironmentCredential:
    return EnvironmentCredential(kind="environment", **fields)  # type: ignore[arg-type]


def default(**fields: object) -> DefaultCredential:
    return DefaultCredential(kind="default", **fields)  # type: ignore[arg-type]


def test_environment_with_a_secret_is_a_client_secret_credential_reading_the_variable() -> None:
    cred, choice = resolve(environment(timeout_s=7), {**APP, "AZURE_CLIENT_SECRET": "s3cr3t-value"})
    assert isinstance(cred, ClientSecretCredential)
    assert cred.client_secret_env == "AZURE_CLIENT_SECRET" and cred.client_id == "app-id"
    assert cred.authority_url == "https://login.microsoftonline.com/contoso.example"
    assert cred.timeout_s == 7
    assert choice is not None and choice.describe() == "environment → client_secret (AZURE_CLIENT_SECRET)"


def test_environment_certificate_with_password_and_sovereign_authority_host() -> None:
    env = {
        **APP,
        "AZURE_CLIENT_CERTIFICATE_PATH": "/etc/certs/app.pfx",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD": "pfx-password",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/",
    }
    cred, _ = resolve(environment(), env)
    assert isinstance(cred, CertificateCredential)
    assert cred.certificate_file == Path("/etc/certs/app.pfx")
    assert cred.certificate_password_env == "AZURE_CLIENT_CERTIFICATE_PASSWORD"
    assert cred.authority_url == "https://login.microsoftonline.us/contoso.example"


def test_environment_federated_token_file_and_the_tables_own_authority_wins() -> None:
    env = {"AZURE_CLIENT_ID": "app-id", "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token"}
    cred, _ = resolve(environment(authority="https://login.emulator.example/tenant"), env)
    assert isinstance(cred, ClientAssertionCredential)
    assert cred.token_file == Path("/var/run/secrets/token")
    assert cred.authority_url == "https://login.emulator.example/tenant"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "none of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE is set"),
        ({"AZURE_CLIENT_SECRET": "x"}, "AZURE_CLIENT_SECRET is set but AZURE_CLIENT_ID and AZURE_TENANT_ID is not"),
    ],
)
def test_environment_says_what_is_missing(env: dict[str, str], message: str) -> None:
    with pytest.raises(NotResolvable, match=message):
        resolve(environment(), env)


def test_default_takes_the_environment_first() -> None:
    env = {**APP, "AZURE_CLIENT_SECRET": "x", "AZURE_FEDERATED_TOKEN_FILE": "/t", "IDENTITY_ENDPOINT": "http://mi"}
    cred, choice = resolve(default(), env)
    assert isinstance(cred, ClientSecretCredential)
    assert choice is not None and choice.chosen == "environment: client_secret (AZURE_CLIENT_SECRET)"
    assert choice.skipped == ()


def test_default_workload_identity_next_and_says_why_not_the_environment() -> None:
    cred, choice = resolve(default(), {**APP, "AZURE_FEDERATED_TOKEN_FILE": "/t", "IDENTITY_ENDPOINT": "http://mi"})
    assert isinstance(cred, ClientAssertionCredential)
    assert choice is not None and choice.chosen.startswith("workload_identity")
    assert choice.skipped == (("environment", "none of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH is set"),)


def test_default_managed_identity_from_the_platform_variables(tmp_path: Path) -> None:
    cred, choice = resolve(default(managed_identity_client_id="user-mi"), {"IDENTITY_ENDPOINT": "http://mi"})
    assert isinstance(cred, ManagedIdentityCredential) and cred.client_id == "user-mi"
    assert choice is not None and choice.chosen == "managed_identity (IDENTITY_ENDPOINT)"
    assert [name for name, _ in choice.skipped] == ["environment", "workload_identity"]


def test_default_imds_only_when_asked() -> None:
    cred, choice = resolve(default(imds=True), {})
    assert isinstance(cred, ManagedIdentityCredential)
    assert choice is not None and choice.chosen == "managed_identity (imds = true)"


def test_default_falls_back_to_az_on_path(tmp_path: Path) -> None:
    az = tmp_path / "az"
    az.write_text("#!/bin/sh\n")
    az.chmod(0o755)
    cred, choice = resolve(default(), {"PATH": str(tmp_path)})
    assert isinstance(cred, AzureCliCredential) and cred.command == str(az)
    assert choice is not None and choice.chosen == f"azure_cli ({az})"
    assert [name for name, _ in choice.skipped] == ["environment", "workload_identity", "managed_identity"]


def test_default_with_nothing_says_why_each_was_passed_over(tmp_path: Path) -> None:
    with pytest.raises(NotResolvable) as info:
        resolve(default(), {"PATH": str(tmp_path)})
    text = str(info.value)
    for part in (
        "environment: none of AZURE_CLIENT_SECRET",
        "workload_identity: AZURE_FEDERATED_TOKEN_FILE is not set",
        "managed_identity: none of IDENTITY_ENDPOINT",
        "azure_cli: az is not found on PATH",
    ):
        assert part in text
