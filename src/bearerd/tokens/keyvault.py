"""Secrets and certificates from Azure Key Vault, read with the SDK's own clients and bearerd's tokens.

``azure-keyvault-secrets`` / ``-certificates`` (the ``bearerd[keyvault]`` extra) speak the vault's
protocol — the challenge (a first request without a token, answered 401 with ``WWW-Authenticate:
Bearer authorization=…, resource=…``), API versions, identifiers. What they are given is ours:

* ``ProviderCredential``: azure-core's ``AsyncTokenCredential`` over a bearerd ``TokenProvider``,
  so the vault's token comes from the same single-flight, early-refreshed, backed-off machinery as
  every other (the host's managed identity, or the credential ``keyvault_credential`` names). It
  hands out a token only for the configured ``keyvault_audience``: whatever a challenge asks for,
  no token of another audience leaves bearerd (this replaces the SDK's domain check, which can't
  know private endpoints' or the emulator's host names).
* the HTTP client: an aiohttp session with bearerd's trust (system CAs + ``ca_file``), the proxy
  the settings say and no environment variables consulted — not azure-core's defaults.
* no SDK retries: the provider backs off, and ``material.VaultMaterial`` decides when to fetch.

A certificate is read as the SDK documents it: ``get_certificate`` for its secret's identifier,
then that secret (PKCS#12 or PEM, with the key), loaded by ``config/certificates.py``.
"""

from __future__ import annotations

import base64
import time
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.keyvault.certificates.aio import CertificateClient
from azure.keyvault.secrets import KeyVaultSecretIdentifier
from azure.keyvault.secrets.aio import SecretClient
from pydantic import SecretStr

from bearerd.config.environment import Egress
from bearerd.config.schema import CertificateCredential, ClientSecretCredential
from bearerd.config.secrets import CredentialSecrets, certificate_material
from bearerd.errors import ProxyError, first_line
from bearerd.tokens.provider import TokenProvider
from bearerd.tokens.results import IdentityProviderError

PKCS12_CONTENT_TYPE = "application/x-pkcs12"


class ProviderCredential:
    """azure-core's ``AsyncTokenCredential`` protocol, answered by a bearerd token provider."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider
        self.scope = provider.scopes[0]

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if scopes != (self.scope,):
            raise ClientAuthenticationError(
                message=f"the vault asked for a token for {' '.join(scopes)!r}; bearerd gives it only {self.scope!r} "
                "(keyvault_audience)"
            )
        try:
            value = await self.provider.fetch()
        except ProxyError as exc:
            raise ClientAuthenticationError(message=f"no token for the vault: {exc.detail}") from None
        expires_in = self.provider.status().expires_in_s or 0.0
        return AccessToken(value, int(time.time() + expires_in))

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> ProviderCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        return None


def split_identifier(url: str) -> tuple[str, str, str, str | None]:
    """(vault URL, collection, name, version or None) of a Key Vault object identifier."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    return f"{parts.scheme}://{parts.netloc}", segments[0], segments[1], segments[2] if len(segments) > 2 else None


class VaultFetcher:
    """Fetch one credential's secret or certificate (called by ``material.VaultMaterial``)."""

    def __init__(
        self,
        cred: ClientSecretCredential | CertificateCredential,
        reader: TokenProvider,
        ssl_context: Any,
        egress: Egress,
    ) -> None:
        url = cred.client_secret_keyvault if isinstance(cred, ClientSecretCredential) else cred.certificate_keyvault
        assert url is not None  # noqa: S101 - only vault-sourced credentials get a fetcher
        self.url = url
        self.field = "client_secret_keyvault" if isinstance(cred, ClientSecretCredential) else "certificate_keyvault"
        self.vault, self.collection, self.name, self.version = split_identifier(url)
        self.credential = ProviderCredential(reader)
        self._ssl = ssl_context
        proxy = egress.proxy_for(self.vault + "/")
        self._options: dict[str, Any] = {
            "verify_challenge_resource": False,  # ProviderCredential's audience check instead (module docstring)
            "retry_total": 0,
            "connection_timeout": cred.connect_timeout_s,
            "read_timeout": cred.timeout_s,
            "proxies": {"https": proxy} if proxy else None,
        }

    async def __call__(self) -> CredentialSecrets:
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            transport = AioHttpTransport(session=session, session_owner=False)
            try:
                if self.collection == "secrets":
                    value, _ = await self._secret(transport, self.name, self.version)
                    return CredentialSecrets(client_secret=SecretStr(value))
                return await self._certificate(transport)
            except ValueError as exc:  # the certificate's content can't be used
                raise IdentityProviderError(f"{self.field} {self.url!r}: {exc}", code="keyvault_content") from None
            except AzureError as exc:
                raise self._translate(exc) from None

    async def _secret(self, transport: AioHttpTransport, name: str, version: str | None) -> tuple[str, str | None]:
        async with SecretClient(self.vault, self.credential, transport=transport, **self._options) as client:
            secret = await client.get_secret(name, version)
        if not secret.value:
            raise ValueError("the vault's secret is empty")
        return secret.value, secret.properties.content_type

    async def _certificate(self, transport: AioHttpTransport) -> CredentialSecrets:
        async with CertificateClient(self.vault, self.credential, transport=transport, **self._options) as client:
            if self.version:
                certificate = await client.get_certificate_version(self.name, self.version)
            else:
                certificate = await client.get_certificate(self.name)
        if not certificate.secret_id:
            raise ValueError("the vault's certificate names no secret holding its key")
        sid = KeyVaultSecretIdentifier(certificate.secret_id)
        value, content_type = await self._secret(transport, sid.name, sid.version)
        data = base64.b64decode(value) if content_type == PKCS12_CONTENT_TYPE else value.encode()
        where = f"{self.field} {self.url!r}"
        return CredentialSecrets(
            certificate=certificate_material(data, None, None, (where, where, "(Key Vault export)"))
        )

    def _translate(self, exc: AzureError) -> IdentityProviderError:
        where = f"Key Vault {self.field} {self.url!r}"
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ResourceNotFoundError) or status == 404:
            return IdentityProviderError(
                f"{where}: not found — check the name (and version)", code="keyvault_not_found"
            )
        if status == 403:
            return IdentityProviderError(
                f"{where}: 403 Forbidden — the reading identity lacks secret read: grant it the vault's "
                "'Key Vault Secrets User' role (or a get-secrets access policy)",
                code="keyvault_forbidden",
                permanent=True,
            )
        if isinstance(exc, ClientAuthenticationError):
            return IdentityProviderError(f"{where}: {first_line(exc.message)}", code="keyvault_auth")
        if isinstance(exc, ServiceRequestError):
            return IdentityProviderError(
                f"{where}: unreachable ({first_line(exc.message, 120)})", code="keyvault_unreachable"
            )
        return IdentityProviderError(f"{where}: {first_line(exc.message)}", code="keyvault_error")
