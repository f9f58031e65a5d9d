"""A route's set_headers / remove_headers, seen from the backend behind the App Proxy emulator: added to
every request of that route only (inside CONNECT tunnels too), never forgeable by the client, picked up
on reload, and their secret values never in a log line."""

from __future__ import annotations

import io
import ssl
from pathlib import Path
from typing import Any

import pytest
import structlog

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import intercept_tables, local_ca_file, write_intercept_config
from support.inprocess import Running, start

GITLAB_TOKEN = "glpat-route-secret-0123456789"
API_KEY = "api-key-from-the-environment-42"


def header_tables(stack: EmulatorStack, token_file: Path) -> dict[str, dict[str, Any]]:
    tables = intercept_tables(stack)
    tables["routes.secretapi"]["set_headers"] = {
        "PRIVATE-TOKEN": {"file": str(token_file)},
        "X-Api-Key": {"env": "TEST_BACKEND_API_KEY"},
        "X-Tenant": {"value": "contoso"},
    }
    tables["routes.secretapi"]["remove_headers"] = ["X-Debug"]
    return tables


def write_token(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


async def backend_headers(running: Running, target: str, **kwargs: Any) -> dict[str, list[str]]:
    async with running.session.get(running.url(target), **kwargs) as resp:
        assert resp.status == 200
        echo = await resp.json()
    out: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


@pytest.fixture
def token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_BACKEND_API_KEY", API_KEY)
    return write_token(tmp_path / "gitlab-token", GITLAB_TOKEN)


async def test_the_backend_gets_the_routes_headers_and_nothing_forged(
    stack: EmulatorStack, tmp_path: Path, token_file: Path, log_stream: io.StringIO
) -> None:
    config = load_config(write_intercept_config(stack, tmp_path, header_tables(stack, token_file)))
    async with start(config) as running:
        forged = {"Private-Token": "forged", "X-Tenant": "other", "X-Debug": "1", "X-Kept": "yes"}
        seen = await backend_headers(running, "/secretapi/echo/h", headers=forged)
        assert seen["private-token"] == [GITLAB_TOKEN]
        assert seen["x-api-key"] == [API_KEY]
        assert seen["x-tenant"] == ["contoso"]
        assert "x-debug" not in seen and seen["x-kept"] == ["yes"]
        # The App Proxy emulator verified bearerd's token: the static headers come on top of it.
        assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == stack.secret_client_id

        other = await backend_headers(running, "/otherapi/echo/h", headers={"X-Debug": "1"})
        assert not {"private-token", "x-api-key", "x-tenant"} & set(other)  # never sent to another route
        assert other["x-debug"] == ["1"]

        # Inside an intercepted CONNECT tunnel: the same route, the same headers.
        trust = ssl.create_default_context(cafile=str(local_ca_file(tmp_path)))
        url = stack.apps["secretapi"].external_url + "echo/t"
        async with running.session.get(url, proxy=running.base, ssl=trust, headers=forged) as resp:
            names = {n.lower(): v for n, v in (await resp.json())["headers"]}
        assert (names["private-token"], names["x-tenant"]) == (GITLAB_TOKEN, "contoso") and "x-debug" not in names

        structlog.get_logger("test").warning("a line quoting them", text=f"{GITLAB_TOKEN} / {API_KEY}")
    text = log_stream.getvalue()
    assert "a line quoting them" in text
    assert GITLAB_TOKEN not in text and API_KEY not in text  # registered with the redactor, never logged


async def test_reload_picks_up_a_changed_header_secret(
    stack: EmulatorStack, tmp_path: Path, token_file: Path, log_stream: io.StringIO
) -> None:
    path = write_intercept_config(stack, tmp_path, header_tables(stack, token_file))
    async with start(load_config(path)) as running:
        assert (await backend_headers(running, "/secretapi/echo/a"))["private-token"] == [GITLAB_TOKEN]
        rotated = "glpat-rotated-secret-9876543210"
        write_token(token_file, rotated)
        assert await running.daemon.reload(load_config(path)) == []
        assert (await backend_headers(running, "/secretapi/echo/b"))["private-token"] == [rotated]
        structlog.get_logger("test").warning("after the reload", text=rotated)
    assert rotated not in log_stream.getvalue() and GITLAB_TOKEN not in log_stream.getvalue()
