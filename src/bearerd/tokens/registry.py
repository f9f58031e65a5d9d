"""The token providers of a configuration: one MSAL client per credential, one provider per
(credential, scopes), shared by every route that asks for the same token.

A reload builds a new registry that adopts what didn't change — the clients of unchanged
credentials and the providers of (credential, scopes) pairs still in use — so their tokens
survive, then closes what the old one had and the new one didn't take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bearerd.config.loader import Config
from bearerd.config.schema import CLI_KINDS, ManagedIdentityCredential
from bearerd.config.secrets import CredentialSecrets, uses_keyvault, watched_files
from bearerd.tokens.cli_sources import CliSource
from bearerd.tokens.identity import CredentialClient
from bearerd.tokens.material import FileMaterial, MaterialSource, VaultMaterial
from bearerd.tokens.provider import TokenProvider
from bearerd.tokens.sources import LocalSource, TokenSource

if TYPE_CHECKING:  # the Redis client is imported only by daemons configured with a fleet cache
    from bearerd.tokens.fleet import Fleet

ProviderKey = tuple[str, tuple[str, ...]]


class Providers:
    def __init__(
        self,
        config: Config,
        on_attempt: Callable[[str, str, float], None] | None = None,
        reuse: Providers | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self._config = config
        self._on_attempt = on_attempt
        self._fleet = fleet
        self.clients: dict[str, CredentialClient] = {}
        self._by_key: dict[ProviderKey, TokenProvider] = {}
        self._materials: dict[str, MaterialSource | None] = {}
        # Per vault-sourced credential: the provider of its Key Vault tokens (not any route's).
        self._vault_readers: dict[str, TokenProvider] = {}
        if reuse is not None:
            self._adopt(reuse)

    def _adopt(self, old: Providers) -> None:
        """Keep the clients (and tokens) of credentials whose settings did not change (config reload)."""
        settings, secrets = self._config.settings, self._config.secrets
        for name, client in old.clients.items():
            if (
                settings.credentials.get(name) == client.credential
                and secrets.for_credential(name) == client.loaded_secrets
            ):
                self.clients[name] = client
        # A credential's material goes with its client (the adopted providers' sources hold it), and so does
        # its vault reader — unless the reader's own credential changed: then neither is kept.
        for name in [n for n in self.clients if n in old._materials]:
            reader = old._vault_readers.get(name)
            if reader is not None:
                if reader.credential == f"{name}.keyvault":  # the host's managed identity, made for it
                    self.clients[reader.credential] = old.clients[reader.credential]
                elif reader.credential not in self.clients:
                    del self.clients[name]
                    continue
                self._vault_readers[name] = reader
            self._materials[name] = old._materials[name]
        used = {(r.credential, settings.route_scopes(n)) for n, r in settings.routes.items()}
        for key, provider in old._by_key.items():
            if key[0] in self.clients and key in used:
                self._by_key[key] = provider

    async def close_unused(self, old: Providers) -> None:
        """Close what ``old`` had and this one did not adopt (Key Vault readers: never adopted)."""
        for name, reader in old._vault_readers.items():
            if self._vault_readers.get(name) is not reader:
                await reader.close()
        for key, provider in old._by_key.items():
            if self._by_key.get(key) is not provider:
                await provider.close()
        for name, client in old.clients.items():
            if self.clients.get(name) is not client:
                client.close()

    def client(self, credential: str) -> CredentialClient:
        client = self.clients.get(credential)
        if client is None:
            client = self.clients[credential] = CredentialClient.for_config(self._config, credential)
        return client

    def material(self, credential: str) -> MaterialSource | None:
        """Where a credential's secret is kept current: its files, its vault, or nowhere (no secret of its own)."""
        if credential not in self._materials:
            client = self.client(credential)
            cred = client.credential
            source: MaterialSource | None = None
            if uses_keyvault(cred):
                from bearerd.tokens.keyvault import VaultFetcher  # the azure SDK: only for vault-sourced credentials

                reader = self._vault_reader(credential)
                fetcher = VaultFetcher(cred, reader, client.ssl_context, self._config.egress)  # type: ignore[arg-type]
                have = client.secrets if client.secrets != CredentialSecrets() else None
                refresh_s = getattr(cred, "keyvault_refresh_s", 3600.0)
                source = VaultMaterial(credential, fetcher, refresh_s, current=have)
            elif watched_files(cred):
                source = FileMaterial(credential, cred, client.secrets)
            self._materials[credential] = source
        return self._materials[credential]

    def _vault_reader(self, credential: str) -> TokenProvider:
        """A provider of Key Vault tokens for ``credential``'s secret: its ``keyvault_credential``, else the
        host's managed identity."""
        cred = self.client(credential).credential
        audience: str = getattr(cred, "keyvault_audience")  # noqa: B009 - only vault-sourced kinds have it
        scopes = (audience.rstrip("/") + "/.default",)
        name: str | None = getattr(cred, "keyvault_credential", None)
        if name is None:
            name = f"{credential}.keyvault"
            host = ManagedIdentityCredential(
                kind="managed_identity",
                ca_file=cred.ca_file,
                connect_timeout_s=cred.connect_timeout_s,
                timeout_s=cred.timeout_s,
            )
            self.clients[name] = CredentialClient(name, host, CredentialSecrets(), self._config.egress)
        provider = self._provider(name, scopes)
        self._vault_readers[credential] = provider
        return provider

    def _provider(self, credential: str, scopes: tuple[str, ...]) -> TokenProvider:
        client = self.client(credential)
        source: TokenSource
        if client.credential.kind in CLI_KINDS:
            source = CliSource(client.credential, scopes)  # type: ignore[arg-type]  # a CLI kind, checked above
        else:
            local = LocalSource(client, scopes, self.material(credential))
            source = self._fleet.source(local) if self._fleet is not None else local
        return TokenProvider(
            source,
            credential,
            scopes,
            close_timeout_s=client.credential.timeout_s + 1,
            on_attempt=self._on_attempt,
        )

    def for_route(self, route_name: str) -> TokenProvider:
        settings = self._config.settings
        rs = settings.routes[route_name]
        key = (rs.credential, settings.route_scopes(route_name))
        provider = self._by_key.get(key)
        if provider is None:
            provider = self._by_key[key] = self._provider(*key)
        return provider

    def all(self) -> list[TokenProvider]:
        return list(self._by_key.values())

    async def aclose(self) -> None:
        for provider in [*self._by_key.values(), *self._vault_readers.values()]:
            await provider.close()
        for client in self.clients.values():
            client.close()
