"""The upstream every benchmark target forwards to: as cheap as aiohttp allows.

The "direct" column of the benchmark is this server alone, so it must do as little as possible:
the small answer is a prebuilt byte string, downloads are slices of one preallocated buffer
(no per-request allocation, no disk), uploads are read and dropped. It runs as its own process so
it never shares an event loop (or a GIL) with the proxy being measured. uvloop is used when
installed because a faster baseline makes the proxies' overhead visible rather than hidden.

    python bench/backend.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

CHUNK = 256 * 1024
_BUFFER = memoryview(bytes(CHUNK))
_SMALL = json.dumps({"ok": True, "service": "bearerd-bench-backend", "note": "a small JSON answer of ~100 bytes"})


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


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_put("/upload", upload)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    print(json.dumps({"uvloop": loop_factory is not None}), flush=True)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(args.port))


async def _serve(port: int) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()  # until the harness terminates us


if __name__ == "__main__":
    main()
