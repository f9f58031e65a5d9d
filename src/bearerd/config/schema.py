"""Settings: the TOML file plus ``BEARERD_`` environment overrides, loaded and validated once.

This is the only module that reads the process environment: secrets named by
``client_secret_env``, the outbound proxy variables and the ``BEARERD_*`` overrides are read
here at load time and carried in the frozen ``Settings`` object that everything else receives.
Every error names the file, the table (``[routes.x]``) and the field, and says what to do,
because the person reading it is at a terminal with the config open, not in our source.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import ipaddress
import os
import re
import stat
import tomllib
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bearerd.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_ADMIN = "127.0.0.1:9180"
UNIX_PREFIX = "unix:"
ENTRA_PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
# App Proxy sends a refused caller to one of these sign-in hosts (public and sovereign clouds).
KNOWN_SIGN_IN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.microsoftonline.de",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.windows.net",
        "login.microsoft.com",
    }
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_hostport(value: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port``; raise ValueError with a usable message."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not host:port (e.g. {DEFAULT_LISTEN!r} or '[::1]:8080')")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


def origin_key(url: str) -> str:
    """``host:port`` of an absolute URL, lower-case, with the scheme's default port filled in."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme.lower() == "https" else 80
    return f"{(parts.hostname or '').lower()}:{port or default}"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ClientAuth(_Frozen):
    """Local client authentication: a shared key every client must present."""

    key_file: Path
    # "Proxy-Authorization" accepts "Bearer KEY" or Basic with KEY as the password (so
    # http_proxy=http://bearerd:KEY@host:port works); any other header carries the key itself.
    header: str = "Proxy-Authorization"
    key: SecretStr = SecretStr("")  # read from key_file at load time

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME_RE.match(value) or value.lower() in ("authorization", "host", "cookie"):
            raise ValueError(f"header {value!r} must be a header name other than Authorization, Host or Cookie")
        return value


class ServerSettings(_Frozen):
    listen: list[str] = Field(default_factory=lambda: [DEFAULT_LISTEN], min_length=1)
    # https listeners with certificates from bearerd's own local CA (`bearerd ca export` to trust it).
    tls_listen: list[str] = Field(default_factory=list)
    admin: str | None = DEFAULT_ADMIN
    allow_remote: bool = False
    client_auth: ClientAuth | None = None
    # Unix socket listeners ("unix:/path" in listen): who may connect is decided by this file mode
    # (and the socket's group), e.g. "0660" with the daemon's group for a sidecar sharing a volume.
    unix_socket_mode: str = "0600"
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    # Request-line and header limits: a request over them is refused (400/431) before anything is forwarded.
    max_header_bytes: int = Field(default=8190, ge=1024, le=65536)
    # A new connection must deliver its first request's headers within this time (slowloris).
    header_timeout_s: float = Field(default=10.0, gt=0)
    max_headers: int = Field(default=100, ge=8, le=1000)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("listen")
    @classmethod
    def _listen_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.startswith(UNIX_PREFIX):
                if not item[len(UNIX_PREFIX) :].startswith("/"):
                    raise ValueError(
                        f"{item!r}: a Unix socket needs an absolute path, e.g. 'unix:/run/bearerd/bearerd.sock'"
                    )
            else:
                parse_hostport(item)
        return value

    @field_validator("unix_socket_mode")
    @classmethod
    def _octal_mode(cls, value: str) -> str:
        if not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError(f"unix_socket_mode {value!r} must be an octal file mode such as '0660'")
        return value

    @field_validator("admin")
    @classmethod
    def _admin_address(cls, value: str | None) -> str | None:
        if value:
            parse_hostport(value)
        return value or None

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> ServerSettings:
        for item in self.tls_listen:
            parse_hostport(item)
        addresses = list(self.listen) + list(self.tls_listen) + ([self.admin] if self.admin else [])
        remote = [a for a in addresses if not a.startswith(UNIX_PREFIX) and not is_loopback_host(parse_hostport(a)[0])]
        if remote and not self.allow_remote:
            raise ValueError(
                f"{', '.join(remote)} is not a loopback address: anyone who can reach it could use this "
                "daemon's tokens. Listen on 127.0.0.1/::1, or set allow_remote = true and configure "
                "[server.client_auth] so clients must present a key"
            )
        if remote and self.client_auth is None:
            raise ValueError(
                f"{', '.join(remote)} is reachable from other machines: set [server.client_auth] key_file so "
                "clients must present a shared key (allow_remote alone would open the tokens to the network)"
            )
        return self


