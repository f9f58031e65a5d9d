"""The emulator itself must be strict, or the rest of the suite proves nothing."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bearerd.emulator import EmulatorStack
from bearerd.emulator.entra import ASSERTION_TYPE


@pytest.fixture
async def client(stack: EmulatorStack) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


def token_url(stack: EmulatorStack) -> str:
    return stack.authority + "/oauth2/v2.0/token"


async def post_token(client: aiohttp.ClientSession, stack: EmulatorStack, **form: str) -> tuple[int, dict[str, Any]]:
    data = {"grant_type": "client_credentials", "scope": stack.apps["secretapi"].scope, **form}
    async with client.post(token_url(stack), data=data) as resp:
        return resp.status, await resp.json()


async def test_discovery_document(client: aiohttp.ClientSession, stack: EmulatorStack) -> None:
    async with client.get(stack.authority + "/v2.0/.well-known/openid-configuration") as resp:
        doc = await resp.json()
    assert doc["token_endpoint"] == token_url(stack)
    assert doc["issuer"] == stack.authority + "/v2.0"
    async with client.get(doc["jwks_uri"]) as resp:
        keys = (await resp.json())["keys"]
    assert {k["kid"] for k in keys} == set(stack.entra.public_keys())


async def test_secret_grant_and_refusals(client: aiohttp.ClientSession, stack: EmulatorStack) -> None:
    secret = stack.client_secret_file.read_text()
    status, body = await post_token(client, stack, client_id=stack.secret_client_id, client_secret=secret)
    assert status == 200 and "client_info" not in body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == stack.apps["secretapi"].app_id_uri
    assert claims["iss"] == stack.entra.issuer and claims["tid"] == stack.tenant_id
    assert claims["exp"] - claims["iat"] == 3600

    status, body = await post_token(client, stack, client_id=stack.secret_client_id, client_secret="wrong")
    assert status == 401 and body["error"] == "invalid_client"
    assert "wrong" not in str(body)

    single_slash = stack.apps["secretapi"].app_id_uri.rstrip("/") + "/.default"
    status, body = await post_token(
        client, stack, client_id=stack.secret_client_id, client_secret=secret, scope=single_slash
    )
    assert status == 400 and body["error"] == "invalid_scope" and 500011 in body["error_codes"]


def assertion(stack: EmulatorStack, key: Any, **claims: Any) -> str:
    from bearerd.emulator.pki import thumbprints

    sha1, _ = thumbprints(stack.cert_file.read_bytes())
    import base64

    now = int(time.time())
    payload = {
        "aud": token_url(stack),
        "iss": stack.cert_client_id,
        "sub": stack.cert_client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    x5t = base64.urlsafe_b64encode(sha1).decode()
    return jwt.encode(payload, key, algorithm="RS256", headers={"x5t": x5t})


async def test_assertion_checks(client: aiohttp.ClientSession, stack: EmulatorStack) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(stack.key_file.read_bytes(), password=None)
    form = {"client_id": stack.cert_client_id, "client_assertion_type": ASSERTION_TYPE}
    status, _ = await post_token(client, stack, **form, client_assertion=assertion(stack, key))
    assert status == 200

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    status, body = await post_token(client, stack, **form, client_assertion=assertion(stack, other))
    assert status == 401 and body["error"] == "invalid_client"

    expired = assertion(stack, key, exp=int(time.time()) - 3600, nbf=int(time.time()) - 7200)
    status, body = await post_token(client, stack, **form, client_assertion=expired)
    assert status == 401 and 700024 in body["error_codes"]

    wrong_aud = assertion(stack, key, aud="https://elsewhere/token")
    status, body = await post_token(client, stack, **form, client_assertion=wrong_aud)
    assert status == 401 and 700021 in body["error_codes"]


async def test_app_proxy_refuses_bad_tokens_with_sign_in_redirect(
    client: aiohttp.ClientSession, stack: EmulatorStack
) -> None:
    app, other = stack.apps["secretapi"], stack.apps["otherapi"]
    kid = next(iter(stack.entra.public_keys()))
    signing = stack.entra.tokens._keys[0].private_key
    now = int(time.time())
    good = {
        "aud": app.app_id_uri,
        "iss": stack.entra.issuer,
        "tid": stack.tenant_id,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "appid": "x",
    }
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "missing bearer token": None,
        "token expired": jwt.encode(
            {**good, "exp": now - 60, "iat": now - 700, "nbf": now - 700}, signing, "RS256", {"kid": kid}
        ),
        "wrong audience": jwt.encode({**good, "aud": other.app_id_uri}, signing, "RS256", {"kid": kid}),
        "wrong issuer": jwt.encode({**good, "iss": "https://sts.windows.net/other/"}, signing, "RS256", {"kid": kid}),
        "bad signature": jwt.encode(good, forged_key, "RS256", {"kid": kid}),
        "token not yet valid": jwt.encode({**good, "nbf": now + 600}, signing, "RS256", {"kid": kid}),
    }
    for reason, token in cases.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with client.get(app.external_url + "api/status", headers=headers, allow_redirects=False) as resp:
            assert resp.status == 302, reason
            assert resp.headers["Location"].startswith("https://login.microsoftonline.com/")
        assert app.rejections[-1] == reason
    valid = jwt.encode(good, signing, "RS256", {"kid": kid})
    async with client.get(app.external_url + "api/status", headers={"Authorization": f"Bearer {valid}"}) as resp:
        assert resp.status == 200


async def test_fault_control_endpoint(client: aiohttp.ClientSession, stack: EmulatorStack) -> None:
    base = stack.authority.rsplit("/", 1)[0]
    async with client.post(base + "/_emulator/faults", json={"status": 429, "retry_after_s": 2, "times": 1}) as resp:
        assert resp.status == 200
    secret = stack.client_secret_file.read_text()
    async with client.post(
        token_url(stack),
        data={
            "grant_type": "client_credentials",
            "scope": stack.apps["secretapi"].scope,
            "client_id": stack.secret_client_id,
            "client_secret": secret,
        },
    ) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    async with client.get(base + "/_emulator/calls") as resp:
        assert (await resp.json())["token_calls"] == 1


async def test_tokens_follow_the_apps_registration(client: aiohttp.ClientSession, stack: EmulatorStack) -> None:
    """v1: aud as asked (URI or GUID), sts.windows.net, appid; v2: aud = GUID, login…/v2.0, azp."""
    app = stack.apps["secretapi"]
    secret = stack.client_secret_file.read_text()
    form = {"client_id": stack.secret_client_id, "client_secret": secret}
    claims_for: dict[str, dict[str, Any]] = {}
    for version in (1, 2):
        app.registration.access_token_version = version
        for scope in (app.scope, app.app_id.upper() + "/.default"):
            status, body = await post_token(client, stack, **form, scope=scope)
            assert status == 200, body
            claims_for[f"v{version} {scope}"] = jwt.decode(body["access_token"], options={"verify_signature": False})
    v1_uri, v1_guid, v2_uri, v2_guid = claims_for.values()
    assert v1_uri["aud"] == app.app_id_uri and v1_guid["aud"] == app.app_id.upper()
    assert v1_uri["iss"] == f"https://sts.windows.net/{stack.tenant_id}/" and v1_uri["appid"] == stack.secret_client_id
    assert v1_uri["ver"] == "1.0" and "azp" not in v1_uri
    for v2 in (v2_uri, v2_guid):
        assert v2["aud"] == app.app_id and v2["ver"] == "2.0" and v2["azp"] == stack.secret_client_id
        assert v2["iss"] == f"https://login.microsoftonline.com/{stack.tenant_id}/v2.0" and "appid" not in v2


async def test_cp1_in_the_claims_request_puts_xms_cc_in_the_token(
    client: aiohttp.ClientSession, stack: EmulatorStack
) -> None:
    form = {"client_id": stack.secret_client_id, "client_secret": stack.client_secret_file.read_text()}
    status, body = await post_token(client, stack, **form, claims='{"access_token":{"xms_cc":{"values":["cp1"]}}}')
    assert status == 200 and jwt.decode(body["access_token"], options={"verify_signature": False})["xms_cc"] == ["cp1"]
    status, body = await post_token(client, stack, **form)
    assert "xms_cc" not in jwt.decode(body["access_token"], options={"verify_signature": False})


async def test_app_proxy_headers_pages_and_access_cookie(client: aiohttp.ClientSession, stack: EmulatorStack) -> None:
    app = stack.apps["secretapi"]
    form = {"client_id": stack.secret_client_id, "client_secret": stack.client_secret_file.read_text()}
    token = (await post_token(client, stack, **form))[1]["access_token"]
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    bearer = {"Authorization": "Bearer " + token}
    async with client.get(app.external_url + "api/status", headers=bearer) as resp:
        assert resp.status == 200
        assert resp.headers["x-ms-proxy-app-id"] == app.app_id
        assert resp.headers["x-ms-proxy-connector-id"] == app.connector_id  # the connector handled it
        assert "x-ms-proxy-error-details" not in resp.headers
        cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"AzureAppProxyAccessCookie_{app.app_id}_1.1=")
    assert "secure" in cookie and "HttpOnly" in cookie
    expires = cookie.split("expires=")[1].split(";")[0]
    assert parsedate_to_datetime(expires).timestamp() == exp  # persistent until the token expires
    async with client.get(app.external_url + "api/status", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["x-ms-proxy-app-id"] == app.app_id
        assert "x-ms-proxy-connector-id" not in resp.headers  # the cloud service answered by itself
    app.registration.assignment_required = True
    async with client.get(app.external_url + "api/status", headers=bearer) as resp:
        page = await resp.text()
        assert resp.status == 403 and resp.headers["Content-Type"].startswith("text/html")
        assert "x-ms-proxy-connector-id" not in resp.headers
    assert "This corporate app can\u2019t be accessed." in page and "Status Code: Forbidden" in page
    app.registration.assign(stack.secret_client_id)
    app.backend_timeout_s = 0.2
    async with client.get(app.external_url + "slow?seconds=2", headers=bearer) as resp:
        page = await resp.text()
        assert resp.status == 504 and resp.headers["x-ms-proxy-error-details"] == "BackendTimeOut"
    assert "The connector timed out." in page and "Status Code: GatewayTimeout" in page


async def test_injected_aadsts_refusal_has_entras_shape(client: aiohttp.ClientSession, stack: EmulatorStack) -> None:
    from bearerd.emulator import Fault

    stack.entra.faults.push(Fault(aadsts=53003))
    form = {"client_id": stack.secret_client_id, "client_secret": stack.client_secret_file.read_text()}
    status, body = await post_token(client, stack, **form)
    assert status == 400 and body["error"] == "invalid_grant" and body["error_codes"] == [53003]
    assert body["error_description"].startswith("AADSTS53003: Access has been blocked by Conditional Access")
