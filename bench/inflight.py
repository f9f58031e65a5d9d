"""The "1,000 concurrent over TLS" memory row: slow requests through a bounded pool to an HTTPS upstream.

bearerd's pool holds at most 64 connections to the upstream (``pool_max_connections``), so of
1,000 requests in flight 64 are upstream and 936 wait for a connection; what the row prices is
the peak RSS of that, and what one waiting-or-in-flight request costs *beyond* the pool's
connections. It runs on a bearerd of its own, started for this row, so the streaming and idle
rows' freed-but-resident heap neither inflates nor hides its peak.

The per-connection cost is measured, not assumed: after a warm-up of the same shape on the plain
HTTP route (so the client side's allocations already exist), RSS is read, 64 concurrent slow
requests open the TLS pool to 64 connections, those go idle, and RSS is read again:
(after - before) ÷ 64 is one pooled TLS connection, the pool's TLS context amortised over them.
Then, with VmHWM reset, 1,000 concurrent requests go to a second TLS origin (a pool that starts
empty), and

    KB per in-flight request beyond the pool = (peak - before - 64 x per-connection) ÷ 1,000.

nginx and Caddy take the same 1,000 requests as a reference (on their long-running processes;
neither bounds its upstream connections here, so they open one per request).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import loadgen
import procs

MB = 1e6
KB = 1e3
PRICE_MS = 300  # long enough that 64 requests sent together each hold a connection at once


async def upstream_connections(backend_port: int, tag: str) -> int:
    """How many distinct connections the backend saw under ``tag`` (the pool bound, checked)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{backend_port}/peers", params={"tag": tag}) as resp,
    ):
        body: dict[str, Any] = json.loads(await resp.text())
    return int(body["distinct"])


async def measure(
    child: procs.Child, prefix: str, backend_port: int, tag: str, count: int, slow_ms: int, timeout_s: float
) -> dict[str, Any]:
    """One burst of ``count`` concurrent slow requests through ``prefix``: RSS before, peak, outcome."""
    before = child.rss()
    child.reset_peak()
    res = await loadgen.concurrent_once(child.port, f"{prefix}slow?ms={slow_ms}&tag={tag}", count, timeout_s)
    peak = child.peak_rss()
    return {
        **asdict(res),
        "rss_before_mb": before / MB,
        "peak_rss_mb": peak / MB,
        "upstream_connections": await upstream_connections(backend_port, tag),
    }


async def price_pool(child: procs.Child, backend_port: int) -> dict[str, Any]:
    """RSS of bearerd's TLS pool opened to its bound and idle, against none (module docstring)."""
    timeout = 30.0
    await loadgen.concurrent_once(child.port, f"/b/slow?ms={PRICE_MS}&tag=warm", procs.POOL_MAX, timeout)
    await asyncio.sleep(0.3)
    none = child.rss()
    prefix = procs.BEARERD_TLS_PREFIXES["pool"]
    await loadgen.concurrent_once(child.port, f"{prefix}slow?ms=0&tag=pool", 1, timeout)
    await asyncio.sleep(0.1)
    first = child.rss()
    opened = await loadgen.concurrent_once(child.port, f"{prefix}slow?ms={PRICE_MS}&tag=pool", procs.POOL_MAX, timeout)
    await asyncio.sleep(0.3)  # the 64 answers are read; the connections are back in the pool, idle
    full = child.rss()
    conns = await upstream_connections(backend_port, "pool")
    return {
        "pool_connections": conns,
        "pricing_failed": opened.failed,
        "rss_no_pool_mb": none / MB,
        "rss_first_connection_mb": first / MB,
        "rss_pool_idle_mb": full / MB,
        "first_connection_kb": (first - none) / KB,  # one connection + the pool's TLS context
        "per_tls_connection_kb": (full - none) / conns / KB if conns else None,
    }


async def run(
    children: procs.Children,
    workdir: Path,
    logs: Path,
    emu: procs.Emulator,
    backend: procs.Child,
    tls: procs.TlsUpstreams,
    access_log: str,
    count: int,
    slow_ms: int,
    references: dict[str, tuple[procs.Child, str]],
) -> dict[str, Any]:
    timeout = count / procs.POOL_MAX * slow_ms / 1000 * 2 + 30
    results: dict[str, Any] = {"requests": count, "slow_ms": slow_ms, "pool_max_connections": procs.POOL_MAX}
    child, _ = await procs.start_bearerd(
        children, workdir, logs / "bearerd-inflight.log", emu, backend.port, access_log, tls
    )
    try:
        await procs.wait_http_ok(f"http://127.0.0.1:{child.port}/b/small", child)
        priced = await price_pool(child, backend.port)
        prefix = procs.BEARERD_TLS_PREFIXES["inflight"]
        row = await measure(child, prefix, backend.port, "inflight-bearerd", count, slow_ms, timeout)
        per_conn = priced["per_tls_connection_kb"]
        if per_conn is not None:
            beyond = row["peak_rss_mb"] * MB - row["rss_before_mb"] * MB - procs.POOL_MAX * per_conn * KB
            row["kb_per_inflight_beyond_pool"] = beyond / count / KB
        results["bearerd"] = {**row, **priced}
    finally:
        await children.stop(child)
    for name, (ref, ref_prefix) in references.items():
        results[name] = await measure(ref, ref_prefix, backend.port, f"inflight-{name}", count, slow_ms, timeout)
    return results
