"""Secret material, read once from the sources the settings name, into frozen values of its own.

The schema holds only what a user wrote (``client_secret_file = "…"``); what the file holds
lives here, in values that never print their content (``SecretStr``) and that the redactor is
given at start-up. Reading happens at load time, so a missing file, an empty variable or a file
others can read stops the daemon at start with a message saying which — not at the first request.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
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
    RouteSettings,
    Settings,
    printable_header_value,
)

KEYVAULT_EXTRA_MISSING = (
    "Key Vault needs the optional extra: pip install 'bearerd[keyvault]' (azure-keyvault-secrets, "
    "azure-keyvault-certificates)"
)

FLEET_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class CertificateMaterial:
    """A certificate credential's key and certificate, as MSAL wants them."""

    private_key_pem: SecretStr
    certificate_pem: str  # the leaf first, then the rest of its chain
    thumbprint: str  # SHA-1 of the leaf's DER, hex (what Entra registers)


@dataclass(frozen=True, slots=True)
class CredentialSecrets:
    """What one credential signs in with; empty for kinds that have no secret of their own."""

    client_secret: SecretStr | None = None
    certificate: CertificateMaterial | None = None
    # The PKCS#12 password or key passphrase: kept so a rotated certificate file can be opened again.
    certificate_password: SecretStr | None = None

    def values(self) -> list[str]:
        """Its secret strings, for the log redactor (also of material fetched or rotated later)."""
        key = self.certificate.private_key_pem if self.certificate is not None else None
        return [s.get_secret_value() for s in (self.client_secret, key, self.certificate_password) if s is not None]


@dataclass(frozen=True, slots=True)
class StaticHeader:
    """One of a route's ``set_headers``, with its value read; ``secret`` unless written in the config."""

    name: str
    value: SecretStr
    secret: bool


@dataclass(frozen=True, slots=True)
class Secrets:
    """Every secret value the configuration resolved to."""

    credentials: Mapping[str, CredentialSecrets] = field(default_factory=dict)
    client_key: SecretStr | None = None  # [server.client_auth] key_file
    redis_password: SecretStr | None = None
    fleet_key: SecretStr | None = None  # base64 of FLEET_KEY_BYTES
    route_headers: Mapping[str, tuple[StaticHeader, ...]] = field(default_factory=dict)  # route -> set_headers

    def for_credential(self, name: str) -> CredentialSecrets:
        return self.credentials.get(name) or CredentialSecrets()

    def headers_for(self, route: str) -> tuple[StaticHeader, ...]:
        return self.route_headers.get(route, ())

    def values(self) -> list[str]:
        """Every secret string, for the log redactor."""
        out = [s.get_secret_value() for s in (self.client_key, self.redis_password, self.fleet_key) if s is not None]
        for cred in self.credentials.values():
            out.extend(cred.values())
        out.extend(h.value.get_secret_value() for hs in self.route_headers.values() for h in hs if h.secret)
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


def read_file_bytes(path: Path, what: str, private: bool) -> bytes:
    """A file's bytes (``private``: only its owner may read it); ValueError saying what is wrong."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    if private and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"{what} {str(path)!r} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )
    if not data.strip():
        raise ValueError(f"{what} {str(path)!r} is empty")
    return data


def watched_files(cred: Credential) -> list[Path]:
    """The files a credential's secret or certificate comes from: re-read when they change (rotation)."""
    if isinstance(cred, ClientSecretCredential):
        return [cred.client_secret_file] if cred.client_secret_file is not None else []
    if isinstance(cred, CertificateCredential) and cred.certificate_file is not None:
        names = (cred.certificate_file, cred.private_key_file, cred.private_key_passphrase_file)
        return [p for p in (*names, cred.certificate_password_file) if p is not None]
    return []


def uses_keyvault(cred: Credential) -> bool:
    return bool(getattr(cred, "client_secret_keyvault", None) or getattr(cred, "certificate_keyvault", None))


def _certificate_password(cred: CertificateCredential, env: Mapping[str, str]) -> SecretStr | None:
    if cred.certificate_password_file is not None:
        return SecretStr(read_secret_file(cred.certificate_password_file, "certificate password"))
    if cred.certificate_password_env is not None:
        return SecretStr(_from_env(cred.certificate_password_env, "certificate_password_env", env))
    if cred.private_key_passphrase_file is not None:
        return SecretStr(read_secret_file(cred.private_key_passphrase_file, "private key passphrase"))
    return None