def _read_secret_file(path: Path, what: str) -> str:
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


_RESOLVED_FIELDS = frozenset({"secret", "private_key_pem", "certificate_pem", "thumbprint"})


class _CommonCredential(_Frozen):
    ca_file: Path | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=20.0, gt=0)

    @property
    def sign_in_hosts(self) -> frozenset[str]:
        """Where App Proxy may send a refused caller (``host:port``)."""
        return frozenset(f"{h}:443" for h in KNOWN_SIGN_IN_HOSTS)


class ManagedIdentityCredential(_CommonCredential):
    """An Azure managed identity: no secret at all, the platform vouches for the machine.

    MSAL picks the source from the platform's environment (IMDS on VMs, ``IDENTITY_ENDPOINT`` +
    ``IDENTITY_HEADER`` on App Service/Functions/Container Apps, Azure Arc, Service Fabric, Cloud Shell).
    Set one of ``client_id``/``object_id``/``resource_id`` for a user-assigned identity.
    """

    kind: Literal["managed_identity"]
    client_id: str | None = None
    object_id: str | None = None
    resource_id: str | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> ManagedIdentityCredential:
        given = [k for k in ("client_id", "object_id", "resource_id") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError("a user-assigned identity is named by one of client_id, object_id or resource_id")
        return self


class _CredentialBase(_CommonCredential):
    tenant_id: str | None = None
    authority: str | None = None
    client_id: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _no_resolved_material_in_input(cls, data: Any) -> Any:
        # Key material is read from files/env at load time; it is never a setting of its own.
        if isinstance(data, dict) and (given := _RESOLVED_FIELDS & set(data)):
            raise ValueError(f"{', '.join(sorted(given))} is not a setting; use the *_file or *_env settings")
        return data

    @model_validator(mode="after")
    def _authority_or_tenant(self) -> _CredentialBase:
        if self.authority is None and not self.tenant_id:
            raise ValueError(
                "set tenant_id (your directory's GUID or domain) or authority "
                "(e.g. 'https://login.microsoftonline.us/<tenant>' for a sovereign cloud)"
            )
        url = urlsplit(self.authority_url)
        if url.scheme != "https" or not url.hostname or url.path.strip("/") == "":
            raise ValueError(
                f"authority {self.authority_url!r} must be https://HOST/TENANT (MSAL needs https and a tenant path)"
            )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {str(self.ca_file)!r} does not exist; point it at a PEM CA bundle")
        return self

    @property
    def authority_url(self) -> str:
        if self.authority:
            return self.authority.rstrip("/")
        return f"{ENTRA_PUBLIC_AUTHORITY}/{self.tenant_id}"

    @property
    def sign_in_hosts(self) -> frozenset[str]:
        """Where App Proxy may send a refused caller: known sign-in hosts and the authority's host."""
        return super().sign_in_hosts | {origin_key(self.authority_url)}


class ClientSecretCredential(_CredentialBase):
    kind: Literal["client_secret"]
    client_secret_file: Path | None = None
    client_secret_env: str | None = None
    client_secret: SecretStr | None = None
    # Filled at load time from whichever source is configured; never written in TOML.
    secret: SecretStr = SecretStr("")


class CertificateCredential(_CredentialBase):
    kind: Literal["certificate"]
    certificate_file: Path
    private_key_file: Path | None = None
    private_key_passphrase_file: Path | None = None
    send_x5c: bool = False
    # Filled at load time.
    private_key_pem: SecretStr = SecretStr("")
    certificate_pem: str = ""
    thumbprint: str = ""


class ClientAssertionCredential(_CredentialBase):
    """Workload identity federation: a token from another issuer (Kubernetes, GitHub…) as the credential.

    The file is read at every acquisition, never cached: the platform rotates it underneath us.
    """

    kind: Literal["client_assertion"]
    token_file: Path


class DeviceCodeCredential(_CredentialBase):
    """A signed-in user (delegated token): `bearerd login` once, then silent refresh from the cache.

    ``client_id`` is a public client app registration ("Allow public client flows" on) with the
    App Proxy app's ``user_impersonation`` permission. ``username`` picks the account when the
    cache holds several.
    """

    kind: Literal["device_code"]
    username: str | None = None
    # The refresh tokens on disk: "auto" (sealed with a key in the keyring when one answers, else
    # the plain 0600 file), "keyring" (refuse to start without one) or "plain".
    cache_protection: Literal["auto", "keyring", "plain"] = "auto"


Credential = Annotated[
    ClientSecretCredential
    | CertificateCredential
    | ClientAssertionCredential
    | ManagedIdentityCredential
    | DeviceCodeCredential,
    Field(discriminator="kind"),
]
# The variables Azure Workload Identity injects into a pod; they fill settings left out of the file.
_WORKLOAD_IDENTITY_ENV = {
    "client_id": "AZURE_CLIENT_ID",
    "tenant_id": "AZURE_TENANT_ID",
    "token_file": "AZURE_FEDERATED_TOKEN_FILE",
}


class RouteMatch(_Frozen):
    path_prefix: str | None = None
    host: str | None = None
    listen: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RouteMatch:
        given = [k for k in ("path_prefix", "host", "listen") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                'give exactly one of path_prefix, host or listen, e.g. match = { path_prefix = "/secretapi/" }'
            )
        if self.path_prefix is not None:
            p = self.path_prefix
            if not p.startswith("/") or "//" in p or any(seg in (".", "..") for seg in p.split("/")):
                raise ValueError(f"path_prefix {p!r} must start with '/' and contain no '//', '.' or '..'")
            if any(c in p for c in "?#%\\") or any(ord(c) < 0x21 or ord(c) > 0x7E for c in p):
                raise ValueError(f"path_prefix {p!r} may hold only plain printable characters, no ?#%\\")
        if self.host is not None:
            h = self.host.lower()
            name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
            if not name or any(c in h for c in "/ @?#"):
                raise ValueError(f"host {self.host!r} must be a bare host name, optionally with :port")
        if self.listen is not None:
            parse_hostport(self.listen)
        return self


class RouteSettings(_Frozen):
    match: RouteMatch
    upstream: str
    credential: str
    scopes: list[str] = Field(min_length=1)
    client_authorization: str = "replace"
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # Above App Proxy's own 180 s "long" backend timeout, so App Proxy times out first and says so.
    timeout_s: float = Field(default=190.0, gt=0)
    replay_max_bytes: int = Field(default=64 * 1024, ge=0)
    # High-volume routes: log every request, only failures (status >= 400), or none; and/or a
    # sample of the successful ones. Metrics always count every request.
    # Browser clients: origins whose CORS preflights bearerd answers itself (App Proxy would redirect
    # them to sign-in). Empty: off.
    cors_origins: list[str] = Field(default_factory=list)
    cors_max_age_s: int = Field(default=600, ge=0)
    access_log: Literal["all", "errors", "off"] = "all"
    access_log_sample: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("upstream")
    @classmethod
    def _upstream_url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"upstream {value!r} must be an absolute https:// URL (the app's external URL)")
        if url.username or url.password or url.query or url.fragment:
            raise ValueError(f"upstream {value!r} must not carry user info, a query or a fragment")
        return value

    @field_validator("scopes")
    @classmethod
    def _scope_format(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not scope or any(c.isspace() for c in scope):
                raise ValueError(f"scope {scope!r} must be one non-empty word without spaces")
        return value

    @field_validator("client_authorization")
    @classmethod
    def _policy(cls, value: str) -> str:
        if value in ("replace", "reject", "passthrough"):
            return value
        if value.startswith("move:") and _HEADER_NAME_RE.match(value[5:]):
            if value[5:].lower() in ("authorization", "host", "connection", "proxy-authorization"):
                raise ValueError(f"cannot move the client's Authorization into {value[5:]!r}")
            return value
        raise ValueError(
            f"client_authorization {value!r} must be replace, reject, passthrough or move:<Header-Name> "
            "(e.g. move:X-Original-Authorization)"
        )


class CacheSettings(_Frozen):
    """Where tokens live beyond this process: ``local`` (this daemon alone) or ``redis`` (a fleet).

    With Redis, replicas share each token and take turns (a lock) to acquire it, so a fleet asks
    the identity provider as often as one daemon would. Everything stored there is encrypted with
    the key in ``encryption_key_file``: a dump of Redis gives nothing usable.
    """

    backend: Literal["local", "redis"] = "local"
    url: str | None = None  # redis://host:6379/0, rediss://host:6380/0 (TLS) or unix:///run/redis.sock
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None  # e.g. a Kubernetes secretKeyRef
    ca_file: Path | None = None  # extra trust for rediss://
    key_prefix: str = Field(default="bearerd:", min_length=1, max_length=100)
    encryption_key_file: Path | None = None
    encryption_key_env: str | None = None
    # A replica holding the acquisition lock renews it while it works; if it dies, another takes
    # over after this long.
    lock_ttl_s: float = Field(default=10.0, ge=1.0, le=300.0)
    connect_timeout_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    password: SecretStr = SecretStr("")  # read from password_file at load time
    encryption_key: SecretStr = SecretStr("")  # read from encryption_key_file at load time (base64)

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_in_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and (given := {"password", "encryption_key"} & set(data)):
            raise ValueError(f"{', '.join(sorted(given))} is not a setting; use password_file / encryption_key_file")
        return data

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        url = urlsplit(value)
        if url.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"url {value!r} must start with redis://, rediss:// (TLS) or unix://")
        if url.password or "password" in url.query.lower():
            raise ValueError("url must not carry a password: put it in password_file (mode 0600) or password_env")
        return value

    @model_validator(mode="after")
    def _redis_needs(self) -> CacheSettings:
        if self.backend == "redis":
            if not self.url:
                raise ValueError('backend = "redis" needs url = "redis://host:6379/0" (or rediss:// for TLS)')
            if (self.encryption_key_file is None) == (self.encryption_key_env is None):
                raise ValueError(
                    'backend = "redis" needs exactly one of encryption_key_file or encryption_key_env: create a key '
                    "with `openssl rand -base64 32 > fleet.key; chmod 600 fleet.key` and give every replica the same"
                )
            if self.password_file is not None and self.password_env is not None:
                raise ValueError("set password_file or password_env, not both")
        return self


