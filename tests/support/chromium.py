"""Headless Chromium from Debian's package, for the tests that check a page in a real browser.

Absent locally, those tests are skipped with the reason; in CI (``CI`` set) its absence fails
them, because ``.ci/run`` installs it — as ``redis_server.py`` does for redis. Chromium runs with
a throwaway profile and everything that would reach the network off, and ``--dump-dom`` prints the
page as its scripts left it after ``virtual_time_ms`` of the page's own (virtual) time — timers
fire without the test waiting for them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
)


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    return found


async def dump_dom(url: str, profile: Path, *, virtual_time_ms: int = 3500, within_s: float = 60) -> str:
    """The DOM of ``url`` after its scripts ran for ``virtual_time_ms`` of virtual time."""
    proc = await asyncio.create_subprocess_exec(
        chromium_binary(),
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={virtual_time_ms}",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within_s)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()
