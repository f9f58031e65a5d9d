"""Entra ID v2 for one tenant: discovery, JWKS and the client-credentials token endpoint.

Faithful where bearerd depends on it: MSAL accepts the discovery document, client secrets
and certificate assertions are verified (signature, ``x5t``/``x5t#S256``, ``aud`` = token
endpoint, ``iss`` = ``sub`` = client id, ``exp``/``nbf``), scopes resolve to registered apps by
GUID or exactly as written (``https://x//.default`` is not ``https://x/.default``; unknown:
AADSTS500011), access tokens are RS256 JWTs shaped by the app's access token version
(``registrations.py``), a client declaring the ``cp1`` capability gets ``xms_cc`` in its tokens
(``issuer.py``), errors carry Entra's JSON shape and AADSTS codes (Microsoft's "Microsoft Entra
authentication and authorization error codes"): 7000215 wrong secret, 7000222 expired secret,
700016 unknown app, 90002 unknown tenant, 700027 unregistered certificate, 500011 unknown
resource, 1002012 a client-credentials scope without ``/.default``, 50105 an unassigned user
(``users.py``). Client-credentials answers never hold ``client_info`` (MSAL would cache them
under an account and never find them).

For tests it records every token-endpoint call and injects faults on request.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import load_pem_x509_certificate

from bearerd.emulator.issuer import Caller, Issuer, b64url, requested_auth_contexts, requested_capabilities
from bearerd.emulator.oauth_errors import EntraError, refusal
from bearerd.emulator.pki import thumbprints
from bearerd.emulator.registrations import AppRegistration, Registrations
from bearerd.emulator.users import DEVICE_CODE_GRANT, UserFlows

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_DEFAULT_SUFFIX = "/.default"


@dataclass(frozen=True)
class Fault:
    """What the token endpoint does instead of (or before) answering normally."""

    status: int | None = None  # answer with this status and an Entra-style JSON error
    retry_after_s: float | None = None  # with a Retry-After header
    delay_s: float = 0.0  # wait this long first (then answer normally unless another field says otherwise)
    malformed: bool = False  # 200 with a body that is not JSON
    aadsts: int | None = None  # refuse as Entra does with this AADSTS code (oauth_errors.refusal)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        return cls(
            status=data.get("status"),
            retry_after_s=data.get("retry_after_s"),
            delay_s=float(data.get("delay_s", 0.0)),
            malformed=bool(data.get("malformed", False)),
            aadsts=data.get("aadsts"),
        )


class FaultPlan:
    """Faults for the next N requests (``push``) or for every request until cleared (``set``)."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self._standing: Fault | None = None

    def push(self, fault: Fault, times: int = 1) -> None:
        self._queue.extend([fault] * times)

    def set(self, fault: Fault) -> None:
        self._standing = fault

    def clear(self) -> None:
        self._queue.clear()
        self._standing = None

    def next(self) -> Fault | None:
        if self._queue:
            return self._queue.popleft()
        return self._standing


@dataclass(frozen=True)
class TokenCall:
    client_id: str
    grant_type: str
    scope: str
    auth_method: str
    status: int
    at: float
    assertion_header: dict[str, Any] = field(default_factory=dict)  # alg/x5t/x5c of a client assertion


@dataclass
class Client:
    client_id: str
    secret: str | None = None
    certificate_pem: bytes | None = None
    roles: tuple[str, ...] = ()
    secret_expired: bool = False  # the secret's end date has passed: AADSTS7000222
    # Workload identity federation: (issuer, subject) -> the issuer's public key.
    federated: dict[tuple[str, str], rsa.RSAPublicKey] = field(default_factory=dict)


FEDERATION_AUDIENCE = "api://AzureADTokenExchange"


