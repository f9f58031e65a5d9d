"""The admin listener: status page, health, readiness, metrics and reload — never mixed with proxied paths.

``GET /`` is the doctor's report of the running daemon as an HTML page (``statuspage.py``; with
``?probe=1`` each upstream is probed once with the token held); ``/healthz`` answers from the
event loop itself, so an answer proves the loop is responsive; ``/readyz`` says per route whether
a usable token is held and, if not, why; ``/metrics`` is the Prometheus text format;
``POST /-/reload`` re-reads the config file like SIGHUP (when the process layer provides a
reload). It sees the daemon only through ``AdminView``, a narrow interface.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bearerd.config.addresses import bind_host, parse_hostport
from bearerd.daemon import statuspage
from bearerd.doctor import RouteReport

Reload = Callable[[], Awaitable[tuple[bool, str]]]


class AdminView(Protocol):
    """What the admin listener may see of the daemon."""

    @property
    def started_at(self) -> float: ...

    @property
    def registry(self) -> CollectorRegistry: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    @property
    def config_file(self) -> str: ...

    async def route_reports(self, *, probe: bool) -> list[RouteReport]: ...


_VIEW: web.AppKey[AdminView] = web.AppKey("view")
_RELOAD: web.AppKey[Reload | None] = web.AppKey("reload")


def admin_app(view: AdminView, reload: Reload | None = None) -> web.Application:
    app = web.Application()
    app[_VIEW] = view
    app[_RELOAD] = reload
    app.router.add_get("/", _status_page)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/-/reload", _reload)
    app.on_response_prepare.append(_no_server_header)
    return app


async def _no_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp adds ``Server: Python/3.x aiohttp/3.y``: no version is advertised to whoever asks."""
    response.headers.popall("Server", None)


class AdminListener:
    """The admin app on its own address; ``address`` is where it really listens once started."""

    def __init__(self, view: AdminView, address: str, reload: Reload | None = None) -> None:
        self._app = admin_app(view, reload)
        self._wanted = address
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        runner = self._runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        host, port = parse_hostport(self._wanted)
        await web.TCPSite(runner, bind_host(host), port).start()
        bound = runner.addresses[-1]
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _status_page(request: web.Request) -> web.Response:
    view = request.app[_VIEW]
    reports = await view.route_reports(probe=request.query.get("probe") == "1")
    page = statuspage.render(reports, time.time(), view.config_file)
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _healthz(request: web.Request) -> web.Response:
    view = request.app[_VIEW]
    return web.json_response({"status": "ok", "uptime_s": round(time.time() - view.started_at)})


async def _readyz(request: web.Request) -> web.Response:
    ready, body = request.app[_VIEW].readiness()
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[_VIEW].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _reload(request: web.Request) -> web.Response:
    reload = request.app[_RELOAD]
    if reload is None:
        return web.json_response({"reloaded": False, "error": "reload is not available in this mode"}, status=409)
    ok, message = await reload()
    return web.json_response({"reloaded": ok, "message": message}, status=200 if ok else 422)
