"""Run the daemon until a signal says stop: the process-level wrapper around ``Daemon``.

Signals: SIGTERM/SIGINT → readiness false, STOPPING=1 to systemd, listeners closed, in-flight
requests (long streams included) finish within ``shutdown_timeout_s``, the rest are cancelled.
A second SIGTERM/SIGINT stops waiting and exits at once. SIGHUP re-reads the config file; an
invalid one is logged and the running configuration stays.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from bearerd.config.schema import Settings
from bearerd.daemon import eventloop
from bearerd.daemon.daemon import Daemon, route_entry
from bearerd.daemon.sdnotify import Notifier
from bearerd.errors import ConfigError

log = structlog.get_logger("bearerd.server")

Loader = Callable[[], tuple[Settings, list[str]]]


def _reloader(daemon: Daemon, load: Loader, notifier: Notifier) -> Callable[[], Coroutine[Any, Any, tuple[bool, str]]]:
    lock = asyncio.Lock()

    async def reload() -> tuple[bool, str]:
        async with lock:
            notifier.reloading()
            try:
                try:
                    new, warnings = await asyncio.to_thread(load)
                except ConfigError as exc:
                    daemon.metrics.reloads.labels("rejected").inc()
                    log.error("reload.rejected", problems=exc.problems, file=exc.file)
                    return False, str(exc)
                for warning in warnings:
                    log.warning("config.warning", message=warning)
                not_applied = await daemon.reload(new)
                for note in not_applied:
                    log.warning("reload.partial", message=note)
                daemon.metrics.reloads.labels("applied").inc()
                log.info("reloaded", routes=sorted(daemon.routes))
                return True, "; ".join(not_applied) or "applied"
            finally:
                notifier.ready("reloaded")

    return reload


async def serve(
    settings: Settings,
    on_started: Callable[[Daemon], Awaitable[None]] | None = None,
    load: Loader | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    stops: list[str] = []
    notifier = Notifier(settings.runtime)
    background: set[asyncio.Task[object]] = set()

    def on_stop(sig: signal.Signals) -> None:
        stops.append(sig.name)
        if len(stops) == 1:
            log.info("stopping", signal=sig.name, shutdown_timeout_s=settings.server.shutdown_timeout_s)
            stop.set()
        elif main is not None:
            log.warning("stopping_now", signal=sig.name)
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    try:
        async with Daemon(settings) as daemon:
            if load is not None:
                reload = daemon.reload_hook = _reloader(daemon, load, notifier)

                def on_hup() -> None:
                    task: asyncio.Task[object] = loop.create_task(reload())
                    background.add(task)
                    task.add_done_callback(background.discard)

                loop.add_signal_handler(signal.SIGHUP, on_hup)
            for name, route in daemon.routes.items():
                log.info(
                    "route",
                    route=name,
                    entry=route_entry(daemon.settings, name),
                    upstream=route.settings.upstream,
                    credential=route.settings.credential,
                )
            log.info(
                "started",
                listen=[f"{h}:{p}" for h, p in daemon.listen_addresses],
                admin=f"{daemon.admin_address[0]}:{daemon.admin_address[1]}" if daemon.admin_address else None,
                systemd_notify=notifier.enabled,
                **eventloop.describe(),
            )
            notifier.ready(f"serving {len(daemon.routes)} route(s)")
            watchdog = loop.create_task(notifier.watchdog())
            try:
                if on_started is not None:
                    await on_started(daemon)
                await stop.wait()
            finally:
                watchdog.cancel()
                daemon.ready = False
                notifier.stopping()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for task in background:
            task.cancel()
    log.info("stopped")
