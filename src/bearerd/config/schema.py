"""The configuration schema: what a user writes in ``bearerd.toml``, and nothing else.

Each setting is declared once here, with its description; the README's configuration reference
is generated from these declarations (``python -m bearerd.config.reference``), so the two can't
drift. The models hold only input: secrets named by ``*_file``/``*_env`` settings are read by
``secrets.py`` into separate frozen values, and the process environment (egress proxies, the
service manager) by ``loader.py``. Validators check one model's own consistency and cross
references between tables; their messages name the fix, because the reader is at a terminal
with the config open, not in our source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bearerd.config.addresses import DEFAULT_ADMIN, DEFAULT_LISTEN, UNIX_PREFIX, is_loopback_host, parse_hostport
from bearerd.config.scopes import APP_ONLY_SUFFIX, GUID_RE, effective_scopes

ENTRA_PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClientAuth(_Frozen):
    """`[server.client_auth]`: a shared key every local client must present."""

    key_file: Path = Field(
        description="file (mode 0600) with a shared key every client must present; compared in constant time, "
        "never forwarded"
    )
    header: str = Field(
        default="Proxy-Authorization",
        description="where clients put it: `Proxy-Authorization: Bearer KEY`, or Basic with KEY as password "
        "(`http_proxy=http://bearerd:KEY@host:8080`); any other header name carries the key itself (401 "
        "instead of 407 when missing)",
    )

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not HEADER_NAME_RE.match(value) or value.lower() in ("authorization", "host", "cookie"):
            raise ValueError(f"header {value!r} must be a header name other than Authorization, Host or Cookie")
        return value


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_PATTERN_RE = re.compile(rf"^(\[[0-9a-fA-F:.]+\]|{_LABEL}(\.{_LABEL})*)$")


def _split_pattern(pattern: str) -> tuple[str, int | None]:
    """A ``tunnel_hosts`` entry as (host pattern, port or None); the port must be digits."""
    if pattern.startswith("["):
        host, _, rest = pattern.partition("]")
        host += "]"
        if not rest:
            return host, None
        return (host, int(rest[1:])) if rest.startswith(":") and rest[1:].isdigit() else ("", None)
    host, sep, port = pattern.rpartition(":")
    if not sep:
        return pattern, None
    return (host, int(port)) if port.isdigit() else ("", None)


class ServerSettings(_Frozen):
    """`[server]`: listeners, limits, logging."""

    listen: list[str] = Field(
        default_factory=lambda: [DEFAULT_LISTEN],
        min_length=1,
        description="proxy listeners (`host:port`, `[::1]:port`, or `unix:/run/bearerd/bearerd.sock`)",
    )
    unix_socket_mode: str = Field(
        default="0600",
        description='file mode of Unix socket listeners — who may connect (e.g. `"0660"` + the socket\'s group '
        "for a sidecar sharing a volume)",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="a request's headers must arrive within this time, counted from its first byte (leading "
        "empty lines included) — every request on a connection, not just the first (slowloris)",
    )
    max_header_bytes: int = Field(
        default=8190,
        ge=1024,
        le=65536,
        description="request line / header size limit; over it a request is refused before anything is forwarded",
    )
    max_headers: int = Field(
        default=100, ge=8, le=1000, description="header count limit; over it a request is refused (431)"
    )
    max_header_block_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="size limit of a request's whole header block (request line and every header); over it the "
        "request is refused (431), as nginx and Envoy do",
    )
    tls_listen: list[str] = Field(
        default_factory=list,
        description="https listeners (certificates from bearerd's local CA, see `bearerd ca export`)",
    )
    intercept_https: bool = Field(
        default=False,
        description="answer `CONNECT` (tools set to `HTTPS_PROXY=http://127.0.0.1:8080`) for the routes' https "
        "upstream hosts: TLS is terminated with a certificate from bearerd's local CA for that host and each request "
        "inside gets the route's token; `CONNECT` to any other host gets 403 (trust the CA once: `bearerd ca "
        "export`)",
    )
    tunnel_hosts: list[str] = Field(
        default_factory=list,
        description="hosts `CONNECT` may reach as blind tunnels that carry no token, for tools that send everything "
        'through their proxy: `"api.example.com"`, `"*.example.com"` (its subdomains), optionally `:port` (default '
        "443); each tunnel is logged. Empty: none",
    )
    admin: str | None = Field(
        default=DEFAULT_ADMIN,
        description='`/healthz`, `/readyz`, `/metrics`, `POST /-/reload`; `""` disables it',
    )
    allow_remote: bool = Field(
        default=False,
        description="a non-loopback address is refused unless this is `true` **and** `[server.client_auth]` is set",
    )
    client_auth: ClientAuth | None = Field(
        default=None, description="`[server.client_auth]`: a shared key for clients (below)"
    )
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="how long in-flight requests may finish after SIGTERM"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="`auto` (console on a TTY, JSON lines otherwise), `json`, `console`"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="`debug`, `info`, `warning`, `error`"
    )

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

    @field_validator("tunnel_hosts")
    @classmethod
    def _tunnel_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            host, port = _split_pattern(pattern)
            name = host.removeprefix("*.")
            bad_port = port is not None and not 0 < port < 65536
            if not name or "*" in name or not _HOST_PATTERN_RE.match(name) or bad_port:
                raise ValueError(
                    f"tunnel_hosts {pattern!r} must be a host name, or '*.' and a domain (its subdomains), optionally "
                    "with :port, e.g. '*.example.com' or 'api.example.com:8443' (a bare '*' would make an open proxy)"
                )
        return [p.lower() for p in value]

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


class _CommonCredential(_Frozen):
    ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificates trusted *in addition to* the system's, for the identity provider and this "
        "credential's upstreams",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="connecting to the identity provider")
    timeout_s: float = Field(default=20.0, gt=0, description="waiting for the identity provider's answer")

    @model_validator(mode="after")
    def _ca_file_exists(self) -> _CommonCredential:
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {str(self.ca_file)!r} does not exist; point it at a PEM CA bundle")
        return self


class ManagedIdentityCredential(_CommonCredential):
    """`kind = "managed_identity"`: an Azure managed identity — no secret at all, the platform vouches
    for the machine. MSAL finds the host's token service from the environment it sets (IMDS,
    `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, Arc, Service Fabric, Cloud Shell)."""

    kind: Literal["managed_identity"]
    client_id: str | None = Field(default=None, description="a user-assigned identity, by client ID")
    object_id: str | None = Field(default=None, description="a user-assigned identity, by object ID")
    resource_id: str | None = Field(default=None, description="a user-assigned identity, by ARM resource ID")

    @model_validator(mode="after")
    def _one_identity(self) -> ManagedIdentityCredential:
        given = [k for k in ("client_id", "object_id", "resource_id") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError("a user-assigned identity is named by one of client_id, object_id or resource_id")
        return self


class _EntraCredential(_CommonCredential):
    tenant_id: str | None = Field(
        default=None,
        description="tenant GUID or domain (public cloud: `https://login.microsoftonline.com/<tenant_id>`)",
    )
    authority: str | None = Field(
        default=None,
        description="instead of `tenant_id`: any `https://HOST/TENANT` (sovereign clouds, emulator); or just "
        '`https://HOST` with `tenant_id` (as Logic Apps writes it: `authority = "https://login.windows.net"`)',
    )
    client_id: str = Field(
        min_length=1, description="the application (client) ID of the app registration bearerd signs in as"
    )

    @model_validator(mode="after")
    def _authority_or_tenant(self) -> _EntraCredential:
        if self.authority is None and not self.tenant_id:
            raise ValueError(
                "set tenant_id (your directory's GUID or domain) or authority "
                "(e.g. 'https://login.microsoftonline.us/<tenant>' for a sovereign cloud)"
            )
        url = urlsplit(self.authority or "")
        path = url.path.strip("/")
        if self.authority is not None and (url.scheme != "https" or not url.hostname):
            raise ValueError(f"authority {self.authority!r} must be https://HOST/TENANT (MSAL needs https)")
        if self.authority is not None and not path and not self.tenant_id:
            raise ValueError(
                f"authority {self.authority!r} names no tenant: add tenant_id (your directory's GUID or domain) "
                "or write the tenant into the authority, https://HOST/TENANT"
            )
        if path and self.tenant_id and path.lower() != self.tenant_id.lower():
            raise ValueError(
                f"authority {self.authority!r} names tenant {path!r} but tenant_id is {self.tenant_id!r}; "
                "keep one of them"
            )
        return self

    @property
    def authority_url(self) -> str:
        """``https://HOST/TENANT``: the authority as written, or completed with ``tenant_id``."""
        if self.authority:
            base = self.authority.rstrip("/")
            return base if urlsplit(base).path.strip("/") else f"{base}/{self.tenant_id}"
        return f"{ENTRA_PUBLIC_AUTHORITY}/{self.tenant_id}"


