"""The admin listener: health, readiness, metrics and reload — never mixed with proxied paths.

``/healthz`` answers from the event loop itself, so an answer proves the loop is responsive;
``/readyz`` says per route whether a usable token is held and, if not, why; ``/metrics`` is the
Prometheus text format; ``POST /-/reload`` re-reads the config file like SIGHUP.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from bearerd.daemon.daemon import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")


def admin_app(daemon: Daemon) -> web.Application:
    app = web.Application()
    app[DAEMON] = daemon
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/-/reload", _reload)
    return app


async def _healthz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"status": "ok", "uptime_s": round(time.time() - daemon.started_at)})


async def _readyz(request: web.Request) -> web.Response:
    ready, body = request.app[DAEMON].readiness()
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[DAEMON].metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _reload(request: web.Request) -> web.Response:
    hook = request.app[DAEMON].reload_hook
    if hook is None:
        return web.json_response({"reloaded": False, "error": "reload is not available in this mode"}, status=409)
    ok, message = await hook()
    return web.json_response({"reloaded": ok, "message": message}, status=200 if ok else 422)
