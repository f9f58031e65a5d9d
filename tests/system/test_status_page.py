"""The admin listener's status page in a real headless browser (Chromium): routes, the identity
the token is for, its expiry counting down, the last error with its fix, the sign-in line."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

import aiohttp

from bearerd.emulator import EmulatorStack
from support.chromium import chromium_binary, dump_dom
from support.configs import stack_tables, user_tables
from support.processes import daemon_process


async def wait_for_readiness(admin: str, within_s: float) -> None:
    """Until secretapi holds a token and the two failing routes have failed once."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(within_s):
        while True:
            async with session.get(admin + "/readyz") as resp:
                routes = (await resp.json())["routes"]
            if routes["secretapi"]["ready"] and all("last_error" in routes[r] for r in ("otherapi", "userapi")):
                return
            await asyncio.sleep(0.05)


async def test_status_page_in_chromium(stack: EmulatorStack, tmp_path: Path) -> None:
    chromium_binary()  # skip (or, in CI, fail) before starting anything
    tables = stack_tables(stack)
    tables["routes.otherapi"]["scopes"] = ["https://nowhere.example//.default"]  # AADSTS500011
    tables["credentials.alice"] = user_tables(stack)["credentials.alice"]  # never signed in
    tables["routes.userapi"] = {
        "match": {"path_prefix": "/userapi/"},
        "upstream": stack.apps["secretapi"].external_url,
        "credential": "alice",
    }
    config = tmp_path / "bearerd.toml"
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    async with daemon_process(config, tables, env=env, wait_ready=False) as daemon:
        await wait_for_readiness(daemon.admin, 30)
        dom = html.unescape(await dump_dom(daemon.admin + "/", tmp_path / "profile"))
        probed = html.unescape(await dump_dom(daemon.admin + "/?probe=1", tmp_path / "profile"))

    assert "<h1>bearerd — 2 of 3 route(s) need attention</h1>" in dom
    for route in ("secretapi", "otherapi", "userapi"):
        assert f'id="route-{route}"' in dom
    app = stack.apps["secretapi"]
    assert f"aud={app.app_id_uri}" in dom and f"appid={stack.secret_client_id}" in dom
    # The browser ran the page's script: the countdown went down from what the server rendered.
    match = re.search(r'data-expires-in="(\d+)" data-remaining="(\d+)">(\d+) min (\d+) s<', dom)
    assert match is not None, dom
    rendered, remaining = int(match.group(1)), int(match.group(2))
    assert rendered - 5 <= remaining < rendered
    assert (int(match.group(3)), int(match.group(4))) == divmod(remaining, 60)
    assert "AADSTS500011: Entra found no application for this scope's resource" in dom
    assert 'fix: set app_id = "<the App Proxy app\'s application (client) ID>"' in dom
    assert f"sign in: bearerd login alice -c {config}" in re.sub(r"</?code>", "", dom)
    assert "GET " + app.external_url + " → 404 from the app" in probed and "(App Proxy accepted the token)" in probed
    for token in stack.entra.issued_tokens:
        assert token not in dom and token not in probed
