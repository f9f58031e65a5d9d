"""The upstream leg of a request, and the one translation of the core's errors into bearerd's.

Everything that can go wrong talking to an upstream is mapped to a problem type here, once
(``upstream_errors``); the handler never catches a transport exception itself. A local client's
disappearance is the core's ``ClientGone`` everywhere, and never becomes a problem: there is
nobody left to answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from bearerd.errors import ProxyError, UpstreamBusy, UpstreamTimeout, UpstreamUnreachable
from bearerd.h1 import (
    ClientGone,
    H1Error,
    PoolBusy,
    Request,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeoutError,
    UpstreamTLSError,
)
from bearerd.proxy.exchange import Exchange

Body = bytes | AsyncIterator[bytes] | None
_PHASES = {"connect": "connecting", "request": "while receiving the request", "response": "", "body": "mid-body"}


class upstream_errors:
    """The upstream's failures as problems (their messages name what failed, never a header value).

    A class rather than a generator-based context manager: it wraps every upstream call."""

    __slots__ = ("_timeout_s",)

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None and isinstance(exc, H1Error) and not isinstance(exc, ClientGone):
            raise _problem(exc, self._timeout_s) from exc


def _problem(exc: H1Error, timeout_s: float) -> ProxyError:
    if isinstance(exc, PoolBusy):
        return UpstreamBusy(
            "every connection to the upstream stayed busy (route pool_max_connections); try again shortly",
            retry_after=exc.retry_after_s,
        )
    if isinstance(exc, UpstreamTimeoutError):
        if exc.phase == "connect":
            return UpstreamTimeout("connecting to the upstream timed out (route connect_timeout_s)")
        during = _PHASES[exc.phase]
        return UpstreamTimeout(
            f"the upstream did not answer{' ' + during if during else ''} within {timeout_s:g} s (route timeout_s)"
        )
    if isinstance(exc, UpstreamTLSError):
        if exc.verify_failed:
            return UpstreamUnreachable(
                "TLS certificate of the upstream could not be verified; add its CA with ca_file on the credential"
            )
        return UpstreamUnreachable(f"TLS handshake with the upstream failed ({exc.reason})")
    if isinstance(exc, UpstreamConnectError):
        return UpstreamUnreachable(f"cannot connect to the upstream ({exc.reason})")
    if isinstance(exc, UpstreamProtocolError):
        return UpstreamUnreachable(f"the upstream sent an invalid response ({exc})")
    return UpstreamUnreachable(f"the upstream connection failed ({exc})")


async def read_head(response: UpstreamResponse, limit: int) -> bytes:
    """At least ``limit`` bytes of the upstream's body (all of it when shorter); the rest stays in
    the response for ``chunks()`` to stream on."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.chunks():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)


async def stream_body(request: Request, exchange: Exchange) -> AsyncIterator[bytes]:
    """The client's request body as it arrives, counted into the exchange."""
    async for chunk in request.body():
        exchange.bytes_in += len(chunk)
        yield chunk
