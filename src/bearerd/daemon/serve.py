"""Run the daemon until a signal says stop: the process layer around ``Daemon``.

It owns what only a process has: signals, the systemd notifications, reloading the config file
(SIGHUP or ``POST /-/reload``) and the admin listener, which sees the daemon through a narrow view.

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

from bearerd.config.loader import Config
from bearerd.daemon import eventloop
from bearerd.daemon.admin import AdminListener
from bearerd.daemon.daemon import Daemon
from bearerd.daemon.sdnotify import Notifier
from bearerd.errors import ConfigError
from bearerd.proxy.routes import describe_entry

log = structlog.get_logger("bearerd.serve")

Loader = Callable[[], Config]


def _reloader(daemon: Daemon, load: Loader, notifier: Notifier) -> Callable[[], Coroutine[Any, Any, tuple[bool, str]]]:
    lock = asyncio.Lock()

    async def reload() -> tuple[bool, str]:
        async with lock:
            notifier.reloading()
            try:
                try:
                    new = await asyncio.to_thread(load)
                except ConfigError as exc:
                    daemon.metrics.reloads.labels("rejected").inc()
                    log.error("reload.rejected", problems=exc.problems, file=exc.file)
                    return False, str(exc)
                for warning in new.warnings:
                    log.warning("config.warning", message=warning)
                not_applied = await daemon.reload(new)
                for note in not_applied:
                    log.warning("reload.partial", message=note)
                daemon.metrics.reloads.labels("applied").inc()
                log.info("reloaded", routes=sorted(daemon.routing.upstreams))
                return True, "; ".join(not_applied) or "applied"
            finally:
                notifier.ready("reloaded")

    return reload


async def serve(
    config: Config,
    on_started: Callable[[Daemon, tuple[str, int] | None], Awaitable[None]] | None = None,
    load: Loader | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    stops: list[str] = []
    server = config.settings.server
    notifier = Notifier(config.runtime)
    background: set[asyncio.Task[object]] = set()

    def on_stop(sig: signal.Signals) -> None:
        stops.append(sig.name)
        if len(stops) == 1:
            log.info("stopping", signal=sig.name, shutdown_timeout_s=server.shutdown_timeout_s)
            stop.set()
        elif main is not None:
            log.warning("stopping_now", signal=sig.name)
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    daemon = Daemon(config)
    reload = _reloader(daemon, load, notifier) if load is not None else None
    # The admin listener outlives the daemon's drain: /readyz answers 503 while requests finish.
    admin = AdminListener(daemon, server.admin, reload) if server.admin else None
    try:
        async with daemon:
            if reload is not None:

                def on_hup() -> None:
                    assert reload is not None  # noqa: S101 - checked above
                    task: asyncio.Task[object] = loop.create_task(reload())
                    background.add(task)
                    task.add_done_callback(background.discard)

                loop.add_signal_handler(signal.SIGHUP, on_hup)
            admin_address = await admin.start() if admin is not None else None
            await _run(daemon, admin_address, notifier, stop, on_started)
    finally:
        if admin is not None:
            await admin.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for task in background:
            task.cancel()
    log.info("stopped")


async def _run(
    daemon: Daemon,
    admin: tuple[str, int] | None,
    notifier: Notifier,
    stop: asyncio.Event,
    on_started: Callable[[Daemon, tuple[str, int] | None], Awaitable[None]] | None,
) -> None:
    settings = daemon.config.settings
    for name, route in settings.routes.items():
        log.info(
            "route",
            route=name,
            entry=describe_entry(settings, name),
            upstream=route.upstream,
            credential=route.credential,
        )
    identities = {
        name: {"chosen": choice.describe(), "passed_over": dict(choice.skipped)}
        for name, choice in daemon.config.identities.items()
    }
    log.info(
        "started",
        listen=[f"{h}:{p}" for h, p in daemon.listeners.listen_addresses],
        **({"identities": identities} if identities else {}),
        admin=f"{admin[0]}:{admin[1]}" if admin else None,
        systemd_notify=notifier.enabled,
        **eventloop.describe(),
    )
    notifier.ready(f"serving {len(settings.routes)} route(s)")
    watchdog = asyncio.get_running_loop().create_task(notifier.watchdog())
    try:
        if on_started is not None:
            await on_started(daemon, admin)
        await stop.wait()
    finally:
        watchdog.cancel()
        daemon.ready = False
        notifier.stopping()
