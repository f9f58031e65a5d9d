"""Scope forms: what a route's token is requested for, derived in one place; and the authority forms
Logic Apps users write. Pure derivation and config files on disk, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bearerd.config.loader import Config, load_config
from bearerd.config.schema import ClientSecretCredential
from bearerd.config.scopes import effective_scopes, resource_of, scope_form
from bearerd.errors import ConfigError

GUID = "1B4F0000-0000-4000-8000-0000000000AA"
UPSTREAM = "https://secretapi-contoso.msappproxy.net/"


@pytest.mark.parametrize(
    ("fields", "delegated", "expected"),
    [
        ({}, False, "https://secretapi-contoso.msappproxy.net//.default"),
        ({}, True, "https://secretapi-contoso.msappproxy.net//user_impersonation"),
        ({"app_id": GUID}, False, GUID.lower() + "/.default"),
        ({"app_id": GUID}, True, GUID.lower() + "/user_impersonation"),
        (
            {"audience": "https://secretapi-contoso.msappproxy.net"},
            False,
            "https://secretapi-contoso.msappproxy.net/.default",
        ),
        ({"audience": "secretapi-contoso.msappproxy.net"}, False, "https://secretapi-contoso.msappproxy.net/.default"),
        ({"audience": "api://secretapi"}, True, "api://secretapi/user_impersonation"),
        ({"scopes": ["api://x/.default"]}, True, "api://x/.default"),  # as written, whoever asks
    ],
)
def test_each_scope_form(fields: dict[str, object], delegated: bool, expected: str) -> None:
    args = {"scopes": None, "app_id": None, "audience": None, **fields}
    assert effective_scopes(upstream=UPSTREAM, delegated=delegated, **args) == (expected,)  # type: ignore[arg-type]


def test_default_form_adds_the_trailing_slash_app_proxy_uris_have() -> None:
    scopes = effective_scopes(
        scopes=None, app_id=None, audience=None, upstream="https://hr-contoso.msappproxy.net/api", delegated=False
    )
    assert scopes == ("https://hr-contoso.msappproxy.net/api//.default",)
    assert scope_form(None, None, None) == "upstream"
    assert resource_of(scopes[0]) == "https://hr-contoso.msappproxy.net/api/"


ROUTE = """
[credentials.{cred}]
{cred_fields}

[routes.api]
match = {{ path_prefix = "/api/" }}
upstream = "https://api-contoso.msappproxy.net/"
credential = "{cred}"
{route_fields}
"""
APP = 'kind = "client_secret"\ntenant_id = "contoso"\nclient_id = "cid"\nclient_secret_env = "TEST_APP_SECRET"'
USER = 'kind = "device_code"\ntenant_id = "contoso"\nclient_id = "cid"'
MI = 'kind = "managed_identity"'


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route_fields: str, cred: str = APP) -> Config:
    monkeypatch.setenv("TEST_APP_SECRET", "s3cret-value")
    name = {APP: "app", USER: "user", MI: "mi"}.get(cred, "app")
    path = tmp_path / "bearerd.toml"
    path.write_text(ROUTE.format(cred=name, cred_fields=cred, route_fields=route_fields))
    return load_config(path)


def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route_fields: str, cred: str = APP) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, monkeypatch, route_fields, cred)
    return "\n".join(info.value.problems)


def test_scopes_are_optional_and_the_one_derivation_serves_every_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load(tmp_path, monkeypatch, "")
    assert config.settings.route_scopes("api") == ("https://api-contoso.msappproxy.net//.default",)
    user = load(tmp_path, monkeypatch, f'app_id = "{GUID}"', USER)
    assert user.settings.route_scopes("api") == (GUID.lower() + "/user_impersonation",)


def test_only_one_scope_form_per_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = problems(tmp_path, monkeypatch, f'app_id = "{GUID}"\naudience = "https://api-contoso.msappproxy.net"')
    assert "[routes.api]" in text and "at most one of scopes, app_id or audience" in text


def test_app_id_must_be_the_application_guid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = problems(tmp_path, monkeypatch, 'app_id = "https://api-contoso.msappproxy.net/"')
    assert "[routes.api] app_id" in text and "application (client) ID, a GUID" in text


def test_audience_is_the_uri_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = problems(tmp_path, monkeypatch, 'audience = "https://api-contoso.msappproxy.net/.default"')
    assert "[routes.api] audience" in text and "bearerd adds /.default" in text


def test_managed_identity_takes_app_id_as_its_resource(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(tmp_path, monkeypatch, f'app_id = "{GUID}"', MI)
    (scope,) = config.settings.route_scopes("api")
    assert resource_of(scope) == GUID.lower()
    text = problems(tmp_path, monkeypatch, 'scopes = ["a/.default", "b/.default"]', MI)
    assert "a managed identity gets tokens for one resource" in text


@pytest.mark.parametrize(
    ("fields", "authority"),
    [
        ('authority = "https://login.windows.net"\ntenant_id = "contoso"', "https://login.windows.net/contoso"),
        ('authority = "https://login.windows.net/"\ntenant_id = "contoso"', "https://login.windows.net/contoso"),
        ('authority = "https://login.microsoftonline.us/contoso"', "https://login.microsoftonline.us/contoso"),
        ('authority = "https://login.windows.net/contoso"\ntenant_id = "contoso"', "https://login.windows.net/contoso"),
        ('tenant_id = "contoso"', "https://login.microsoftonline.com/contoso"),
    ],
)
def test_authority_forms_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fields: str, authority: str
) -> None:
    cred = f'kind = "client_secret"\n{fields}\nclient_id = "cid"\nclient_secret_env = "TEST_APP_SECRET"'
    config = load(tmp_path, monkeypatch, "", cred)
    credential = config.settings.credentials["app"]
    assert isinstance(credential, ClientSecretCredential) and credential.authority_url == authority


def test_authority_without_a_tenant_or_with_another_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = 'client_id = "cid"\nclient_secret_env = "TEST_APP_SECRET"\nkind = "client_secret"'
    text = problems(tmp_path, monkeypatch, "", f'authority = "https://login.windows.net"\n{secret}')
    assert "names no tenant: add tenant_id" in text
    text = problems(tmp_path, monkeypatch, "", f'authority = "https://login.windows.net/a"\ntenant_id = "b"\n{secret}')
    assert "names tenant 'a' but tenant_id is 'b'" in text


def test_logic_apps_fields_in_the_wrong_table_say_where_they_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = APP + '\naudience = "https://api-contoso.msappproxy.net"'
    text = problems(tmp_path, monkeypatch, "", cred)
    assert "audience is a setting of a route" in text


def test_an_empty_scopes_list_says_it_can_be_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = problems(tmp_path, monkeypatch, "scopes = []")
    assert "[routes.api] scopes" in text and "leave scopes out (the upstream's URL then names the app)" in text
