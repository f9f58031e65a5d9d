"""systemd's notify protocol: READY/RELOADING/STOPPING/STATUS and watchdog pings.

A datagram to ``$NOTIFY_SOCKET`` (read by config.py). Written out rather than depending on a
library because the protocol is one ``sendto`` — and failures must never affect the daemon:
without a service manager listening, every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import structlog

from bearerd.config.environment import Runtime

log = structlog.get_logger("bearerd.sdnotify")


class Notifier:
    def __init__(self, runtime: Runtime) -> None:
        path = runtime.notify_socket
        self._address: str | None = None
        if path and (path.startswith("/") or path.startswith("@")):
            self._address = "\0" + path[1:] if path.startswith("@") else path
        # The watchdog applies to us only if systemd says so (WATCHDOG_PID unset, or our pid).
        usec = runtime.watchdog_usec
        mine = runtime.watchdog_pid is None or runtime.watchdog_pid == os.getpid()
        self.watchdog_interval_s = usec / 2_000_000 if usec and mine and self._address else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify.failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 (Type=notify-reload); older ones ignore it.
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    async def watchdog(self) -> None:
        """Ping from the event loop itself, so a stuck loop stops the pings and systemd restarts us."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
