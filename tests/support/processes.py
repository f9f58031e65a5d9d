"""bearerd as a user runs it: ``bearerd …`` processes, a daemon process, ``bearerd login``.

The daemon process listens on port 0 and its addresses are read from its own ``started`` log
line, so no test picks a port by binding and releasing one. Its output is drained all the time
by a reader task (a daemon must never block on a full pipe) and kept for assertions.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp

from bearerd.emulator import EmulatorStack
from support.configs import Tables, write_tables


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


async def run_cli(*args: str, within_s: float = 60, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``bearerd ARGS`` to completion: (exit status, stdout, stderr)."""
    proc = await bearerd_cli(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), within_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Proc:
    """A running ``bearerd run``: its process, addresses and everything it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = b""
        self.base = ""
        self.admin = ""
        self._started = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output += line
            self._changed.set()
            if not self._started.is_set() and line.startswith(b"{"):
                event = json.loads(line)
                if event.get("event") == "started":
                    self.base = f"http://{event['listen'][0]}"
                    self.admin = f"http://{event['admin']}"
                    self._started.set()
        self._changed.set()

    async def started(self, within_s: float) -> None:
        waiter = asyncio.ensure_future(self._started.wait())
        ended = asyncio.ensure_future(self.proc.wait())
        try:
            await asyncio.wait({waiter, ended}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            ended.cancel()
        if not self._started.is_set():
            raise AssertionError(f"daemon did not start:\n{self.output.decode(errors='replace')[-3000:]}")

    async def wait_for_output(self, marker: bytes, within_s: float) -> None:
        """Until the daemon has printed ``marker`` (or fail after ``within_s``)."""
        async with asyncio.timeout(within_s):
            while marker not in self.output:
                self._changed.clear()
                if self._reader.done():
                    raise AssertionError(f"daemon ended before printing {marker!r}")
                await self._changed.wait()

    async def wait(self, within_s: float) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within_s)
        await asyncio.wait_for(self._reader, within_s)
        return code

    async def stop_reading(self) -> None:
        """Stop taking the daemon's output, like a stuck log shipper: the pipe fills up and stays full."""
        self._reader.cancel()
        with suppress(asyncio.CancelledError):
            await self._reader

    def resume_reading(self) -> None:
        """The log reader is back: take the daemon's output again."""
        if self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def exited(self, within_s: float) -> int:
        """The exit status, without reading the output (``wait()`` needs the pipe read to its end)."""
        async with asyncio.timeout(within_s):
            # Polled with a deadline: asyncio has no event for "exited" before the pipe is read to its end.
            while self.proc.returncode is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return self.proc.returncode

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        self.resume_reading()  # the pipe must be read to its end for its transport to close
        await self.proc.wait()
        with suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._reader, 10)  # the process is gone: EOF follows what it left


@asynccontextmanager
async def daemon_process(
    config: Path, tables: Tables, env: dict[str, str] | None = None, wait_ready: bool = True
) -> AsyncIterator[Proc]:
    """``bearerd run`` on ``tables`` (listening on port 0), started, and ready unless told not to wait."""
    tables["server"].update(listen=["127.0.0.1:0"], admin="127.0.0.1:0")
    write_tables(config, tables)
    proc = await bearerd_cli(
        "run", "-c", str(config), "--log-format", "json", env=env, stderr=asyncio.subprocess.STDOUT
    )
    p = Proc(proc)
    try:
        await p.started(60)
        if wait_ready:
            await wait_until_ready(p.admin, 30)
        yield p
    finally:
        await p.close()


async def wait_until_ready(admin: str, within_s: float) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(within_s):
        while True:
            async with session.get(admin + "/readyz") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)


async def run_login(stack: EmulatorStack, config: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`bearerd login` as a user runs it; the 'user' approves the code it prints once it has polled."""
    proc = await bearerd_cli("login", "alice", "-c", str(config), env=env)
    assert proc.stdout is not None and proc.stderr is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    code = first.split("enter the code ")[1].split()[0]
    assert code in stack.entra.users.pending_user_codes()
    # Approve only after the first poll was answered "authorization_pending", as a real user would be slower.
    await stack.entra.users.polled(code, within_s=30)
    stack.entra.users.approve(code, stack.user)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, first + out.decode(), err.decode()
