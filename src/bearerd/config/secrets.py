"""Secret material, read once from the sources the settings name, into frozen values of its own.

The schema holds only what a user wrote (``client_secret_file = "…"``); what the file holds
lives here, in values that never print their content (``SecretStr``) and that the redactor is
given at start-up. Reading happens at load time, so a missing file, an empty variable or a file
others can read stops the daemon at start with a message saying which — not at the first request.
"""

from __future__ import annotations

import base64
import binascii
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from bearerd.config.schema import (
    CacheSettings,
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    Credential,
    Settings,
)

FLEET_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class CertificateMaterial:
    """A certificate credential's key and certificate, as MSAL wants them."""

    private_key_pem: SecretStr
    certificate_pem: str
    thumbprint: str  # SHA-1 of the DER certificate, hex (what Entra registers)


@dataclass(frozen=True, slots=True)
class CredentialSecrets:
    """What one credential signs in with; empty for kinds that have no secret of their own."""

    client_secret: SecretStr | None = None
    certificate: CertificateMaterial | None = None


@dataclass(frozen=True, slots=True)
class Secrets:
    """Every secret value the configuration resolved to."""

    credentials: Mapping[str, CredentialSecrets] = field(default_factory=dict)
    client_key: SecretStr | None = None  # [server.client_auth] key_file
    redis_password: SecretStr | None = None
    fleet_key: SecretStr | None = None  # base64 of FLEET_KEY_BYTES

    def for_credential(self, name: str) -> CredentialSecrets:
        return self.credentials.get(name) or CredentialSecrets()

    def values(self) -> list[str]:
        """Every secret string, for the log redactor."""
        out = [s.get_secret_value() for s in (self.client_key, self.redis_password, self.fleet_key) if s is not None]
        for cred in self.credentials.values():
            if cred.client_secret is not None:
                out.append(cred.client_secret.get_secret_value())
            if cred.certificate is not None:
                out.append(cred.certificate.private_key_pem.get_secret_value())
        return [v for v in out if v]


def read_secret_file(path: Path, what: str) -> str:
    """The stripped content of a file only its owner can read; ValueError saying what is wrong."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"{what} file {str(path)!r} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )
    if not text:
        raise ValueError(f"{what} file {str(path)!r} is empty")
    return text


def _from_env(name: str, what: str, env: Mapping[str, str]) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ValueError(f"environment variable {name!r} ({what}) is not set or empty")
    return value


def credential_secrets(cred: Credential, env: Mapping[str, str]) -> tuple[CredentialSecrets, list[str]]:
    """Read one credential's secret or key now; return it and the warnings worth logging."""
    if isinstance(cred, ClientSecretCredential):
        if cred.client_secret_file is not None:
            return CredentialSecrets(SecretStr(read_secret_file(cred.client_secret_file, "client secret"))), []
        if cred.client_secret_env is not None:
            return CredentialSecrets(SecretStr(_from_env(cred.client_secret_env, "client_secret_env", env))), []
        assert cred.client_secret is not None  # noqa: S101 - the model requires exactly one source
        warning = (
            "SECURITY WARNING: client_secret is written in the config file in clear text: "
            "anyone who can read the file has the secret. "
            "Move it to client_secret_file (mode 0600) or client_secret_env"
        )
        return CredentialSecrets(cred.client_secret), [warning]
    if isinstance(cred, CertificateCredential):
        from bearerd.config.certificates import load_certificate  # cryptography: only for certificate credentials

        passphrase = None
        if cred.private_key_passphrase_file is not None:
            passphrase = read_secret_file(cred.private_key_passphrase_file, "private key passphrase").encode()
        key_path = cred.private_key_file or cred.certificate_file
        key_text = read_secret_file(key_path, "private key")
        key_pem, cert_pem, thumbprint = load_certificate(cred.certificate_file, key_path, key_text, passphrase)
        return CredentialSecrets(certificate=CertificateMaterial(SecretStr(key_pem), cert_pem, thumbprint)), []
    if isinstance(cred, ClientAssertionCredential):
        # Read again at every acquisition (the platform rotates it); checked now so a wrong path fails at start.
        try:
            if not cred.token_file.read_text(encoding="utf-8").strip():
                raise ValueError(f"token_file {str(cred.token_file)!r} is empty")
        except OSError as exc:
            raise ValueError(
                f"cannot read token_file {str(cred.token_file)!r}: {exc.strerror} "
                "(on AKS it is $AZURE_FEDERATED_TOKEN_FILE, projected by Azure Workload Identity)"
            ) from None
    return CredentialSecrets(), []


def fleet_secrets(cache: CacheSettings, env: Mapping[str, str]) -> tuple[SecretStr, SecretStr | None]:
    """The fleet's encryption key (base64) and the Redis password, read now."""
    if cache.encryption_key_file is not None:
        text = read_secret_file(cache.encryption_key_file, "encryption key")
        source = f"encryption_key_file {str(cache.encryption_key_file)!r}"
    else:
        assert cache.encryption_key_env is not None  # noqa: S101 - the model requires one of them
        text = _from_env(cache.encryption_key_env, "encryption_key_env", env)
        source = f"encryption_key_env {cache.encryption_key_env!r}"
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != FLEET_KEY_BYTES:
        raise ValueError(
            f"{source} must hold {FLEET_KEY_BYTES} random bytes, base64-encoded: create the key with "
            "`openssl rand -base64 32`"
        )
    password = None
    if cache.password_file is not None:
        password = SecretStr(read_secret_file(cache.password_file, "Redis password"))
    elif cache.password_env is not None:
        password = SecretStr(_from_env(cache.password_env, "password_env", env))
    return SecretStr(base64.b64encode(key).decode()), password


def resolve(settings: Settings, env: Mapping[str, str]) -> tuple[Secrets, list[str], list[str]]:
    """All secrets of ``settings``: (secrets, warnings, problems). Problems are named like config errors."""
    problems: list[str] = []
    warnings: list[str] = []
    creds: dict[str, CredentialSecrets] = {}
    for name, cred in settings.credentials.items():
        try:
            creds[name], notes = credential_secrets(cred, env)
            warnings.extend(f"[credentials.{name}] {n}" for n in notes)
        except ValueError as exc:
            problems.append(f"[credentials.{name}] {exc}")
    client_key = None
    if settings.server.client_auth is not None:
        try:
            client_key = SecretStr(read_secret_file(settings.server.client_auth.key_file, "client key"))
        except ValueError as exc:
            problems.append(f"[server.client_auth] key_file: {exc}")
    fleet_key = password = None
    if settings.cache.backend == "redis":
        try:
            fleet_key, password = fleet_secrets(settings.cache, env)
        except ValueError as exc:
            problems.append(f"[cache] {exc}")
    secrets = Secrets(credentials=creds, client_key=client_key, redis_password=password, fleet_key=fleet_key)
    return secrets, warnings, problems
