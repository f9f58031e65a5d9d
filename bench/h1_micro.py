"""Micro-benchmark of the HTTP/1.1 core: wrk against a trivial backend, direct and through a
forwarding proxy built on ``bearerd.h1`` (server + pool, one header added), on uvloop.

Rounds are interleaved (direct, proxy, direct, proxy, ...) so drift hits both alike; the median
of the per-pair ratios is reported with its spread, and the proxy's CPU time per request from
/proc/PID/stat (utime + stime) over its rounds. Backend and proxy are separate processes.

    python bench/h1_micro.py [--rounds 3] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BODY = b'{"ok": true, "service": "h1-micro-backend", "note": "a small JSON answer of about 100 bytes"}'
HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "host"})


async def _backend() -> None:
    from bearerd.h1 import Request, Responder, serve_tcp

    headers = [("Content-Type", "application/json")]

    async def handler(request: Request, responder: Responder) -> None:
        if request.has_body:
            await request.read()
        await responder.send(200, "OK", headers, BODY)

    server = await serve_tcp("127.0.0.1", 0, handler)
    await _serve(server.port)


async def _proxy(upstream_port: int) -> None:
    from bearerd.h1 import PoolOptions, Request, Responder, UpstreamPool, serve_tcp

    pool = UpstreamPool(f"http://127.0.0.1:{upstream_port}", options=PoolOptions(max_connections=64))

    async def handler(request: Request, responder: Responder) -> None:
        headers = [(n, v) for n, v in request.headers if n.lower() not in HOP]
        headers.append(("Authorization", "Bearer bench-token"))
        body = await request.read() if request.has_body else None
        async with await pool.request(request.method, request.target, headers, body, read_timeout_s=30) as up:
            out = [(n, v) for n, v in up.headers if n.lower() not in HOP]
            if up.content_length is not None and up.content_length <= 65536 and request.method != "HEAD":
                await responder.send(up.status, up.reason, out, await up.read())
                return
            await responder.start(up.status, up.reason, out, length=up.content_length)
            async for chunk in up.chunks():
                await responder.write(chunk)
            await responder.end(up.trailers)

    server = await serve_tcp("127.0.0.1", 0, handler)
    await _serve(server.port)


async def _serve(port: int) -> None:
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def _start(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout is not None  # noqa: S101
    return proc, int(proc.stdout.readline())


def _start_aiohttp_backend() -> tuple[subprocess.Popen[str], int]:
    sys.path.insert(0, str(REPO / "bench"))
    from procs import free_port  # the repo's bench harness picks ports this way

    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, str(REPO / "bench" / "backend.py"), "--port", str(port)], cwd=REPO, text=True
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("aiohttp backend did not start")


def _wrk(port: int, seconds: float, connections: int) -> tuple[float, int]:
    out = subprocess.run(  # noqa: S603
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/small"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if rps is None or total is None:
        raise RuntimeError(f"wrk said: {out}")
    if errors is not None:
        print(f"  wrk reported: {errors.group(0)}")
    return float(rps.group(1)), int(total.group(1))


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the full line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["backend", "proxy"], help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--backend",
        choices=["h1", "aiohttp"],
        default="h1",
        help="the direct target: this core's own server (default) or bench/backend.py (aiohttp)",
    )
    args = parser.parse_args()
    if args.role is not None:
        import uvloop

        uvloop.run(_backend() if args.role == "backend" else _proxy(args.upstream))
        return

    if args.backend == "h1":
        backend, backend_port = _start("--role", "backend")
    else:
        backend, backend_port = _start_aiohttp_backend()
    proxy, proxy_port = _start("--role", "proxy", "--upstream", str(backend_port))
    hz = os.sysconf("SC_CLK_TCK")
    try:
        _wrk(backend_port, 1, args.connections)  # warm-up both paths
        _wrk(proxy_port, 1, args.connections)
        ratios, cpu_us = [], []
        for n in range(1, args.rounds + 1):
            direct, _ = _wrk(backend_port, args.seconds, args.connections)
            before = _cpu_ticks(proxy.pid)
            via, total = _wrk(proxy_port, args.seconds, args.connections)
            used_s = (_cpu_ticks(proxy.pid) - before) / hz
            ratios.append(via / direct)
            cpu_us.append(used_s / total * 1e6)
            print(
                f"round {n}: direct {direct:9.0f} req/s   via proxy {via:9.0f} req/s   "
                f"ratio {via / direct:.3f}   proxy CPU {cpu_us[-1]:.1f} us/req"
            )
        print(
            f"median ratio {statistics.median(ratios):.3f} (spread {min(ratios):.3f}-{max(ratios):.3f}), "
            f"proxy CPU median {statistics.median(cpu_us):.1f} us/req, "
            f"wrk -t1 -c{args.connections} -d{args.seconds:g}s, uvloop, {args.backend} backend, {os.cpu_count()} CPUs"
        )
    finally:
        for proc in (proxy, backend):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
