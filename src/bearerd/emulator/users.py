"""Delegated (user) sign-in for the Entra emulator: device code flow and refresh tokens.

What MSAL's public-client flows depend on: ``/devicecode`` answers, ``authorization_pending``
until the user approves, then an access token with ``scp``, a refresh token, an ``id_token`` and
``client_info`` (so MSAL files the result under an account). Refresh tokens rotate and the one
used is spent, so a client that doesn't persist the new one finds out on its next refresh.
Revoking a user's refresh tokens makes the next refresh fail with ``invalid_grant``
(AADSTS50173). A user not assigned to an app that requires assignment gets ``invalid_grant``
AADSTS50105 instead of a token (``registrations.py``). A client declaring ``cp1`` in the claims
request gets ``xms_cc`` in its access tokens (``issuer.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bearerd.emulator.issuer import Caller, Issuer, b64url, requested_auth_contexts, requested_capabilities
from bearerd.emulator.oauth_errors import EntraError
from bearerd.emulator.registrations import AppRegistration, Registrations

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})


@dataclass
class User:
    username: str
    oid: str


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    user: User | None = None


@dataclass
class AuthCode:
    user: User
    client_id: str
    scope: str
    redirect_uri: str
    challenge: str  # PKCE S256
    nonce: str | None


@dataclass
class Grant:
    user: User
    client_id: str
    resource: str
    scp: str


class UserFlows:
    def __init__(self, tokens: Issuer, resources: Registrations) -> None:
        self.tokens = tokens
        self.resources = resources  # the tenant's app registrations, shared with entra
        self.public_clients: set[str] = set()
        self.users: dict[str, User] = {}
        self.device_codes: dict[str, DeviceCode] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.poll_interval_s = 1
        # The emulated browser session: who is signed in when /authorize is visited (None: nobody).
        self.browser_user: str | None = None
        self.auth_codes: dict[str, AuthCode] = {}
        self._polls: dict[str, asyncio.Event] = {}  # user code -> set once a client polled while pending

    def register_public_client(self, client_id: str) -> None:
        self.public_clients.add(client_id)

    def add_user(self, username: str) -> User:
        user = User(username, str(uuid.uuid5(uuid.NAMESPACE_URL, username)))
        self.users[username] = user
        return user

    def approve(self, user_code: str, username: str) -> None:
        """What the user does in the browser: enter the code and sign in."""
        for flow in self.device_codes.values():
            if flow.user_code == user_code:
                flow.user = self.users[username]
                return
        raise KeyError(user_code)

    def _poll_event(self, user_code: str) -> asyncio.Event:
        return self._polls.setdefault(user_code, asyncio.Event())

    async def polled(self, user_code: str, within_s: float) -> None:
        """Until a client has polled for ``user_code`` and been told ``authorization_pending``."""
        await asyncio.wait_for(self._poll_event(user_code).wait(), within_s)

    def pending_user_codes(self) -> list[str]:
        return [f.user_code for f in self.device_codes.values() if f.user is None]

    def revoke(self, username: str) -> None:
        """An admin revoked the user's sessions: every refresh token is now useless."""
        for token, grant in list(self.refresh_tokens.items()):
            if grant.user.username == username:
                del self.refresh_tokens[token]

    # -- HTTP ----------------------------------------------------------------------------------

    async def devicecode(self, request: web.Request, base: str) -> dict[str, Any]:
        form = await request.post()
        client_id = str(form.get("client_id", ""))
        if client_id not in self.public_clients:
            raise EntraError(400, "unauthorized_client", 700016, f"AADSTS700016: Application '{client_id}' not found.")
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        flow = DeviceCode(
            secrets.token_urlsafe(32), user_code, client_id, str(form.get("scope", "")), time.time() + 900
        )
        self.device_codes[flow.device_code] = flow
        return {
            "device_code": flow.device_code,
            "user_code": user_code,
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900,
            "interval": self.poll_interval_s,
            "message": f"To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter "
            f"the code {user_code} to authenticate.",
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The sign-in page: with a signed-in browser session, an authorization code for the app."""
        client_id = query.get("client_id", "")
        redirect = query.get("redirect_uri", "")
        if client_id not in self.public_clients or not redirect.startswith(("http://localhost", "http://127.0.0.1")):
            raise EntraError(400, "invalid_request", 50011, "AADSTS50011: The redirect URI does not match.")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise EntraError(400, "invalid_request", 9002325, "AADSTS9002325: Proof Key for Code Exchange is required.")
        if self.browser_user is None:
            raise EntraError(400, "interaction_required", 50058, "AADSTS50058: No user is signed in to the browser.")
        code = secrets.token_urlsafe(32)
        self.auth_codes[code] = AuthCode(
            self.users[self.browser_user],
            client_id,
            query.get("scope", ""),
            redirect,
            query["code_challenge"],
            query.get("nonce"),
        )
        return code

    def grant(self, fields: dict[str, str]) -> dict[str, Any]:
        client_id = fields.get("client_id", "")
        if client_id not in self.public_clients:
            raise EntraError(400, "unauthorized_client", 700016, f"AADSTS700016: Application '{client_id}' not found.")
        if fields.get("grant_type") == DEVICE_CODE_GRANT:
            flow = self.device_codes.get(fields.get("device_code", ""))
            if flow is None or flow.client_id != client_id:
                raise EntraError(400, "invalid_grant", 70000, "AADSTS70000: The provided device code is invalid.")
            if time.time() > flow.expires_at:
                raise EntraError(400, "expired_token", 70020, "AADSTS70020: The provided value for the code expired.")
            if flow.user is None:
                self._poll_event(flow.user_code).set()
                raise EntraError(
                    400,
                    "authorization_pending",
                    70016,
                    "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.",
                )
            del self.device_codes[flow.device_code]
            return self._tokens(flow.user, client_id, flow.scope, fields.get("claims"))
        if fields.get("grant_type") == "authorization_code":
            entry = self.auth_codes.pop(fields.get("code", ""), None)  # single use
            if entry is None or entry.client_id != client_id or entry.redirect_uri != fields.get("redirect_uri"):
                raise EntraError(
                    400, "invalid_grant", 70008, "AADSTS70008: The provided authorization code is invalid."
                )
            verifier = fields.get("code_verifier", "").encode()
            if b64url(hashlib.sha256(verifier).digest()) != entry.challenge:
                raise EntraError(400, "invalid_grant", 501481, "AADSTS501481: The Code_Verifier does not match.")
            return self._tokens(entry.user, client_id, entry.scope, fields.get("claims"), nonce=entry.nonce)
        token = fields.get("refresh_token", "")
        grant = self.refresh_tokens.pop(token, None)  # spent, whatever happens next
        if grant is None or grant.client_id != client_id:
            raise EntraError(
                400, "invalid_grant", 50173, "AADSTS50173: The provided grant has expired due to it being revoked."
            )
        return self._tokens(grant.user, client_id, fields.get("scope", ""), fields.get("claims"))

    def _tokens(
        self, user: User, client_id: str, scope: str, claims: str | None, nonce: str | None = None
    ) -> dict[str, Any]:
        registration, resource, permissions, requested = self._resource_scope(scope)
        if not registration.may_use(user.username):
            raise EntraError(
                400,
                "invalid_grant",
                50105,
                f"AADSTS50105: Your administrator has configured the application {registration.app_id} to block users "
                f"unless they are specifically granted ('assigned') access to the application. The signed in user "
                f"'{user.username}' is blocked because they are not a direct member of a group with access, nor had "
                "access directly assigned by an administrator.",
            )
        now = int(time.time())
        tenant = self.tokens.tenant_id
        caller = Caller(client_id, "0", requested_auth_contexts(claims), requested_capabilities(claims))
        access = self.tokens.user_token(registration, resource, caller, user.oid, user.username, permissions)
        refresh = secrets.token_urlsafe(48)
        self.refresh_tokens[refresh] = Grant(user, client_id, resource, permissions)
        id_claims = {
            "aud": client_id,
            "iss": f"{self.tokens.authority_base}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "sub": user.oid,
            "oid": user.oid,
            "tid": tenant,
            "preferred_username": user.username,
            "name": user.username.split("@")[0],
            "ver": "2.0",
        }
        if nonce is not None:
            id_claims["nonce"] = nonce
        id_token = self.tokens.unsigned_id_token(id_claims)
        return {
            "token_type": "Bearer",
            "scope": " ".join(requested) + " openid profile offline_access",
            "expires_in": self.tokens.token_lifetime_s,
            "ext_expires_in": self.tokens.token_lifetime_s,
            "access_token": access,
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": b64url(json.dumps({"uid": user.oid, "utid": tenant}).encode()),
        }

    def _resource_scope(self, scope: str) -> tuple[AppRegistration, str, str, list[str]]:
        """The app, "https://x.msappproxy.net/" and "user_impersonation" from
        "https://x.msappproxy.net//user_impersonation" (or from "<app GUID>/user_impersonation")."""
        wanted = [s for s in scope.split() if s not in _OIDC_SCOPES]
        if not wanted:
            raise EntraError(400, "invalid_scope", 70011, "AADSTS70011: No resource scope was requested.")
        resource = wanted[0].rpartition("/")[0]
        registration = self.resources.find(resource)
        if registration is None:
            raise EntraError(
                400, "invalid_resource", 500011, f"AADSTS500011: The resource principal named {resource} was not found."
            )
        permissions = {p.rpartition("/")[2] for p in wanted if p.rpartition("/")[0] == resource}
        if ".default" in permissions:
            permissions = {"user_impersonation"}
        return registration, resource, " ".join(sorted(permissions)), wanted
