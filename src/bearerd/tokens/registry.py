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
from bearerd.tokens.identity import CredentialClient
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
        if reuse is not None:
            self._adopt(reuse)

    def _adopt(self, old: Providers) -> None:
        """Keep the clients (and tokens) of credentials whose settings did not change (config reload)."""
        settings, secrets = self._config.settings, self._config.secrets
        for name, client in old.clients.items():
            if settings.credentials.get(name) == client.credential and secrets.for_credential(name) == client.secrets:
                self.clients[name] = client
        used = {(r.credential, settings.route_scopes(n)) for n, r in settings.routes.items()}
        for key, provider in old._by_key.items():
            if key[0] in self.clients and key in used:
                self._by_key[key] = provider

    async def close_unused(self, old: Providers) -> None:
        """Close what ``old`` had and this one did not adopt."""
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

    def for_route(self, route_name: str) -> TokenProvider:
        settings = self._config.settings
        rs = settings.routes[route_name]
        key = (rs.credential, settings.route_scopes(route_name))
        provider = self._by_key.get(key)
        if provider is None:
            client = self.client(rs.credential)
            local = LocalSource(client, key[1])
            source: TokenSource = self._fleet.source(local) if self._fleet is not None else local
            provider = self._by_key[key] = TokenProvider(
                source,
                rs.credential,
                key[1],
                close_timeout_s=client.credential.timeout_s + 1,
                on_attempt=self._on_attempt,
            )
        return provider

    def all(self) -> list[TokenProvider]:
        return list(self._by_key.values())

    async def aclose(self) -> None:
        for provider in self._by_key.values():
            await provider.close()
        for client in self.clients.values():
            client.close()
