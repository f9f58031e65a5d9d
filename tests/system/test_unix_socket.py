"""A Unix domain socket listener: for curl --unix-socket and sidecars sharing a volume."""

from __future__ import annotations

import asyncio
import shutil
import stat
import subprocess
from pathlib import Path

import aiohttp

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import render_toml, stack_tables
from support.inprocess import start


async def test_unix_listener_with_restrictive_mode(stack: EmulatorStack, tmp_path: Path) -> None:
    sock = tmp_path / "run" / "bearerd.sock"
    sock.parent.mkdir()
    tables = stack_tables(stack)
    tables["server"]["listen"] = ["127.0.0.1:0", f"unix:{sock}"]
    tables["server"]["unix_socket_mode"] = "0660"
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    async with start(load_config(path)) as running:
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as session,
            session.get("http://localhost/secretapi/api/status") as resp,
        ):
            assert resp.status == 200
        curl = shutil.which("curl")
        if curl is not None:
            out = await asyncio.to_thread(
                subprocess.run,
                [curl, "-s", "--unix-socket", str(sock), "http://localhost/secretapi/api/status"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert '"status": "ok"' in out.stdout
        assert running.daemon.listeners.unix_sockets == [str(sock)]
    assert not sock.exists()  # removed on shutdown


def test_unix_listener_needs_absolute_path(stack: EmulatorStack, tmp_path: Path) -> None:
    import pytest

    from bearerd.errors import ConfigError

    tables = stack_tables(stack)
    tables["server"]["listen"] = ["unix:relative.sock"]
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[server] listen" in str(info.value) and "absolute path" in str(info.value)
