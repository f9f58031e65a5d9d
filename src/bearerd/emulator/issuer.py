"""The emulator's token issuer: one tenant's signing keys and the access tokens minted with them.

Both the client-credentials endpoint (``entra.py``) and the user flows (``users.py``) mint
through this one module, so every token the emulator hands out has the same shape — RS256, v1 or
v2 claims as the resource's registration asks (``registrations.py``) — and ends up in
``issued_tokens`` (the test suite scans every log line for them).

Client capabilities: a client that declares ``cp1`` (MSAL's ``client_capabilities``; on the wire
``claims={"access_token":{"xms_cc":{"values":["cp1"]}}}``) gets tokens carrying ``xms_cc`` —
Microsoft's "Continuous access evaluation" and "Claims challenges, claims requests and client
capabilities" pages: only such clients are sent claims challenges by resources.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from bearerd.emulator.pki import throwaway_rsa_key
from bearerd.emulator.registrations import AppRegistration


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(kid=secrets.token_hex(8), private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64int(numbers.n),
            "e": _b64int(numbers.e),
        }


def _claim_values(claims: str | None, name: str) -> list[str]:
    """The ``value``/``values`` a claims request asks for in the access token's claim ``name``."""
    if not claims:
        return []
    try:
        wanted = json.loads(claims).get("access_token", {}).get(name, {})
    except (ValueError, AttributeError):
        return []
    value = wanted.get("value") if isinstance(wanted, dict) else None
    values = wanted.get("values") if isinstance(wanted, dict) else None
    return [str(v) for v in ([value] if value else []) + list(values or [])]


def requested_auth_contexts(claims: str | None) -> list[str]:
    """The ``acrs`` values a claims request (CAE challenge answer) asks for."""
    return _claim_values(claims, "acrs")


def requested_capabilities(claims: str | None) -> list[str]:
    """The client capabilities (``xms_cc``, e.g. ``cp1``) a token request declares."""
    return _claim_values(claims, "xms_cc")


@dataclass(frozen=True)
class Caller:
    """Who a token is for and what it may do: everything a token carries besides the audience."""

    client_id: str
    client_auth: str  # appidacr/azpacr: "0" public client, "1" secret, "2" certificate
    acrs: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)


class Issuer:
    def __init__(self, tenant_id: str, *, token_lifetime_s: int = 3600, clock_skew_s: int = 0) -> None:
        self.tenant_id = tenant_id
        self.token_lifetime_s = token_lifetime_s
        self.clock_skew_s = clock_skew_s
        # Set by the stack once the port is known; the issuer of id_tokens is under it.
        self.authority_base = f"https://login.microsoftonline.com/{tenant_id}"
        self.issued_tokens: list[str] = []
        # The first key is the process's (fresh key IDs keep stacks apart); a rotation makes a new one.
        self._keys = [SigningKey(kid=secrets.token_hex(8), private_key=throwaway_rsa_key("token-signing"))]

    @property
    def issuer(self) -> str:
        """The ``iss`` of v1 access tokens (App Proxy apps' default)."""
        return self.issuer_for(1)

    def issuer_for(self, version: int) -> str:
        if version == 2:
            return f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"
        return f"https://sts.windows.net/{self.tenant_id}/"

    def rotate(self) -> None:
        self._keys.insert(0, SigningKey.generate())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.jwk() for k in self._keys]}

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        return {k.kid: k.private_key.public_key() for k in self._keys}

    def app_token(self, app: AppRegistration, requested: str, caller: Caller, roles: list[str], oid: str) -> str:
        """An app-only access token: ``roles``, and the app's own identity."""
        return self.sign(app, requested, caller, {"roles": roles, "oid": oid, "sub": oid, "idtyp": "app"})

    def user_token(self, app: AppRegistration, requested: str, caller: Caller, oid: str, upn: str, scp: str) -> str:
        """A delegated access token: ``scp`` instead of ``roles``, and the user's identity."""
        return self.sign(app, requested, caller, {"scp": scp, "oid": oid, "sub": oid, "upn": upn})

    def sign(self, app: AppRegistration, requested: str, caller: Caller, extra: dict[str, Any]) -> str:
        """An RS256 access token for ``app``, shaped as its access token version says."""
        now = int(time.time()) + self.clock_skew_s
        version = app.access_token_version
        claims: dict[str, Any] = {
            "aud": app.audience_for(requested),
            "iss": self.issuer_for(version),
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime_s,
            "tid": self.tenant_id,
            "ver": "2.0" if version == 2 else "1.0",
            "uti": secrets.token_urlsafe(16),
            "jti": secrets.token_urlsafe(16),
            **extra,
        }
        if version == 2:
            claims.update(azp=caller.client_id, azpacr=caller.client_auth)
        else:
            claims.update(appid=caller.client_id, appidacr=caller.client_auth)
        if caller.acrs:
            claims["acrs"] = caller.acrs
        if caller.capabilities:
            claims["xms_cc"] = caller.capabilities
        key = self._keys[0]
        token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})
        self.issued_tokens.append(token)
        return token

    def unsigned_id_token(self, claims: dict[str, Any]) -> str:
        """An ``alg: none`` id_token, as MSAL only reads (never verifies) the one it is given."""
        parts = ({"alg": "none", "typ": "JWT"}, claims)
        return ".".join(b64url(json.dumps(part).encode()) for part in parts) + "."
