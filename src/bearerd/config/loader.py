"""Load a configuration once: TOML + ``BEARERD_*`` overrides + ``${VAR}`` paths + secrets → ``Config``.

This is the only module that reads the process environment. Everything the running daemon needs
from it — secrets named by ``*_env`` settings, the outbound proxy variables, the service
manager's variables, the workload-identity defaults — is read here, at load time, and carried in
the frozen ``Config`` that everything else receives. Every problem is collected and reported at
once, each naming the file, the table and the field, so a user fixes them in one go.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bearerd.config import identities
from bearerd.config import secrets as secret_sources
from bearerd.config.environment import Egress, ManagedIdentityHost, Runtime, default_state_dir
from bearerd.config.identities import IdentityChoice
from bearerd.config.messages import describe_all
from bearerd.config.schema import Settings
from bearerd.config.secrets import Secrets
from bearerd.errors import ConfigError

# The variables Azure Workload Identity injects into a pod; they fill settings left out of the file.
WORKLOAD_IDENTITY_ENV = {
    "client_id": "AZURE_CLIENT_ID",
    "tenant_id": "AZURE_TENANT_ID",
    "token_file": "AZURE_FEDERATED_TOKEN_FILE",
}
_CREDENTIAL_PATHS = (
    "client_secret_file",
    "certificate_file",
    "private_key_file",
    "private_key_passphrase_file",
    "certificate_password_file",
    "ca_file",
    "token_file",
)
_CACHE_PATHS = ("password_file", "ca_file", "encryption_key_file")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything bearerd runs on, loaded and validated once and passed down."""

    settings: Settings  # what the user wrote, validated, paths made absolute
    secrets: Secrets = field(repr=False)  # what the secret sources held
    egress: Egress = field(default_factory=Egress)
    runtime: Runtime = field(default_factory=Runtime)
    source_file: str = "<defaults>"
    state_dir: Path = field(default_factory=lambda: Path("."))
    warnings: tuple[str, ...] = ()
    # `environment`/`default` credentials: what each resolved to (settings hold the resolved credential).
    identities: Mapping[str, IdentityChoice] = field(default_factory=dict)
    managed_identity: ManagedIdentityHost = field(default_factory=ManagedIdentityHost)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load, validate and resolve secrets; raise ``ConfigError`` listing every problem found."""
    env = os.environ if environ is None else environ
    file = Path(path)
    shown = str(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(shown, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(shown, [f"not valid TOML: {exc}"]) from None
    path_problems = _prepare(data, file.resolve().parent, env)
    if path_problems:
        raise ConfigError(shown, path_problems)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(shown, describe_all(exc.errors())) from None
    settings, choices, problems = _resolve_identities(settings, env)
    if problems:
        raise ConfigError(shown, problems)
    secrets, warnings, problems = secret_sources.resolve(settings, env)
    if problems:
        raise ConfigError(shown, problems)
    if settings.server.allow_remote:
        warnings.append("[server] allow_remote = true: non-loopback clients can use this daemon's tokens")
    return Config(
        settings=settings,
        secrets=secrets,
        egress=Egress.from_environ(env),
        runtime=Runtime.from_environ(env),
        source_file=shown,
        state_dir=settings.state_dir or default_state_dir(env),
        warnings=tuple(warnings),
        identities=choices,
        managed_identity=ManagedIdentityHost.from_environ(env),
    )


def _resolve_identities(
    settings: Settings, env: Mapping[str, str]
) -> tuple[Settings, dict[str, IdentityChoice], list[str]]:
    """`environment`/`default` credentials replaced by what the environment makes of them, CLI commands
    looked up on PATH — now, so the choice is known (and logged) before the first request."""
    resolved, choices, problems = dict(settings.credentials), {}, []
    for name, cred in settings.credentials.items():
        try:
            resolved[name], choice = identities.resolve(cred, env)
        except ValueError as exc:
            problems.append(f"[credentials.{name}] {exc}")
            continue
        if choice is not None:
            choices[name] = choice
    if resolved == dict(settings.credentials):
        return settings, choices, problems
    updated = settings.model_copy(update={"credentials": resolved})
    try:  # the cross-table checks again, on what the credentials became (a default that became az: one scope)
        updated._cross_references()  # type: ignore[operator] # pydantic's validator, called on what it became
    except ValueError as exc:
        problems.append(str(exc))
    return updated, choices, problems


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Expand ``$VAR``/``${VAR}`` (e.g. systemd's ``$CREDENTIALS_DIRECTORY``); an unset one is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in env:
            raise ValueError(f"{value!r} uses ${{{name}}}, which is not set in the environment")
        return env[name]

    return _VAR.sub(one, value)


def _resolve_path(value: Any, base: Path, env: Mapping[str, str]) -> Any:
    if isinstance(value, str) and value:
        value = _expand(value, env)
        if not Path(value).is_absolute():
            return str(base / value)
    return value


def _resolve_paths(
    table: dict[str, Any], keys: tuple[str, ...], where: str, base: Path, env: Mapping[str, str]
) -> list[str]:
    problems: list[str] = []
    for key in keys:
        if isinstance(table.get(key), str):
            try:
                table[key] = _resolve_path(table[key], base, env)
            except ValueError as exc:
                problems.append(f"{where} {key}: {exc}")
    return problems


def _prepare(data: dict[str, Any], base: Path, env: Mapping[str, str]) -> list[str]:
    """Fill workload-identity defaults, expand variables in path settings and make relative paths
    relative to the config file. Returns the problems found (an unset variable)."""
    problems: list[str] = []
    creds = data.get("credentials")
    if isinstance(creds, dict):
        for name, cred in creds.items():
            if not isinstance(cred, dict):
                continue
            if cred.get("kind") == "client_assertion":
                for key, var in WORKLOAD_IDENTITY_ENV.items():
                    if key not in cred and env.get(var) and not (key == "tenant_id" and "authority" in cred):
                        cred[key] = env[var]
                if "authority" not in cred and env.get("AZURE_AUTHORITY_HOST") and cred.get("tenant_id"):
                    cred["authority"] = env["AZURE_AUTHORITY_HOST"].rstrip("/") + "/" + str(cred["tenant_id"])
            problems += _resolve_paths(cred, _CREDENTIAL_PATHS, f"[credentials.{name}]", base, env)
            if isinstance(cred.get("command"), str) and "/" in cred["command"]:  # a path, not a name on PATH
                problems += _resolve_paths(cred, ("command",), f"[credentials.{name}]", base, env)
    server = data.get("server")
    auth = server.get("client_auth") if isinstance(server, dict) else None
    if isinstance(auth, dict):
        problems += _resolve_paths(auth, ("key_file",), "[server.client_auth]", base, env)
    cache = data.get("cache")
    if isinstance(cache, dict):
        problems += _resolve_paths(cache, _CACHE_PATHS, "[cache]", base, env)
    routes = data.get("routes")
    for name, route in (routes if isinstance(routes, dict) else {}).items():
        headers = route.get("set_headers") if isinstance(route, dict) else None
        for header, source in (headers if isinstance(headers, dict) else {}).items():
            if isinstance(source, dict):
                problems += _resolve_paths(source, ("file",), f"[routes.{name}] set_headers {header!r}", base, env)
    problems += _resolve_paths(data, ("state_dir",), "(top level)", base, env)
    return problems