class EntraEmulator:
    def __init__(
        self,
        tenant_id: str,
        *,
        token_lifetime_s: int = 3600,
        refresh_in_s: int | None = None,
        clock_skew_s: int = 0,
    ) -> None:
        self.tenant_id = tenant_id
        self.tokens = Issuer(tenant_id, token_lifetime_s=token_lifetime_s, clock_skew_s=clock_skew_s)
        self.refresh_in_s = refresh_in_s
        self.clients: dict[str, Client] = {}
        self.resources = Registrations()
        self.faults = FaultPlan()
        self.calls: list[TokenCall] = []
        self.discovery_calls = 0
        self.system_identity: str | None = None
        self.users = UserFlows(self.tokens, self.resources)
        self.identity_header = secrets.token_hex(16)
        # (client ID, resource) pairs without consent: Entra answers AADSTS65001 (the Azure CLI before an App
        # Proxy app lists it as an authorized client application).
        self.unconsented: set[tuple[str, str]] = set()
        # Keep-alive that closes idle connections quickly: a request arriving on a connection idle
        # at least this long finds it closed (the close crossed the request on the wire, which is
        # what a client of a real short keep-alive sees now and then). None: connections stay.
        self.idle_close_s: float | None = None
        self.closed_idle = 0  # requests that met such a close
        self._last_answer: dict[object, float] = {}  # client address -> when its last answer left

    @property
    def issued_tokens(self) -> list[str]:
        return self.tokens.issued_tokens

    # -- registration --------------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        roles: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.clients[client_id] = Client(client_id, secret, certificate_pem, tuple(roles))

    def register_federated(self, client_id: str, *, issuer: str, subject: str, key: rsa.RSAPublicKey) -> None:
        """Trust tokens from an external issuer (e.g. a Kubernetes cluster) for ``client_id``."""
        self.clients[client_id].federated[(issuer, subject)] = key

    def register_managed_identity(self, client_id: str, *, system_assigned: bool = False) -> None:
        self.clients[client_id] = Client(client_id, roles=("Api.Access",))
        if system_assigned:
            self.system_identity = client_id

    def register_resource(
        self, app_id_uri: str, *, app_id: str | None = None, access_token_version: int = 1
    ) -> AppRegistration:
        """An app (resource) tokens can be issued for, by its app ID URI and its application ID."""
        registration = AppRegistration(
            app_id or str(uuid.uuid5(uuid.NAMESPACE_URL, app_id_uri)), [app_id_uri], access_token_version
        )
        return self.resources.add(registration)

    @property
    def issuer(self) -> str:
        return self.tokens.issuer

    def rotate_signing_key(self) -> None:
        self.tokens.rotate()

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        return self.tokens.public_keys()

    def token_calls(self, client_id: str | None = None) -> int:
        return sum(1 for c in self.calls if client_id is None or c.client_id == client_id)

    # -- HTTP ----------------------------------------------------------------------------------

    @web.middleware
    async def _keepalive(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        last = self._last_answer.pop(peer, None)
        if self.idle_close_s is not None and last is not None and time.monotonic() - last >= self.idle_close_s:
            self.closed_idle += 1
            assert request.transport is not None  # noqa: S101 - checked above
            request.transport.abort()  # closed under the request: no answer, as after a keep-alive close
            raise web.HTTPServiceUnavailable()  # never sent: the connection is gone
        try:
            return await handler(request)
        finally:
            self._last_answer[peer] = time.monotonic()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._keepalive])
        t = "/{tenant}"
        app.router.add_get(t + "/v2.0/.well-known/openid-configuration", self._discovery)
        app.router.add_get(t + "/discovery/v2.0/keys", self._jwks)
        app.router.add_post(t + "/oauth2/v2.0/token", self._token)
        app.router.add_post(t + "/oauth2/v2.0/devicecode", self._devicecode)
        app.router.add_get(t + "/oauth2/v2.0/authorize", self._authorize)
        app.router.add_get("/_emulator/calls", self._control_calls)
        app.router.add_post("/_emulator/faults", self._control_fault)
        app.router.add_delete("/_emulator/faults", self._control_clear)
        return app

    def _base(self, request: web.Request) -> str:
        return f"https://{request.host}/{self.tenant_id}"

    def _check_tenant(self, request: web.Request) -> None:
        if request.match_info["tenant"] != self.tenant_id:
            raise EntraError(
                400, "invalid_tenant", 90002, f"AADSTS90002: Tenant '{request.match_info['tenant']}' not found."
            )

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_calls += 1
        try:
            self._check_tenant(request)
        except EntraError as exc:
            return self._error_response(exc)
        base = self._base(request)
        return web.json_response(
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "tenant_region_scope": None,
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.tokens.jwks())

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        client_id = fields.get("client_id", "")
        grant_type = fields.get("grant_type", "")
        scope = fields.get("scope", "")
        method = "assertion" if "client_assertion" in fields else "secret" if "client_secret" in fields else "none"
        fault = self.faults.next()
        status = 200
        try:
            if fault is not None:
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                if fault.malformed:
                    return web.Response(
                        status=200, text="<html><body>Service unavailable</body></html>", content_type="text/html"
                    )
                if fault.aadsts is not None:
                    refused = refusal(fault.aadsts)
                    status = refused.status
                    return self._error_response(refused)
                if fault.status is not None:
                    status = fault.status
                    headers = {"Retry-After": f"{fault.retry_after_s:g}"} if fault.retry_after_s is not None else {}
                    error = "temporarily_unavailable" if fault.status in (429, 503) else "server_error"
                    return self._error_response(
                        EntraError(fault.status, error, 50196, f"AADSTS50196: injected fault {fault.status}."), headers
                    )
            try:
                self._check_tenant(request)
                body = self._grant(request, fields)
            except EntraError as exc:
                status = exc.status
                return self._error_response(exc)
            return web.json_response(body)
        finally:
            header: dict[str, Any] = {}
            if method == "assertion":
                try:
                    header = jwt.get_unverified_header(fields["client_assertion"])
                except jwt.PyJWTError:
                    header = {"invalid": True}
            self.calls.append(TokenCall(client_id, grant_type, scope, method, status, time.monotonic(), header))

    async def _devicecode(self, request: web.Request) -> web.Response:
        try:
            self._check_tenant(request)
            return web.json_response(await self.users.devicecode(request, self._base(request)))
        except EntraError as exc:
            return self._error_response(exc)

    async def _authorize(self, request: web.Request) -> web.Response:
        """Back to the app's redirect URI with the code: a query redirect, or Entra's self-posting form."""
        query = dict(request.query)
        try:
            self._check_tenant(request)
            code = self.users.authorize(query)
        except EntraError as exc:
            return web.Response(status=exc.status, text=f"{exc.error}: {exc.description}\n")
        redirect, state = query["redirect_uri"], query.get("state", "")
        if query.get("response_mode") == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{k}" value="{html.escape(v, quote=True)}">'
                for k, v in (("code", code), ("state", state))
            )
            page = (
                f'<html><body onload="document.forms[0].submit()"><form method="post" '
                f'action="{html.escape(redirect, quote=True)}">{fields}</form></body></html>'
            )
            return web.Response(text=page, content_type="text/html")
        sep = "&" if "?" in redirect else "?"
        raise web.HTTPFound(f"{redirect}{sep}code={code}&state={state}")

    def _grant(self, request: web.Request, fields: dict[str, str]) -> dict[str, Any]:
        if fields.get("grant_type") in (DEVICE_CODE_GRANT, "refresh_token", "authorization_code"):
            return self.users.grant(fields)
        if fields.get("grant_type") != "client_credentials":
            raise EntraError(
                400, "unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type."
            )
        client = self._authenticate(request, fields)
        registration, requested = self._resource(fields.get("scope", ""))
        if (client.client_id, requested) in self.unconsented:
            raise EntraError(
                400,
                "invalid_grant",
                65001,
                f"AADSTS65001: The user or administrator has not consented to use the application with ID "
                f"'{client.client_id}' named 'Microsoft Azure CLI'. Send an interactive authorization request for "
                "this user and resource.",
            )
        claims = fields.get("claims")
        token = self._issue(
            registration, requested, client, requested_auth_contexts(claims), requested_capabilities(claims)
        )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": self.tokens.token_lifetime_s,
            "ext_expires_in": self.tokens.token_lifetime_s,
            "access_token": token,
        }
        if self.refresh_in_s is not None:
            body["refresh_in"] = self.refresh_in_s
        return body

    def _authenticate(self, request: web.Request, fields: dict[str, str]) -> Client:
        client_id = fields.get("client_id", "")
        client = self.clients.get(client_id)
        if client is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{client_id}' was not found.",
            )
        if "client_secret" in fields:
            if client.secret is not None and client.secret_expired:
                raise EntraError(
                    401,
                    "invalid_client",
                    7000222,
                    f"AADSTS7000222: The provided client secret keys for app '{client_id}' are expired. Visit the "
                    "Azure portal to create new keys for your app.",
                )
            if client.secret is None or not hmac.compare_digest(client.secret, fields["client_secret"]):
                raise EntraError(
                    401,
                    "invalid_client",
                    7000215,
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                    "being sent in the request is the client secret value, not the client secret ID.",
                )
            return client
        if fields.get("client_assertion_type") == ASSERTION_TYPE and "client_assertion" in fields:
            self._verify_assertion(request, client, fields["client_assertion"])
            return client
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "AADSTS7000218: The request body must contain 'client_assertion' or 'client_secret'.",
        )

    def _verify_assertion(self, request: web.Request, client: Client, assertion: str) -> None:
        refused = EntraError(
            401, "invalid_client", 700027, "AADSTS700027: Client assertion failed signature validation."
        )
        if client.federated:
            self._verify_federated(client, assertion)
            return
        if client.certificate_pem is None:
            raise refused
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise refused from None
        sha1, sha256 = thumbprints(client.certificate_pem)
        # MSAL pads its base64url thumbprints; Entra compares the digests, so padding doesn't matter.
        x5t_s256 = str(header.get("x5t#S256", "")).rstrip("=")
        x5t = str(header.get("x5t", "")).rstrip("=")
        if x5t_s256 != b64url(sha256) and x5t != b64url(sha1):
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "AADSTS700027: The certificate with identifier used to sign the client "
                "assertion is not registered on application.",
            )
        public_key = load_pem_x509_certificate(client.certificate_pem).public_key()
        endpoint = f"{self._base(request)}/oauth2/v2.0/token"
        try:
            claims = jwt.decode(
                assertion,
                public_key,  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=endpoint,
                leeway=60,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise EntraError(
                401, "invalid_client", 700024, "AADSTS700024: Client assertion is not within its valid time range."
            ) from None
        except jwt.InvalidAudienceError:
            raise EntraError(
                401,
                "invalid_client",
                700021,
                "AADSTS700021: Client assertion audience claim does not match Realm issuer.",
            ) from None
        except jwt.PyJWTError:
            raise refused from None
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise EntraError(
                401, "invalid_client", 700023, "AADSTS700023: Client assertion iss/sub must be the client id."
            )

    def _verify_federated(self, client: Client, assertion: str) -> None:
        """A token from a trusted external issuer, as workload identity federation accepts it."""
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise EntraError(400, "invalid_request", 50027, "AADSTS50027: JWT token is invalid or malformed.") from None
        key = client.federated.get((str(unverified.get("iss")), str(unverified.get("sub"))))
        if key is None:
            raise EntraError(
                400,
                "invalid_request",
                70021,
                "AADSTS70021: No matching federated identity record found for presented assertion issuer and subject.",
            )
        try:
            jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=FEDERATION_AUDIENCE,
                options={"require": ["exp", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise EntraError(
                400, "invalid_client", 700024, "AADSTS700024: Client assertion is not within its valid time range."
            ) from None
        except jwt.InvalidAudienceError:
            raise EntraError(
                400,
                "invalid_request",
                700212,
                f"AADSTS700212: No matching federated identity record found for presented assertion audience; "
                f"expected {FEDERATION_AUDIENCE}.",
            ) from None
        except jwt.PyJWTError:
            raise EntraError(
                401, "invalid_client", 700027, "AADSTS700027: Client assertion failed signature validation."
            ) from None

    def _resource(self, scope: str) -> tuple[AppRegistration, str]:
        """The app a client-credentials scope names, and the identifier it named it by."""
        scopes = scope.split()
        if len(scopes) == 1 and "/" not in scopes[0]:
            raise EntraError(
                400,
                "invalid_scope",
                70011,
                f"AADSTS70011: The provided request must include a 'scope' input parameter. The provided value for "
                f"the input parameter 'scope' is not valid. The scope {scope} is not valid.",
            )
        if len(scopes) != 1 or not scopes[0].endswith(_DEFAULT_SUFFIX):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"AADSTS1002012: The provided value for scope {scope} is not valid. "
                "Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
            )
        resource = scopes[0][: -len(_DEFAULT_SUFFIX)]
        registration = self.resources.find(resource)
        if registration is None:
            raise EntraError(
                400,
                "invalid_scope",
                500011,
                f"AADSTS500011: The resource principal named {resource} was not found "
                f"in the tenant named {self.tenant_id}.",
            )
        return registration, resource

    def _issue(
        self,
        registration: AppRegistration,
        requested: str,
        client: Client,
        acrs: list[str] | None = None,
        capabilities: list[str] | None = None,
    ) -> str:
        """An app-only access token for a registered client."""
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, client.client_id))
        caller = Caller(client.client_id, "2" if client.certificate_pem else "1", acrs or [], capabilities or [])
        return self.tokens.app_token(registration, requested, caller, list(client.roles), oid)

    def _error_response(self, exc: EntraError, headers: dict[str, str] | None = None) -> web.Response:
        body = {
            "error": exc.error,
            "error_description": f"{exc.description}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}",
            "error_codes": [exc.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        return web.json_response(body, status=exc.status, headers=headers)

    # -- managed identity ----------------------------------------------------------------------

    def managed_identity_app(self) -> web.Application:
        """The local token services of Azure hosts: App Service's and IMDS's (plain HTTP, like theirs)."""
        app = web.Application()
        app.router.add_get("/msi/token", self._app_service_token)
        app.router.add_get("/metadata/identity/oauth2/token", self._imds_token)
        return app

    def _identity_for(self, request: web.Request) -> Client:
        client_id = request.query.get("client_id")
        if client_id is None:
            if request.query.get("object_id") or request.query.get("mi_res_id") or request.query.get("msi_res_id"):
                raise EntraError(400, "invalid_request", 0, "Identity not found")
            client_id = self.system_identity or ""
        client = self.clients.get(client_id)
        if client is None or client.secret or client.certificate_pem or client.federated:
            raise EntraError(400, "invalid_request", 0, "Identity not found")
        return client

    async def _mi_token(self, request: web.Request, kind: str) -> web.Response:
        status = 200
        client_id = request.query.get("client_id", self.system_identity or "")
        resource = request.query.get("resource", "")
        fault = self.faults.next()
        try:
            if fault is not None and fault.status is not None:
                status = fault.status
                headers = {"Retry-After": f"{fault.retry_after_s:g}"} if fault.retry_after_s is not None else {}
                return web.json_response({"error": "temporarily_unavailable"}, status=fault.status, headers=headers)
            try:
                if kind == "app_service" and request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
                    raise EntraError(401, "invalid_request", 0, "Unauthorized")  # what App Service says
                if kind == "imds" and request.headers.get("Metadata") != "true":
                    raise EntraError(400, "invalid_request", 0, "Required metadata header not specified")
                client = self._identity_for(request)
                registration = self.resources.find(resource)
                if registration is None:
                    raise EntraError(
                        400,
                        "invalid_resource",
                        500011,
                        f"AADSTS500011: The resource principal named {resource} was not found.",
                    )
            except EntraError as exc:
                status = exc.status
                if kind == "app_service":  # App Service's own shape (MSAL relabels it "invalid_scope")
                    body = {"statusCode": exc.status, "message": exc.description, "correlationId": str(uuid.uuid4())}
                    return web.json_response(body, status=exc.status)
                return web.json_response({"error": exc.error, "error_description": exc.description}, status=exc.status)
            # App Service's and IMDS's token services take no client capabilities (MSAL relays xms_cc
            # to Service Fabric only), so managed identity tokens carry no xms_cc here.
            token = self._issue(registration, resource, client)
            expires_on = int(time.time()) + self.tokens.token_lifetime_s
            body = {"access_token": token, "expires_on": str(expires_on), "resource": resource, "token_type": "Bearer"}
            if kind == "imds":
                body["expires_in"] = str(self.tokens.token_lifetime_s)
            else:
                body["client_id"] = client.client_id
            return web.json_response(body)
        finally:
            self.calls.append(TokenCall(client_id, "managed_identity", resource, kind, status, time.monotonic()))

    async def _app_service_token(self, request: web.Request) -> web.Response:
        return await self._mi_token(request, "app_service")

    async def _imds_token(self, request: web.Request) -> web.Response:
        return await self._mi_token(request, "imds")

    # -- control -------------------------------------------------------------------------------

    async def _control_calls(self, request: web.Request) -> web.Response:
        by_client: dict[str, int] = {}
        for call in self.calls:
            by_client[call.client_id] = by_client.get(call.client_id, 0) + 1
        return web.json_response(
            {"token_calls": len(self.calls), "by_client": by_client, "discovery_calls": self.discovery_calls}
        )

    async def _control_fault(self, request: web.Request) -> web.Response:
        data = await request.json()
        fault = Fault.from_json(data)
        if data.get("standing"):
            self.faults.set(fault)
        else:
            self.faults.push(fault, int(data.get("times", 1)))
        return web.json_response({"ok": True})

    async def _control_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})
