"""Every refusal the server makes on its own: exact status, problem+json, Connection: close,
the connection closed — and the handler never called."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bearerd.h1 import ServerLimits
from support.h1 import Seen, connect, echo, read_response, read_to_eof, server

H = b"Host: h\r\n"
POST = b"POST / HTTP/1.1\r\nHost: h\r\n"

REFUSALS = [
    ("http09", b"GET /x\r\n\r\n", 400),
    ("http2_line", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400),
    ("bad_version", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 400),
    ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),
    ("http10_te", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_identity_chunked", POST + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te_gzip_chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te_chunked_chunked", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te_two_fields", POST + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ("te_gzip", POST + b"Transfer-Encoding: gzip\r\n\r\nabc", 501),
    ("te_and_cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("cl_and_te", POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("cl_duplicate", POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("cl_conflict", POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("cl_list", POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("cl_sign", POST + b"Content-Length: +3\r\n\r\nabc", 400),
    ("bad_chunk_size", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk_overflow", POST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400),
    ("obs_fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("bare_cr", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("bare_lf_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\nb\r\n\r\n", 400),
    ("lf_only_lines", b"GET / HTTP/1.1\nHost: h\n\n", 400),
    ("nul_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("space_in_name", b"GET / HTTP/1.1\r\n" + H + b"X A: a\r\n\r\n", 400),
    ("space_before_colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : a\r\n\r\n", 400),
    ("empty_name", b"GET / HTTP/1.1\r\n" + H + b": a\r\n\r\n", 400),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("no_host_11", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    ("ctl_in_target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    (
        "upgrade_with_length",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "upgrade_chunked",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    ("long_target", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 431),
    ("long_field", b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"v" * 9000 + b"\r\n\r\n", 431),
    ("many_fields", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
    (
        "big_block",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(9)) + b"\r\n",
        431,
    ),
]


@pytest.mark.parametrize(("raw", "status"), [(r, s) for _, r, s in REFUSALS], ids=[n for n, _, _ in REFUSALS])
async def test_refused_before_the_handler(raw: bytes, status: int) -> None:
    seen = Seen()
    async with server(echo(seen)) as srv, connect(srv.port) as (reader, writer):
        writer.write(raw)
        resp = await read_response(reader)
        rest = await read_to_eof(reader)
    assert resp.status == status
    assert resp.get("content-type") == "application/problem+json"
    assert resp.get("cache-control") == "no-store"
    assert resp.get("connection") == "close"
    problem = resp.json()
    assert problem["status"] == status and problem["detail"]
    assert rest in (b"", b"<reset>")  # closed, nothing else answered
    assert seen.requests == []


async def test_http10_te_smuggling_never_reaches_the_handler_as_a_second_request() -> None:
    seen = Seen()
    raw = (
        b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /hidden HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    async with server(echo(seen)) as srv, connect(srv.port) as (reader, writer):
        writer.write(raw)
        resp = await read_response(reader)
        rest = await read_to_eof(reader)
    assert resp.status == 400 and rest in (b"", b"<reset>")
    assert seen.requests == []


async def test_refusal_after_a_good_request_waits_its_turn() -> None:
    seen = Seen()
    async with server(echo(seen)) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        first = await read_response(reader)
        second = await read_response(reader)
    assert (first.status, second.status) == (200, 400)
    assert [r.target for r in seen.requests] == ["/ok"]


async def test_malformed_chunk_mid_body_fails_the_read_and_answers_400() -> None:
    got: list[BaseException] = []
    started = asyncio.Event()

    async def handler(request, responder):  # type: ignore[no-untyped-def]
        started.set()
        try:
            await request.read()
        except Exception as exc:
            got.append(exc)
            raise

    async with server(handler) as srv, connect(srv.port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.wait_for(started.wait(), 10)
        writer.write(b"zz\r\n")
        resp = await read_response(reader)
    assert resp.status == 400
    assert [type(e).__name__ for e in got] == ["ClientGone"]


async def test_pipelining_past_the_limit_answers_the_queued_then_closes() -> None:
    seen = Seen()
    raw = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(10))
    async with server(echo(seen), ServerLimits(max_pipelined=3)) as srv, connect(srv.port) as (reader, writer):
        writer.write(raw)
        answers = [await read_response(reader) for _ in range(4)]
        rest = await read_to_eof(reader)
    assert [a.json()["target"] for a in answers] == ["/0", "/1", "/2", "/3"]
    assert rest == b""
    assert len(seen.requests) == 4


VALID = b"POST /f HTTP/1.1\r\nHost: h\r\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=200))
def test_fuzz_random_bytes_after_a_valid_prefix(tail: bytes) -> None:
    """Never a crash: an answer (any status, problem+json when refused) or a close; and the
    handler only ever sees requests that pass the rules."""

    async def run() -> None:
        seen = Seen()
        async with server(echo(seen), ServerLimits(header_timeout_s=0.3, keepalive_timeout_s=0.3)) as srv:
            async with connect(srv.port) as (reader, writer):
                writer.write(VALID + tail)
                writer.write_eof()
                raw = await read_to_eof(reader)
            if raw not in (b"", b"<reset>"):
                assert raw.startswith(b"HTTP/1.1 ")
                status = int(raw[9:12])
                if status >= 400:
                    assert b"application/problem+json" in raw
        for req in seen.requests:
            assert req.version in ("1.0", "1.1")
            assert len(req.getall("host")) == 1
            assert not (req.chunked and req.content_length is not None)
            if req.chunked:
                assert req.version == "1.1" and [v.lower() for v in req.getall("transfer-encoding")] == ["chunked"]
            assert not (req.upgrade and req.has_body)

    asyncio.run(run())
    uvloop.run(run())