class Runtime(_Frozen):
    """What the service manager tells the process through its environment (systemd)."""

    notify_socket: str | None = None
    watchdog_usec: int | None = None
    watchdog_pid: int | None = None


class Egress(_Frozen):
    """Outbound proxy settings taken from the environment (corporate egress)."""

    https_proxy: str | None = None
    http_proxy: str | None = None
    no_proxy: str | None = None

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for an outbound request, honouring NO_PROXY like curl and requests do."""
        parts = urlsplit(url)
        proxy = self.https_proxy if parts.scheme == "https" else self.http_proxy
        if not proxy or not parts.hostname:
            return None
        if self.no_proxy and urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
            parts.netloc, {"no": self.no_proxy}
        ):
            return None
        return proxy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="BEARERD_",
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    credentials: dict[str, Credential] = Field(default_factory=dict)
    routes: dict[str, RouteSettings] = Field(default_factory=dict)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    state_dir: Path | None = None
    egress: Egress = Field(default_factory=Egress, exclude=True)
    runtime: Runtime = Field(default_factory=Runtime, exclude=True)
    source_file: str = Field(default="<defaults>", exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's content arrives as init kwargs; BEARERD_* variables override it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        if not self.routes:
            raise ValueError("no [routes.*] table: add at least one route (see config/bearerd.example.toml)")
        for name in list(self.credentials) + list(self.routes):
            if not _NAME_RE.match(name):
                raise ValueError(f"name {name!r} may use letters, digits, '-', '_' and '.' only")
        prefixes: dict[str, str] = {}
        hosts: dict[str, str] = {}
        for name, route in self.routes.items():
            if route.credential not in self.credentials:
                known = ", ".join(sorted(self.credentials)) or "none defined"
                raise ValueError(
                    f"[routes.{name}] credential {route.credential!r} is not a [credentials.*] table (known: {known})"
                )
            if isinstance(self.credentials[route.credential], ManagedIdentityCredential) and (
                len(route.scopes) != 1 or not route.scopes[0].endswith("/.default")
            ):
                raise ValueError(
                    f"[routes.{name}] scopes: a managed identity gets tokens for one resource; give exactly one "
                    "scope ending in /.default"
                )
            key = route.match.path_prefix
            if key is not None:
                norm = key.rstrip("/") + "/"
                if norm in prefixes:
                    raise ValueError(f"[routes.{name}] path_prefix {key!r} is also used by [routes.{prefixes[norm]}]")
                prefixes[norm] = name
            if route.match.host is not None:
                h = route.match.host.lower()
                if h in hosts:
                    raise ValueError(f"[routes.{name}] host {h!r} is also used by [routes.{hosts[h]}]")
                hosts[h] = name
            if route.match.listen is not None:
                if route.match.listen in self.server.listen or route.match.listen == self.server.admin:
                    raise ValueError(
                        f"[routes.{name}] listen {route.match.listen!r} is already a [server] address; "
                        "a per-port route needs a port of its own"
                    )
                if not is_loopback_host(parse_hostport(route.match.listen)[0]) and not self.server.allow_remote:
                    raise ValueError(
                        f"[routes.{name}] listen {route.match.listen!r} is not loopback; set "
                        "[server] allow_remote = true only if the network is private"
                    )
        return self


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand(value: str, environ: Mapping[str, str]) -> str:
    """Expand ``$VAR``/``${VAR}`` (e.g. systemd's ``$CREDENTIALS_DIRECTORY``); an unset one is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in environ:
            raise ValueError(f"{value!r} uses ${{{name}}}, which is not set in the environment")
        return environ[name]

    return _VAR.sub(one, value)


def _resolve_path(value: Any, base: Path, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str) and value:
        value = _expand(value, environ)
        if not Path(value).is_absolute():
            return str(base / value)
    return value


_PATH_FIELDS = (
    "client_secret_file",
    "certificate_file",
    "private_key_file",
    "private_key_passphrase_file",
    "ca_file",
    "token_file",
)


def _prepare_file_data(data: dict[str, Any], base: Path, environ: Mapping[str, str]) -> list[str]:
    """Expand variables in path settings and make relative paths relative to the config file.

    Returns the problems found (an unset variable), named like the other config errors.
    """
    problems: list[str] = []
    creds = data.get("credentials")
    if isinstance(creds, dict):
        for name, cred in creds.items():
            if isinstance(cred, dict) and cred.get("kind") == "client_assertion":
                for key, var in _WORKLOAD_IDENTITY_ENV.items():
                    if key not in cred and environ.get(var) and not (key == "tenant_id" and "authority" in cred):
                        cred[key] = environ[var]
                if "authority" not in cred and environ.get("AZURE_AUTHORITY_HOST") and cred.get("tenant_id"):
                    cred["authority"] = environ["AZURE_AUTHORITY_HOST"].rstrip("/") + "/" + str(cred["tenant_id"])
            if isinstance(cred, dict):
                for key in _PATH_FIELDS:
                    if key in cred:
                        try:
                            cred[key] = _resolve_path(cred[key], base, environ)
                        except ValueError as exc:
                            problems.append(f"[credentials.{name}] {key}: {exc}")
    auth = data.get("server", {}).get("client_auth") if isinstance(data.get("server"), dict) else None
    if isinstance(auth, dict) and isinstance(auth.get("key_file"), str):
        try:
            auth["key_file"] = _resolve_path(auth["key_file"], base, environ)
        except ValueError as exc:
            problems.append(f"[server.client_auth] key_file: {exc}")
    cache = data.get("cache")
    if isinstance(cache, dict):
        for key in ("password_file", "ca_file", "encryption_key_file"):
            if isinstance(cache.get(key), str):
                try:
                    cache[key] = _resolve_path(cache[key], base, environ)
                except ValueError as exc:
                    problems.append(f"[cache] {key}: {exc}")
    if isinstance(data.get("state_dir"), str):
        try:
            data["state_dir"] = _resolve_path(data["state_dir"], base, environ)
        except ValueError as exc:
            problems.append(f"(top level) state_dir: {exc}")
    return problems


def _load_secret_material(cred: Credential, environ: Mapping[str, str]) -> tuple[Credential, list[str]]:
    """Read the credential's secret/key from its source now, so a bad source fails at start-up."""
    warnings: list[str] = []
    if isinstance(cred, ClientSecretCredential):
        sources = [
            s for s in ("client_secret_file", "client_secret_env", "client_secret") if getattr(cred, s) is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "set exactly one of client_secret_file (recommended), client_secret_env or client_secret; "
                f"found {len(sources)}"
            )
        if cred.client_secret_file is not None:
            secret = _read_secret_file(cred.client_secret_file, "client secret")
        elif cred.client_secret_env is not None:
            secret = environ.get(cred.client_secret_env, "").strip()
            if not secret:
                raise ValueError(
                    f"environment variable {cred.client_secret_env!r} (client_secret_env) is not set or empty"
                )
        else:
            secret = cred.client_secret.get_secret_value() if cred.client_secret else ""
            warnings.append(
                "SECURITY WARNING: client_secret is written in the config file in clear text: "
                "anyone who can read the file has the secret. "
                "Move it to client_secret_file (mode 0600) or client_secret_env"
            )
        return cred.model_copy(update={"secret": SecretStr(secret)}), warnings
    if isinstance(cred, ManagedIdentityCredential | DeviceCodeCredential):
        return cred, warnings
    if isinstance(cred, ClientAssertionCredential):
        try:
            if not cred.token_file.read_text(encoding="utf-8").strip():
                raise ValueError(f"token_file {str(cred.token_file)!r} is empty")
        except OSError as exc:
            raise ValueError(
                f"cannot read token_file {str(cred.token_file)!r}: {exc.strerror} "
                "(on AKS it is $AZURE_FEDERATED_TOKEN_FILE, projected by Azure Workload Identity)"
            ) from None
        return cred, warnings
    # cryptography (~8 MB resident) is loaded only by configurations with certificate credentials.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key_path = cred.private_key_file or cred.certificate_file
    try:
        cert_bytes = cred.certificate_file.read_bytes()
        certificate = x509.load_pem_x509_certificate(cert_bytes)
    except OSError as exc:
        raise ValueError(f"cannot read certificate_file {str(cred.certificate_file)!r}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(
            f"certificate_file {str(cred.certificate_file)!r} holds no PEM certificate "
            "(convert a .pfx with: openssl pkcs12 -in cert.pfx -nodes -out cert.pem)"
        ) from None
    passphrase = None
    if cred.private_key_passphrase_file is not None:
        passphrase = _read_secret_file(cred.private_key_passphrase_file, "private key passphrase").encode()
    key_text = _read_secret_file(key_path, "private key")
    try:
        key = serialization.load_pem_private_key(key_text.encode(), password=passphrase)
    except (ValueError, TypeError) as exc:
        reason = "wrong or missing passphrase" if "password" in str(exc).lower() else "no PEM private key found"
        raise ValueError(f"private key in {str(key_path)!r} cannot be loaded: {reason}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"private key in {str(key_path)!r} must be RSA (Entra signs assertions with RS256/PS256)")
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError(f"private key in {str(key_path)!r} does not belong to the certificate in certificate_file")
    unencrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    thumbprint = hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER), usedforsecurity=False).hexdigest()
    return (
        cred.model_copy(
            update={"private_key_pem": SecretStr(unencrypted), "certificate_pem": cert_pem, "thumbprint": thumbprint}
        ),
        warnings,
    )


