"""``bearerd doctor``: each route checked end to end, in order, each step OK or its reason and fix.

The first run against a real tenant is where a user fails, and the failure shows far from its
cause (App Proxy's sign-in redirect says nothing about why). So the doctor walks a route the way a
request does and stops at the first broken link:

1. **config** — the route, its credential and the scopes it derives (``config/scopes.py``);
2. **identity provider** — the authority's discovery document over the credential's own trust
   and proxy; DNS, TLS and proxy failures are named;
3. **token** — one acquisition through the daemon's own providers; the token's claims are shown
   (``aud``, ``iss``, ``ver``, ``tid``, ``appid``/``azp``, ``scp``/``roles``, ``exp``), never the
   token; AADSTS refusals come explained (``tokens/aadsts.py``);
4. **upstream** — one GET of ``probe_path`` with the token, interpreted: App Proxy's sign-in
   redirect (the likely causes, in order — "try ``app_id``" first), App Proxy's own 403/502/504
   pages (``proxy/appproxy_errors.py``), or OK with the latency.

The same steps and the same interpretation serve the admin listener's status page
(``daemon/statuspage.py``), built from the running daemon's providers instead of new
acquisitions (``live_reports``). Text for a terminal, JSON for scripts; exit 0 only when every
route passes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bearerd.config.loader import Config
from bearerd.config.schema import DeviceCodeCredential, ManagedIdentityCredential, Settings
from bearerd.config.scopes import GUID_RE, scope_form
from bearerd.errors import ProxyError, first_line
from bearerd.h1 import (
    PoolOptions,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeoutError,
    UpstreamTLSError,
)
from bearerd.proxy import appproxy_errors
from bearerd.proxy.retry import Answer, claims_challenge, refusal, sign_in_hosts
from bearerd.proxy.routes import Route, describe_entry
from bearerd.proxy.upstream import read_head

if TYPE_CHECKING:
    from bearerd.proxy.routing import Routing
    from bearerd.tokens.provider import ProviderStatus

STEPS = ("config", "identity provider", "token", "upstream")
SHOWN_CLAIMS = ("aud", "iss", "ver", "tid", "appid", "azp", "upn", "scp", "roles", "xms_cc", "exp")
_FORM_NAMES = {
    "scopes": "as written in scopes",
    "app_id": "from app_id",
    "audience": "from audience",
    "upstream": "default: the upstream's URL as app ID URI",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a route's check: ``ok`` None means it was skipped (an earlier step failed)."""

    name: str
    ok: bool | None
    summary: str
    fix: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "summary": self.summary, "fix": self.fix, "facts": self.facts}


@dataclass(frozen=True, slots=True)
class RouteReport:
    route: str
    credential: str
    kind: str
    steps: list[Step]
    login_command: str | None = None  # user credentials: how to sign in

    @property
    def ok(self) -> bool:
        return all(step.ok is not False for step in self.steps) and any(step.ok for step in self.steps)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "credential": self.credential,
            "kind": self.kind,
            "ok": self.ok,
            "login_command": self.login_command,
            "steps": [s.to_json() for s in self.steps],
        }


def skipped(name: str, why: str = "skipped: an earlier step failed") -> Step:
    return Step(name, None, why)


# -- the steps' interpretation (pure) -----------------------------------------------------------


def login_command(settings: Settings, route: str, config_file: str) -> str | None:
    credential = settings.routes[route].credential
    if isinstance(settings.credentials[credential], DeviceCodeCredential):
        return f"bearerd login {credential} -c {config_file}"
    return None


def config_step(settings: Settings, route: str) -> Step:
    rs = settings.routes[route]
    scopes = settings.route_scopes(route)
    form = scope_form(rs.scopes, rs.app_id, rs.audience)
    summary = (
        f"{describe_entry(settings, route)} → {rs.upstream} with credential {rs.credential!r}; "
        f"scope {' '.join(scopes)} ({_FORM_NAMES[form]})"
    )
    return Step("config", True, summary, facts={"scopes": list(scopes), "scope_form": form, "upstream": rs.upstream})


