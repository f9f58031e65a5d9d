"""The proxy's listening sockets: TCP, Unix, https (local CA, SNI) and routes' own ports.

Every TCP listener carries the header deadline (``slowloris.py``). Unix sockets are created with
no more than their final file mode, so there is no moment in which others could connect. Closing
is two steps the daemon orders explicitly: stop accepting on every listener first, then let the
requests in flight finish (all listeners together, within one shutdown timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl

import structlog
from aiohttp import web

from bearerd.config.addresses import UNIX_PREFIX, bind_host, parse_hostport
from bearerd.config.loader import Config
from bearerd.proxy.handler import Proxy
from bearerd.proxy.routing import SHARED_LISTENER
from bearerd.proxy.slowloris import DeadlineTCPSite

log = structlog.get_logger("bearerd.listeners")


class Listeners:
    def __init__(self, config: Config, proxy: Proxy) -> None:
        self._config = config
        self._proxy = proxy
        self._runners: list[web.ServerRunner] = []
        self._unix_paths: list[str] = []
        self.listen_addresses: list[tuple[str, int]] = []
        self.unix_sockets: list[str] = []
        self.tls_addresses: list[tuple[str, int]] = []
        self.route_addresses: dict[str, tuple[str, int]] = {}

    async def start(self) -> None:
        server = self._config.settings.server
        for address in server.listen:
            if address.startswith(UNIX_PREFIX):
                self.unix_sockets.append(await self._listen_unix(address[len(UNIX_PREFIX) :]))
            else:
                self.listen_addresses.append(await self._listen(address, SHARED_LISTENER))
        if server.tls_listen:
            context = self._tls_context()
            for address in server.tls_listen:
                self.tls_addresses.append(await self._listen(address, SHARED_LISTENER, context))
        for name, route in self._config.settings.routes.items():
            if route.match.listen is not None:
                self.route_addresses[name] = await self._listen(route.match.listen, name)

    async def stop_accepting(self) -> None:
        for runner in self._runners:
            for site in list(runner.sites):
                await site.stop()

    async def close(self) -> None:
        """Finish the requests in flight (within ``shutdown_timeout_s``), then drop the sockets."""
        await self.stop_accepting()
        await asyncio.gather(*(runner.cleanup() for runner in self._runners))
        self._runners.clear()
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a syscall on a local directory entry: not worth a thread

    def _tls_context(self) -> ssl.SSLContext:
        from bearerd.proxy.localca import LocalCA  # cryptography: loaded only for tls_listen

        ca = LocalCA(self._config.state_dir / "tls")
        hosts = [r.match.host.rsplit(":", 1)[0] for r in self._config.settings.routes.values() if r.match.host]
        log.info("local_tls", ca=str(ca.cert_file), hosts=hosts)
        return ca.server_context(hosts)

    async def _runner(self, listener: str, scheme: str = "http") -> web.ServerRunner:
        server = self._config.settings.server
        handler = self._proxy.handler(listener, (server.max_header_bytes, server.max_headers), scheme)
        runner = web.ServerRunner(handler, shutdown_timeout=server.shutdown_timeout_s)
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def _listen_unix(self, path: str) -> str:
        server = self._config.settings.server
        runner = await self._runner(SHARED_LISTENER)
        site = web.UnixSite(runner, path)
        mode = int(server.unix_socket_mode, 8)
        # The file mode is the access control: the socket is created with no more than the final
        # mode (umask), so there is no moment in which others could connect.
        previous = os.umask(0o777 & ~mode)
        try:
            await site.start()
        finally:
            os.umask(previous)
        os.chmod(path, mode)
        self._unix_paths.append(path)
        log.info("listening", address=f"unix:{path}", mode=server.unix_socket_mode)
        return path

    async def _listen(self, address: str, listener: str, tls: ssl.SSLContext | None = None) -> tuple[str, int]:
        host, port = parse_hostport(address)
        runner = await self._runner(listener, "https" if tls else "http")
        site = DeadlineTCPSite(
            runner,
            bind_host(host),
            port,
            ssl_context=tls,
            header_timeout_s=self._config.settings.server.header_timeout_s,
        )
        await site.start()
        bound = runner.addresses[-1]
        log.info("listening", address=f"{host}:{bound[1]}", listener=listener)
        return str(bound[0]), int(bound[1])
