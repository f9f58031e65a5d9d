"""A real ``redis-server`` on a loopback port, for the fleet tests (killed and restarted at will).

redis-server can't report a port the kernel chose, so one is picked by binding port 0; if another
process took it in between, the first start fails and is retried on a new port (restarts after
that keep their port, as the tests need).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError("redis-server is missing: .ci/run installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI runs these tests")
    return found


class RedisServer:
    """One redis-server process with a password; ``stop()``/``start()`` keep the same port."""

    def __init__(self, workdir: Path, *, tls: bool = False) -> None:
        self.workdir = workdir
        self.tls = tls
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _unused_port()
        self.password = secrets.token_urlsafe(16)
        self.password_file = workdir / "redis-password"
        self.password_file.write_text(self.password)
        self.password_file.chmod(0o600)
        self.key_file = workdir / "fleet.key"
        self.key_file.write_text(base64.b64encode(os.urandom(32)).decode())
        self.key_file.chmod(0o600)
        self.ca_file = workdir / "redis-ca.pem"
        self._tls_files: list[str] = []
        if tls:
            ca = trustme.CA()
            ca.cert_pem.write_to_path(str(self.ca_file))
            leaf = ca.issue_cert("127.0.0.1", "localhost")
            cert, key = workdir / "redis-cert.pem", workdir / "redis-key.pem"
            leaf.cert_chain_pems[0].write_to_path(str(cert))
            leaf.private_key_pem.write_to_path(str(key))
            self._tls_files = [
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(self.ca_file), "--tls-auth-clients", "no",
            ]  # fmt: skip
        self._proc: asyncio.subprocess.Process | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def _port_args(self) -> list[str]:
        if self.tls:
            return ["--port", "0", "--tls-port", str(self.port), *self._tls_files]
        return ["--port", str(self.port)]

    def cache_table(self, **overrides: object) -> dict[str, object]:
        return {
            "backend": "redis",
            "url": self.url,
            "password_file": str(self.password_file),
            "encryption_key_file": str(self.key_file),
            "key_prefix": "bearerd-test:",
            **overrides,
        }

    def client(self) -> aioredis.Redis:
        if self.tls:
            return aioredis.Redis(
                host="127.0.0.1", port=self.port, password=self.password, ssl=True, ssl_ca_certs=str(self.ca_file)
            )
        return aioredis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    async def start(self) -> None:
        for _ in range(5):
            if await self._start_once():
                self._started_once = True
                return
            if self._started_once:
                break  # a restart keeps its port: the daemons were configured with it
            self.port = _unused_port()  # someone took it between our pick and redis-server's bind
        raise AssertionError("redis-server did not start")

    async def _start_once(self) -> bool:
        self._proc = await asyncio.create_subprocess_exec(
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            self.password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            *self._port_args(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = self.client()
        try:
            for _ in range(400):
                if self._proc.returncode is not None:
                    return False  # it exited: the port was taken
                try:
                    if await client.ping():
                        return True
                except (OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.025)
            await self.stop()
            return False
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGKILL: what a crashed or partitioned Redis looks like to the daemons."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        self._proc = None
