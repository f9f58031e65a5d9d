"""The doctor's interpretation of what it saw: each answer → OK, or the reason and the fix.

Pure: answers, exceptions and claims are built here; the checks against the emulator are in
``tests/system/test_doctor.py``."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from bearerd import doctor
from bearerd.doctor import RouteReport, Step
from bearerd.h1 import UpstreamConnectError, UpstreamTLSError
from bearerd.proxy.retry import Answer, sign_in_hosts

HOSTS = sign_in_hosts("https://login.microsoftonline.com/contoso")
URL = "https://secretapi-contoso.msappproxy.net/"
GUID = "1b4f0000-0000-4000-8000-0000000000aa"
URI_CLAIMS = {"aud": URL, "appid": "cid", "roles": ["Api.Access"], "exp": 2_000_000_000}
SIGN_IN = Answer(302, "https://login.microsoftonline.com/contoso/oauth2/authorize?client_id=x")


def probe(answer: Answer, claims: dict[str, object] = URI_CLAIMS, delegated: bool = False, **kw: object) -> Step:
    headers = kw.get("headers", {})
    head = kw.get("head", b"")
    return doctor.probe_step(URL, answer, headers, head, 12.3, hosts=HOSTS, claims=claims, delegated=delegated)  # type: ignore[arg-type]


def test_sign_in_redirect_lists_causes_try_app_id_first() -> None:
    step = probe(SIGN_IN)
    assert step.ok is False and "App Proxy refused the token" in step.summary
    assert step.fix is not None and step.fix.startswith("1. the app doesn't accept the audience")
    assert "set app_id = " in step.fix.split("2.")[0]
    assert "2. the app takes user tokens only" in step.fix


def test_sign_in_with_a_guid_audience_and_a_user_token_does_not_suggest_those() -> None:
    step = probe(SIGN_IN, {"aud": GUID, "scp": "user_impersonation"}, delegated=True)
    assert step.fix is not None and "set app_id" not in step.fix and "user tokens only" not in step.fix
    assert step.fix.startswith("1. the token is for another app")


def test_app_proxy_page_is_explained_with_its_problem_type() -> None:
    headers = {"x-ms-proxy-app-id": GUID, "x-ms-proxy-error-details": "BackendTimeOut"}
    step = probe(Answer(504), headers=headers, head=b"<h1>This corporate app can't be accessed right now.</h1>")
    assert step.ok is False and step.facts["problem"] == "app-proxy-timeout"
    assert step.fix is not None and "85 s" in step.fix


def test_answers_from_the_app_are_ok_with_latency() -> None:
    step = probe(Answer(404))
    assert step.ok is True and "→ 404 from the app in 12 ms" in step.summary
    assert step.facts == {"url": URL, "status": 404, "latency_ms": 12.3}
    challenge = 'Bearer error="insufficient_claims", claims="' + base64.b64encode(b'{"a":1}').decode() + '"'
    assert probe(Answer(401, None, (challenge,))).ok is True  # the daemon answers claims challenges
    plain_401 = probe(Answer(401))
    assert plain_401.ok is False and plain_401.fix is not None and "move:X-Original-Authorization" in plain_401.fix


def test_token_failure_splits_the_fix_off() -> None:
    step = doctor.token_failure_step("identity provider refused (invalid_client): AADSTS7000215: x — fix: do y", None)
    assert (step.ok, step.summary, step.fix) == (False, "identity provider refused (invalid_client): AADSTS7000215: x",
                                                 "do y")  # fmt: skip
    login = doctor.token_failure_step(
        "no signed-in user in /s; run: bearerd login alice -c f", "bearerd login alice -c f"
    )
    assert login.fix == "bearerd login alice -c f"


def test_claims_are_shown_never_the_token() -> None:
    payload = {**URI_CLAIMS, "ver": "1.0", "tid": "t", "xms_cc": ["cp1"], "uti": "u", "oid": "o"}
    token = "e30." + base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=") + ".sig"
    claims = doctor.unverified_claims(token)
    step = doctor.token_step(claims, now=2_000_000_000 - 600)
    assert step.facts["claims"] == {k: payload[k] for k in ("aud", "iss", "ver", "tid", "appid", "roles", "xms_cc",
                                                            "exp") if k in payload}  # fmt: skip
    assert "exp=2033-05-18 03:33:20Z (in 10 min)" in step.summary and token not in step.summary
    assert doctor.unverified_claims("not-a-jwt") == {}


@pytest.mark.parametrize(
    ("error", "says", "fix"),
    [
        (requests.exceptions.SSLError("certificate verify failed"), "TLS", "ca_file"),
        (requests.exceptions.ProxyError("407"), "outbound proxy", "HTTPS_PROXY"),
        (requests.exceptions.ConnectTimeout("timed out"), "did not answer in time", "timeout_s"),
        (requests.exceptions.ConnectionError("NameResolutionError: Name or service not known"), "DNS", "DNS"),
        (requests.exceptions.ConnectionError("[Errno 111] Connection refused"), "refused", "authority"),
    ],
)
def test_identity_provider_failures_are_named(error: Exception, says: str, fix: str) -> None:
    step = doctor.identity_failure_step("login.microsoftonline.com", error)
    assert step.ok is False and says in step.summary and step.fix is not None and fix in step.fix


def test_discovery_answers() -> None:
    ok = doctor.discovery_step("https://login/t", 200, {"token_endpoint": "https://login/t/token"}, 5)
    assert ok.ok is True
    unknown = doctor.discovery_step("https://login/x", 400, {"error_codes": [90002], "error_description": ""}, 5)
    assert unknown.ok is False and "AADSTS90002" in unknown.summary and unknown.fix is not None
    assert "tenant_id" in unknown.fix
    assert doctor.discovery_step("https://login/x", 404, None, 5).ok is False


def test_upstream_failures_are_named() -> None:
    timeout = doctor.upstream_failure_step(URL, TimeoutError())
    assert timeout.ok is False and "no answer in time" in timeout.summary
    refused = doctor.upstream_failure_step(URL, UpstreamConnectError("Connection refused"))
    assert "cannot connect (Connection refused)" in refused.summary and refused.fix is not None
    dns = doctor.upstream_failure_step(
        URL, UpstreamConnectError("cannot resolve app.example: Name or service not known")
    )
    assert "DNS" in dns.summary
    proxy = doctor.upstream_failure_step(URL, UpstreamConnectError("egress proxy refused CONNECT (403)"))
    assert "outbound proxy" in proxy.summary and proxy.fix is not None and "HTTPS_PROXY" in proxy.fix
    tls = doctor.upstream_failure_step(URL, UpstreamTLSError("certificate verify failed", verify_failed=True))
    assert "certificate could not be verified" in tls.summary and tls.fix is not None and "ca_file" in tls.fix


def test_a_route_passes_only_when_no_step_failed() -> None:
    ok = RouteReport("r", "c", "client_secret", [Step("config", True, "x"), Step("upstream", True, "y")])
    skipped_only = RouteReport("r", "c", "k", [doctor.skipped("config")])
    failed = RouteReport("r", "c", "k", [Step("config", True, "x"), Step("token", False, "z", "do w")])
    assert ok.ok and not skipped_only.ok and not failed.ok
    text = doctor.render_text("f.toml", [ok, failed])
    assert "  FAIL  token              z\n" in text and "fix: do w" in text
    assert text.endswith("1 of 2 route(s) failing: r\n")
    report = json.loads(doctor.render_json("f.toml", [ok]))
    assert report["ok"] is True and report["routes"][0]["steps"][0] == {
        "step": "config", "ok": True, "summary": "x", "fix": None, "facts": {}
    }  # fmt: skip


def test_a_config_that_does_not_load_is_one_failed_step() -> None:
    (report,) = doctor.config_failure("f.toml", ["[routes.x] app_id: not a GUID — fix it"])
    assert report.steps[0].ok is False and "app_id: not a GUID" in report.steps[0].summary
    assert [s.ok for s in report.steps[1:]] == [None, None, None]