KEYVAULT_AUDIENCE = "https://vault.azure.net"


def _keyvault_url(value: str | None, collection: str) -> str | None:
    """``https://NAME.vault.azure.net/<collection>/NAME[/VERSION]``, checked for shape only."""
    if value is None:
        return value
    url = urlsplit(value)
    parts = [p for p in url.path.split("/") if p]
    if url.scheme != "https" or not url.hostname or len(parts) not in (2, 3) or parts[0] != collection:
        raise ValueError(
            f"{value!r} must be https://NAME.vault.azure.net/{collection}/NAME[/VERSION] (the {collection[:-1]}'s "
            "identifier, as the portal shows it)"
        )
    if url.query or url.fragment or url.username:
        raise ValueError(f"{value!r} must not carry a query, a fragment or user info")
    return value


class _VaultSourced(_EntraCredential):
    keyvault_credential: str | None = Field(
        default=None,
        description="with `*_keyvault`: the `[credentials.NAME]` whose token reads the vault (it needs the vault's "
        "*Key Vault Secrets User* role)",
        json_schema_extra={"doc_default": "— (the host's managed identity)"},
    )
    keyvault_refresh_s: float = Field(
        default=3600.0,
        ge=60,
        description="with `*_keyvault`: fetch the secret again this often (and whenever Entra answers "
        "`invalid_client`), so a rotation in the vault needs no restart",
    )
    keyvault_audience: str = Field(
        default=KEYVAULT_AUDIENCE,
        description="the vault's token audience; the only one bearerd hands the vault client a token for "
        "(sovereign clouds: `https://vault.azure.cn`, `https://vault.usgovcloudapi.net`)",
    )


