"""Opening one upstream connection — direct (Happy Eyeballs) or CONNECT through an egress
proxy, then TLS — with every foreign error mapped to the core's tree in this one place; and
``open_tunnel``, the same connection as a raw byte ``Tunnel`` (no TLS, no HTTP) for blind relays.

The egress proxy is passed in already chosen (the caller evaluates HTTPS_PROXY / NO_PROXY);
nothing here reads the environment. Messages name the failure, never the proxy credentials.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import aiohappyeyeballs
import python_socks
from python_socks.async_.asyncio import Proxy

from .errors import UpstreamConnectError, UpstreamTimeoutError, UpstreamTLSError
from .tunnel import Tunnel

P = TypeVar("P", bound=asyncio.Protocol)


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("upstream origin must be http(s)://host[:port]")
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    @property
    def authority(self) -> str:
        """The Host header value: the port only when it isn't the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EgressProxy:
    """An HTTP proxy reached with CONNECT; credentials from the URL's userinfo (Basic)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> EgressProxy:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("egress proxy must be http://[user:pass@]host:port")
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(parts.hostname, parts.port or 80, user, password)

    def __repr__(self) -> str:  # never the password
        return f"EgressProxy({self.host}:{self.port}, auth={self.username is not None})"


async def open_connection(
    factory: Callable[[], P],
    origin: Origin,
    *,
    ssl_context: ssl.SSLContext | None,
    proxy: EgressProxy | None,
    timeout_s: float,
    happy_eyeballs_delay_s: float | None = 0.25,
) -> P:
    loop = asyncio.get_running_loop()
    tls = origin.scheme == "https"
    if tls and ssl_context is None:
        ssl_context = ssl.create_default_context()
    try:
        async with asyncio.timeout(timeout_s):
            if proxy is not None:
                via = Proxy(
                    python_socks.ProxyType.HTTP, proxy.host, proxy.port, proxy.username, proxy.password, loop=loop
                )
                sock = await via.connect(dest_host=origin.host, dest_port=origin.port, timeout=timeout_s)
            else:
                infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(
                    infos, happy_eyeballs_delay=happy_eyeballs_delay_s, loop=loop
                )
            try:
                _, protocol = await loop.create_connection(
                    factory,
                    sock=sock,
                    ssl=ssl_context if tls else None,
                    server_hostname=origin.host if tls else None,
                    ssl_handshake_timeout=timeout_s if tls else None,
                )
            except BaseException:
                sock.close()
                raise
    except TimeoutError as exc:  # includes python_socks.ProxyTimeoutError
        raise UpstreamTimeoutError("connect") from exc
    except ssl.SSLCertVerificationError as exc:
        raise UpstreamTLSError(exc.verify_message or "certificate verify failed", verify_failed=True) from exc
    except ssl.SSLError as exc:
        raise UpstreamTLSError(exc.reason or type(exc).__name__, verify_failed=False) from exc
    except python_socks.ProxyConnectionError as exc:
        raise UpstreamConnectError(f"egress proxy unreachable: {exc.strerror or 'connection failed'}") from exc
    except python_socks.ProxyError as exc:
        raise UpstreamConnectError(f"egress proxy refused CONNECT ({exc.error_code or 'bad reply'})") from exc
    except socket.gaierror as exc:
        raise UpstreamConnectError(f"cannot resolve {origin.host}: {exc.strerror}") from exc
    except (OSError, RuntimeError) as exc:  # uvloop may raise RuntimeError for a failed connect
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UpstreamConnectError(reason) from exc
    return protocol


class _Opening(asyncio.Protocol):
    """Holds what arrives before the ``Tunnel`` takes the transport over (a server's banner)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.early = bytearray()
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.early += data

    def eof_received(self) -> bool:
        self.eof = True
        return True


async def open_tunnel(host: str, port: int, *, proxy: EgressProxy | None, timeout_s: float) -> Tunnel:
    """A plain TCP connection to ``host:port`` (through ``proxy`` with CONNECT when given), as a ``Tunnel``."""
    opening = await open_connection(
        _Opening, Origin("tcp", host, port), ssl_context=None, proxy=proxy, timeout_s=timeout_s
    )
    assert opening.transport is not None  # noqa: S101 - connection_made ran before create_connection returned
    tunnel = Tunnel(opening.transport, bytes(opening.early))
    if opening.eof:
        tunnel.eof_received()
    return tunnel
