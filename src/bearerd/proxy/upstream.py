"""The one upstream call, and the one translation of client-library errors into bearerd's.

Every way talking to the upstream or to the local client can fail is mapped here, once:
``upstream_errors`` turns the client library's exceptions into ``UpstreamTimeout`` /
``UpstreamUnreachable``, and ``client_errors`` turns a local client's disappearance into
``ClientGone``. The handler never catches a library exception itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from bearerd.errors import UpstreamTimeout, UpstreamUnreachable
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.routing import Upstream

# How a local client's disappearance shows while we read its request body or write its response
# (aiohttp's ClientConnectionResetError is a ConnectionResetError; a cut upload is a payload error).
_CLIENT_GONE = (ConnectionResetError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError)


class ClientGone(Exception):
    """The local client closed its connection; nothing left to answer."""


@contextmanager
def client_errors() -> Iterator[None]:
    try:
        yield
    except _CLIENT_GONE as exc:
        raise ClientGone() from exc


@contextmanager
def upstream_errors(timeout_s: float | None, phase: str = "") -> Iterator[None]:
    """The upstream's failures as problems; ``phase`` says what was going on (for the detail)."""
    during = f" {phase}" if phase else ""
    try:
        yield
    except ClientGone:
        raise
    except TimeoutError as exc:
        raise UpstreamTimeout(
            f"the upstream did not answer{during} within {timeout_s or 0:g} s (route timeout_s)"
        ) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        raise UpstreamUnreachable(
            "TLS certificate of the upstream could not be verified; add its CA with ca_file on the credential"
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnreachable(f"cannot connect to the upstream ({exc.strerror or type(exc).__name__})") from exc
    except aiohttp.ClientResponseError as exc:
        raise UpstreamUnreachable(f"the upstream sent an invalid response ({exc.message})") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnreachable(f"the upstream connection failed{during} ({type(exc).__name__})") from exc


async def send(
    session: aiohttp.ClientSession,
    upstream: Upstream,
    method: str,
    url: URL,
    headers: CIMultiDict[str],
    body: bytes | AsyncIterator[bytes] | None,
) -> aiohttp.ClientResponse:
    """One request to the upstream; redirects are never followed (a token goes nowhere else)."""
    with upstream_errors(upstream.timeout.sock_read):
        return await session.request(
            method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=upstream.timeout,
            ssl=upstream.ssl,
            proxy=upstream.proxy,
        )


async def read_head(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of the upstream's body (all of it when shorter); the rest stays unread."""
    parts: list[bytes] = []
    size = 0
    with upstream_errors(None, "mid-response"):
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    return b"".join(parts)


async def read_small_body(request: web.BaseRequest) -> bytes:
    with client_errors():
        return await request.read()


async def stream_body(request: web.BaseRequest, exchange: Exchange) -> AsyncIterator[bytes]:
    """The client's request body as it arrives, counted into the exchange."""
    with client_errors():
        async for chunk in request.content.iter_any():
            exchange.bytes_in += len(chunk)
            yield chunk
