"""Config loading and validation: every error names file, table and field and says what to do.

Files on disk and the environment, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bearerd.config.loader import load_config
from bearerd.config.schema import CertificateCredential, ClientSecretCredential
from bearerd.errors import ConfigError

BASE = """
[credentials.app]
kind = "client_secret"
tenant_id = "contoso"
client_id = "cid"
client_secret_env = "TEST_APP_SECRET"

[routes.api]
match = { path_prefix = "/api/" }
upstream = "https://api-contoso.msappproxy.net/"
credential = "app"
scopes = ["https://api-contoso.msappproxy.net//.default"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bearerd.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.file.endswith("bearerd.toml")
    assert "bearerd.toml" in str(info.value)
    return info.value.problems


def test_valid_config_resolves_secret_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    config = load_config(write(tmp_path, BASE))
    cred = config.settings.credentials["app"]
    assert isinstance(cred, ClientSecretCredential)
    secret = config.secrets.for_credential("app").client_secret
    assert secret is not None and secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config) and "s3cr3t-value" not in repr(config.secrets)
    assert config.secrets.values() == ["s3cr3t-value"]
    assert config.warnings == ()
    assert config.settings.server.listen == ["127.0.0.1:8080"]
    assert cred.authority_url == "https://login.microsoftonline.com/contoso"


def test_scope_with_double_slash_kept_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    settings = load_config(write(tmp_path, BASE)).settings
    assert settings.routes["api"].scopes == ["https://api-contoso.msappproxy.net//.default"]


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    monkeypatch.setenv("BEARERD_SERVER__LISTEN", '["127.0.0.1:9999"]')
    settings = load_config(write(tmp_path, BASE)).settings
    assert settings.server.listen == ["127.0.0.1:9999"]


def test_secret_file_relative_to_config_and_permissions(tmp_path: Path) -> None:
    secret = tmp_path / "app.secret"
    secret.write_text("file-secret-1\n")
    secret.chmod(0o644)
    text = BASE.replace('client_secret_env = "TEST_APP_SECRET"', 'client_secret_file = "app.secret"')
    found = problems(tmp_path, text)
    assert any("[credentials.app]" in p and "chmod 600" in p for p in found)
    secret.chmod(0o600)
    config = load_config(write(tmp_path, text))
    assert isinstance(config.settings.credentials["app"], ClientSecretCredential)
    resolved = config.secrets.for_credential("app").client_secret
    assert resolved is not None and resolved.get_secret_value() == "file-secret-1"


def test_literal_secret_warns_loudly(tmp_path: Path) -> None:
    text = BASE.replace('client_secret_env = "TEST_APP_SECRET"', 'client_secret = "literal-secret"')
    warnings = load_config(write(tmp_path, text)).warnings
    assert any("SECURITY WARNING" in w and "client_secret_file" in w for w in warnings)


def test_missing_env_secret_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_APP_SECRET", raising=False)
    (found,) = problems(tmp_path, BASE)
    assert "[credentials.app]" in found and "TEST_APP_SECRET" in found


def test_many_problems_reported_at_once(tmp_path: Path) -> None:
    text = """
[server]
listn = ["127.0.0.1:1"]
[credentials.b]
kind = "magic"
client_id = "x"
[routes.r]
match = { path_prefix = "nope/" }
upstream = "ftp://x"
credential = "b"
scopes = []
client_authorization = "move:"
"""
    found = problems(tmp_path, text)
    joined = "\n".join(found)
    assert "[server] listn" in joined and "did you mean 'listen'" in joined
    kinds = "client_secret, certificate, client_assertion, managed_identity, device_code"
    assert "[credentials.b]" in joined and f"kind must be one of {kinds}" in joined
    assert "[routes.r] match" in joined
    assert "[routes.r] upstream" in joined and "https://" in joined
    assert "[routes.r] scopes" in joined and "/.default" in joined
    assert "[routes.r] client_authorization" in joined and "move:X-Original-Authorization" in joined


def test_unknown_credential_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    (found,) = problems(tmp_path, BASE.replace('credential = "app"', 'credential = "other"'))
    assert "[routes.api]" in found and "'other'" in found and "known: app" in found


