"""device_code credentials: `bearerd login` once, then silent refresh from a persisted cache."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import signal
import stat
import sys
from pathlib import Path

import pytest

from bearerd.emulator import EmulatorStack
from support.configs import user_config
from support.inprocess import start
from support.processes import run_login
from support.waiting import eventually
from support.wire import log_events


async def test_without_login_requests_get_login_required_and_readyz_says_so(
    stack: EmulatorStack, tmp_path: Path, log_stream: io.StringIO
) -> None:
    config, settings = user_config(stack, tmp_path)
    async with start(settings) as running:
        for _ in range(3):
            async with running.session.get(running.url("/secretapi/api/status")) as resp:
                assert resp.status == 503
                body = await resp.json()
        assert body["type"] == "urn:bearerd:problem:login-required"
        assert f"bearerd login alice -c {config}" in body["detail"]
        async with running.session.get(running.admin + "/readyz") as resp:
            ready = await resp.json()
        assert ready["routes"]["secretapi"]["ready"] is False
        assert "bearerd login alice" in ready["routes"]["secretapi"]["last_error"]

        def looks() -> int:  # each look at the cache file (no call to Entra) is a debug line after the first
            events = log_events(log_stream)
            return sum(1 for e in events if e.get("event") == "token.acquire_failed" and e["credential"] == "alice")

        await eventually(lambda: looks() >= 2, what="a second look at the cache file")
    caches = [e for e in log_events(log_stream) if e.get("event") == "token_cache"]
    assert caches and caches[0]["protection"].startswith("plain file, mode 0600")  # no keyring in this test
    warnings = [
        e for e in log_events(log_stream) if e.get("event") == "token.acquire_failed" and e.get("level") == "warning"
    ]
    assert len([e for e in warnings if e["credential"] == "alice"]) == 1  # said once, not per request or re-check
    assert stack.entra.token_calls(stack.public_client_id) == 0  # no account: nobody asked Entra


async def test_login_then_daemon_refreshes_silently_and_survives_restart(stack: EmulatorStack, tmp_path: Path) -> None:
    config, settings = user_config(stack, tmp_path)
    code, out, err = await run_login(stack, config)
    assert code == 0, err
    assert "Signed in as alice@contoso.example" in out
    cache_file = tmp_path / "state" / "alice.msal-cache.json"
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    for token in stack.entra.issued_tokens:
        assert token not in out and token not in err

    for _ in range(2):  # the second daemon is the restart: no new login needed
        async with start(settings) as running:
            async with running.session.get(running.url("/secretapi/api/status")) as resp:
                assert resp.status == 200
            claims = stack.apps["secretapi"].requests_seen[-1].claims
            assert claims["upn"] == stack.user and claims["scp"] == "user_impersonation"
    # Each daemon redeemed the refresh token the previous step left (they rotate, the old one is spent).
    grants = [c.grant_type for c in stack.entra.calls if c.client_id == stack.public_client_id]
    assert grants.count("refresh_token") == 2


async def test_revoked_sign_in_is_login_required(stack: EmulatorStack, tmp_path: Path) -> None:
    config, settings = user_config(stack, tmp_path)
    assert (await run_login(stack, config))[0] == 0
    stack.entra.users.revoke(stack.user)
    async with start(settings) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["type"] == "urn:bearerd:problem:login-required" and "invalid_grant" in body["detail"]


async def test_a_revoked_sign_in_is_not_asked_again_until_a_new_login(stack: EmulatorStack, tmp_path: Path) -> None:
    """Issue 16: the revoked refresh token was re-sent every 2 s, forever. Now it backs off (the
    identity provider would refuse it again) and a new `bearerd login` ends the wait at once."""
    from bearerd.tokens.backoff import REFUSAL_BASE_S

    config, settings = user_config(stack, tmp_path)
    assert (await run_login(stack, config))[0] == 0
    stack.entra.users.revoke(stack.user)

    def refreshes() -> int:
        calls = stack.entra.calls
        return sum(1 for c in calls if c.client_id == stack.public_client_id and c.grant_type == "refresh_token")

    async with start(settings) as running:
        for _ in range(20):
            async with running.session.get(running.url("/secretapi/api/status")) as resp:
                assert resp.status == 503
                assert (await resp.json())["type"] == "urn:bearerd:problem:login-required"
        assert refreshes() == 1
        async with running.session.get(running.admin + "/readyz") as resp:
            route = (await resp.json())["routes"]["secretapi"]
        assert route["retry_in_s"] >= REFUSAL_BASE_S / 2 - 1  # backing off, not "again in 2 s"
        assert (await run_login(stack, config))[0] == 0  # the user signs in again
        assert await running.daemon.wait_ready(within_s=10)  # noticed from the cache file, not the clock
        assert refreshes() == 2


async def test_login_survives_an_identity_provider_closing_idle_connections(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    """Issue 16: the final poll met a pooled connection the identity provider had closed
    (SSLEOFError) and the user's approval was lost. Here every poll after a 1 s wait finds its
    connection closed; the poll is safe to repeat, so each is resent on a new connection."""
    stack.entra.idle_close_s = 0.5  # the device flow polls every second: each poll meets a closed connection
    config, _ = user_config(stack, tmp_path)
    for _ in range(3):
        code, out, err = await run_login(stack, config)
        assert code == 0, err
        assert "Signed in as alice@contoso.example" in out
    assert stack.entra.closed_idle >= 3  # the closes really happened, at least once a run


async def test_daemon_notices_a_login_made_while_it_runs(stack: EmulatorStack, tmp_path: Path) -> None:
    config, settings = user_config(stack, tmp_path)
    async with start(settings) as running:
        assert not await running.daemon.wait_ready(within_s=0.5)
        assert (await run_login(stack, config))[0] == 0
        assert await running.daemon.wait_ready(within_s=10)
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200


_WRITER = """
import sys, itertools
from pathlib import Path
from bearerd.tokens.usercache import PersistentTokenCache
cache = PersistentTokenCache(Path(sys.argv[1]))
for i in itertools.count():
    with cache.locked():
        cache.deserialize('{"AppMetadata": {"k%d": {"client_id": "%s"}}}' % (i % 50, "x" * (i % 5000)))
        cache.has_state_changed = True
