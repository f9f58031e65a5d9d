"""The daemon's log output as an operator's pipeline sees it: a reader that stalls, clients that
send garbage, and an install without uvloop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp

from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables
from support.processes import Proc, daemon_process
from support.wire import raw_exchange

# Each access line carries the path: ~7 KB a line, so a thousand of them overflow the pipe
# (64 KiB), the test's reader buffer and the daemon's log buffer (4 MiB) several times over.
LONG_PATH = "/nowhere/" + "x" * 7000
FLOOD = 1000


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


async def flood(session: aiohttp.ClientSession, base: str) -> None:
    """``FLOOD`` requests that each leave a ~7 KB access line, eight at a time."""

    async def some(count: int) -> None:
        for _ in range(count):
            async with session.get(base + LONG_PATH) as resp:
                assert resp.status == 404

    await asyncio.gather(*(some(FLOOD // 8) for _ in range(8)))


def events(proc: Proc) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.output.decode(errors="replace").splitlines() if line.startswith("{")]


async def test_a_stalled_log_reader_never_freezes_the_daemon(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        daemon_process(write_config(), stack_tables(stack)) as d,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        await d.stop_reading()  # the log shipper is stuck from here on: stdout is a full pipe nobody reads
        await flood(session, d.base)
        async with session.get(d.base + "/secretapi/api/status") as resp:
            assert resp.status == 200  # still serving, with the reader stalled
        async with session.get(d.admin + "/metrics") as resp:
            dropped = metric(await resp.text(), "bearerd_log_lines_dropped_total")
        assert 0 < dropped < FLOOD  # some lines were dropped, counted, and the rest kept

        d.resume_reading()  # the reader is back: the gap is said once, where it was
        marker = b'"event": "log.lines_dropped"'
        for _ in range(100):  # the first line the writer can take after the gap carries the notice
            async with session.get(d.base + "/secretapi/api/status") as resp:
                assert resp.status == 200
            with suppress(TimeoutError):
                await d.wait_for_output(marker, within_s=0.2)
            if marker in d.output:
                break
        notices = [e for e in events(d) if e.get("event") == "log.lines_dropped"]
        assert len(notices) == 1 and notices[0]["level"] == "warning"
        assert notices[0]["dropped"] >= dropped


async def test_sigterm_with_a_stalled_log_reader_exits_in_time(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    async with (
        daemon_process(write_config(), stack_tables(stack)) as d,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        await d.stop_reading()
        await flood(session, d.base)
        d.proc.send_signal(signal.SIGTERM)
        # shutdown_timeout_s is 5 in these tables; nothing is in flight, so only stdout could hold it up.
        assert await d.exited(10) == 0


async def test_malformed_requests_are_one_warning_never_a_traceback(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    # An install without uvloop (the default `pip install bearerd`): `import uvloop` fails there.
    hidden = tmp_path / "no-uvloop" / "uvloop"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("uvloop is not installed here")\n')
    path = os.pathsep.join(p for p in (str(hidden.parent), os.environ.get("PYTHONPATH", "")) if p)
    async with daemon_process(write_config(), stack_tables(stack), env={"PYTHONPATH": path}) as d:
        started = next(e for e in events(d) if e.get("event") == "started")
        assert started["event_loop"] == "asyncio"
        proxy = (d.base.split("//")[1].rsplit(":", 1)[0], int(d.base.rsplit(":", 1)[1]))
        admin = (d.admin.split("//")[1].rsplit(":", 1)[0], int(d.admin.rsplit(":", 1)[1]))
        bad = b"GET /secretapi/api/status HTTP/1.1\r\nHost: a\r\nNot a header line\r\n\r\n"
        for address in (proxy, admin):
            for _ in range(20):
                status, _, _ = await raw_exchange(address, bad)
                assert status == 400
        async with aiohttp.ClientSession() as session, session.get(d.base + "/secretapi/api/status") as resp:
            assert resp.status == 200
        await d.wait_for_output(b'"event": "request", ', within_s=10)
        d.proc.send_signal(signal.SIGTERM)
        assert await d.wait(15) == 0
    text = d.output.decode(errors="replace")
    assert "Traceback" not in text and "uvloop" not in text
    lines = events(d)
    assert not [e for e in lines if e.get("level") in ("error", "critical") or "exception" in e]
    # 40 refused requests: at most a rate-limited warning per listener, not one line each.
    assert len([e for e in lines if e.get("level") == "warning"]) <= 2
