"""A real Secret Service for the keyring tests: a private D-Bus session bus and gnome-keyring on it.

Everything is private to the test (its own bus, HOME and runtime directory), so the keys it
creates never touch the machine's keyring. The daemon and `bearerd login` run as processes
with ``env`` — libsecret finds the bus through ``DBUS_SESSION_BUS_ADDRESS``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

_PROBE = """
import sys
from pathlib import Path
from bearerd.tokens.keyring import choose_sealer
choose_sealer("keyring", Path(sys.argv[1]))
"""


def _require(tool: str, present: bool) -> None:
    if present:
        return
    if os.environ.get("CI"):
        raise AssertionError(f"{tool} is missing: .ci/run installs it")
    pytest.skip(f"{tool} is not installed (see README: encryption at rest)")


def require_keyring_extra() -> None:
    """Skip where the keyring extra isn't installed (a developer's machine); fail in CI, which installs it."""
    _require("PyGObject + msal-extensions (pip install 'bearerd[keyring]')", _has_modules("gi", "msal_extensions"))


class KeyringSession:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env: dict[str, str] = {}
        self._procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        dbus, keyring = shutil.which("dbus-daemon"), shutil.which("gnome-keyring-daemon")
        _require("dbus-daemon", dbus is not None)
        _require("gnome-keyring-daemon", keyring is not None)
        require_keyring_extra()
        assert dbus is not None and keyring is not None
        home, runtime = self.workdir / "home", self.workdir / "run"
        home.mkdir(parents=True)
        runtime.mkdir(mode=0o700)
        bus = await asyncio.create_subprocess_exec(
            dbus,
            "--session",
            "--nofork",
            "--nopidfile",
            "--print-address=1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._procs.append(bus)
        assert bus.stdout is not None
        address = (await asyncio.wait_for(bus.stdout.readline(), 10)).decode().strip()
        self.env = {"DBUS_SESSION_BUS_ADDRESS": address, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
        secrets = await asyncio.create_subprocess_exec(
            keyring,
            "--foreground",
            "--unlock",
            "--components=secrets",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        self._procs.append(secrets)
        assert secrets.stdin is not None
        secrets.stdin.write(b"test-keyring-password")  # creates and unlocks the "login" keyring
        await secrets.stdin.drain()
        secrets.stdin.close()
        for _ in range(100):
            probe = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _PROBE, str(self.workdir / "probe.json"), env={**os.environ, **self.env}
            )
            if await probe.wait() == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("gnome-keyring did not come up on the test bus")

    async def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


def _has_modules(*names: str) -> bool:
    """Whether each module imports (found is not enough: a broken install is found and fails)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            return False
    return True