"""


async def test_kill_9_while_writing_never_corrupts_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "state" / "c.msal-cache.json"
    rng = random.Random(7)
    for _ in range(12):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, str(path))
        for _ in range(300):  # the interpreter can take seconds to start on a loaded CI box
            if path.exists():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        data = json.loads(path.read_text())  # always a whole file: the old one or the new one
        assert "AppMetadata" in data
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 12  # killed mid-write: a stray temp file, never the cache itself


def test_not_a_device_code_credential(stack: EmulatorStack, tmp_path: Path) -> None:
    import subprocess

    config, _ = user_config(stack, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bearerd.cli", "login", "emu-secret", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "alice" in result.stderr
    _ = pytest


_FAKE_BROWSER = """
import re, ssl, sys, urllib.parse, urllib.request
# A browser whose user is already signed in: load the sign-in page, submit its form back to the app.
context = ssl.create_default_context(cafile=sys.argv[1])
page = urllib.request.urlopen(sys.argv[2], context=context, timeout=30).read().decode()
action = re.search(r'action="([^"]+)"', page).group(1)
fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page))
urllib.request.urlopen(action, data=urllib.parse.urlencode(fields).encode(), timeout=30).read()
"""


async def test_browser_login_with_localhost_redirect(stack: EmulatorStack, tmp_path: Path) -> None:
    config, settings = user_config(stack, tmp_path)
    browser = tmp_path / "browser.py"
    browser.write_text(_FAKE_BROWSER)
    stack.entra.users.browser_user = stack.user
    # Python's webbrowser runs $BROWSER; a trailing "&" runs it in the background, as a real browser is.
    env = {**os.environ, "BROWSER": f"{sys.executable} {browser} {stack.ca_file} %s &"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bearerd.cli",
        "login",
        "alice",
        "--browser",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert b"Signed in as alice@contoso.example" in out
    grants = [c.grant_type for c in stack.entra.calls if c.client_id == stack.public_client_id]
    assert grants == ["authorization_code"]
    async with start(settings) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