class ClientSecretCredential(_VaultSourced):
    """`kind = "client_secret"`: an app registration's client secret — from exactly one source."""

    kind: Literal["client_secret"]
    client_secret_file: Path | None = Field(
        default=None, description="file holding the secret (must be mode 0600) — recommended"
    )
    client_secret_env: str | None = Field(default=None, description="environment variable holding the secret")
    client_secret: SecretStr | None = Field(
        default=None, description="the secret itself — works, with a loud warning at every start"
    )
    client_secret_keyvault: str | None = Field(
        default=None,
        description="`https://NAME.vault.azure.net/secrets/NAME[/VERSION]`: the secret lives in Azure Key Vault "
        "(needs `bearerd[keyvault]`)",
    )

    @field_validator("client_secret_keyvault")
    @classmethod
    def _secret_url(cls, value: str | None) -> str | None:
        return _keyvault_url(value, "secrets")

    @model_validator(mode="after")
    def _one_source(self) -> ClientSecretCredential:
        sources = [
            s
            for s in ("client_secret_file", "client_secret_env", "client_secret", "client_secret_keyvault")
            if getattr(self, s) is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "set exactly one of client_secret_file (recommended), client_secret_env, client_secret_keyvault or "
                f"client_secret; found {len(sources)}"
            )
        return self


