"""TLS upstreams with a private CA (SNI, verify failures) and CONNECT through an egress proxy."""

from __future__ import annotations

import ssl

import pytest

from bearerd.h1 import PoolOptions, Request, Responder, UpstreamConnectError, UpstreamPool, UpstreamTLSError
from support.h1 import WAIT, ConnectProxy, Seen, exchange, pki, server

OPTS = PoolOptions(tick_s=0.05)


def reporter(seen: Seen):  # type: ignore[no-untyped-def]
    async def handler(request: Request, responder: Responder) -> None:
        seen.requests.append(request)
        body = f"{request.scheme} {request.server_name} {request.get('host')}".encode()
        await responder.send(200, "OK", [], body)

    return handler


async def test_tls_upstream_with_private_ca_and_sni() -> None:
    keys = pki("localhost")
    seen = Seen()
    async with server(reporter(seen), ssl=keys.server_ctx) as up:
        pool = UpstreamPool(f"https://localhost:{up.port}", ssl_context=keys.client_ctx, options=OPTS)
        try:
            first = await (await pool.request("GET", "/", [], read_timeout_s=WAIT)).read()
            second = await (await pool.request("GET", "/", [], read_timeout_s=WAIT)).read()
        finally:
            await pool.close()
    assert first == second == f"https localhost localhost:{up.port}".encode()
    assert seen.requests[0].peer == seen.requests[1].peer  # kept alive over TLS


@pytest.mark.parametrize("case", ["unknown-ca", "wrong-name"])
async def test_certificate_verify_failure_is_distinguishable(case: str) -> None:
    keys = pki("other.example" if case == "wrong-name" else "localhost")
    seen = Seen()
    trust = pki().client_ctx if case == "unknown-ca" else keys.client_ctx
    async with server(reporter(seen), ssl=keys.server_ctx) as up:
        pool = UpstreamPool(f"https://localhost:{up.port}", ssl_context=trust, options=OPTS)
        try:
            with pytest.raises(UpstreamTLSError) as err:
                await pool.request("GET", "/", [], read_timeout_s=WAIT)
        finally:
            await pool.close()
    assert err.value.verify_failed
    assert seen.requests == []


async def test_connect_through_an_egress_proxy_with_credentials() -> None:
    keys = pki("localhost")
    seen = Seen()
    async with (
        server(reporter(seen), ssl=keys.server_ctx) as up,
        ConnectProxy("alice", "p@ss:word") as proxy,
    ):
        url = proxy.url.replace("http://", "http://alice:p%40ss%3Aword@")
        pool = UpstreamPool(f"https://localhost:{up.port}", ssl_context=keys.client_ctx, proxy=url, options=OPTS)
        try:
            for _ in range(3):
                body = await (await pool.request("GET", "/x", [], read_timeout_s=WAIT)).read()
                assert body == f"https localhost localhost:{up.port}".encode()
        finally:
            await pool.close()
    assert proxy.connects == [f"localhost:{up.port}"]  # one tunnel, kept alive for all three
    assert proxy.auth_seen[0] is not None and proxy.auth_seen[0].startswith("Basic ")
    assert "p@ss" not in repr(pool.proxy)


async def test_plain_http_upstream_through_the_proxy_uses_connect_too() -> None:
    seen = Seen()
    async with server(reporter(seen)) as up, ConnectProxy() as proxy:
        pool = UpstreamPool(f"http://127.0.0.1:{up.port}", proxy=proxy.url, options=OPTS)
        try:
            body = await (await pool.request("GET", "/", [], read_timeout_s=WAIT)).read()
        finally:
            await pool.close()
    assert body == f"http None 127.0.0.1:{up.port}".encode()
    assert proxy.connects == [f"127.0.0.1:{up.port}"]


async def test_proxy_refusing_credentials() -> None:
    async with server(reporter(Seen())) as up, ConnectProxy("alice", "right") as proxy:
        url = proxy.url.replace("http://", "http://alice:wrong@")
        pool = UpstreamPool(f"http://127.0.0.1:{up.port}", proxy=url, options=OPTS)
        try:
            with pytest.raises(UpstreamConnectError) as err:
                await pool.request("GET", "/", [], read_timeout_s=WAIT)
        finally:
            await pool.close()
    assert "407" in str(err.value) and "wrong" not in str(err.value)
    assert proxy.connects == []


async def test_tls_listener_reports_sni_to_the_handler() -> None:
    keys = pki("front.localhost")
    seen = Seen()
    async with server(reporter(seen), ssl=keys.server_ctx) as front:
        import asyncio

        reader, writer = await asyncio.open_connection(
            "127.0.0.1", front.port, ssl=keys.client_ctx, server_hostname="front.localhost"
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: front.localhost\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
    assert raw.endswith(b"https front.localhost front.localhost")
    # A plain-text client on the TLS port gets nothing parsed as HTTP.
    assert ssl.PROTOCOL_TLS_CLIENT and exchange is not None
