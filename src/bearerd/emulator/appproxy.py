"""One app published through Entra application proxy: verify the token, then forward.

What it models, and where the real behaviour is documented:

* **Pre-authentication** (Microsoft's "Secure access to on-premises APIs with Microsoft Entra
  application proxy"): an RS256 signature by a key the tenant publishes, ``iss`` matching the
  token's version (v1 ``https://sts.windows.net/<tid>/``, v2
  ``https://login.microsoftonline.com/<tid>/v2.0``), ``aud`` one of ``accepted_audiences`` (the
  app's GUID and app ID URI by default; set it to the GUID alone to model an app that refuses the
  URI form, as dotnet/aspnetcore#52495 and msal-dotnet#2178 report), tenant, ``exp``/``nbf``. A
  missing or refused token is answered the way App Proxy answers a browser — **302 to
  login.microsoftonline.com** — not 401; bearerd must recognise that.
* **Assignment** ("Troubleshoot 'corporate app can't be accessed'": *Forbidden* — the user isn't
  assigned): with ``assignment_required`` on the app's registration, a caller not assigned gets
  App Proxy's 403 page "This corporate app can't be accessed".
* **Connector and backend failures** (same article and "Troubleshoot application proxy problems":
  *Bad gateway* — the connector can't reach the backend; *Gateway time-out* — no working
  connector, or "The connector timed out"): 502 and 504 HTML pages; the backend timeout is the
  app's ``applicationServerTimeout`` (Microsoft Graph's onPremisesPublishing: 85 s "default",
  180 s "long"), ``backend_timeout_s`` here.
* **Response headers** (Microsoft's App Proxy support notes on Fiddler traces): every answer
  carries ``x-ms-proxy-app-id``, ``-group-id``, ``-subscription-id``, ``-service-name``,
  ``-data-center``, ``-transaction-id``; ``x-ms-proxy-connector-id`` when a connector handled the
  request (so every backend answer has one); ``x-ms-proxy-error-details`` (``BackendTimeOut``,
  ``BackendServiceUnavailable``, ``EmptyConnectorGroup``) only on App Proxy's own error pages.
* **Continuous access evaluation** ("Continuous access evaluation" and "Claims challenges, claims
  requests and client capabilities"): with ``require_auth_context``, a token lacking that
  ``acrs`` value is answered with a 401 claims challenge — but only when the token says its client
  is CAE-capable (``xms_cc`` contains ``cp1``); other clients' tokens are accepted as they are.
* **Access cookie** ("Cookie settings for accessing on-premises applications"): an
  ``AzureAppProxyAccessCookie_<app id>_1.1`` cookie, secure and HTTP-only, persistent until the
  access token it was issued for expires; App Proxy's cookies never reach the backend.

A valid request goes to the internal backend byte for byte (raw path and query, streamed body),
and backend ``Location`` headers are translated to the external URL as App Proxy's header
translation does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from bearerd.emulator.entra import EntraEmulator
from bearerd.emulator.registrations import AppRegistration
from bearerd.emulator.wsrelay import relay
from bearerd.proxy.headers import HOP_BY_HOP

SIGN_IN_HOST = "login.microsoftonline.com"
DEFAULT_BACKEND_TIMEOUT_S = 85.0  # applicationServerTimeout "default"; "long" is 180 s
LONG_BACKEND_TIMEOUT_S = 180.0
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Microsoft Entra application proxy</title>
<style>body{{font-family:"Segoe UI",Helvetica,Arial,sans-serif;margin:48px;color:#222}}
#details{{margin-top:32px;color:#666;font-size:12px}}</style></head>
<body><h1>{headline}</h1><p>{message}</p>
<div id="details"><p>Status Code: {code}</p><p>Application ID: {app_id}</p><p>Transaction ID: {transaction}</p>
<p>Timestamp: {timestamp}</p></div></body></html>
"""