class CertificateCredential(_VaultSourced):
    """`kind = "certificate"`: a certificate registered on the app (no shared secret)."""

    kind: Literal["certificate"]
    certificate_file: Path | None = Field(
        default=None,
        description="PEM certificate, or a chain (leaf first; may also contain the key), or PKCS#12 "
        "(`.pfx`/`.p12`, with its key)",
    )
    private_key_file: Path | None = Field(
        default=None,
        description="PEM private key (RSA, mode 0600; may be encrypted)",
        json_schema_extra={"doc_default": "certificate_file"},
    )
    private_key_passphrase_file: Path | None = Field(default=None, description="passphrase of an encrypted PEM key")
    certificate_password_file: Path | None = Field(default=None, description="password of a PKCS#12 file (mode 0600)")
    certificate_password_env: str | None = Field(default=None, description="environment variable holding that password")
    certificate_keyvault: str | None = Field(
        default=None,
        description="`https://NAME.vault.azure.net/certificates/NAME[/VERSION]` instead of `certificate_file`: "
        "the certificate and its key from Azure Key Vault (needs `bearerd[keyvault]`)",
    )
    send_x5c: bool = Field(
        default=False, description="send the certificate chain (subject name + issuer authentication)"
    )

    @field_validator("certificate_keyvault")
    @classmethod
    def _certificate_url(cls, value: str | None) -> str | None:
        return _keyvault_url(value, "certificates")

    @model_validator(mode="after")
    def _one_certificate(self) -> CertificateCredential:
        if (self.certificate_file is None) == (self.certificate_keyvault is None):
            raise ValueError("set exactly one of certificate_file or certificate_keyvault")
        if self.certificate_password_file is not None and self.certificate_password_env is not None:
            raise ValueError("set certificate_password_file or certificate_password_env, not both")
        if self.certificate_keyvault is not None and (self.private_key_file or self.private_key_passphrase_file):
            raise ValueError("a Key Vault certificate brings its own key: remove private_key_file")
        return self


class ClientAssertionCredential(_EntraCredential):
    """`kind = "client_assertion"`: workload identity federation — a token from another issuer
    (Kubernetes, GitHub…) is the credential. `client_id`, `tenant_id`, `token_file` default to
    `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` (set by the AKS webhook)."""

    kind: Literal["client_assertion"]
    token_file: Path = Field(
        description="file holding the federated token (re-read for every new token)",
        json_schema_extra={"doc_default": "$AZURE_FEDERATED_TOKEN_FILE"},
    )


class DeviceCodeCredential(_EntraCredential):
    """`kind = "device_code"`: a signed-in user (delegated token) — `bearerd login` once, then silent
    refresh from the cache. `client_id` is a public client app registration ("Allow public client
    flows") with the App Proxy app's `user_impersonation` permission."""

    kind: Literal["device_code"]
    username: str | None = Field(default=None, description="which cached account to use when several signed in")
    cache_protection: Literal["auto", "keyring", "plain"] = Field(
        default="auto",
        description="the refresh tokens on disk — `auto` (sealed with AES-256-GCM under a key kept in the keyring "
        "when one answers, else the plain 0600 file), `keyring` (refuse to start without a keyring), `plain`",
    )


class _CliCredential(_CommonCredential):
    tenant_id: str | None = Field(default=None, description="ask the CLI for a token of this tenant")


class AzureCliCredential(_CliCredential):
    """`kind = "azure_cli"`: the developer signed in with `az login` — no app registration, no device code.
    Tokens come from `az account get-access-token --scope …` (run without a shell, with `timeout_s`), kept in
    memory and refreshed early like any other. The App Proxy app must list the Azure CLI
    (`04b07795-8ddb-461a-bbee-02f9e1bf7b46`) as an authorized client application."""

    kind: Literal["azure_cli"]
    command: str = Field(default="az", description="the Azure CLI: a name looked up on `PATH` at start, or a path")


class AzureDeveloperCliCredential(_CliCredential):
    """`kind = "azure_developer_cli"`: the developer signed in with `azd auth login`; tokens from
    `azd auth token --output json --scope …`, as for `azure_cli`."""

    kind: Literal["azure_developer_cli"]
    command: str = Field(
        default="azd", description="the Azure Developer CLI: a name looked up on `PATH` at start, or a path"
    )


class EnvironmentCredential(_CommonCredential):
    """`kind = "environment"`: the app registration named by the `AZURE_*` variables, as azure-identity's
    EnvironmentCredential reads them: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and one of `AZURE_CLIENT_SECRET`,
    `AZURE_CLIENT_CERTIFICATE_PATH` (+ `AZURE_CLIENT_CERTIFICATE_PASSWORD`) or `AZURE_FEDERATED_TOKEN_FILE`;
    `AZURE_AUTHORITY_HOST` for sovereign clouds. Read when bearerd starts (and at reload)."""

    kind: Literal["environment"]
    authority: str | None = Field(
        default=None,
        description="instead of `AZURE_AUTHORITY_HOST` + `AZURE_TENANT_ID`: any `https://HOST/TENANT`",
    )


