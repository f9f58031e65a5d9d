"""A sample internal API, the thing App Proxy publishes: echo, streams, redirects, slowness.

Plain HTTP on loopback, like an on-premises backend behind the App Proxy connector. Large
bodies are generated and consumed in chunks, never held whole, so tests can push gigabytes.
It also serves look-alikes of App Proxy's error pages — a backend's own 403/502/504 HTML, even
one copying App Proxy's wording — which bearerd must pass through untouched.
"""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import ClientPayloadError, web

CHUNK = 64 * 1024
_PATTERN = bytes(range(256)) * (CHUNK // 256)


WS_CLOSES: web.AppKey[list[int]] = web.AppKey("ws_closes", list[int])


def backend_app() -> web.Application:
    app = web.Application()
    app[WS_CLOSES] = []  # close codes WebSocket clients sent, for tests
    app.router.add_get("/api/status", _status)
    app.router.add_route("*", "/echo/{tail:.*}", _echo)
    app.router.add_get("/download", _download)
    app.router.add_route("POST", "/upload", _upload)
    app.router.add_route("PUT", "/upload", _upload)
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/status/{code:[0-9]{3}}", _status_code)
    app.router.add_get("/reset", _reset)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/set-cookie", _set_cookie)
    app.router.add_get("/big-header", _big_header)
    app.router.add_get("/error-page/{code:[0-9]{3}}", _error_page)
    app.router.add_get("/proxy-lookalike", _proxy_lookalike)
    return app


async def _status(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "secretapi"})


async def _echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_len": size,
            "body_sha256": digest.hexdigest(),
        }
    )


async def _download(request: web.Request) -> web.StreamResponse:
    total = int(request.query.get("bytes", "0"))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if request.query.get("chunked") != "1":
        response.content_length = total
    await response.prepare(request)
    left = total
    try:
        while left > 0:
            n = min(left, CHUNK)
            await response.write(_PATTERN[:n])
            left -= n
        await response.write_eof()
    except ConnectionError:
        pass  # the reader went away (tests do that on purpose); nothing to report
    return response


async def _upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
    except (ConnectionError, ClientPayloadError):
        # The sender went away mid-body (tests do that on purpose): nobody is left to answer.
        return web.Response(status=400, text="incomplete body\n")
    return web.json_response({"bytes": size, "sha256": digest.hexdigest()})


async def _redirect(request: web.Request) -> web.Response:
    target = request.query.get("to", "/api/status")
    # Absolute, on the backend's own (internal) URL: App Proxy translates it to the external one.
    raise web.HTTPFound(location=f"http://{request.host}{target}")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("seconds", "1")))
    return web.json_response({"slept": True})


async def _stream(request: web.Request) -> web.StreamResponse:
    chunks = int(request.query.get("chunks", "5"))
    interval = float(request.query.get("interval", "0.1"))
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    try:
        for i in range(chunks):
            await response.write(f"chunk {i}\n".encode())
            await asyncio.sleep(interval)
        await response.write_eof()
    except ConnectionError:
        pass
    return response


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    """Echo; "close:CODE:REASON" makes the server close with that code (tests check it arrives)."""
    ws = web.WebSocketResponse(protocols=("chat",), max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == web.WSMsgType.TEXT and msg.data.startswith("close:"):
            _, code, reason = msg.data.split(":", 2)
            await ws.close(code=int(code), message=reason.encode())
        elif msg.type == web.WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type == web.WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    if ws.close_code is not None:
        request.app[WS_CLOSES].append(ws.close_code)
    return ws


async def _big_header(request: web.Request) -> web.Response:
    """A misbehaving backend: a response header far beyond what a proxy should accept."""
    return web.Response(text="ok\n", headers={"X-Huge": "h" * 20000})


async def _set_cookie(request: web.Request) -> web.Response:
    response = web.json_response({"cookies": dict(request.cookies)})
    response.headers.add("Set-Cookie", f"session=abc123; Domain={request.host.split(':')[0]}; Path=/app; HttpOnly")
    return response


async def _reset(request: web.Request) -> web.StreamResponse:
    """Promise a body, send part of it, then reset the connection (a crashing backend)."""
    sent = int(request.query.get("after", "1000"))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = sent * 10
    await response.prepare(request)
    await response.write(_PATTERN[: min(sent, CHUNK)])
    if request.transport is not None:
        request.transport.abort()
    return response


async def _status_code(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status\n")


_REASONS = {403: "Forbidden", 502: "Bad Gateway", 504: "Gateway Time-out"}


def lookalike_page(code: int, mimic: bool) -> str:
    """A backend's own error page (nginx's shape); ``mimic``: worded like App Proxy's own."""
    title = f"{code} {_REASONS.get(code, 'Error')}"
    text = "This corporate app can't be accessed. Status Code: " + title if mimic else title
    return (
        f"<html><head><title>{title}</title></head><body><center><h1>{text}</h1></center><hr>"
        "<center>nginx</center></body></html>\n"
    )


async def _error_page(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    page = lookalike_page(code, request.query.get("mimic") == "1")
    return web.Response(status=code, text=page, content_type="text/html")


async def _proxy_lookalike(request: web.Request) -> web.StreamResponse:
    """An answer with an App Proxy header but no App Proxy page: bearerd reads its first bytes, then
    must relay every byte (``size`` of them, ``chunked=1`` without a Content-Length)."""
    status = int(request.query.get("status", "502"))
    size = int(request.query.get("size", "1000"))
    body = (b"<html><body>" + _PATTERN * (size // len(_PATTERN) + 1))[:size]
    headers = {"Content-Type": "text/html", "x-ms-proxy-app-id": "00000000-0000-4000-8000-00000000abcd"}
    if request.query.get("chunked") != "1":
        return web.Response(status=status, body=body, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    for start in range(0, size, CHUNK):
        await response.write(body[start : start + CHUNK])
    await response.write_eof()
    return response
