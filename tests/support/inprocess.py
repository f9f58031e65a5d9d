"""A daemon in this process, with its admin listener, and a client session for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from yarl import URL

from bearerd.config.loader import Config
from bearerd.daemon.admin import AdminListener
from bearerd.daemon.daemon import Daemon


@dataclass
class Running:
    daemon: Daemon
    base: str
    admin: str
    session: aiohttp.ClientSession

    def url(self, target: str) -> URL:
        """The target sent as written (no re-quoting), so byte-exact forwarding can be checked."""
        return URL(self.base + target, encoded=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.daemon.listeners.listen_addresses[0]


@asynccontextmanager
async def start(config: Config) -> AsyncIterator[Running]:
    daemon = Daemon(config)
    admin = AdminListener(daemon, config.settings.server.admin or "127.0.0.1:0")
    async with daemon, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False) as session:
        admin_host, admin_port = await admin.start()
        try:
            host, port = daemon.listeners.listen_addresses[0]
            yield Running(daemon, f"http://{host}:{port}", f"http://{admin_host}:{admin_port}", session)
        finally:
            await admin.close()