class DefaultCredential(_CommonCredential):
    """`kind = "default"`: the first identity this machine has, in azure-identity's order — `environment`
    (a secret or certificate in `AZURE_*`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`), managed identity
    (the platform's `IDENTITY_ENDPOINT`/`MSI_ENDPOINT`/`IMDS_ENDPOINT` variables), `azure_cli` (`az` on
    `PATH`). Chosen when bearerd starts; the `started` log line and `bearerd check` say which and why not the
    others."""

    kind: Literal["default"]
    authority: str | None = Field(
        default=None,
        description="for the environment and workload identity choices: any `https://HOST/TENANT`",
    )
    managed_identity_client_id: str | None = Field(
        default=None, description="a user-assigned managed identity, by client ID"
    )
    imds: bool = Field(
        default=False,
        description="on an Azure VM (whose metadata service sets no variables): count the managed identity as present",
    )


CLI_KINDS = ("azure_cli", "azure_developer_cli")
RESOLVED_KINDS = ("environment", "default")  # the loader replaces them with the credential they resolve to

CREDENTIAL_MODELS: tuple[type[_CommonCredential], ...] = (
    ClientSecretCredential,
    CertificateCredential,
    ClientAssertionCredential,
    ManagedIdentityCredential,
    DeviceCodeCredential,
    AzureCliCredential,
    AzureDeveloperCliCredential,
    EnvironmentCredential,
    DefaultCredential,
)
Credential = Annotated[
    ClientSecretCredential
    | CertificateCredential
    | ClientAssertionCredential
    | ManagedIdentityCredential
    | DeviceCodeCredential
    | AzureCliCredential
    | AzureDeveloperCliCredential
    | EnvironmentCredential
    | DefaultCredential,
    Field(discriminator="kind"),
]
CliCredential = AzureCliCredential | AzureDeveloperCliCredential
EntraCredential = ClientSecretCredential | CertificateCredential | ClientAssertionCredential | DeviceCodeCredential


def credential_kinds() -> list[str]:
    """Every ``kind`` value, read off the models (so messages and docs can't go stale)."""
    return [str(m.model_fields["kind"].annotation.__args__[0]) for m in CREDENTIAL_MODELS]  # type: ignore[union-attr]


class RouteMatch(_Frozen):
    """How requests reach a route: exactly one of the three."""

    path_prefix: str | None = Field(default=None, description='`{ path_prefix = "/secretapi/" }`')
    host: str | None = Field(default=None, description='`{ host = "secretapi.localhost" }` (optionally `:port`)')
    listen: str | None = Field(default=None, description='`{ listen = "127.0.0.1:8081" }` (own port)')

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


# Headers a route may not set or remove itself: bearerd's token, the framing, the cookie jar and hop-by-hop fields.
_RESERVED_HEADERS = frozenset(
    {"host", "authorization", "cookie", "content-length", "transfer-encoding", "connection", "keep-alive",
     "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade", "expect"}
)  # fmt: skip


