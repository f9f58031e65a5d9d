"""tls_listen: https for tools that refuse http, with bearerd's own CA (exported once, then trusted)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import stat
import sys
from pathlib import Path

import aiohttp
from yarl import URL

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from bearerd.proxy.localca import LocalCA
from support.configs import intercept_tables, render_toml, stack_tables, write_intercept_config
from support.inprocess import start
from support.processes import run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def export_ca(config: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bearerd.cli", "ca", "export", "-c", str(config), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode()


async def test_https_listener_with_local_ca_and_sni(stack: EmulatorStack, tmp_path: Path) -> None:
    port = free_port()
    tables = stack_tables(stack)
    tables["server"]["tls_listen"] = [f"127.0.0.1:{port}"]
    tables["routes.byhost"] = dict(tables["routes.secretapi"], match={"host": "secretapi.localhost"})
    config = tmp_path / "c.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n' + render_toml(tables))
    ca_pem = await export_ca(config)
    assert ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE((tmp_path / "state" / "tls" / "local-ca.key").stat().st_mode) == 0o600
    trust = ssl.create_default_context(cadata=ca_pem)
    async with start(load_config(config)) as running:
        assert running.daemon.listeners.tls_addresses[0][1] == port
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
            async with session.get(f"https://127.0.0.1:{port}/secretapi/api/status") as resp:
                assert resp.status == 200
            async with session.get(
                URL(f"https://127.0.0.1:{port}/secretapi/redirect?to=/api/status", encoded=True), allow_redirects=False
            ) as resp:
                assert resp.headers["Location"] == f"https://127.0.0.1:{port}/secretapi/api/status"
            # SNI: the host route's own certificate, verified for its name.
            async with session.get(
                f"https://127.0.0.1:{port}/echo/x",
                server_hostname="secretapi.localhost",
                headers={"Host": f"secretapi.localhost:{port}"},
            ) as resp:
                assert resp.status == 200
                assert (await resp.json())["raw_path"] == "/echo/x"
    assert await export_ca(config) == ca_pem  # generated once, kept


async def test_ca_rotate_issues_a_new_ca_for_the_configured_hosts(stack: EmulatorStack, tmp_path: Path) -> None:
    tables = intercept_tables(stack)
    config = write_intercept_config(stack, tmp_path, tables)
    first = await export_ca(config)
    key_file = tmp_path / "state" / "tls" / "local-ca.key"
    old_key = key_file.read_bytes()
    tables["routes.hr"] = dict(tables["routes.otherapi"], match={"path_prefix": "/hr/"},
                               upstream="https://hr-contoso.msappproxy.net/")  # fmt: skip
    write_intercept_config(stack, tmp_path, tables)
    code, out, err = await run_cli("ca", "export", "-c", str(config))
    assert code == 0 and out == first  # kept: the CA is only replaced on request…
    assert "may not sign for hr-contoso.msappproxy.net: run `bearerd ca rotate`" in err  # …and says why it should be
    code, out, err = await run_cli("ca", "rotate", "-c", str(config))
    assert code == 0, err
    assert "hr-contoso.msappproxy.net" in out and "restart the daemon" in out
    new_key = key_file.read_bytes()
    assert new_key != old_key and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert new_key.decode() not in out + err and b"PRIVATE KEY" not in (out + err).encode()
    rotated = await export_ca(config)
    assert rotated != first
    assert LocalCA(tmp_path / "state" / "tls").not_covered(["hr-contoso.msappproxy.net"]) == []
    code, _, err = await run_cli("ca", "export", "-c", str(config), "--format", "jks")
    assert code == 2 and "--out" in err
