"""The proxy's listening sockets on bearerd's HTTP/1.1 core: TCP, Unix, https (local CA, SNI) and
routes' own ports.

Every listener carries the same limits (``ServerLimits`` from ``[server]``): request line, header
size, count and block limits and the per-request header deadline (slowloris), enforced by the
core before anything reaches the handler. Unix sockets are created with no more than their final
file mode, so there is no moment in which others could connect. Closing stops every listener
accepting at once, then lets the requests in flight finish within one shutdown timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from typing import TYPE_CHECKING

import structlog

from bearerd.config.addresses import UNIX_PREFIX, bind_host, parse_hostport
from bearerd.config.loader import Config
from bearerd.config.schema import ServerSettings
from bearerd.errors import ProxyError
from bearerd.h1 import H1Server, ServerLimits, serve_tcp, serve_unix
from bearerd.proxy.handler import Proxy
from bearerd.proxy.routing import SHARED_LISTENER

if TYPE_CHECKING:
    from bearerd.proxy.localca import LocalCA

log = structlog.get_logger("bearerd.listeners")


def server_limits(server: ServerSettings) -> ServerLimits:
    return ServerLimits(
        max_request_line=server.max_header_bytes,
        max_header_field=server.max_header_bytes,
        max_header_count=server.max_headers,
        max_header_bytes=server.max_header_block_bytes,
        header_timeout_s=server.header_timeout_s,
    )


class Listeners:
    def __init__(self, config: Config, proxy: Proxy, ca: LocalCA | None = None) -> None:
        """``ca``: the local CA, needed for ``tls_listen``."""
        self._config = config
        self._proxy = proxy
        self._ca = ca
        self._limits = server_limits(config.settings.server)
        self._servers: list[H1Server] = []
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

    async def close(self) -> None:
        """Stop accepting everywhere, let requests in flight finish within ``shutdown_timeout_s``
        (all listeners at once), then cut what is left."""
        grace = self._config.settings.server.shutdown_timeout_s
        servers, self._servers = self._servers, []
        await asyncio.gather(*(s.close(grace_s=grace) for s in servers))
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a syscall on a local directory entry: not worth a thread

    def _tls_context(self) -> ssl.SSLContext:
        ca = self._ca
        if ca is None:
            from bearerd.proxy.localca import open_local_ca  # cryptography: loaded only for the local CA

            ca = self._ca = open_local_ca(self._config.settings, self._config.state_dir)
        hosts = [r.match.host.rsplit(":", 1)[0] for r in self._config.settings.routes.values() if r.match.host]
        log.info("local_tls", ca=str(ca.cert_file), hosts=hosts)
        return ca.server_context(hosts)

    def _refused(self, error: ProxyError) -> None:
        self._proxy.accounting.refused(error)

    async def _listen_unix(self, path: str) -> str:
        server = self._config.settings.server
        mode = int(server.unix_socket_mode, 8)
        # The file mode is the access control: the socket is created with no more than the final
        # mode (umask), so there is no moment in which others could connect.
        previous = os.umask(0o777 & ~mode)
        try:
            listener = await serve_unix(
                path, self._proxy.handler(SHARED_LISTENER), self._limits, on_refusal=self._refused
            )
        finally:
            os.umask(previous)
        os.chmod(path, mode)
        self._servers.append(listener)
        self._unix_paths.append(path)
        log.info("listening", address=f"unix:{path}", mode=server.unix_socket_mode)
        return path

    async def _listen(self, address: str, listener: str, tls: ssl.SSLContext | None = None) -> tuple[str, int]:
        host, port = parse_hostport(address)
        bound = await serve_tcp(
            bind_host(host), port, self._proxy.handler(listener), self._limits, ssl=tls, on_refusal=self._refused
        )
        self._servers.append(bound)
        log.info("listening", address=f"{host}:{bound.port}", listener=listener)
        return str(bound.address[0]), bound.port