def test_non_loopback_listen_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    (found,) = problems(tmp_path, '[server]\nlisten = ["0.0.0.0:8080"]\n' + BASE)
    assert "[server]" in found and "allow_remote" in found


def test_authority_must_be_https_with_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    (found,) = problems(tmp_path, BASE.replace('tenant_id = "contoso"', 'authority = "http://login.example/"'))
    assert "[credentials.app]" in found and "https://HOST/TENANT" in found


def test_duplicate_prefix_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    extra = (
        BASE
        + '\n[routes.api2]\nmatch = { path_prefix = "/api" }\nupstream = "https://b/"\n'
        + 'credential = "app"\nscopes = ["x"]\n'
    )
    (found,) = problems(tmp_path, extra)
    assert "[routes.api2]" in found and "[routes.api]" in found


def test_bad_toml(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "x = [")
    assert "not valid TOML" in found


def test_certificate_credential_thumbprint(tmp_path: Path) -> None:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from bearerd.emulator.pki import make_client_certificate

    cert_pem = make_client_certificate(tmp_path / "c.pem", tmp_path / "k.pem", "bearerd-test")
    text = BASE.replace(
        'kind = "client_secret"', 'kind = "certificate"\ncertificate_file = "c.pem"\nprivate_key_file = "k.pem"'
    ).replace('client_secret_env = "TEST_APP_SECRET"\n', "")
    config = load_config(write(tmp_path, text))
    assert isinstance(config.settings.credentials["app"], CertificateCredential)
    material = config.secrets.for_credential("app").certificate
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert material is not None and material.thumbprint == hashlib.sha1(der, usedforsecurity=False).hexdigest()
    # A key of another certificate is refused with a clear message.
    make_client_certificate(tmp_path / "other.pem", tmp_path / "k.pem", "other")
    (found,) = problems(tmp_path, text)
    assert "does not belong to the certificate" in found


VAULT = BASE.replace(
    'client_secret_env = "TEST_APP_SECRET"',
    'client_secret_keyvault = "https://contoso-kv.vault.azure.net/secrets/app"\nkeyvault_credential = "READER"',
)


@pytest.mark.parametrize(
    ("reader", "message"),
    [
        ("app", "[credentials.app] keyvault_credential 'app' must name another [credentials.*] table"),
        ("nope", "[credentials.app] keyvault_credential 'nope' must name another [credentials.*] table (known: "),
    ],
)
def test_keyvault_credential_must_name_another_table(tmp_path: Path, reader: str, message: str) -> None:
    text = VAULT.replace("READER", reader) + '\n[credentials.mi]\nkind = "managed_identity"\n'
    assert any(p.startswith(message) for p in problems(tmp_path, text))


def test_a_vault_reader_that_reads_a_vault_itself_is_refused(tmp_path: Path) -> None:
    other = '\n[credentials.other]\nkind = "client_secret"\ntenant_id = "t"\nclient_id = "c"\n'
    other += 'client_secret_keyvault = "https://kv.vault.azure.net/secrets/x"\n'
    found = problems(tmp_path, VAULT.replace("READER", "other") + other)
    assert any("keyvault_credential 'other' itself reads a vault" in p for p in found)


def test_a_cli_command_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    tool = tmp_path / "tools" / "az"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    text = BASE.replace(
        'kind = "client_secret"\ntenant_id = "contoso"\nclient_id = "cid"\nclient_secret_env = "TEST_APP_SECRET"',
        'kind = "azure_cli"\ncommand = "tools/az"',
    )
    config = load_config(write(tmp_path, text), environ={})
    assert getattr(config.settings.credentials["app"], "command") == str(tool)  # noqa: B009


def test_what_default_resolved_to_is_checked_against_the_routes_again(tmp_path: Path) -> None:
    tool = tmp_path / "az"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    text = BASE.replace(
        'kind = "client_secret"\ntenant_id = "contoso"\nclient_id = "cid"\nclient_secret_env = "TEST_APP_SECRET"',
        'kind = "default"',
    ).replace('scopes = ["https://api-contoso.msappproxy.net//.default"]', 'scopes = ["a/.default", "b/.default"]')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={"PATH": str(tmp_path)})
    assert info.value.problems == [
        "[routes.api] scopes: az gets tokens for one resource; give exactly one scope ending in /.default"
    ]


