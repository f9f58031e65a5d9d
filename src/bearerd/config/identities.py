"""`environment` and `default` credentials resolved to the concrete credential they stand for.

azure-identity decides at every token request; bearerd decides once, when the configuration is
loaded, from the environment the loader hands in (this module never reads ``os.environ``), so the
choice is visible before any request: the ``started`` log line and ``bearerd check`` name it and
say why each earlier candidate was not taken. The result replaces the table in the settings, so
the rest of bearerd only ever sees the five concrete kinds (plus the CLI ones).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bearerd.config.schema import (
    CLI_KINDS,
    AzureCliCredential,
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    Credential,
    DefaultCredential,
    EnvironmentCredential,
    ManagedIdentityCredential,
)

# Where an Azure host's token service announces itself (what MSAL reads to pick a managed-identity source).
MANAGED_IDENTITY_VARIABLES = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT", "IMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST")
DEFAULT_ORDER = ("environment", "workload_identity", "managed_identity", "azure_cli")


@dataclass(frozen=True, slots=True)
class IdentityChoice:
    """What an `environment`/`default` credential resolved to, and why the others were passed over."""

    written: str  # the kind in the file
    chosen: str  # the concrete kind, plus how (e.g. "client_secret (AZURE_CLIENT_SECRET)")
    skipped: tuple[tuple[str, str], ...] = ()  # (candidate, why not) in the order tried

    def describe(self) -> str:
        return f"{self.written} → {self.chosen}"


class NotResolvable(ValueError):
    """No identity could be chosen; the message says what each candidate lacked."""


def _common(cred: EnvironmentCredential | DefaultCredential) -> dict[str, Any]:
    return {"ca_file": cred.ca_file, "connect_timeout_s": cred.connect_timeout_s, "timeout_s": cred.timeout_s}


def _authority(cred: EnvironmentCredential | DefaultCredential, env: Mapping[str, str]) -> dict[str, Any]:
    if cred.authority:
        return {"authority": cred.authority}
    host = env.get("AZURE_AUTHORITY_HOST", "").strip().rstrip("/")
    tenant = env.get("AZURE_TENANT_ID", "").strip()
    if host and tenant:
        if "://" not in host:
            host = "https://" + host  # azure-identity accepts a bare host name
        return {"authority": f"{host}/{tenant}"}
    return {"tenant_id": tenant}


def _environment(
    cred: EnvironmentCredential | DefaultCredential, env: Mapping[str, str], federated: bool
) -> tuple[Credential | None, str]:
    """The app registration in the AZURE_* variables, or None and why not."""
    tenant, client = env.get("AZURE_TENANT_ID", "").strip(), env.get("AZURE_CLIENT_ID", "").strip()
    names = ["AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"] + (
        ["AZURE_FEDERATED_TOKEN_FILE"] if federated else []
    )
    present = [n for n in names if env.get(n, "").strip()]
    if not present:
        return None, f"none of {', '.join(names)} is set"
    # The tenant may come from the table's own authority; the app's client ID only from the environment.
    missing = [n for n, v in (("AZURE_CLIENT_ID", client), ("AZURE_TENANT_ID", tenant or cred.authority)) if not v]
    if missing:
        return None, f"{present[0]} is set but {' and '.join(missing)} is not"
    base: dict[str, Any] = {**_common(cred), **_authority(cred, env), "client_id": client}
    model: Credential
    if "AZURE_CLIENT_SECRET" in present:
        model = ClientSecretCredential(kind="client_secret", client_secret_env="AZURE_CLIENT_SECRET", **base)  # noqa: S106
        return model, "client_secret (AZURE_CLIENT_SECRET)"
    if "AZURE_CLIENT_CERTIFICATE_PATH" in present:
        extra: dict[str, Any] = {}
        if env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD"):
            extra["certificate_password_env"] = "AZURE_CLIENT_CERTIFICATE_PASSWORD"  # noqa: S105 - a name
        path = Path(env["AZURE_CLIENT_CERTIFICATE_PATH"].strip())
        model = CertificateCredential(kind="certificate", certificate_file=path, **extra, **base)
        return model, "certificate (AZURE_CLIENT_CERTIFICATE_PATH)"
    path = Path(env["AZURE_FEDERATED_TOKEN_FILE"].strip())
    model = ClientAssertionCredential(kind="client_assertion", token_file=path, **base)
    return model, "client_assertion (AZURE_FEDERATED_TOKEN_FILE)"


def find_command(command: str, env: Mapping[str, str]) -> str | None:
    """An executable's absolute path: ``command`` itself when it is a path, else looked up on ``PATH``."""
    if "/" in command:
        path = Path(command)
        return str(path.resolve()) if path.is_file() else None
    found = shutil.which(command, path=env.get("PATH", ""))
    return str(Path(found).resolve()) if found else None