FLEET_KEY_BYTES = 32


def _secret_from_env(name: str, what: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ValueError(f"environment variable {name!r} ({what}) is not set or empty")
    return value


def _load_cache_secrets(cache: CacheSettings, environ: Mapping[str, str]) -> CacheSettings:
    """Read the Redis password and the fleet's encryption key now, so a bad source fails at start-up."""
    if cache.encryption_key_file is not None:
        text = _read_secret_file(cache.encryption_key_file, "encryption key")
        source = f"encryption_key_file {str(cache.encryption_key_file)!r}"
    else:
        assert cache.encryption_key_env is not None  # noqa: S101 - the model requires one of them
        text = _secret_from_env(cache.encryption_key_env, "encryption_key_env", environ)
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
    update: dict[str, Any] = {"encryption_key": SecretStr(base64.b64encode(key).decode())}
    if cache.password_file is not None:
        update["password"] = SecretStr(_read_secret_file(cache.password_file, "Redis password"))
    elif cache.password_env is not None:
        update["password"] = SecretStr(_secret_from_env(cache.password_env, "password_env", environ))
    return cache.model_copy(update=update)


_CREDENTIAL_KINDS = ("client_secret", "certificate", "client_assertion", "managed_identity", "device_code")
_FIX_HINTS = {
    "missing": "add it",
    "extra_forbidden": "remove it (unknown setting)",
    "union_tag_invalid": "kind must be client_secret or certificate",
    "union_tag_not_found": 'add kind = "client_secret" or kind = "certificate"',
}


def _describe(loc: tuple[int | str, ...], kind: str, msg: str) -> str:
    parts = [str(p) for p in loc]
    # Drop the discriminator tag pydantic inserts for tagged unions ([credentials.x] client_secret field).
    if (
        len(parts) >= 3
        and parts[0] == "credentials"
        and parts[2] in ("client_secret", "certificate", "client_assertion")
    ):
        del parts[2]
    if parts and parts[0] in ("credentials", "routes") and len(parts) >= 2:
        table, field = f"[{parts[0]}.{parts[1]}]", ".".join(parts[2:])
    elif parts and parts[0] in ("server", "cache"):
        table, field = f"[{parts[0]}]", ".".join(parts[1:])
    else:
        table, field = "(top level)", ".".join(parts)
    msg = msg.removeprefix("Value error, ")
    hint = _FIX_HINTS.get(kind)
    if kind == "extra_forbidden" and parts:
        hint = _unknown_field_hint(parts)
    if kind == "too_short" and parts and parts[-1] == "scopes":
        hint = 'add the app\'s scope, e.g. scopes = ["https://secretapi-contoso.msappproxy.net//.default"]'
    if not parts:  # cross-reference checks name their own table
        return msg + (f" — {hint}" if hint else "")
    where = f"{table} {field}".rstrip() if field else table
    return f"{where}: {msg}" + (f" — {hint}" if hint else "")


def _unknown_field_hint(parts: list[str]) -> str:
    candidates: set[str] = set()
    for model in (
        ServerSettings,
        ClientSecretCredential,
        CertificateCredential,
        ClientAssertionCredential,
        ManagedIdentityCredential,
        DeviceCodeCredential,
        RouteSettings,
        RouteMatch,
        CacheSettings,
        Settings,
    ):
        candidates |= set(model.model_fields)
    close = difflib.get_close_matches(parts[-1], sorted(candidates), n=1)
    return f"unknown setting; did you mean {close[0]!r}?" if close else "unknown setting; remove it"


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """systemd's StateDirectory, else the XDG state directory."""
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "/var/lib")) / ".local" / "state")
    return Path(base) / "bearerd"


