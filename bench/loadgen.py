"""Load generators: wrk for request rates, curl for streaming, asyncio for idle and cold-start clients.

wrk and curl are external C programs so the client side is never the bottleneck on a 2-core
machine; their output is made machine-readable (a Lua ``done`` hook printing JSON, curl's
``-w``) rather than scraped from human text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

WRK_LUA = r"""
-- Printed once at the end: one JSON line the harness parses instead of wrk's text report.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"non2xx3xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.status + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


async def run_tool(argv: list[str], timeout_s: float) -> str:
    """Run a short-lived tool; killed if the harness is cancelled (Ctrl-C) or it overruns."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    return out.decode()


@dataclass
class WrkResult:
    rps: float
    requests: int
    errors: int
    non2xx3xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


async def wrk(url: str, threads: int, conns: int, seconds: float, script: Path) -> WrkResult:
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds:g}s", "--latency", "-s", str(script), url]
    out = await run_tool(argv, seconds + 30)
    line = next((x for x in out.splitlines() if x.startswith('{"requests"')), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary for {url}: {out[-500:]}")
    r: dict[str, Any] = json.loads(line)
    return WrkResult(
        rps=r["requests"] / (r["duration_us"] / 1e6),
        requests=r["requests"],
        errors=r["errors"],
        non2xx3xx=r["non2xx3xx"],
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
    )


async def warm(url: str, conns: int, per_conn: int, timeout_s: float = 30) -> int:
    """Warm a target before a measured run: ``conns`` keep-alive clients, ``per_conn`` GETs each.

    Sized so the target's upstream pool opens the connections the run will use; not wrk, because
    wrk always runs for its whole ``-d`` (whole seconds). TLS is not verified here (wrk does not
    either); the proxies under test verify their upstream. Returns how many answered 200.
    """
    ok = 0
    connector = aiohttp.TCPConnector(limit=conns, ssl=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            nonlocal ok
            for _ in range(per_conn):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        await resp.read()
                        ok += resp.status == 200

        await asyncio.gather(*(client() for _ in range(conns)))
    return ok


async def curl_download(url: str) -> tuple[float, int]:
    """(bytes/s, HTTP status) of one download to /dev/null."""
    out = await run_tool(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{http_code}", url], 600)
    speed, status = out.split()
    return float(speed), int(status)


async def curl_upload(url: str, file: Path) -> tuple[float, int]:
    """(bytes/s, HTTP status) of one PUT of ``file``; no ``Expect: 100-continue`` round trip."""
    argv = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-H",
        "Expect:",
        "-T",
        str(file),
        "-w",
        "%{speed_upload} %{http_code}",
        url,
    ]
    out = await run_tool(argv, 600)
    speed, status = out.split()
    return float(speed), int(status)


@dataclass
class IdleResult:
    opened: int
    errors: int
    seconds_to_open: float


async def hold_idle(port: int, path: str, count: int, hold_s: float, measure: Callable[[], T]) -> tuple[IdleResult, T]:
    """Open ``count`` keep-alive connections, one full request on each, hold them, call ``measure()``.

    Connections are opened at most 200 at a time: the point is the cost of *holding* idle
    connections, not how a listen backlog copes with a SYN flood.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n".encode()
    gate = asyncio.Semaphore(200)
    writers: list[asyncio.StreamWriter] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                errors += 1
                return
            writers.append(writer)
            try:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = int(head.split(b" ", 2)[1])
                length = next(
                    (int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
                    None,
                )
                if length is None:
                    raise ValueError("no Content-Length")
                await asyncio.wait_for(reader.readexactly(length), 30)
                if status != 200:
                    errors += 1
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                errors += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(one() for _ in range(count)))
        opened = time.monotonic() - started
        await asyncio.sleep(hold_s)
        closed_meanwhile = sum(1 for w in writers if w.transport.is_closing())
        measured = measure()
        return IdleResult(len(writers), errors + closed_meanwhile, opened), measured
    finally:
        for w in writers:
            w.close()


@dataclass
class ColdResult:
    requests: int
    non_200: int
    first_ttfb_ms: float
    last_ttfb_ms: float
    statuses: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def cold_burst(url: str, count: int) -> ColdResult:
    """Fire ``count`` GETs at once (no connection limit) and time each response's headers from launch."""
    statuses: dict[str, int] = {}
    ttfb: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        launched = time.monotonic()

        async def one() -> None:
            try:
                async with session.get(url) as resp:
                    ttfb.append(time.monotonic() - launched)
                    await resp.read()
                    key = str(resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(one() for _ in range(count)))
    return ColdResult(
        requests=count,
        non_200=count - statuses.get("200", 0),
        first_ttfb_ms=min(ttfb, default=float("nan")) * 1000,
        last_ttfb_ms=max(ttfb, default=float("nan")) * 1000,
        statuses=statuses,
    )


@dataclass
class InflightResult:
    requests: int
    completed: int  # answered 200
    failed: int
    statuses: dict[str, int]
    connect_s: float  # opening every connection, before any request is sent
    total_s: float  # the first request sent → the last answer read
    slowest_s: float


async def concurrent_once(port: int, path: str, count: int, timeout_s: float) -> InflightResult:
    """``count`` connections opened first, then one GET sent on each at once: ``count`` in flight together.

    Raw asyncio streams (no client library, no pool): the harness's side costs a read and a write
    per connection, so a 1 s upstream keeps every request in flight while the proxy is measured.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    gate = asyncio.Semaphore(200)
    statuses: dict[str, int] = {}

    def count_as(key: str) -> None:
        statuses[key] = statuses.get(key, 0) + 1

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        async with gate:
            try:
                return await asyncio.open_connection("127.0.0.1", port)
            except OSError as exc:
                count_as(type(exc).__name__)
                return None

    slowest = 0.0

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sent: float) -> None:
        nonlocal slowest
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1].decode()
            length = next(
                (int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
                None,
            )
            await (reader.readexactly(length) if length is not None else reader.read())
            count_as(status)
            slowest = max(slowest, time.monotonic() - sent)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            count_as(type(exc).__name__)
        finally:
            writer.close()

    started = time.monotonic()
    opened = [c for c in await asyncio.gather(*(connect() for _ in range(count))) if c is not None]
    connected = time.monotonic()
    for _, writer in opened:
        writer.write(request)
    sent = time.monotonic()
    tasks = [asyncio.ensure_future(exchange(reader, writer, sent)) for reader, writer in opened]
    try:
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    finally:
        for task in tasks:
            task.cancel()
    for _ in pending:
        count_as("TimeoutError")
    finished = time.monotonic()
    return InflightResult(
        requests=count,
        completed=statuses.get("200", 0),
        failed=count - statuses.get("200", 0),
        statuses=statuses,
        connect_s=connected - started,
        total_s=finished - sent,
        slowest_s=slowest,
    )