def resolve(cred: Credential, env: Mapping[str, str]) -> tuple[Credential, IdentityChoice | None]:
    """The concrete credential for ``cred`` (itself for concrete kinds, with a CLI's path looked up);
    ``NotResolvable`` (a ValueError) saying what is missing."""
    try:
        return _resolve(cred, env)
    except ValidationError as exc:
        detail = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise NotResolvable(f"the AZURE_* variables do not make a usable credential: {detail}") from None


def _resolve(cred: Credential, env: Mapping[str, str]) -> tuple[Credential, IdentityChoice | None]:
    if cred.kind in CLI_KINDS:
        command = getattr(cred, "command", "")
        found = find_command(command, env)
        if found is None:
            tool = "the Azure CLI (az)" if cred.kind == "azure_cli" else "the Azure Developer CLI (azd)"
            raise NotResolvable(f"command {command!r} is not found on PATH: install {tool}, or set command to its path")
        return cred.model_copy(update={"command": found}), None
    if isinstance(cred, EnvironmentCredential):
        model, how = _environment(cred, env, federated=True)
        if model is None:
            raise NotResolvable(
                f'kind = "environment": {how} (set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, '
                "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE)"
            )
        return model, IdentityChoice("environment", how)
    if isinstance(cred, DefaultCredential):
        return _default(cred, env)
    return cred, None


def _default(cred: DefaultCredential, env: Mapping[str, str]) -> tuple[Credential, IdentityChoice]:
    skipped: list[tuple[str, str]] = []
    model, why = _environment(cred, env, federated=False)
    if model is not None:
        return model, IdentityChoice("default", f"environment: {why}", tuple(skipped))
    skipped.append(("environment", why))
    token_file = env.get("AZURE_FEDERATED_TOKEN_FILE", "").strip()
    if token_file:
        model, why = _environment(cred, env, federated=True)
        if model is not None:
            return model, IdentityChoice("default", f"workload_identity: {why}", tuple(skipped))
        skipped.append(("workload_identity", why))
    else:
        skipped.append(("workload_identity", "AZURE_FEDERATED_TOKEN_FILE is not set"))
    platform = [n for n in MANAGED_IDENTITY_VARIABLES if env.get(n)]
    if platform or cred.imds:
        identity: dict[str, Any] = {}
        if cred.managed_identity_client_id:
            identity["client_id"] = cred.managed_identity_client_id
        mi = ManagedIdentityCredential(kind="managed_identity", **identity, **_common(cred))
        how = f"managed_identity ({platform[0] if platform else 'imds = true'})"
        return mi, IdentityChoice("default", how, tuple(skipped))
    skipped.append(("managed_identity", f"none of {', '.join(MANAGED_IDENTITY_VARIABLES)} is set and imds = false"))
    az = find_command("az", env)
    if az is not None:
        cli = AzureCliCredential(kind="azure_cli", command=az, **_common(cred))
        return cli, IdentityChoice("default", f"azure_cli ({az})", tuple(skipped))
    skipped.append(("azure_cli", "az is not found on PATH"))
    reasons = "; ".join(f"{name}: {why}" for name, why in skipped)
    raise NotResolvable(f'kind = "default" found no identity on this machine — {reasons}')