def unverified_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, read without verifying it (to show its claims; the token itself is never shown)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def shown_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {name: claims[name] for name in SHOWN_CLAIMS if name in claims}


def _when(epoch: float, now: float) -> str:
    left = int(epoch - now)
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))
    return f"{stamp} (in {left // 60} min)" if left >= 0 else f"{stamp} (expired)"


def token_step(claims: Mapping[str, Any], now: float) -> Step:
    shown = shown_claims(claims)
    parts = [f"{k}={' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shown.items() if k != "exp"]
    if "exp" in shown:
        parts.append(f"exp={_when(float(shown['exp']), now)}")
    return Step("token", True, "acquired: " + ", ".join(parts), facts={"claims": shown})


def token_failure_step(error: str, login: str | None) -> Step:
    """A failed acquisition: the reason, and the fix an AADSTS explanation or a login names."""
    reason, _, fix = error.partition(" — fix: ")
    if not fix and login is not None and "bearerd login" in reason:
        fix = login
    return Step("token", False, reason, fix or None)


def sign_in_causes(claims: Mapping[str, Any], delegated: bool) -> str:
    """Why App Proxy would send a valid token to sign-in, most likely first."""
    aud = str(claims.get("aud", ""))
    causes = []
    if not GUID_RE.match(aud):
        causes.append(
            f"the app doesn't accept the audience {aud!r} (the app ID URI form): set "
            'app_id = "<the App Proxy app\'s application (client) ID>" on the route'
        )
    if not delegated:
        causes.append(
            "the app takes user tokens only (App Proxy's documented path for APIs): use a device_code credential, "
            "or allow app-only callers on the app"
        )
    causes.append("the token is for another app or tenant: check that upstream, app_id/scopes and tid name this app")
    causes.append(
        "the caller lacks the app's permission: the user_impersonation delegated permission (user tokens) or an "
        "app role granted with admin consent (app-only tokens)"
    )
    return " ".join(f"{n}. {cause};" for n, cause in enumerate(causes, 1)).rstrip(";")


def probe_step(
    url: str,
    answer: Answer,
    headers: Mapping[str, str],
    head: bytes,
    latency_ms: float,
    *,
    hosts: frozenset[str],
    claims: Mapping[str, Any],
    delegated: bool,
) -> Step:
    """What the upstream's answer to the probe means."""
    facts: dict[str, Any] = {"url": url, "status": answer.status, "latency_ms": round(latency_ms, 1)}
    problem = appproxy_errors.classify(answer.status, headers, head)
    if problem is not None:
        reason, _, fix = problem.detail.partition(" — fix: ")
        return Step(
            "upstream", False, f"GET {url} → {answer.status}: {reason}", fix or None, facts | {"problem": problem.slug}
        )
    if refusal(answer, hosts) == "sign-in":
        return Step(
            "upstream",
            False,
            f"GET {url} → {answer.status} to sign-in: App Proxy refused the token",
            sign_in_causes(claims, delegated),
            facts,
        )
    if claims_challenge(answer) is not None:
        return Step(
            "upstream",
            True,
            f"GET {url} → 401 claims challenge (continuous access evaluation) in {latency_ms:.0f} ms: the daemon "
            "answers it with a new token and retries",
            facts=facts,
        )
    if answer.status == 401:
        return Step(
            "upstream",
            False,
            f"GET {url} → 401: App Proxy let the token through but the backend refused it",
            "the backend has its own authentication: send the client's credentials with client_authorization = "
            '"move:X-Original-Authorization" (or passthrough), or turn on single sign-on for the app',
            facts,
        )
    return Step(
        "upstream",
        True,
        f"GET {url} → {answer.status} from the app in {latency_ms:.0f} ms (App Proxy accepted the token)",
        facts=facts,
    )


def upstream_failure_step(url: str, error: BaseException) -> Step:
    """The probe could not get an answer: DNS, TLS, proxy, refusal or timeout, named."""
    if isinstance(error, UpstreamTLSError) and error.verify_failed:
        reason, fix = (
            "TLS: the upstream's certificate could not be verified",
            "add its CA with ca_file on the credential",
        )
    elif isinstance(error, UpstreamConnectError) and error.reason.startswith("egress proxy"):
        reason, fix = f"the outbound proxy failed ({error.reason})", "check HTTPS_PROXY / NO_PROXY"
    elif isinstance(error, UpstreamConnectError) and error.reason.startswith("cannot resolve"):
        reason, fix = "DNS: the upstream's host name does not resolve", "check upstream (the app's external URL)"
    elif isinstance(error, UpstreamConnectError):
        reason = f"cannot connect ({error.reason})"
        fix = "check upstream and the network path (firewall, HTTPS_PROXY)"
    elif isinstance(error, UpstreamTimeoutError | TimeoutError):
        reason, fix = "no answer in time", "check the network path, or raise the route's timeout_s"
    elif isinstance(error, UpstreamError):
        reason, fix = f"the upstream failed ({error})", "check upstream and the network path"
    else:
        reason, fix = f"the request failed ({type(error).__name__})", "check upstream and the network path"
    return Step("upstream", False, f"GET {url}: {reason}", fix, {"url": url})


def identity_failure_step(host: str, error: BaseException) -> Step:
    """Why the identity provider could not be reached, for a ``requests`` exception."""
    import requests

    text = str(error)
    if isinstance(error, requests.exceptions.SSLError):
        reason = f"TLS: {host}'s certificate could not be verified"
        fix = "a TLS-inspecting proxy or private CA: add its CA certificate with ca_file on the credential"
    elif isinstance(error, requests.exceptions.ProxyError):
        reason, fix = "the outbound proxy refused or failed the connection", "check HTTPS_PROXY / NO_PROXY"
    elif isinstance(error, requests.exceptions.Timeout):
        reason, fix = (
            f"{host} did not answer in time",
            "check the firewall / proxy, or raise the credential's timeout_s",
        )
    elif any(m in text for m in ("Name or service not known", "NameResolutionError", "nodename nor servname")) or (
        "Temporary failure in name resolution" in text
    ):
        reason, fix = f"DNS: {host} does not resolve", "check the authority's host name and DNS (or set HTTPS_PROXY)"
    elif "Connection refused" in text:
        reason, fix = f"{host} refused the connection", "check the authority (host and port) and the network path"
    else:
        reason, fix = f"{host} could not be reached ({type(error).__name__})", "check the authority and the network"
    return Step("identity provider", False, reason, fix)


def discovery_step(authority: str, status: int, body: Any, latency_ms: float) -> Step:
    """What the authority's answer to the discovery request means."""
    from bearerd.tokens import aadsts

    if status == 200 and isinstance(body, dict) and body.get("token_endpoint"):
        return Step("identity provider", True, f"{authority} answers (discovery in {latency_ms:.0f} ms)")
    if isinstance(body, dict):
        explanation = aadsts.explain(body.get("error_codes"), str(body.get("error_description", "")))
        if explanation is not None:
            return Step(
                "identity provider",
                False,
                f"{authority}: AADSTS{explanation.code}: {explanation.meaning}",
                explanation.fix,
            )
    return Step(
        "identity provider",
        False,
        f"{authority} answered HTTP {status} without a discovery document",
        "check authority / tenant_id: the authority must be the Entra endpoint https://HOST/TENANT",
    )


# -- the checks (I/O) ----------------------------------------------------------------------------


def _check_identity_provider(config: Config, credential: str) -> Step:
    """GET the authority's discovery document through the credential's own trust and proxy (blocking)."""
    import requests

    from bearerd.tokens.msal_http import MsalSession, tls_context

    cred = config.settings.credentials[credential]
    if isinstance(cred, ManagedIdentityCredential):
        return skipped(
            "identity provider", "skipped: a managed identity's token service is the host's (the token step asks it)"
        )
    authority: str | None = getattr(cred, "authority_url", None)
    if authority is None:
        return skipped(
            "identity provider", f"skipped: {cred.kind} gets its tokens from its own tool (the token step asks it)"
        )
    session = MsalSession(
        tls_context(str(cred.ca_file) if cred.ca_file else None), config.egress, cred.connect_timeout_s, cred.timeout_s
    )
    started = time.perf_counter()
    try:
        response = session.get(f"{authority}/v2.0/.well-known/openid-configuration")
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        return discovery_step(authority, response.status_code, body, (time.perf_counter() - started) * 1000)
    except requests.RequestException as exc:
        return identity_failure_step(authority.split("/")[2], exc)
    finally:
        session.close()


async def _probe(
    route: Route,
    token: str,
    ssl_context: Any,
    proxy: str | None,
    timeout_s: float,
    pool: UpstreamPool | None,
    extra: Sequence[tuple[str, str]],
) -> tuple[str, Answer, Mapping[str, str], bytes, float] | tuple[str, BaseException]:
    """One GET through bearerd's own upstream client, exactly as the daemon would send it (through
    the daemon's own pool when it is the running daemon asking)."""
    probe_path = route.settings.probe_path  # a path on the upstream (below its base path), not a local one
    target = route.upstream_root if probe_path == "/" else route.upstream_base + probe_path
    url = route.upstream_origin + target
    own = pool is None
    if pool is None:
        https = route.upstream_origin.startswith("https://")
        options = PoolOptions(max_connections=1, connect_timeout_s=route.settings.connect_timeout_s)
        pool = UpstreamPool(
            route.upstream_origin, ssl_context=ssl_context if https else None, proxy=proxy, options=options
        )
    started = time.perf_counter()
    try:
        headers = [("Host", route.upstream_host), *extra, ("Authorization", "Bearer " + token)]
        async with asyncio.timeout(timeout_s):
            response = await pool.request("GET", target, headers, None, read_timeout_s=timeout_s)
            async with response:
                latency = (time.perf_counter() - started) * 1000
                head = b""
                fields = {name: values[0] for name, values in response.index.items()}
                if appproxy_errors.worth_a_look(response.status, fields):
                    head = await read_head(response, appproxy_errors.PEEK_BYTES)
                answer = Answer.of(response)
                return url, answer, fields, head, latency
    except (UpstreamError, TimeoutError) as exc:
        return url, exc
    finally:
        if own:
            await pool.close()


async def probe_route(
    route: Route,
    token: str,
    ssl_context: Any,
    proxy: str | None,
    *,
    hosts: frozenset[str],
    claims: Mapping[str, Any],
    delegated: bool,
    pool: UpstreamPool | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> Step:
    """``extra``: the route's ``set_headers``, sent as every request of the route sends them."""
    result = await _probe(route, token, ssl_context, proxy, route.settings.timeout_s, pool, extra)
    if len(result) == 2:
        return upstream_failure_step(result[0], result[1])
    url, answer, headers, head, latency = result
    return probe_step(url, answer, headers, head, latency, hosts=hosts, claims=claims, delegated=delegated)


def _hosts(settings: Settings, route: str) -> frozenset[str]:
    cred = settings.credentials[settings.routes[route].credential]
    return sign_in_hosts(getattr(cred, "authority_url", None))


async def diagnose(config: Config, routes: Sequence[str]) -> list[RouteReport]:
    """Every step for ``routes``, with new acquisitions through the daemon's own providers."""
    from bearerd.tokens.registry import Providers

    settings = config.settings
    providers = Providers(config)
    reports: list[RouteReport] = []
    try:
        for name in routes:
            rs = settings.routes[name]
            cred = settings.credentials[rs.credential]
            login = login_command(settings, name, config.source_file)
            steps = [
                config_step(settings, name),
                await asyncio.to_thread(_check_identity_provider, config, rs.credential),
            ]
            if steps[-1].ok is False:
                steps += [skipped("token"), skipped("upstream")]
            else:
                provider = providers.for_route(name)
                try:
                    token = await provider.fetch()
                except ProxyError as exc:
                    steps += [
                        token_failure_step(provider.status().last_error or exc.detail, login),
                        skipped("upstream"),
                    ]
                else:
                    claims = unverified_claims(token)
                    client = providers.client(rs.credential)
                    route = Route.build(name, rs)
                    ssl_context = client.ssl_context if route.upstream_origin.startswith("https://") else None
                    steps.append(token_step(claims, time.time()))
                    steps.append(
                        await probe_route(
                            route,
                            token,
                            ssl_context,
                            config.egress.proxy_for(route.upstream_origin + "/"),
                            hosts=_hosts(settings, name),
                            claims=claims,
                            delegated=isinstance(cred, DeviceCodeCredential),
                            extra=[(h.name, h.value.get_secret_value()) for h in config.secrets.headers_for(name)],
                        )
                    )
            reports.append(RouteReport(name, rs.credential, cred.kind, steps, login))
    finally:
        await providers.aclose()
    return reports


async def live_reports(config: Config, routing: Routing, *, probe: bool) -> list[RouteReport]:
    """The running daemon's view: config and token from its providers (no new acquisition), and with
    ``probe`` one request per route with the token it holds."""
    settings = config.settings
    reports = []
    for name, upstream in routing.upstreams.items():
        rs = settings.routes[name]
        cred = settings.credentials[rs.credential]
        login = login_command(settings, name, config.source_file)
        status: ProviderStatus = upstream.provider.status()
        token = upstream.provider.current()
        steps = [config_step(settings, name), skipped("identity provider", "the daemon's acquisitions use it")]
        if token is not None:
            claims = unverified_claims(token)
            steps.append(token_step(claims, time.time()))
            if probe:
                steps.append(
                    await probe_route(
                        upstream.route,
                        token,
                        None,
                        None,
                        hosts=upstream.sign_in_hosts,
                        claims=claims,
                        delegated=isinstance(cred, DeviceCodeCredential),
                        pool=upstream.pool,
                        extra=upstream.headers.add,
                    )
                )
            else:
                steps.append(skipped("upstream", "not probed (add ?probe=1)"))
        elif status.last_error is not None:
            steps += [token_failure_step(status.last_error, login), skipped("upstream")]
        else:
            steps += [Step("token", None, "no token yet: the first acquisition is under way"), skipped("upstream")]
        reports.append(RouteReport(name, rs.credential, cred.kind, steps, login))
    return reports


# -- output --------------------------------------------------------------------------------------

_MARK = {True: "ok  ", False: "FAIL", None: "skip"}


def render_text(config_file: str, reports: Sequence[RouteReport]) -> str:
    lines = [f"bearerd doctor — {config_file}"]
    for report in reports:
        lines += ["", f"route {report.route}  (credential {report.credential}, {report.kind})"]
        for step in report.steps:
            lines.append(f"  {_MARK[step.ok]}  {step.name:<18} {step.summary}")
            if step.fix:
                lines.append(f"        {'':<18} fix: {step.fix}")
        if report.login_command and not report.ok:
            lines.append(f"        {'':<18} sign in: {report.login_command}")
    failing = [r.route for r in reports if not r.ok]
    lines += [
        "",
        f"{len(failing)} of {len(reports)} route(s) failing: {', '.join(failing)}"
        if failing
        else f"all {len(reports)} route(s) OK",
    ]
    return "\n".join(lines) + "\n"


def render_json(config_file: str, reports: Sequence[RouteReport]) -> str:
    report = {"config": config_file, "ok": all(r.ok for r in reports), "routes": [r.to_json() for r in reports]}
    return json.dumps(report, indent=2) + "\n"


def config_failure(config_file: str, problems: Sequence[str]) -> list[RouteReport]:
    """The report when the file itself doesn't load: one pseudo-route with the config step failed."""
    detail = "; ".join(first_line(p, 400) for p in problems)
    return [
        RouteReport(
            "(config)",
            "-",
            "-",
            [
                Step("config", False, detail, "fix the settings named above"),
                skipped("identity provider"),
                skipped("token"),
                skipped("upstream"),
            ],
        )
    ]