def load_settings(path: str | Path) -> tuple[Settings, list[str]]:
    """Load, validate and resolve secrets; return the settings and warnings worth logging.

    Raises ``ConfigError`` listing every problem found, so a user fixes them in one go.
    """
    env = os.environ
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
    path_problems = _prepare_file_data(data, file.resolve().parent, env)
    if path_problems:
        raise ConfigError(shown, path_problems)
    for key in ("egress", "source_file", "runtime"):
        if key in data:
            raise ConfigError(shown, [f"(top level) {key}: not a setting — remove it"])
    egress = Egress(
        https_proxy=env.get("HTTPS_PROXY") or env.get("https_proxy") or None,
        http_proxy=env.get("HTTP_PROXY") or env.get("http_proxy") or None,
        no_proxy=env.get("NO_PROXY") or env.get("no_proxy") or None,
    )
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(shown, [_describe(e["loc"], e["type"], e["msg"]) for e in exc.errors()]) from None
    problems: list[str] = []
    warnings: list[str] = []
    resolved: dict[str, Credential] = {}
    for name, cred in settings.credentials.items():
        try:
            resolved[name], notes = _load_secret_material(cred, env)
            warnings.extend(f"[credentials.{name}] {n}" for n in notes)
        except ValueError as exc:
            problems.append(f"[credentials.{name}] {exc}")
    server = settings.server
    if server.client_auth is not None:
        try:
            key = _read_secret_file(server.client_auth.key_file, "client key")
            server = server.model_copy(
                update={"client_auth": server.client_auth.model_copy(update={"key": SecretStr(key)})}
            )
        except ValueError as exc:
            problems.append(f"[server.client_auth] key_file: {exc}")
    cache_settings = settings.cache
    if cache_settings.backend == "redis":
        try:
            cache_settings = _load_cache_secrets(cache_settings, env)
        except ValueError as exc:
            problems.append(f"[cache] {exc}")
    if problems:
        raise ConfigError(shown, problems)
    if settings.server.allow_remote:
        warnings.append("[server] allow_remote = true: non-loopback clients can use this daemon's tokens")
    runtime = Runtime(
        notify_socket=env.get("NOTIFY_SOCKET") or None,
        watchdog_usec=int(env["WATCHDOG_USEC"]) if env.get("WATCHDOG_USEC", "").isdigit() else None,
        watchdog_pid=int(env["WATCHDOG_PID"]) if env.get("WATCHDOG_PID", "").isdigit() else None,
    )
    final = settings.model_copy(
        update={
            "credentials": resolved,
            "egress": egress,
            "runtime": runtime,
            "source_file": shown,
            "state_dir": settings.state_dir or default_state_dir(env),
            "server": server,
            "cache": cache_settings,
        }
    )
    return final, warnings
