"""The upstream leg of a request, and the one translation of the core's errors into bearerd's.

Everything that can go wrong talking to an upstream is mapped to a problem type here, once
(``upstream_errors``); the handler never catches a transport exception itself. A local client's
disappearance is the core's ``ClientGone`` everywhere, and never becomes a problem: there is
nobody left to answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from bearerd.errors import UpstreamBusy, UpstreamTimeout, UpstreamUnreachable
from bearerd.h1 import (
    PoolBusy,
    Request,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamTimeoutError,
    UpstreamTLSError,
)
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.routing import Upstream

Body = bytes | AsyncIterator[bytes] | None
_PHASES = {"connect": "connecting", "request": "while receiving the request", "response": "", "body": "mid-body"}


@contextmanager
def upstream_errors(timeout_s: float) -> Iterator[None]:
    """The upstream's failures as problems (their messages name what failed, never a header value)."""
    try:
        yield
    except PoolBusy as exc:
        raise UpstreamBusy(
            "every connection to the upstream stayed busy (route pool_max_connections); try again shortly",
            retry_after=exc.retry_after_s,
        ) from exc
    except UpstreamTimeoutError as exc:
        during = _PHASES[exc.phase]
        raise UpstreamTimeout(
            f"the upstream did not answer{' ' + during if during else ''} within {timeout_s:g} s (route timeout_s)"
            if exc.phase != "connect"
            else "connecting to the upstream timed out (route connect_timeout_s)"
        ) from exc
    except UpstreamTLSError as exc:
        if exc.verify_failed:
            raise UpstreamUnreachable(
                "TLS certificate of the upstream could not be verified; add its CA with ca_file on the credential"
            ) from exc
        raise UpstreamUnreachable(f"TLS handshake with the upstream failed ({exc.reason})") from exc
    except UpstreamConnectError as exc:
        raise UpstreamUnreachable(f"cannot connect to the upstream ({exc.reason})") from exc
    except UpstreamProtocolError as exc:
        raise UpstreamUnreachable(f"the upstream sent an invalid response ({exc})") from exc
    except UpstreamClosedError as exc:
        raise UpstreamUnreachable(f"the upstream connection failed ({exc})") from exc


async def send(
    upstream: Upstream, method: str, target: str, headers: list[tuple[str, str]], body: Body
) -> UpstreamResponse:
    """One request to the upstream; redirects are never followed (a token goes nowhere else)."""
    with upstream_errors(upstream.read_timeout_s):
        return await upstream.pool.request(method, target, headers, body, read_timeout_s=upstream.read_timeout_s)


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
