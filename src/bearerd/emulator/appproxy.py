"""One app published through Entra application proxy: verify the token, then forward.

Verification is what the service does with pre-authentication: an RS256 signature by a key the
tenant publishes, issuer, audience = the app's ID URI, tenant, ``exp``/``nbf``. A missing or bad
token is answered the way App Proxy answers a browser — **302 to login.microsoftonline.com** — not
401; bearerd must recognise that. A valid request goes to the internal backend byte for byte
(raw path and query, streamed body), and backend ``Location`` headers are translated to the
external URL as App Proxy's header translation does.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from bearerd.emulator.entra import EntraEmulator
from bearerd.emulator.wsrelay import relay
from bearerd.proxy.headers import HOP_BY_HOP

SIGN_IN_HOST = "login.microsoftonline.com"


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
        app_id_uri: str | None = None,
        accept_app_only: bool = True,
        required_scope: str | None = None,
    ) -> None:
        self.name = name
        self.external_url = external_url if external_url.endswith("/") else external_url + "/"
        self.backend_url = backend_url.rstrip("/")
        self.entra = entra
        # Real App Proxy apps get the external URL, with its trailing slash, as Application ID URI.
        self.app_id_uri = app_id_uri or self.external_url
        self.accept_app_only = accept_app_only
        self.required_scope = required_scope
        self.requests_seen: list[SeenRequest] = []
        self._seen_more = asyncio.Event()  # set at every new request seen, for tests waiting on one
        self.rejections: list[str] = []
        self._reject_next = 0
        # Continuous access evaluation: tokens must carry this authentication context (acrs) value.
        self.required_auth_context: str | None = None
        self.challenges = 0
        # App Proxy's own session cookie: set on answers, expected back, never passed to the backend.
        self.session_cookie = "AzureAppProxyAccessCookie_" + name
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
    def scope(self) -> str:
        return self.app_id_uri + "/.default"

    def reject_next(self, count: int = 1) -> None:
        """Refuse the next ``count`` valid tokens (as if revoked), to exercise bearerd's retry."""
        self._reject_next += count

    def require_auth_context(self, value: str | None) -> None:
        """From now on answer tokens without ``acrs`` ⊇ {value} with a claims challenge (CAE)."""
        self.required_auth_context = value

    def _claims_challenge(self) -> web.Response:
        self.challenges += 1
        claims = {"access_token": {"acrs": {"essential": True, "value": self.required_auth_context}}}
        encoded = base64.b64encode(json.dumps(claims).encode()).decode()
        return web.Response(
            status=401,
            headers={
                "WWW-Authenticate": f'Bearer realm="", authorization_uri="https://{SIGN_IN_HOST}/common/oauth2/'
                f'authorize", error="insufficient_claims", claims="{encoded}"'
            },
            text="insufficient claims\n",
        )

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
            f"&client_id={quote(self.app_id_uri, safe='')}&redirect_uri={quote(self.external_url, safe='')}"
            "&response_mode=form_post&scope=openid"
        )
        return web.Response(
            status=302,
            headers={"Location": location, "Content-Type": "text/html; charset=utf-8"},
            text=f'<html><body>Object moved to <a href="{location}">here</a>.</body></html>',
        )

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
                audience=self.app_id_uri,
                issuer=self.entra.issuer,
                leeway=5,
                options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            return "token expired"
        except jwt.ImmatureSignatureError:
            return "token not yet valid"
        except jwt.InvalidAudienceError:
            return "wrong audience"
        except jwt.InvalidIssuerError:
            return "wrong issuer"
        except jwt.InvalidSignatureError:
            return "bad signature"
        except jwt.PyJWTError as exc:
            return f"invalid token ({type(exc).__name__})"
        if claims.get("tid") != self.entra.tenant_id:
            return "wrong tenant"
        scp = str(claims.get("scp", ""))
        if not scp and not self.accept_app_only:
            return "app-only tokens not accepted"
        if scp and self.required_scope and self.required_scope not in scp.split():
            return "missing required scope"
        return claims

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        verdict = self._verify(request)
        if isinstance(verdict, str):
            # The body is not read: App Proxy redirects before accepting it.
            return self._sign_in(verdict)
        if self.required_auth_context is not None and self.required_auth_context not in verdict.get("acrs", []):
            return self._claims_challenge()
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
        assert self._session is not None  # noqa: S101 - created by cleanup_ctx before serving
        url = URL(self.backend_url + request.raw_path, encoded=True)
        data = request.content if request.body_exists else None
        async with self._session.request(
            request.method, url, headers=headers, data=data, allow_redirects=False
        ) as upstream:
            out: CIMultiDict[str] = CIMultiDict()
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
            out.add("Set-Cookie", f"{self.session_cookie}=s{len(self.cookies_seen)}; path=/; secure; HttpOnly")
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionError, aiohttp.ClientError):
                # Either side went away mid-body: cut the other side too, as a real proxy does.
                if request.transport is not None:
                    request.transport.close()
            return response