class HeaderSource(_Frozen):
    """Each `set_headers` value: exactly one of `file`, `env` or `value`."""

    file: Path | None = Field(
        default=None,
        description="file holding the value (mode 0600; read at start and at every reload; surrounding whitespace "
        "removed) — a secret, redacted from every log line",
    )
    env: str | None = Field(
        default=None, description="environment variable holding the value — a secret, redacted from every log line"
    )
    value: str | None = Field(
        default=None, description="the value itself, written in the config: for what isn't secret (a tenant name)"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> HeaderSource:
        given = [k for k in ("file", "env", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError('give exactly one of file, env or value, e.g. { file = "/run/secrets/api-key" }')
        if self.value is not None and not printable_header_value(self.value):
            raise ValueError("a header value must be one non-empty line of printable ASCII")
        return self


def printable_header_value(value: str) -> bool:
    """One non-empty line of visible ASCII, spaces and tabs: what can go on the wire as written."""
    return bool(value) and all(c == "\t" or " " <= c <= "~" for c in value)


class RouteSettings(_Frozen):
    """`[routes.NAME]`: one local entry point → one upstream, with one credential's token."""

    match: RouteMatch = Field(
        description='exactly one of `{ path_prefix = "/secretapi/" }`, `{ host = "secretapi.localhost" }` '
        '(optionally `:port`), `{ listen = "127.0.0.1:8081" }` (own port)'
    )
    upstream: str = Field(
        description="the app's external URL, e.g. `https://secretapi-contoso.msappproxy.net/` (a path is prepended "
        "to every request)"
    )
    credential: str = Field(description="name of a `[credentials.*]` table")
    app_id: str | None = Field(
        default=None,
        description="the App Proxy app's application (client) ID (a GUID): the token is requested for "
        "`<app_id>/.default` (user credentials: `<app_id>/user_impersonation`) — the form every App Proxy app "
        "accepts; use it when the default gets App Proxy's sign-in redirect",
    )
    audience: str | None = Field(
        default=None,
        description='the app ID URI as Logic Apps\' "Audience" has it, e.g. `https://secretapi-contoso.msappproxy.net` '
        "→ `…/.default` (taken as written; a bare host name gets `https://`)",
    )
    scopes: list[str] | None = Field(
        default=None,
        min_length=1,
        description='e.g. `["https://secretapi-contoso.msappproxy.net//.default"]`, passed to Entra exactly as written',
        json_schema_extra={
            "doc_default": '`["<upstream>/.default"]`: the upstream\'s URL as app ID URI, e.g. '
            "`https://secretapi-contoso.msappproxy.net//.default` (user credentials: `…//user_impersonation`)"
        },
    )
    probe_path: str = Field(
        default="/",
        description="what `bearerd doctor` requests on the upstream to check the route end to end (a GET)",
    )
    client_authorization: str = Field(
        default="replace",
        description="what happens to a client's own `Authorization`: `replace` (dropped, ours sent), "
        "`move:X-Original-Authorization` (carried in that header, for APIs with their own auth), `reject` (401), "
        "`passthrough` (forwarded, and no token added)",
    )
    set_headers: dict[str, HeaderSource] = Field(
        default_factory=dict,
        description="headers added to every request of this route, for a backend's own credential behind App Proxy "
        '(which takes `Authorization`): `{ "PRIVATE-TOKEN" = { file = "/run/secrets/gitlab" }, "X-Api-Key" = { env = '
        '"API_KEY" }, "X-Tenant" = { value = "contoso" } }` (below); a client\'s own copy is dropped, other routes '
        "never get them",
    )
    remove_headers: list[str] = Field(
        default_factory=list,
        description='client headers never forwarded to this route\'s upstream, e.g. `["X-Forwarded-For", "X-Debug"]`',
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="connecting to the upstream")
    timeout_s: float = Field(
        default=190.0,
        gt=0,
        description="longest silence from the upstream (waiting for the response or between body chunks); above "
        "App Proxy's 180 s backend timeout, so App Proxy times out first and says so",
    )
    pool_max_connections: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="most connections open to this upstream at once (each TLS connection holds ~256 KiB of "
        "buffers, so this bounds memory); more requests wait for a free one",
    )
    pool_wait_s: float = Field(
        default=10.0,
        gt=0,
        description="how long a request waits for a free upstream connection before it gets 503 "
        "`upstream-busy` with `Retry-After`",
    )
    replay_max_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="request bodies up to this size are kept so the request can be retried once with a new token",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins whose CORS preflights bearerd answers itself (App Proxy would redirect them to "
        "sign-in); others get 403. Off when empty",
    )
    cors_max_age_s: int = Field(default=600, ge=0, description="`Access-Control-Max-Age` of those answers")
    access_log: Literal["all", "errors", "off"] = Field(
        default="all",
        description="`all`, `errors` (status ≥ 400 only) or `off` — for high-volume routes; metrics still count "
        "everything",
    )
    access_log_sample: float = Field(
        default=1.0, ge=0.0, le=1.0, description="fraction of successful requests that get an access-log line"
    )

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
    def _scope_format(cls, value: list[str] | None) -> list[str] | None:
        for scope in value or ():
            if not scope or any(c.isspace() for c in scope):
                raise ValueError(f"scope {scope!r} must be one non-empty word without spaces")
        return value

    @field_validator("app_id")
    @classmethod
    def _app_id_guid(cls, value: str | None) -> str | None:
        if value is not None and not GUID_RE.match(value):
            raise ValueError(
                f"app_id {value!r} must be the App Proxy app's application (client) ID, a GUID such as "
                "'1b4f0000-0000-4000-8000-000000000000' (Entra: Enterprise apps → the app → Application ID)"
            )
        return value

    @field_validator("audience")
    @classmethod
    def _audience_uri(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value) or value.endswith("/.default")):
            raise ValueError(
                f"audience {value!r} must be the app ID URI alone, e.g. 'https://secretapi-contoso.msappproxy.net' "
                "(bearerd adds /.default)"
            )
        return value

    @field_validator("probe_path")
    @classmethod
    def _probe_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"probe_path {value!r} must be a path starting with '/', e.g. '/api/status'")
        return value

    @model_validator(mode="after")
    def _one_scope_form(self) -> RouteSettings:
        given = [k for k in ("scopes", "app_id", "audience") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"set at most one of scopes, app_id or audience (found {', '.join(given)}): each names the app the "
                "token is for"
            )
        return self

    @field_validator("set_headers")
    @classmethod
    def _settable(cls, value: dict[str, HeaderSource]) -> dict[str, HeaderSource]:
        seen: set[str] = set()
        for name in value:
            lname = name.lower()
            if not HEADER_NAME_RE.match(name) or lname in _RESERVED_HEADERS:
                raise ValueError(
                    f"set_headers {name!r} must be a header name other than Authorization (bearerd's token: use "
                    "client_authorization), Host, Cookie, Content-Length or a hop-by-hop header"
                )
            if lname in seen:
                raise ValueError(f"set_headers names {name!r} twice (header names are case-insensitive)")
            seen.add(lname)
        return value

    @field_validator("remove_headers")
    @classmethod
    def _removable(cls, value: list[str]) -> list[str]:
        for name in value:
            if not HEADER_NAME_RE.match(name) or name.lower() in ("host", "authorization", "cookie", "content-length",
                                                                  "transfer-encoding"):  # fmt: skip
                raise ValueError(
                    f"remove_headers {name!r} must be a header name other than Host, Authorization (see "
                    "client_authorization), Cookie, Content-Length or Transfer-Encoding"
                )
        return value

    @model_validator(mode="after")
    def _moved_header_not_set(self) -> RouteSettings:
        moved = self.client_authorization[5:].lower() if self.client_authorization.startswith("move:") else None
        if moved is not None and moved in {n.lower() for n in self.set_headers}:
            raise ValueError(
                f"set_headers {self.client_authorization[5:]!r} is also where client_authorization moves the client's "
                "Authorization: pick another header for one of them"
            )
        return self

    @field_validator("client_authorization")
    @classmethod
    def _policy(cls, value: str) -> str:
        if value in ("replace", "reject", "passthrough"):
            return value
        if value.startswith("move:") and HEADER_NAME_RE.match(value[5:]):
            if value[5:].lower() in ("authorization", "host", "connection", "proxy-authorization"):
                raise ValueError(f"cannot move the client's Authorization into {value[5:]!r}")
            return value
        raise ValueError(
            f"client_authorization {value!r} must be replace, reject, passthrough or move:<Header-Name> "
            "(e.g. move:X-Original-Authorization)"
        )


