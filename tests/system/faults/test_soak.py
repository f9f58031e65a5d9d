"""10,000 requests with faults mixed in: zero 500s from bearerd, zero tracebacks, daemon healthy."""

from __future__ import annotations

import asyncio
import io
import os
import random

import aiohttp

from bearerd.emulator import EmulatorStack
from support.inprocess import Running
from support.wire import log_events

REQUESTS = int(os.environ.get("BEARERD_SOAK_REQUESTS", "10000"))


async def test_ten_thousand_requests_with_random_faults(
    running: Running, stack: EmulatorStack, log_stream: io.StringIO
) -> None:
    assert await running.daemon.wait_ready(within_s=5)
    rng = random.Random(42)
    mix = [
        ("/secretapi/api/status", 50),
        ("/otherapi/echo/x?y=1", 10),
        ("/secretapi/reset?after=100", 8),  # upstream dies mid-response
        ("/secretapi/status/503", 5),  # upstream's own 5xx (passed through, not ours)
        ("/nope", 8),
        ("/secretapi/%2e%2e/otherapi/x", 8),
        ("/secretapi//x", 5),
        ("/secretapi/download?bytes=200000", 6),
    ]
    targets = [t for t, weight in mix for _ in range(weight)]
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:

        async def one(target: str) -> None:
            try:
                async with session.get(running.url(target)) as resp:
                    body = await resp.read()
                    if resp.status >= 500 and b"urn:bearerd:problem" in body:
                        problem = body.decode()
                        # The only 5xx problem allowed is the upstream dying mid-response.
                        assert "upstream-unreachable" in problem and "reset" in target, problem
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except aiohttp.ClientPayloadError:
                statuses[-1] = statuses.get(-1, 0) + 1

        for start_at in range(0, REQUESTS, 500):
            await asyncio.gather(*(one(rng.choice(targets)) for _ in range(min(500, REQUESTS - start_at))))
    assert 500 not in statuses
    assert sum(statuses.values()) == REQUESTS
    events = log_events(log_stream)
    assert not [e for e in events if "exception" in e or e.get("level") in ("error", "critical")]
    async with running.session.get(running.admin + "/healthz") as resp:
        assert resp.status == 200
