"""Fleet scenario: N bearerd processes, token-endpoint calls per minute without and with Redis.

Tokens here live ``lifetime_s`` seconds (an emulator of their own), so several refresh windows
pass in a short run; the figure that matters is the ratio between the two phases, which is the
same whatever the lifetime: alone, every replica refreshes each window; with ``[cache] backend =
"redis"`` the fleet refreshes once per window.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import procs

from bearerd.emulator import EmulatorStack

APP_ID_URI = "api://bearerd-bench-fleet"


async def _start_redis(children: procs.Children, workdir: Path, logs: Path) -> procs.Child:
    port = procs.free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(workdir)]
    child = await children.spawn("redis", argv, port, logs / "redis.log")
    await procs.wait_tcp(port, child)
    return child


async def _load(ports: list[int], seconds: float) -> tuple[int, int]:
    """One request per replica every 100 ms: enough to keep every replica using its token."""
    ok = failed = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            for port in ports:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/b/small") as resp:
                        await resp.read()
                        ok, failed = (ok + 1, failed) if resp.status == 200 else (ok, failed + 1)
                except aiohttp.ClientError:
                    failed += 1
            await asyncio.sleep(0.1)
    return ok, failed


async def run_fleet(
    children: procs.Children, tmp: Path, logs: Path, backend_port: int, replicas: int, seconds: float, lifetime_s: int
) -> dict[str, Any]:
    results: dict[str, Any] = {"replicas": replicas, "seconds": seconds, "token_lifetime_s": lifetime_s}
    async with EmulatorStack(tmp / "fleet-emulator", apps=(), token_lifetime_s=lifetime_s) as stack:
        stack.entra.register_resource(APP_ID_URI)
        emu = procs.Emulator(
            stack.authority, stack.secret_client_id, stack.client_secret_file, stack.ca_file, APP_ID_URI + "/.default"
        )
        redis = await _start_redis(children, tmp, logs)
        key_file = tmp / "fleet.key"
        key_file.write_text(base64.b64encode(os.urandom(32)).decode())
        key_file.chmod(0o600)
        cache = f'\n[cache]\nbackend = "redis"\nurl = "redis://127.0.0.1:{redis.port}/0"\n'
        cache += f'encryption_key_file = "{key_file}"\n'
        try:
            for phase, extra in (("alone", ""), ("redis", cache)):
                started: list[procs.Child] = []
                try:
                    for i in range(replicas):
                        port = procs.free_port()
                        config = tmp / f"fleet-{phase}-{i}.toml"
                        text = procs.bearerd_config(emu, port, backend_port, tmp / f"state-{phase}-{i}", "errors")
                        config.write_text(text + extra)
                        argv = [str(procs.VENV_BIN / "bearerd"), "run", "-c", str(config)]
                        log = logs / f"bearerd-fleet-{phase}-{i}.log"
                        started.append(await children.spawn(f"fleet-{phase}-{i}", argv, port, log))
                    for child in started:
                        await procs.wait_http_ok(f"http://127.0.0.1:{child.port}/b/small", child)
                    before = stack.entra.token_calls(emu.client_id)
                    ok, failed = await _load([c.port for c in started], seconds)
                    calls = stack.entra.token_calls(emu.client_id) - before
                finally:
                    for child in started:
                        await children.stop(child)
                results[phase] = {
                    "token_calls": calls,
                    "calls_per_minute": calls * 60 / seconds,
                    "requests_ok": ok,
                    "requests_failed": failed,
                }
        finally:
            await children.stop(redis)
    return results