class CacheSettings(_Frozen):
    """`[cache]`: where tokens live beyond this process — `local` (this daemon alone) or `redis` (a
    fleet). With Redis, replicas share each token and take turns (a lock) to acquire it, so a fleet
    asks the identity provider as often as one daemon would. Everything stored there is encrypted
    with the fleet key: a dump of Redis gives nothing usable."""

    backend: Literal["local", "redis"] = Field(
        default="local",
        description="`local`: this daemon keeps its tokens (in memory; user credentials also in `state_dir`). "
        "`redis`: replicas share them through Redis",
    )
    url: str | None = Field(
        default=None,
        description="`redis://host:6379/0`, `rediss://host:6380/0` (TLS) or `unix:///run/redis/redis.sock`; no "
        "password in it",
    )
    username: str | None = Field(default=None, description="Redis ACL user (Redis 6+)")
    password_file: Path | None = Field(default=None, description="the Redis password in a file (mode 0600)")
    password_env: str | None = Field(
        default=None, description="the Redis password in an environment variable (e.g. a Kubernetes secretKeyRef)"
    )
    ca_file: Path | None = Field(
        default=None, description="PEM CA certificates for a `rediss://` server with a private CA"
    )
    key_prefix: str = Field(
        default="bearerd:",
        min_length=1,
        max_length=100,
        description="namespace of bearerd's keys in Redis (one per fleet sharing a Redis)",
    )
    encryption_key_file: Path | None = Field(
        default=None,
        description="the fleet's key: 32 random bytes, base64 (`openssl rand -base64 32`); the same on every replica",
        json_schema_extra={"doc_default": "— (this or `encryption_key_env` is required with `redis`)"},
    )
    encryption_key_env: str | None = Field(default=None, description="the fleet's key in an environment variable")
    lock_ttl_s: float = Field(
        default=10.0,
        ge=1.0,
        le=300.0,
        description="the acquisition lock's lifetime: renewed while its holder works; a crashed holder is replaced "
        "after this",
    )
    connect_timeout_s: float = Field(
        default=1.0, gt=0, description="connecting to Redis; past it the replica acquires alone"
    )
    timeout_s: float = Field(default=2.0, gt=0, description="a Redis command; past it the replica acquires alone")

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


