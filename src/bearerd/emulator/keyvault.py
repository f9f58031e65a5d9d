"""Azure Key Vault for one vault: secrets and certificates, behind the vault's own bearer-token check.

What the SDK's clients (``azure-keyvault-secrets``/``-certificates``) do against it is what they do
against the real service: a first request without a token is answered 401 with the challenge
(``WWW-Authenticate: Bearer authorization="<authority>", resource="https://vault.azure.net"``);
then a token is verified as Key Vault verifies it — RS256 against the Entra emulator's keys, its
issuer, audience ``https://vault.azure.net``, expiry — and the caller (``appid``) must have been
granted secret read (``grant``), else 403 ``ForbiddenByRbac``. Objects are versioned: a new
``set_secret`` is a rotation, the unversioned identifier names the newest.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bearerd.emulator.entra import EntraEmulator

VAULT_RESOURCE = "https://vault.azure.net"
PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"


@dataclass
class Version:
    version: str
    value: str
    content_type: str | None


@dataclass
class VaultCall:
    path: str
    status: int
    caller: str | None  # appid of the token, when one was sent and valid


@dataclass
class KeyVaultEmulator:
    entra: EntraEmulator
    url: str = ""  # https://127.0.0.1:PORT, set by the stack
    secrets: dict[str, list[Version]] = field(default_factory=dict)
    certificates: dict[str, list[str]] = field(default_factory=dict)  # name -> versions (their secrets share them)
    readers: set[str] = field(default_factory=set)
    calls: list[VaultCall] = field(default_factory=list)

    def grant(self, client_id: str) -> None:
        """Give an identity (by app/client ID) the 'Key Vault Secrets User' role."""
        self.readers.add(client_id)

    def set_secret(self, name: str, value: str, content_type: str | None = None) -> str:
        """Add a version (a rotation when the secret exists); returns the version."""
        version = secrets.token_hex(16)
        self.secrets.setdefault(name, []).append(Version(version, value, content_type))
        return version

    def set_certificate(self, name: str, pfx: bytes | None = None, pem: str | None = None) -> str:
        """A certificate with its key, as Key Vault stores it: the key in a secret of the same name/version."""
        if pfx is not None:
            version = self.set_secret(name, base64.b64encode(pfx).decode(), PKCS12)
        else:
            assert pem is not None  # noqa: S101 - one of them
            version = self.set_secret(name, pem, PEM)
        self.certificates.setdefault(name, []).append(version)
        return version

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/secrets/{name}", self._get_secret)
        app.router.add_get("/secrets/{name}/", self._get_secret)
        app.router.add_get("/secrets/{name}/{version}", self._get_secret)
        app.router.add_get("/certificates/{name}", self._get_certificate)
        app.router.add_get("/certificates/{name}/", self._get_certificate)
        app.router.add_get("/certificates/{name}/{version}", self._get_certificate)
        return app

    def secret_calls(self) -> int:
        return sum(1 for c in self.calls if c.path.startswith("/secrets/") and c.status == 200)

    # -- HTTP ----------------------------------------------------------------------------------

    def _authorize(self, request: web.Request) -> str:
        """The caller's appid, or raise the 401/403 Key Vault would answer."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise self._challenge()
        try:
            kid = jwt.get_unverified_header(header[7:]).get("kid")
            key = self.entra.public_keys().get(str(kid))
            if key is None:
                raise jwt.InvalidTokenError("unknown kid")
            claims = jwt.decode(
                header[7:], key, algorithms=["RS256"], audience=VAULT_RESOURCE, issuer=self.entra.issuer, leeway=30
            )
        except jwt.PyJWTError:
            raise self._challenge('error="invalid_token"') from None
        caller = str(claims.get("appid", ""))
        if caller not in self.readers:
            raise self._error(
                403,
                "Forbidden",
                f"Caller is not authorized to perform action on resource. Caller: appid={caller}. "
                "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                inner="ForbiddenByRbac",
            )
        return caller

    def _challenge(self, extra: str = "") -> web.HTTPUnauthorized:
        value = f'Bearer authorization="{self.entra.tokens.authority_base}", resource="{VAULT_RESOURCE}"'
        headers = {"WWW-Authenticate": value + (f", {extra}" if extra else "")}
        body = '{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}'
        return web.HTTPUnauthorized(headers=headers, text=body, content_type="application/json")

    def _error(self, status: int, code: str, message: str, inner: str | None = None) -> web.HTTPException:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        exc = web.HTTPException(text=web.json_response({"error": error}).text, content_type="application/json")
        exc.set_status(status)
        return exc

    def _version(self, collection: str, versions: list[Version], name: str, wanted: str | None) -> Version:
        for candidate in reversed(versions):
            if not wanted or candidate.version == wanted:
                return candidate
        raise self._error(404, f"{collection}NotFound", f"A {collection.lower()} with (name/id) {name} was not found")

    async def _get_secret(self, request: web.Request) -> web.Response:
        return await self._answer(request, self._secret_bundle)

    async def _get_certificate(self, request: web.Request) -> web.Response:
        return await self._answer(request, self._certificate_bundle)

    async def _answer(self, request: web.Request, bundle: Any) -> web.Response:
        status, caller = 200, None
        try:
            caller = self._authorize(request)
            return web.json_response(bundle(request.match_info["name"], request.match_info.get("version") or None))
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.calls.append(VaultCall(request.path, status, caller))

    def _secret_bundle(self, name: str, version: str | None) -> dict[str, Any]:
        found = self._version("Secret", self.secrets.get(name, []), name, version)
        body: dict[str, Any] = {
            "value": found.value,
            "id": f"{self.url}/secrets/{name}/{found.version}",
            "attributes": {"enabled": True, "created": int(time.time()), "updated": int(time.time())},
        }
        if found.content_type:
            body["contentType"] = found.content_type
        if name in self.certificates:
            body["kid"] = f"{self.url}/keys/{name}/{found.version}"
            body["managed"] = True
        return body

    def _certificate_bundle(self, name: str, version: str | None) -> dict[str, Any]:
        versions = [v for v in self.secrets.get(name, []) if v.version in self.certificates.get(name, [])]
        found = self._version("Certificate", versions, name, version)
        if found.content_type == PKCS12:
            from cryptography.hazmat.primitives.serialization import pkcs12

            leaf = pkcs12.load_pkcs12(base64.b64decode(found.value), None).cert
            assert leaf is not None  # noqa: S101 - stored with its certificate
            certificate = leaf.certificate
        else:
            certificate = x509.load_pem_x509_certificates(found.value.encode())[0]
        der = certificate.public_bytes(serialization.Encoding.DER)
        return {
            "id": f"{self.url}/certificates/{name}/{found.version}",
            "kid": f"{self.url}/keys/{name}/{found.version}",
            "sid": f"{self.url}/secrets/{name}/{found.version}",
            "cer": base64.b64encode(der).decode(),
            "attributes": {"enabled": True, "created": int(time.time()), "updated": int(time.time())},
        }
