"""Scope forms end to end: each gets a token the App Proxy emulator accepts, the way a real tenant
would issue it (v1 `aud` as asked, v2 `aud` = the app's GUID), and `app_id` fixes the app that
refuses the URI form with its sign-in redirect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables, user_config
from support.inprocess import start
from support.processes import run_login


def without_scopes(stack: EmulatorStack, **route: Any) -> dict[str, dict[str, Any]]:
    tables = stack_tables(stack, **route)
    tables["routes.secretapi"].pop("scopes")
    return tables


async def status_and_claims(stack: EmulatorStack, write_config: ConfigWriter, tables: Any) -> tuple[int, Any]:
    before = len(stack.apps["secretapi"].requests_seen)
    async with (
        start(load_config(write_config(tables))) as running,
        running.session.get(running.url("/secretapi/api/status")) as resp,
    ):
        body = await resp.json(content_type=None)
        seen = stack.apps["secretapi"].requests_seen[before:]
        return resp.status, (seen[-1].claims if seen else body)


def last_scope(stack: EmulatorStack) -> str:
    return [c for c in stack.entra.calls if c.client_id == stack.secret_client_id][-1].scope


async def test_default_form_is_the_upstream_url_as_app_id_uri(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    app = stack.apps["secretapi"]
    status, claims = await status_and_claims(stack, write_config, without_scopes(stack))
    assert status == 200
    assert claims["aud"] == app.app_id_uri == app.external_url  # "https://…/", asked for as "https://…//.default"
    assert last_scope(stack) == app.external_url + "/.default"


async def test_app_id_form_works_where_the_uri_form_gets_the_sign_in_redirect(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    app = stack.apps["secretapi"]
    app.accept_only_app_id_audience()  # as the apps of dotnet/aspnetcore#52495 and msal-dotnet#2178
    status, problem = await status_and_claims(stack, write_config, without_scopes(stack))
    assert status == 502 and problem["type"] == "urn:bearerd:problem:token-rejected"
    assert "set app_id = " in problem["detail"]
    status, claims = await status_and_claims(stack, write_config, without_scopes(stack, app_id=app.app_id.upper()))
    assert status == 200 and claims["aud"] == app.app_id
    assert last_scope(stack) == app.app_id + "/.default"


async def test_audience_form_as_logic_apps_writes_it(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    app = stack.apps["secretapi"]
    bare = app.external_url.rstrip("/")  # "https://host:port", no trailing slash
    stack.entra.resources.add_identifier(app.registration, bare)
    app.accepted_audiences.add(bare)
    status, claims = await status_and_claims(stack, write_config, without_scopes(stack, audience=bare))
    assert status == 200 and claims["aud"] == bare
    host_only = bare.removeprefix("https://")
    status, claims = await status_and_claims(stack, write_config, without_scopes(stack, audience=host_only))
    assert status == 200 and claims["aud"] == bare


async def test_v2_app_gets_the_guid_audience_whichever_form_asks(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    app = stack.apps["secretapi"]
    app.registration.access_token_version = 2
    for tables in (without_scopes(stack), without_scopes(stack, app_id=app.app_id)):
        status, claims = await status_and_claims(stack, write_config, tables)
        assert status == 200
        assert claims["aud"] == app.app_id and claims["ver"] == "2.0"
        assert claims["iss"] == f"https://login.microsoftonline.com/{stack.tenant_id}/v2.0"
        assert claims["azp"] == stack.secret_client_id and "appid" not in claims


async def test_authority_host_plus_tenant_id_as_written(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    tables = stack_tables(stack)
    host = stack.authority.rsplit("/", 1)[0]  # "https://127.0.0.1:port", as Logic Apps' "Authority"
    tables["credentials.emu-secret"].update(authority=host, tenant_id=stack.tenant_id)
    status, claims = await status_and_claims(stack, write_config, tables)
    assert status == 200 and claims["tid"] == stack.tenant_id


async def test_user_credential_with_app_id_asks_for_user_impersonation(stack: EmulatorStack, tmp_path: Path) -> None:
    app = stack.apps["secretapi"]
    path, _ = user_config(stack, tmp_path)
    text = path.read_text().replace(f'scopes = ["{app.app_id_uri}/user_impersonation"]', f'app_id = "{app.app_id}"')
    path.write_text(text)
    assert (await run_login(stack, path))[0] == 0
    async with start(load_config(path)) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
    claims = app.requests_seen[-1].claims
    assert claims["aud"] == app.app_id and claims["scp"] == "user_impersonation" and claims["upn"] == stack.user