HEADERS = (
    BASE + 'set_headers = { "PRIVATE-TOKEN" = { file = "gitlab-token" }, "X-Api-Key" = { env = "TEST_API_KEY" }, '
    '"X-Tenant" = { value = "contoso" } }\nremove_headers = ["X-Debug"]\n'
)


def test_set_headers_read_from_file_env_and_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    monkeypatch.setenv("TEST_API_KEY", "key-from-environment")
    token = tmp_path / "gitlab-token"  # relative to the config file
    token.write_text("glpat-0123456789\n")
    token.chmod(0o600)
    config = load_config(write(tmp_path, HEADERS))
    headers = {h.name: (h.value.get_secret_value(), h.secret) for h in config.secrets.headers_for("api")}
    assert headers == {
        "PRIVATE-TOKEN": ("glpat-0123456789", True),
        "X-Api-Key": ("key-from-environment", True),
        "X-Tenant": ("contoso", False),
    }
    assert set(config.secrets.values()) == {"s3cr3t-value", "glpat-0123456789", "key-from-environment"}
    assert "glpat-0123456789" not in repr(config.secrets)
    assert config.settings.routes["api"].remove_headers == ["X-Debug"]


def test_set_headers_sources_are_checked_like_other_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    monkeypatch.delenv("TEST_API_KEY", raising=False)
    token = tmp_path / "gitlab-token"
    token.write_text("glpat-0123456789")
    token.chmod(0o644)
    (found,) = problems(tmp_path, HEADERS)
    assert found.startswith("[routes.api] set_headers 'PRIVATE-TOKEN' file") and found.endswith(f"chmod 600 {token}")
    token.chmod(0o600)
    (found,) = problems(tmp_path, HEADERS)
    assert found == "[routes.api] environment variable 'TEST_API_KEY' (set_headers 'X-Api-Key') is not set or empty"
    token.write_text("line one\nline two")
    monkeypatch.setenv("TEST_API_KEY", "ok-value")
    (found,) = problems(tmp_path, HEADERS)
    assert found == f"[routes.api] set_headers 'PRIVATE-TOKEN': the file {str(token)!r} must hold one line of " + (
        "printable ASCII (a header value)"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('set_headers = { "Authorization" = { value = "x" } }', "set_headers 'Authorization' must be a header name"),
        ('set_headers = { "Host" = { value = "x" } }', "other than Authorization"),
        ('set_headers = { "X-A" = { value = "x", env = "Y" } }', "exactly one of file, env or value"),
        ('set_headers = { "X-A" = { value = "a\\r\\nX-B: b" } }', "one non-empty line of printable ASCII"),
        ('set_headers = { "X-A" = { value = "1" }, "x-a" = { value = "2" } }', "names 'x-a' twice"),
        ('remove_headers = ["Content-Length"]', "remove_headers 'Content-Length' must be a header name"),
        ('client_authorization = "move:X-Orig"\nset_headers = { "x-orig" = { value = "1" } }', "pick another header"),
    ],
)
def test_set_and_remove_headers_validation(tmp_path: Path, fields: str, message: str) -> None:
    found = problems(tmp_path, BASE + fields + "\n")
    assert len(found) == 1 and found[0].startswith("[routes.api]") and message in found[0], found


@pytest.mark.parametrize(
    "pattern", ["*", "*.", "a.*.example.com", "api.example.com:0", "api.example.com:x", "ex ample"]
)
def test_tunnel_hosts_patterns_that_would_open_too_much_are_refused(tmp_path: Path, pattern: str) -> None:
    found = problems(tmp_path, f'[server]\ntunnel_hosts = ["{pattern}"]\n' + BASE)
    assert len(found) == 1 and "[server] tunnel_hosts" in found[0] and "open proxy" in found[0], found


def test_tunnel_hosts_patterns_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cr3t-value")
    text = '[server]\nintercept_https = true\ntunnel_hosts = ["*.Example.com", "api.example.org:8443", "[::1]:443"]\n'
    server = load_config(write(tmp_path, text + BASE)).settings.server
    assert server.intercept_https
    assert server.tunnel_hosts == ["*.example.com", "api.example.org:8443", "[::1]:443"]
