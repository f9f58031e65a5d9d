"""The "obvious" proxy: ~25 lines of aiohttp that add a static bearer header and stream both ways.

It is the floor bearerd is measured against: the same server and client library with none of
bearerd's work (routing, header hygiene, token refresh, refusal retry, metrics, access log).
The gap between the two is what bearerd's features cost; the gap to "direct" is aiohttp's.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import aiohttp
from aiohttp import web
from yarl import URL


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.port, args.upstream.rstrip("/"), os.environ["NAIVE_TOKEN"]))


async def serve(port: int, upstream: str, token: str) -> None:
    session = aiohttp.ClientSession(auto_decompress=False)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        headers["Authorization"] = "Bearer " + token
        url = URL(upstream + request.raw_path.removeprefix("/p"), encoded=True)
        data = request.content if request.body_exists else None
        async with session.request(request.method, url, headers=headers, data=data) as up:
            out = web.StreamResponse(status=up.status, headers={"Content-Type": up.content_type})
            await out.prepare(request)
            async for chunk in up.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    server = web.Server(handle)
    loop = asyncio.get_running_loop()
    await loop.create_server(server, "127.0.0.1", port, backlog=4096)
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
