"""The upstream every benchmark target forwards to: as cheap as aiohttp allows.

The "direct" column of the benchmark is this server alone, so it must do as little as possible:
the small answer is a prebuilt byte string, downloads are slices of one preallocated buffer
(no per-request allocation, no disk), uploads are read and dropped. It runs as its own process so
it never shares an event loop (or a GIL) with the proxy being measured. uvloop is used when
installed because a faster baseline makes the proxies' overhead visible rather than hidden.

The same app also listens on HTTPS ports (``--tls-port``, repeatable: each proxy keeps one pool
per upstream origin, so a fresh port is a fresh pool) for the TLS-upstream rows. ``/slow`` holds
its answer ``ms`` milliseconds and notes which connection it came on under ``tag``; ``/peers``
tells how many distinct connections a tag saw — how the harness checks a proxy's pool bound.

    python bench/backend.py --port 8001 [--tls-port 8443 --cert backend.pem --key backend.key]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl

from aiohttp import web

CHUNK = 256 * 1024
_BUFFER = memoryview(bytes(CHUNK))
_SMALL = json.dumps({"ok": True, "service": "bearerd-bench-backend", "note": "a small JSON answer of ~100 bytes"})
_PEERS: dict[str, set[object]] = {}


async def small(request: web.Request) -> web.Response:
    return web.Response(body=_SMALL.encode(), content_type="application/json")


async def download(request: web.Request) -> web.StreamResponse:
    """Stream ``bytes=N`` bytes with a Content-Length, so clients and proxies can stream, not chunk."""
    try:
        total = int(request.query.get("bytes", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="bytes must be an integer") from None
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = total
    await response.prepare(request)
    left = total
    while left > 0:
        n = min(left, CHUNK)
        await response.write(_BUFFER[:n])
        left -= n
    await response.write_eof()
    return response


async def upload(request: web.Request) -> web.Response:
    """Read the body as it arrives and drop it: measures the path in front, not a disk."""
    received = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        received += len(chunk)
    return web.json_response({"received": received})


async def slow(request: web.Request) -> web.Response:
    """The small answer after ``ms`` milliseconds; the connection it came on is counted under ``tag``."""
    tag = request.query.get("tag", "")
    if request.transport is not None:
        _PEERS.setdefault(tag, set()).add(request.transport.get_extra_info("peername"))
    await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    return web.Response(body=_SMALL.encode(), content_type="application/json")


async def peers(request: web.Request) -> web.Response:
    return web.json_response({"distinct": len(_PEERS.get(request.query.get("tag", ""), ()))})


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/slow", slow)
    app.router.add_get("/peers", peers)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_put("/upload", upload)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, action="append", default=[], help="also serve HTTPS here")
    parser.add_argument("--cert", help="PEM certificate chain for --tls-port")
    parser.add_argument("--key", help="PEM private key for --tls-port")
    args = parser.parse_args()
    context = None
    if args.tls_port:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    print(json.dumps({"uvloop": loop_factory is not None}), flush=True)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(args.port, args.tls_port, context))


async def _serve(port: int, tls_ports: list[int], context: ssl.SSLContext | None) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    for tls_port in tls_ports:
        await web.TCPSite(runner, "127.0.0.1", tls_port, backlog=4096, ssl_context=context).start()
    await asyncio.Event().wait()  # until the harness terminates us


if __name__ == "__main__":
    main()
