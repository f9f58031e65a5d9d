"""Run the daemon until a signal says stop: the process-level wrapper around ``Daemon``.

Shutdown order: SIGTERM/SIGINT → readiness false → listeners closed → in-flight requests
finish within ``shutdown_timeout_s`` → the rest are cancelled. A second SIGINT/SIGTERM stops
waiting and exits at once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

from bearerd.app import Daemon
from bearerd.config import Settings

log = structlog.get_logger("bearerd.server")


async def serve(settings: Settings, on_started: Callable[[Daemon], Awaitable[None]] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    signals_seen: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        signals_seen.append(sig.name)
        if len(signals_seen) == 1:
            log.info("stopping", signal=sig.name, shutdown_timeout_s=settings.server.shutdown_timeout_s)
            stop.set()
        elif main is not None:
            log.warning("stopping_now", signal=sig.name)
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with Daemon(settings) as daemon:
            log.info(
                "started",
                listen=[f"{h}:{p}" for h, p in daemon.listen_addresses],
                admin=f"{daemon.admin_address[0]}:{daemon.admin_address[1]}" if daemon.admin_address else None,
                routes={name: route.settings.upstream for name, route in daemon.routes.items()},
            )
            if on_started is not None:
                await on_started(daemon)
            await stop.wait()
            daemon.ready = False
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")
