"""Reloads: a request finishes with the configuration it started with; unchanged routes keep
their token and their App Proxy cookies; a changed route starts afresh."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables, write_tables
from support.inprocess import start


async def test_unchanged_routes_keep_their_cookie_jar_and_token(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    app = stack.apps["secretapi"]
    async with start(load_config(write_config())) as running:
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        # Every route's warm-up acquisition must be over before counting: only a reload may add calls.
        assert await running.daemon.wait_ready(within_s=30)
        calls = stack.entra.token_calls()
        tables = stack_tables(stack)
        tables["routes.more"] = {**tables["routes.otherapi"], "match": {"path_prefix": "/more/"}}
        await running.daemon.reload(load_config(write_tables(tmp_path / "new.toml", tables)))
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        assert app.cookies_seen[-1] == "s1"  # App Proxy's session cookie, kept across the reload
        assert stack.entra.token_calls() == calls

        # The route now points at another app: its old cookies must not follow it there.
        other = stack.apps["otherapi"]
        tables["routes.secretapi"] = {
            **tables["routes.secretapi"],
            "upstream": other.external_url,
            "scopes": [other.scope],
        }
        await running.daemon.reload(load_config(write_tables(tmp_path / "moved.toml", tables)))
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        assert other.cookies_seen[-1] is None


async def test_a_response_in_flight_uses_the_routing_its_request_started_with(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    async with start(load_config(write_config())) as running:
        seen = len(stack.apps["secretapi"].requests_seen)
        slow = asyncio.ensure_future(running.session.get(running.url("/secretapi/slow?seconds=0.5")))
        await stack.apps["secretapi"].wait_for_requests(seen + 1)
        tables = stack_tables(stack)
        del tables["routes.secretapi"]
        tables["server"]["listen"] = ["127.0.0.1:0"]
        await running.daemon.reload(load_config(write_tables(tmp_path / "without.toml", tables)))
        async with await slow as resp:
            assert resp.status == 200
            # The old route's jar absorbed App Proxy's cookie: the client never gets it.
            assert not any("AzureAppProxy" in v for v in resp.headers.getall("Set-Cookie", ()))
            assert (await resp.json()) == {"slept": True}
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 404  # new requests see the new configuration
