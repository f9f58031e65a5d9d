"""Addresses as the config writes them: ``host:port``, ``[v6]:port``, ``unix:/path``, origins.

Pure string work, shared by the schema's validators and by the code that binds and matches
(listeners, the proxy's sign-in host check), so both read an address the same way.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_ADMIN = "127.0.0.1:9180"
UNIX_PREFIX = "unix:"


def parse_hostport(value: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port``; raise ValueError with a usable message."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not host:port (e.g. {DEFAULT_LISTEN!r} or '[::1]:8080')")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


def bind_host(host: str) -> str:
    """The address to bind for a configured host: ``localhost`` means IPv4 loopback."""
    return "127.0.0.1" if host == "localhost" else host


def origin_key(url: str) -> str:
    """``host:port`` of an absolute URL, lower-case, with the scheme's default port filled in."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme.lower() == "https" else 80
    return f"{(parts.hostname or '').lower()}:{port or default}"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
