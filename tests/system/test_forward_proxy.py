"""Forward-proxy mode: tools that only know http_proxy get tokens for configured hosts only."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import requests

from bearerd.emulator import EmulatorStack
from support.inprocess import Running


def http_authority(stack: EmulatorStack) -> str:
    # The client speaks plain http to the app's host; bearerd upgrades to the route's https upstream.
    return stack.apps["secretapi"].external_url.removeprefix("https://").rstrip("/")


async def test_aiohttp_through_http_proxy(running: Running, stack: EmulatorStack) -> None:
    url = f"http://{http_authority(stack)}/echo/a%2Fb?x=1"
    async with running.session.get(url, proxy=running.base) as resp:
        assert resp.status == 200
        assert (await resp.json())["raw_path"] == "/echo/a%2Fb?x=1"
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == stack.secret_client_id
    async with running.session.get(
        f"http://{http_authority(stack)}/redirect?to=/api/status", proxy=running.base, allow_redirects=False
    ) as resp:
        assert resp.headers["Location"] == f"http://{http_authority(stack)}/api/status"


async def test_requests_and_curl_with_proxy_environment(running: Running, stack: EmulatorStack) -> None:
    url = f"http://{http_authority(stack)}/api/status"

    def with_requests() -> int:
        return requests.get(url, proxies={"http": running.base}, timeout=10).status_code

    assert await asyncio.to_thread(with_requests) == 200
    curl = shutil.which("curl")
    if curl is not None:
        env = {**os.environ, "http_proxy": running.base, "NO_PROXY": ""}
        out = await asyncio.to_thread(
            subprocess.run,
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
        )
        assert out.stdout == "200"


async def test_unknown_host_is_403_never_forwarded(running: Running, stack: EmulatorStack) -> None:
    seen = sum(len(a.requests_seen) for a in stack.apps.values())
    async with running.session.get("http://example.invalid/api/status", proxy=running.base) as resp:
        assert resp.status == 403
        assert (await resp.json())["type"] == "urn:bearerd:problem:not-a-route"
    # Same host, other port: not the configured upstream either.
    host = http_authority(stack).split(":")[0]
    async with running.session.get(f"http://{host}:1/api/status", proxy=running.base) as resp:
        assert resp.status == 403
    assert sum(len(a.requests_seen) for a in stack.apps.values()) == seen
