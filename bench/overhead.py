"""What bearerd's own features cost per request, beyond its HTTP/1.1 core — measured in one process.

Client, backend and proxy share one event loop (uvloop), so the process's own CPU time
(``time.process_time``) is what is counted: other processes on a busy machine barely move it,
unlike a req/s figure. Three targets get the same requests — the backend directly, a bare
forwarder on ``bearerd.h1`` (server + pool, one header added: the core's floor) and a real
bearerd ``Daemon`` (token, routing, header hygiene, cookies, retry flow, metrics, access line) —
in interleaved rounds (A B C, C B A, …); per request::

    core     = T(forwarder) - T(direct)
    bearerd  = T(bearerd)   - T(direct)
    features = T(bearerd)   - T(forwarder)     (issue 12's target: <= 30 us)

    python bench/overhead.py [--requests 6000] [--connections 16] [--rounds 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

BODY = b'{"ok": true, "service": "overhead-backend", "note": "a small JSON answer of about 100 bytes"}'
HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "host"})
SCOPE = "api://bearerd-overhead/.default"


class _Client(asyncio.Protocol):
    """Sequential keep-alive GETs on one connection: the next request goes when the answer is in."""

    def __init__(self, request: bytes, count: int, done: asyncio.Future[None]) -> None:
        self._request = request
        self._left = count
        self._done = done
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's isn't an asyncio.Transport subclass
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self._buffer[:head_end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 : head.find(b"\r\n", start) if b"\r\n" in head[start:] else None])
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            if not self._buffer.startswith(b"HTTP/1.1 200 "):
                self._done.set_exception(RuntimeError(self._buffer[:200].decode(errors="replace")))
                return
            self._buffer = self._buffer[end:]
            self._left -= 1
            if self._left == 0:
                assert self._transport is not None  # noqa: S101
                self._transport.close()
                if not self._done.done():
                    self._done.set_result(None)
                return
            assert self._transport is not None  # noqa: S101
            self._transport.write(self._request)


async def _drive(port: int, path: str, requests: int, connections: int) -> float:
    """CPU seconds of this process while ``requests`` GETs of ``path`` are answered."""
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: overhead\r\n\r\n".encode()
    per = requests // connections
    started = time.process_time()
    done = []
    for _ in range(connections):
        future: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(lambda f=future: _Client(request, per, f), "127.0.0.1", port)  # type: ignore[misc]
        done.append(future)
    await asyncio.gather(*done)
    return time.process_time() - started


async def _backend() -> Any:
    from bearerd.h1 import Request, Responder, serve_tcp

    headers = [("Content-Type", "application/json")]

    async def handler(request: Request, responder: Responder) -> None:
        await responder.send(200, "OK", headers, BODY)

    return await serve_tcp("127.0.0.1", 0, handler)


async def _forwarder(backend_port: int) -> tuple[Any, Any]:
    from bearerd.h1 import PoolOptions, Request, Responder, UpstreamPool, serve_tcp

    pool = UpstreamPool(f"http://127.0.0.1:{backend_port}", options=PoolOptions(max_connections=64))

    async def handler(request: Request, responder: Responder) -> None:
        headers = [(n, v) for n, v in request.headers if n.lower() not in HOP]
        headers.append(("Authorization", "Bearer overhead-token"))
        async with await pool.request(request.method, request.target, headers, None, read_timeout_s=30) as up:
            out = [(n, v) for n, v in up.headers if n.lower() not in HOP]
            await responder.send(up.status, up.reason, out, await up.read())

    return await serve_tcp("127.0.0.1", 0, handler), pool


def _config(workdir: Path, stack: Any, backend_port: int, access_log: str) -> Path:
    config = workdir / "bearerd.toml"
    config.write_text(
        f"""[server]
listen = ["127.0.0.1:0"]
admin = ""
[credentials.bench]
kind = "client_secret"
authority = "{stack.authority}"
client_id = "{stack.secret_client_id}"
client_secret_file = "{stack.client_secret_file}"
ca_file = "{stack.ca_file}"
[routes.bench]
match = {{ path_prefix = "/b/" }}
upstream = "http://127.0.0.1:{backend_port}/"
credential = "bench"
scopes = ["{SCOPE}"]
access_log = "{access_log}"
"""
    )
    return config


async def measure(requests: int, connections: int, rounds: int, access_log: str) -> dict[str, Any]:
    from bearerd.config.loader import load_config
    from bearerd.daemon.daemon import Daemon
    from bearerd.emulator import EmulatorStack
    from bearerd.logs import configure_logging

    # The access line goes where a daemon's would: a real file descriptor, through the log writer.
    null = open(os.devnull, "w")  # noqa: SIM115,ASYNC230 - open for the whole measurement, before any traffic
    configure_logging("json", "info", stream=null)
    with tempfile.TemporaryDirectory(prefix="bearerd-overhead-") as tmp:
        async with EmulatorStack(Path(tmp) / "emulator", apps=()) as stack:
            stack.entra.register_resource(SCOPE.removesuffix("/.default"))
            backend = await _backend()
            forwarder, pool = await _forwarder(backend.port)
            config = load_config(_config(Path(tmp), stack, backend.port, access_log))
            async with Daemon(config) as daemon:
                if not await daemon.wait_ready(within_s=30):
                    raise RuntimeError("bearerd got no token from the emulator")
                bearerd_port = daemon.listeners.listen_addresses[0][1]
                targets: dict[str, Callable[[], Awaitable[float]]] = {
                    "direct": lambda: _drive(backend.port, "/small", requests, connections),
                    "forwarder": lambda: _drive(forwarder.port, "/small", requests, connections),
                    "bearerd": lambda: _drive(bearerd_port, "/b/small", requests, connections),
                }
                for run in targets.values():  # warm: pools, caches, the first token
                    await run()
                samples: dict[str, list[float]] = {name: [] for name in targets}
                # A B C, C B A, …: a drift within a round (a neighbour's load, the CPU's clock) weighs on
                # every target alike instead of always on the same neighbour pair.
                order = list(targets.items())
                for i in range(rounds):
                    for name, run in order if i % 2 == 0 else order[::-1]:
                        samples[name].append(await run() / requests * 1e6)
            await forwarder.close()
            await pool.close()
            await backend.close()
    null.close()
    per_round = [
        {
            "core_us": f - d,
            "bearerd_us": b - d,
            "features_us": b - f,
        }
        for d, f, b in zip(samples["direct"], samples["forwarder"], samples["bearerd"], strict=True)
    ]
    result: dict[str, Any] = {
        "requests_per_round": requests,
        "connections": connections,
        "rounds": rounds,
        "access_log": access_log,
        "cpu_us_per_request": {name: statistics.median(values) for name, values in samples.items()},
    }
    for key in ("core_us", "bearerd_us", "features_us"):
        values = [r[key] for r in per_round]
        result[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--access-log", choices=("all", "errors", "off"), default="all")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(measure(args.requests, args.connections, args.rounds, args.access_log))
    labels = (("core_us", "the core (bare forwarder)"), ("bearerd_us", "bearerd"), ("features_us", "features"))
    for key, label in labels:
        r = result[key]
        print(f"{label:28s} {r['median']:6.1f} us/request  (rounds {r['min']:.1f} … {r['max']:.1f})")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
