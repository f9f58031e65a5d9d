"""The daemon as a process: signals, graceful shutdown, reload and systemd notifications."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import aiohttp

from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, render_toml, stack_tables
from support.processes import bearerd_cli, daemon_process


class NotifyListener:
    """A NOTIFY_SOCKET like systemd's: a datagram socket collecting what the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def close(self) -> None:
        self.sock.close()


async def test_sigterm_lets_a_slow_stream_finish_and_notifies_systemd(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    notify = NotifyListener(tmp_path / "notify.sock")
    try:
        env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"}
        async with daemon_process(write_config(), stack_tables(stack), env) as d:
            assert any("READY=1" in m for m in notify.drain())
            async with (
                aiohttp.ClientSession() as session,
                session.get(d.base + "/secretapi/stream?chunks=8&interval=0.25") as resp,
            ):
                first = await resp.content.readline()
                assert first == b"chunk 0\n"
                d.proc.send_signal(signal.SIGTERM)
                rest = await resp.content.read()
            assert rest.count(b"chunk") == 7  # the stream in flight completed
            assert await d.wait(15) == 0
        messages = notify.drain()
        assert any("WATCHDOG=1" in m for m in messages)
        assert any("STOPPING=1" in m for m in messages)
        assert b'"event": "stopped"' in d.output
    finally:
        notify.close()


async def test_new_connections_refused_after_sigterm(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    async with daemon_process(write_config(), stack_tables(stack)) as d, aiohttp.ClientSession() as session:
        async with session.get(d.base + "/secretapi/stream?chunks=6&interval=0.25") as resp:
            await resp.content.readline()
            d.proc.send_signal(signal.SIGTERM)
            await d.wait_for_output(b'"event": "stopping"', 10)
            # Listeners close right after the stopping line: from then on a new connection is refused,
            # while the stream that was in flight goes on to its end.
            async with asyncio.timeout(5):
                while True:
                    try:
                        async with aiohttp.ClientSession() as fresh, fresh.get(d.base + "/secretapi/api/status"):
                            pass
                    except aiohttp.ClientConnectorError:
                        break
            assert (await resp.content.read()).count(b"\n") == 5
        assert await d.wait(15) == 0


async def test_second_sigint_exits_at_once(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    async with daemon_process(write_config(), stack_tables(stack)) as d, aiohttp.ClientSession() as session:
        async with session.get(d.base + "/secretapi/stream?chunks=100&interval=0.2") as resp:
            await resp.content.readline()
            d.proc.send_signal(signal.SIGINT)
            await d.wait_for_output(b'"event": "stopping"', within_s=10)  # the first one was taken
            started = time.monotonic()
            d.proc.send_signal(signal.SIGINT)
            await d.wait(10)
            assert time.monotonic() - started < 3
        assert b'"event": "stopping_now"' in d.output


async def test_shutdown_timeout_cancels_what_is_left(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    tables = stack_tables(stack)
    tables["server"]["shutdown_timeout_s"] = 1
    async with (
        daemon_process(write_config(), tables) as d,
        aiohttp.ClientSession() as session,
        session.get(d.base + "/secretapi/stream?chunks=100&interval=0.2") as resp,
    ):
        await resp.content.readline()
        started = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert await d.wait(15) == 0
        assert time.monotonic() - started < 5


async def test_sighup_reload_keeps_tokens_and_rejects_bad_config(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    config = tmp_path / "reload.toml"
    tables = stack_tables(stack)
    notify = NotifyListener(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path)}
    async with daemon_process(config, tables, env) as d, aiohttp.ClientSession() as session:
        async with session.get(d.base + "/again/api/status") as resp:
            assert resp.status == 404
        calls = stack.entra.token_calls(stack.secret_client_id)

        tables["routes.again"] = dict(tables["routes.secretapi"], match={"path_prefix": "/again/"})
        config.write_text(render_toml(tables))
        d.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            async with session.get(d.base + "/again/api/status") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert resp.status == 200
        # Same credential and scopes: the token was kept, nobody asked Entra again.
        assert stack.entra.token_calls(stack.secret_client_id) == calls
        messages = notify.drain()
        reloading = next(i for i, m in enumerate(messages) if "RELOADING=1" in m)
        assert any("READY=1" in m for m in messages[reloading + 1 :])

        config.write_text("this is = not [valid toml")
        d.proc.send_signal(signal.SIGHUP)
        await d.wait_for_output(b'"event": "reload.rejected"', within_s=10)
        async with session.get(d.base + "/again/api/status") as resp:
            assert resp.status == 200  # the old configuration stays
        async with session.get(d.admin + "/metrics") as resp:
            metrics = await resp.text()
        assert 'bearerd_config_reloads_total{outcome="applied"} 1.0' in metrics
        assert 'bearerd_config_reloads_total{outcome="rejected"} 1.0' in metrics

        # `bearerd reload` finds the daemon at the config's admin address (here: where it really listens).
        tables["server"]["admin"] = d.admin.removeprefix("http://")
        config.write_text(render_toml(tables))
        proc = await bearerd_cli("reload", "-c", str(config))
        out, _ = await proc.communicate()
        assert proc.returncode == 0 and b"reloaded" in out
        d.proc.send_signal(signal.SIGTERM)
        await d.wait(15)
    notify.close()
    assert b'"event": "reload.rejected"' in d.output


async def test_started_line_names_the_event_loop_and_aiohttp_speedups(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    import importlib.util
    import json

    async with daemon_process(write_config(), stack_tables(stack)) as d:
        d.proc.send_signal(signal.SIGTERM)
        assert await d.wait(15) == 0
    started = next(json.loads(line) for line in d.output.splitlines() if b'"event": "started"' in line)
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # uvloop: bearerd[speed]
    assert started["event_loop"] == expected
    assert started["aiohttp_speedups"] is True
