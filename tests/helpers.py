"""Test helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from bearerd.config.schema import Settings, load_settings
from bearerd.daemon.daemon import Daemon
from bearerd.emulator import EmulatorStack

TEST_APPS = ("secretapi", "otherapi")


def log_events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def render_toml(tables: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, fields in tables.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in fields.items())
        out.append("")
    return "\n".join(out)


def stack_tables(stack: EmulatorStack, **route_overrides: Any) -> dict[str, dict[str, Any]]:
    """A config for the stack: a secret credential, a certificate credential, one route per app."""
    app = stack.apps["secretapi"]
    other = stack.apps["otherapi"]
    route: dict[str, Any] = {
        "match": {"path_prefix": "/secretapi/"},
        "upstream": app.external_url,
        "credential": "emu-secret",
        "scopes": [app.scope],
    }
    route.update(route_overrides)
    return {
        "server": {"listen": ["127.0.0.1:0"], "admin": "127.0.0.1:0", "shutdown_timeout_s": 5},
        "credentials.emu-secret": {
            "kind": "client_secret",
            "authority": stack.authority,
            "client_id": stack.secret_client_id,
            "client_secret_file": str(stack.client_secret_file),
            "ca_file": str(stack.ca_file),
        },
        "credentials.emu-cert": {
            "kind": "certificate",
            "authority": stack.authority,
            "client_id": stack.cert_client_id,
            "certificate_file": str(stack.cert_file),
            "private_key_file": str(stack.key_file),
            "ca_file": str(stack.ca_file),
        },
        "routes.secretapi": route,
        "routes.otherapi": {
            "match": {"path_prefix": "/otherapi/"},
            "upstream": other.external_url,
            "credential": "emu-cert",
            "scopes": [other.scope],
        },
    }


ConfigWriter = Callable[..., Path]


@dataclass
class Running:
    daemon: Daemon
    base: str
    admin: str
    session: aiohttp.ClientSession

    def url(self, target: str) -> URL:
        return URL(self.base + target, encoded=True)


@asynccontextmanager
async def start(settings: Settings, trace_configs: list[aiohttp.TraceConfig] | None = None) -> AsyncIterator[Running]:
    async with (
        Daemon(settings, trace_configs) as daemon,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False) as session,
    ):
        host, port = daemon.listen_addresses[0]
        admin = daemon.admin_address
        assert admin is not None
        yield Running(daemon, f"http://{host}:{port}", f"http://{admin[0]}:{admin[1]}", session)


def federated_credential(stack: EmulatorStack) -> dict[str, Any]:
    return {
        "kind": "client_assertion",
        "authority": stack.authority,
        "client_id": stack.federated_client_id,
        "token_file": str(stack.federated_token_file),
        "ca_file": str(stack.ca_file),
    }


def user_settings(stack: EmulatorStack, tmp_path: Path) -> tuple[Path, Settings]:
    app = stack.apps["secretapi"]
    tables = stack_tables(stack, credential="alice", scopes=[app.app_id_uri + "/user_impersonation"])
    tables["credentials.alice"] = {
        "kind": "device_code",
        "authority": stack.authority,
        "client_id": stack.public_client_id,
        "ca_file": str(stack.ca_file),
    }
    path = tmp_path / "user.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n' + render_toml(tables))
    return path, load_settings(path)[0]


async def run_login(stack: EmulatorStack, config: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`bearerd login` as a user runs it; the 'user' approves the code it prints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bearerd.cli",
        "login",
        "alice",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    code = first.split("enter the code ")[1].split()[0]
    assert code in stack.entra.users.pending_user_codes()
    await asyncio.sleep(1.2)  # let it poll at least once: authorization_pending
    stack.entra.users.approve(code, stack.user)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, first + out.decode(), err.decode()


async def raw_exchange(running: Running, request: bytes) -> tuple[int, dict[str, object]]:
    host, port = running.daemon.listen_addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # the daemon closes after a refusal or Connection: close
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.startswith(b"{") else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, base: str, admin: str) -> None:
        self.proc, self.base, self.admin = proc, base, admin
        self.output = b""

    async def wait(self, within_s: float) -> int:
        assert self.proc.stdout is not None
        self.output += await asyncio.wait_for(self.proc.stdout.read(), within_s)
        return await asyncio.wait_for(self.proc.wait(), within_s)


async def bearerd_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdout: int = asyncio.subprocess.PIPE,
    stderr: int = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """``bearerd ARGS`` as a process, with this environment plus ``env``."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bearerd.cli", *args, stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})}
    )


@asynccontextmanager
async def daemon_process(
    config: Path, tables: dict[str, dict[str, Any]], env: dict[str, str] | None = None, wait_ready: bool = True
) -> AsyncIterator[Proc]:
    port, admin = free_port(), free_port()
    tables["server"].update(listen=[f"127.0.0.1:{port}"], admin=f"127.0.0.1:{admin}")
    config.write_text(render_toml(tables))
    proc = await bearerd_cli(
        "run", "-c", str(config), "--log-format", "json", env=env, stderr=asyncio.subprocess.STDOUT
    )
    p = Proc(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(p.admin + ("/readyz" if wait_ready else "/healthz")) as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectorError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("daemon not ready")
        yield p
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