class Settings(BaseSettings):
    """The whole file: `[server]`, `[credentials.*]`, `[routes.*]`, `[cache]` and `state_dir`."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="BEARERD_",
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    server: ServerSettings = Field(default_factory=ServerSettings, description="`[server]`")
    credentials: dict[str, Credential] = Field(default_factory=dict, description="`[credentials.NAME]`")
    routes: dict[str, RouteSettings] = Field(default_factory=dict, description="`[routes.NAME]`")
    cache: CacheSettings = Field(default_factory=CacheSettings, description="`[cache]`")
    state_dir: Path | None = Field(
        default=None,
        description="where user credentials keep their token cache (`<credential>.msal-cache.json`, mode 0600) and "
        "the local CA lives (`tls/`)",
        json_schema_extra={
            "doc_default": "`$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/bearerd`, else `~/.local/state/bearerd`"
        },
    )

    def route_scopes(self, name: str) -> tuple[str, ...]:
        """The scopes route ``name``'s token is requested for — the one derivation (``scopes.py``)."""
        route = self.routes[name]
        return effective_scopes(
            scopes=route.scopes,
            app_id=route.app_id,
            audience=route.audience,
            upstream=route.upstream,
            delegated=isinstance(self.credentials.get(route.credential), DeviceCodeCredential),
        )

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
        for name, cred in self.credentials.items():
            reader = getattr(cred, "keyvault_credential", None)
            if reader is None:
                continue
            other = self.credentials.get(reader)
            if other is None or reader == name:
                known = ", ".join(sorted(n for n in self.credentials if n != name)) or "none defined"
                raise ValueError(
                    f"[credentials.{name}] keyvault_credential {reader!r} must name another [credentials.*] table "
                    f"(known: {known})"
                )
            if getattr(other, "client_secret_keyvault", None) or getattr(other, "certificate_keyvault", None):
                raise ValueError(
                    f"[credentials.{name}] keyvault_credential {reader!r} itself reads a vault: the vault's reader "
                    "needs a secret of its own (a managed identity, a file, workload identity)"
                )
        for name in list(self.credentials) + list(self.routes):
            if not NAME_RE.match(name):
                raise ValueError(f"name {name!r} may use letters, digits, '-', '_' and '.' only")
        prefixes: dict[str, str] = {}
        hosts: dict[str, str] = {}
        for name, route in self.routes.items():
            if route.credential not in self.credentials:
                known = ", ".join(sorted(self.credentials)) or "none defined"
                raise ValueError(
                    f"[routes.{name}] credential {route.credential!r} is not a [credentials.*] table (known: {known})"
                )
            scopes = self.route_scopes(name)
            if isinstance(self.credentials[route.credential], ManagedIdentityCredential | AzureCliCredential) and (
                len(scopes) != 1 or not scopes[0].endswith(APP_ONLY_SUFFIX)
            ):
                what = "a managed identity" if self.credentials[route.credential].kind == "managed_identity" else "az"
                raise ValueError(
                    f"[routes.{name}] scopes: {what} gets tokens for one resource; give exactly one "
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