_RIGHT_NOW = "This corporate app can\u2019t be accessed right now."
# kind: (status, "Status Code" on the page, headline, message, via a connector, x-ms-proxy-error-details)
_PAGES: dict[str, tuple[int, str, str, str, bool, str | None]] = {
    "not-assigned": (
        403,
        "Forbidden",
        "This corporate app can\u2019t be accessed.",
        "You are not authorized to access this application. Authorization failed. Make sure to assign the user with "
        "access to this application.",
        False,
        None,
    ),
    "no-connector": (
        504,
        "GatewayTimeout",
        "The corporate app cannot be accessed.",
        "Make sure the Microsoft Entra private network connector is properly installed and registered, and that the "
        "app is assigned to a connector group with an active connector.",
        False,
        "EmptyConnectorGroup",
    ),
    "backend-timeout": (
        504,
        "GatewayTimeout",
        _RIGHT_NOW,
        "Please try again later\u2026 The connector timed out.",
        True,
        "BackendTimeOut",
    ),
    "backend-unreachable": (
        502,
        "BadGateway",
        _RIGHT_NOW,
        "Please try again later\u2026 The connector could not reach the back-end application.",
        True,
        "BackendServiceUnavailable",
    ),
}


@dataclass(frozen=True)
class SeenRequest:
    method: str
    raw_path: str
    claims: dict[str, Any]
    headers: list[tuple[str, str]]


