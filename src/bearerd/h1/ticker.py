"""One periodic timer for many deadlines, so arming a timeout on the hot path is a float store.

Connections (server side) and pooled upstream connections keep a ``deadline`` (loop time, 0 for
none) and an ``expire(now)`` method; the ticker calls ``expire`` on those past their deadline.
Nothing is allocated or scheduled per request; a deadline fires at most one interval late.
The clock is injectable so bookkeeping can be tested without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Expiring(Protocol):
    deadline: float

    def expire(self, now: float) -> None: ...


E = TypeVar("E", bound=Expiring)


class Ticker(Generic[E]):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        *,
        clock: Callable[[], float] | None = None,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        self._loop = loop
        self.interval = interval
        self.clock = clock or loop.time
        self._on_tick = on_tick
        self.members: set[E] = set()
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._handle = self._loop.call_later(self.interval, self._tick)
        self.sweep()

    def sweep(self) -> None:
        now = self.clock()
        due = [m for m in self.members if 0 < m.deadline <= now]
        for member in due:
            member.deadline = 0.0
            member.expire(now)
        if self._on_tick is not None:
            self._on_tick(now)
