"""Python-heap cost of one in-flight proxied request in ``bearerd.h1``, beyond its connections.

A forwarding proxy (server + pool) runs here under tracemalloc; the upstream is a separate
process that reads requests and never answers. First N client connections and N pooled upstream
connections are opened and left idle (state A); then one request is sent on each and waits for
the upstream (state B). (B - A) / N is what a request in flight costs on top of its two
connections: Request, Responder, handler task and frames, the upstream exchange. Kernel and
transport buffers (uvloop's, sslproto's) are outside the Python heap and not counted.

    python bench/h1_memory.py [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import subprocess
import sys
import tracemalloc

UPSTREAM = r"""
import asyncio
async def main():
    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b" /warm " in head:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except Exception:
            writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def run(n: int, port: int) -> None:
    from bearerd.h1 import PoolOptions, Request, Responder, UpstreamPool, serve_tcp

    pool = UpstreamPool(f"http://127.0.0.1:{port}", options=PoolOptions(max_connections=n))
    entered = 0
    all_in = asyncio.Event()

    async def handler(request: Request, responder: Responder) -> None:
        nonlocal entered
        headers = [(k, v) for k, v in request.headers if k.lower() != "host"]
        headers.append(("Authorization", "Bearer " + "t" * 1200))  # an Entra-sized token
        if request.target != "/warm":
            entered += 1
            if entered == n:
                all_in.set()
        up = await pool.request(request.method, request.target, headers, None, read_timeout_s=600)
        await responder.send(up.status, up.reason, [], await up.read())

    server = await serve_tcp("127.0.0.1", 0, handler, on_error=lambda request, exc: None)
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(n):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        clients.append(sock)
    # Warm n pooled connections: n concurrent requests the upstream answers.
    for sock in clients:
        await loop.sock_sendall(sock, b"GET /warm HTTP/1.1\r\nHost: p\r\n\r\n")
    for sock in clients:
        await loop.sock_recv(sock, 65536)
    await asyncio.sleep(0.2)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    request = b"GET /api/items?page=2 HTTP/1.1\r\nHost: p\r\nUser-Agent: legacy-tool/1.0\r\nAccept: */*\r\n\r\n"
    for sock in clients:
        await loop.sock_sendall(sock, request)
    await asyncio.wait_for(all_in.wait(), 30)
    await asyncio.sleep(0.3)  # let every exchange reach its wait for the upstream
    gc.collect()
    after = tracemalloc.take_snapshot()
    delta = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"{n} requests in flight, pool open={pool.stats['open']}: {delta / n / 1024:.1f} KiB per request")
    for stat in after.compare_to(before, "lineno")[:8]:
        print("  ", stat)
    tracemalloc.stop()
    await server.close(grace_s=0.1)
    await pool.close()
    for sock in clients:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    import uvloop

    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert upstream.stdout is not None  # noqa: S101
    try:
        uvloop.run(run(args.requests, int(upstream.stdout.readline())))
    finally:
        upstream.kill()
        upstream.wait()


if __name__ == "__main__":
    main()