class AppProxyEmulator:
    def __init__(
        self,
        name: str,
        external_url: str,
        backend_url: str,
        entra: EntraEmulator,
        *,
        registration: AppRegistration | None = None,
        accept_app_only: bool = True,
        required_scope: str | None = None,
    ) -> None:
        self.name = name
        self.external_url = external_url if external_url.endswith("/") else external_url + "/"
        self.backend_url = backend_url.rstrip("/")
        self.entra = entra
        # Real App Proxy apps get the external URL, with its trailing slash, as Application ID URI.
        self.registration = registration or entra.register_resource(self.external_url)
        # Which `aud` values pre-authentication accepts: the app's GUID and its identifier URIs.
        self.accepted_audiences: set[str] = set(self.registration.identifiers())
        self.accept_app_only = accept_app_only
        self.required_scope = required_scope
        self.backend_timeout_s = DEFAULT_BACKEND_TIMEOUT_S
        self.connector_group_empty = False  # no active connector: every request gets the 504 page
        self.connector_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"connector.{name}.appproxy.emulator"))
        self.group_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"group.{name}.appproxy.emulator"))
        self.requests_seen: list[SeenRequest] = []
        self._seen_more = asyncio.Event()  # set at every new request seen, for tests waiting on one
        self.rejections: list[str] = []
        self.pages: list[str] = []  # the error pages served (their x-ms-proxy-error-details or status code)
        self._reject_next = 0
        # Continuous access evaluation: tokens of capable clients must carry this authentication context.
        self.required_auth_context: str | None = None
        self.challenges = 0
        # App Proxy's access cookie: set on answers, expected back, never passed to the backend.
        self.session_cookie = f"AzureAppProxyAccessCookie_{self.registration.app_id}_1.1"
        self.cookies_seen: list[str | None] = []
        self._session: aiohttp.ClientSession | None = None

    def _saw(self, seen: SeenRequest) -> None:
        self.requests_seen.append(seen)
        self._seen_more.set()

    async def wait_for_requests(self, count: int, within_s: float = 10) -> None:
        """Until this app has forwarded ``count`` requests in all (tests: "the request is in flight")."""
        async with asyncio.timeout(within_s):
            while len(self.requests_seen) < count:
                self._seen_more.clear()
                await self._seen_more.wait()

    @property
    def app_id(self) -> str:
        return self.registration.app_id

    @property
    def app_id_uri(self) -> str:
        return self.registration.app_id_uri

    @property
    def scope(self) -> str:
        return self.app_id_uri + "/.default"

    def accept_only_app_id_audience(self) -> None:
        """Refuse tokens whose ``aud`` is the app ID URI (sign-in redirect); only the GUID form works."""
        self.accepted_audiences = {self.app_id}

    def reject_next(self, count: int = 1) -> None:
        """Refuse the next ``count`` valid tokens (as if revoked), to exercise bearerd's retry."""
        self._reject_next += count

    def require_auth_context(self, value: str | None) -> None:
        """From now on answer CAE-capable clients' tokens without ``acrs`` ⊇ {value} with a claims challenge."""
        self.required_auth_context = value

    def _proxy_headers(self, connector: bool, error: str | None = None) -> dict[str, str]:
        """The x-ms-proxy-* headers App Proxy adds to every answer."""
        headers = {
            "x-ms-proxy-app-id": self.app_id,
            "x-ms-proxy-group-id": self.group_id,
            "x-ms-proxy-subscription-id": self.entra.tenant_id,
            "x-ms-proxy-service-name": "proxy-appproxy-emu-01",
            "x-ms-proxy-data-center": "EMU",
            "x-ms-proxy-transaction-id": str(uuid.uuid4()),
        }
        if connector:
            headers["x-ms-proxy-connector-id"] = self.connector_id
        if error:
            headers["x-ms-proxy-error-details"] = error
        return headers

    def _error_page(self, kind: str) -> web.Response:
        """App Proxy's own page for ``kind`` (``_PAGES``), with its headers."""
        status, code, headline, message, connector, error = _PAGES[kind]
        headers = self._proxy_headers(connector, error)
        self.pages.append(error or code)
        page = _PAGE.format(
            headline=headline,
            message=message,
            code=code,
            app_id=self.app_id,
            transaction=headers["x-ms-proxy-transaction-id"],
            timestamp=time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        )
        return web.Response(status=status, text=page, content_type="text/html", headers=headers)

    def _claims_challenge(self) -> web.Response:
        self.challenges += 1
        claims = {"access_token": {"acrs": {"essential": True, "value": self.required_auth_context}}}
        encoded = base64.b64encode(json.dumps(claims).encode()).decode()
        headers = self._proxy_headers(connector=False)
        headers["WWW-Authenticate"] = (
            f'Bearer realm="", authorization_uri="https://{SIGN_IN_HOST}/common/oauth2/authorize", '
            f'error="insufficient_claims", claims="{encoded}"'
        )
        return web.Response(status=401, headers=headers, text="insufficient claims\n")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.cleanup_ctx.append(self._client_session)
        return app

    async def _client_session(self, app: web.Application) -> Any:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        yield
        await self._session.close()

    def _sign_in(self, reason: str) -> web.Response:
        self.rejections.append(reason)
        location = (
            f"https://{SIGN_IN_HOST}/{self.entra.tenant_id}/oauth2/authorize?response_type=code"
            f"&client_id={quote(self.app_id, safe='')}&redirect_uri={quote(self.external_url, safe='')}"
            "&response_mode=form_post&scope=openid"
        )
        headers = self._proxy_headers(connector=False)
        headers.update({"Location": location, "Content-Type": "text/html; charset=utf-8"})
        page = f'<html><body>Object moved to <a href="{location}">here</a>.</body></html>'
        return web.Response(status=302, headers=headers, text=page)

    async def _websocket(self, request: web.Request, claims: dict[str, Any]) -> web.StreamResponse:
        """App Proxy passes WebSockets through once the handshake's token is verified."""
        assert self._session is not None  # noqa: S101 - created by cleanup_ctx before serving
        self._saw(SeenRequest(request.method, request.raw_path, claims, []))
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        url = URL(self.backend_url + request.raw_path, encoded=True)
        async with self._session.ws_connect(url, protocols=protocols, max_msg_size=0) as backend:
            client = web.WebSocketResponse(protocols=(backend.protocol,) if backend.protocol else (), max_msg_size=0)
            await client.prepare(request)
            await relay(client, backend)
            return client

    def _verify(self, request: web.Request) -> dict[str, Any] | str:
        """The request's token claims, or why it was refused."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return "missing bearer token"
        verdict = self.verify_token(auth[len("Bearer ") :])
        if isinstance(verdict, dict) and self._reject_next > 0:
            self._reject_next -= 1
            return "token revoked (test hook)"
        return verdict

    def verify_token(self, token: str) -> dict[str, Any] | str:
        """What App Proxy checks of a token for this app: its claims, or why it is refused."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return "malformed token"
        key = self.entra.public_keys().get(str(kid))
        if key is None:
            return "unknown signing key"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=sorted(self.accepted_audiences),
                leeway=5,
                options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            return "token expired"
        except jwt.ImmatureSignatureError:
            return "token not yet valid"
        except jwt.InvalidAudienceError:
            return "wrong audience"
        except jwt.InvalidSignatureError:
            return "bad signature"
        except jwt.PyJWTError as exc:
            return f"invalid token ({type(exc).__name__})"
        if claims.get("iss") != self.entra.tokens.issuer_for(2 if claims.get("ver") == "2.0" else 1):
            return "wrong issuer"
        if claims.get("tid") != self.entra.tenant_id:
            return "wrong tenant"
        scp = str(claims.get("scp", ""))
        if not scp and not self.accept_app_only:
            return "app-only tokens not accepted"
        if scp and self.required_scope and self.required_scope not in scp.split():
            return "missing required scope"
        return claims

    def _cae_challenge_due(self, claims: dict[str, Any]) -> bool:
        """A claims challenge goes only to clients that said they can answer one (xms_cc: cp1)."""
        if self.required_auth_context is None or "cp1" not in claims.get("xms_cc", []):
            return False
        return self.required_auth_context not in claims.get("acrs", [])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        verdict = self._verify(request)
        if isinstance(verdict, str):
            # The body is not read: App Proxy redirects before accepting it.
            return self._sign_in(verdict)
        principal = str(verdict.get("upn") or verdict.get("appid") or verdict.get("azp") or "")
        if not self.registration.may_use(principal):
            return self._error_page("not-assigned")
        if self._cae_challenge_due(verdict):
            return self._claims_challenge()
        if self.connector_group_empty:
            return self._error_page("no-connector")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, verdict)
        headers: CIMultiDict[str] = CIMultiDict()
        named = {t.strip().lower() for v in request.headers.getall("Connection", ()) for t in v.split(",")}
        self.cookies_seen.append(request.cookies.get(self.session_cookie))
        for key, value in request.headers.items():
            lowered = key.lower()
            if lowered in HOP_BY_HOP or lowered in named or lowered in ("host", "authorization"):
                continue
            if lowered == "cookie":
                value = "; ".join(p for p in value.split("; ") if not p.lower().startswith("azureappproxy"))
                if not value:
                    continue
            headers.add(key, value)
        self._saw(SeenRequest(request.method, request.raw_path, verdict, list(headers.items())))
        return await self._forward(request, headers, int(verdict["exp"]))

    async def _forward(self, request: web.Request, headers: CIMultiDict[str], token_exp: int) -> web.StreamResponse:
        """The connector's part: the backend's answer within the backend timeout, or App Proxy's page."""
        assert self._session is not None  # noqa: S101 - created by cleanup_ctx before serving
        url = URL(self.backend_url + request.raw_path, encoded=True)
        data = request.content if request.body_exists else None
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.backend_timeout_s)
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False, timeout=timeout
            )
        except TimeoutError:
            return self._error_page("backend-timeout")
        except aiohttp.ClientConnectionError:
            return self._error_page("backend-unreachable")
        async with upstream:
            out: CIMultiDict[str] = CIMultiDict(self._proxy_headers(connector=True))
            upstream_named = {
                t.strip().lower() for v in upstream.headers.getall("Connection", ()) for t in v.split(",")
            }
            for key, value in upstream.headers.items():
                lowered = key.lower()
                if lowered in HOP_BY_HOP or lowered in upstream_named:
                    continue
                if lowered == "location" and value.startswith(self.backend_url):
                    value = self.external_url.rstrip("/") + value[len(self.backend_url) :]
                out.add(key, value)
            out.add("Set-Cookie", self._access_cookie(token_exp))
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionError, aiohttp.ClientError, TimeoutError):
                # Either side went away mid-body: cut the other side too, as a real proxy does.
                if request.transport is not None:
                    request.transport.close()
            return response

    def _access_cookie(self, token_exp: int) -> str:
        """The access cookie, persistent until the access token it stands for expires."""
        max_age = max(0, token_exp - int(time.time()))
        return (
            f"{self.session_cookie}=s{len(self.cookies_seen)}; max-age={max_age}; "
            f"expires={formatdate(token_exp, usegmt=True)}; path=/; secure; HttpOnly; SameSite=None"
        )
