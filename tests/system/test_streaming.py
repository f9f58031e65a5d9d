"""Bodies of any size stream through the daemon without growing its memory (1 GiB each way)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import aiohttp
import psutil

from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables
from support.processes import daemon_process

GIB = 1024**3
CHUNK = bytes(range(256)) * 1024  # 256 KiB


def peak_rss(pid: int) -> int:
    """VmHWM: the process's peak resident set size, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_one_gib_each_way_keeps_daemon_memory_flat(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    tables = stack_tables(stack)
    # Straight to the backend: this measures the daemon, not the App Proxy emulator.
    tables["routes.bulk"] = dict(
        tables["routes.secretapi"], match={"path_prefix": "/bulk/"}, upstream=stack.backend_url + "/"
    )
    async with daemon_process(write_config(tables), tables) as d:
        base = d.base + "/bulk"
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            async with session.get(base + "/api/status") as resp:
                assert resp.status == 200
            rss_before = psutil.Process(d.proc.pid).memory_info().rss

            received = 0
            async with session.get(f"{base}/download?bytes={GIB}") as resp:
                assert resp.status == 200
                async for part in resp.content.iter_any():
                    received += len(part)
            assert received == GIB

            async def body() -> AsyncIterator[bytes]:
                for _ in range(GIB // len(CHUNK)):
                    yield CHUNK

            async with session.post(f"{base}/upload", data=body()) as resp:
                assert resp.status == 200
                result = await resp.json()
            expected = hashlib.sha256()
            for _ in range(GIB // len(CHUNK)):
                expected.update(CHUNK)
            assert result == {"bytes": GIB, "sha256": expected.hexdigest()}

        growth = peak_rss(d.proc.pid) - rss_before
        print(f"daemon RSS before {rss_before / 2**20:.1f} MiB, peak growth {growth / 2**20:.1f} MiB for 2 GiB moved")
        assert growth < 48 * 2**20