def certificate_material(
    cert_data: bytes, key_data: bytes | None, password: SecretStr | None, names: tuple[str, str, str]
) -> CertificateMaterial:
    """Load a certificate and key (PEM, PEM chain or PKCS#12); ValueError naming ``names`` (certificate, key,
    password source)."""
    from bearerd.config.certificates import load_certificate  # cryptography: only for certificate credentials

    loaded = load_certificate(
        cert_data,
        key_data,
        password.get_secret_value().encode() if password is not None else None,
        cert_name=names[0],
        key_name=names[1],
        password_name=names[2],
    )
    return CertificateMaterial(SecretStr(loaded.private_key_pem), loaded.chain_pem, loaded.thumbprint)


def _certificate_secrets(cred: CertificateCredential, password: SecretStr | None) -> CredentialSecrets:
    assert cred.certificate_file is not None  # noqa: S101 - Key Vault certificates are fetched later
    key_path = cred.private_key_file
    # A key inside the certificate file (PEM with its key, or PKCS#12) makes that file a secret too.
    cert_data = read_file_bytes(cred.certificate_file, "certificate_file", private=key_path is None)
    key_data = read_file_bytes(key_path, "private_key_file", private=True) if key_path is not None else None
    password_name = (
        "certificate_password_file"
        if cred.certificate_password_file
        else "certificate_password_env"
        if cred.certificate_password_env
        else "private_key_passphrase_file"
    )
    names = (
        f"certificate_file {str(cred.certificate_file)!r}",
        f"private_key_file {str(key_path)!r}" if key_path else f"certificate_file {str(cred.certificate_file)!r}",
        password_name,
    )
    material = certificate_material(cert_data, key_data, password, names)
    return CredentialSecrets(certificate=material, certificate_password=password)


def reread_files(cred: Credential, previous: CredentialSecrets) -> CredentialSecrets:
    """The credential's file-based material read again (a rotation); ValueError when it can't be used."""
    if isinstance(cred, CertificateCredential):
        password = previous.certificate_password if cred.certificate_password_env else None
        if password is None:
            password = _certificate_password(cred, {})
        return _certificate_secrets(cred, password)
    secrets, _ = credential_secrets(cred, {})
    return secrets


def credential_secrets(cred: Credential, env: Mapping[str, str]) -> tuple[CredentialSecrets, list[str]]:
    """Read one credential's secret or key now; return it and the warnings worth logging."""
    if uses_keyvault(cred):
        # Fetched by the daemon with another credential's token (tokens/keyvault.py); here only checked.
        if importlib.util.find_spec("azure") is None or importlib.util.find_spec("azure.keyvault.secrets") is None:
            raise ValueError(KEYVAULT_EXTRA_MISSING)
        return CredentialSecrets(), []
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
        return _certificate_secrets(cred, _certificate_password(cred, env)), []
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


def route_headers(route: RouteSettings, env: Mapping[str, str]) -> tuple[StaticHeader, ...]:
    """A route's ``set_headers`` with their values read now; ValueError naming the header (never its value)."""
    out: list[StaticHeader] = []
    for name, source in route.set_headers.items():
        if source.value is not None:
            out.append(StaticHeader(name, SecretStr(source.value), secret=False))
            continue
        what = f"set_headers {name!r}"
        if source.file is not None:
            value = read_secret_file(source.file, what)
        else:
            assert source.env is not None  # noqa: S101 - the model requires exactly one source
            value = _from_env(source.env, what, env)
        if not printable_header_value(value):
            where = f"file {str(source.file)!r}" if source.file is not None else f"variable {source.env!r}"
            raise ValueError(f"{what}: the {where} must hold one line of printable ASCII (a header value)")
        out.append(StaticHeader(name, SecretStr(value), secret=True))
    return tuple(out)


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
    headers: dict[str, tuple[StaticHeader, ...]] = {}
    for name, route in settings.routes.items():
        try:
            headers[name] = route_headers(route, env)
        except ValueError as exc:
            problems.append(f"[routes.{name}] {exc}")
    secrets = Secrets(
        credentials=creds, client_key=client_key, redis_password=password, fleet_key=fleet_key, route_headers=headers
    )
    return secrets, warnings, problems
