"""A fake clock for the state machines' unit tests: time moves only when the test says so.

``FakeClock`` is both the clock (``clock()``) and the timer (``clock.call_later``) a component
takes, so timers fire in time order as ``advance()`` walks through them — no sleeping, no
real time, the same result on a busy machine as on an idle one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class FakeTimer:
    def __init__(self, at: float, callback: Callable[[], None]) -> None:
        self.at = at
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._order = itertools.count()
        self._timers: list[tuple[float, int, FakeTimer]] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.at, next(self._order), timer))
        return timer

    def pending(self) -> list[float]:
        """When the timers still waiting will fire (seconds from now), soonest first."""
        return sorted(t.at - self.now for _, _, t in self._timers if not t.cancelled)

    async def settle(self) -> None:
        """Let every task that can run, run (acquisitions, callbacks), without moving time."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing each due timer at its own moment, in order."""
        end = self.now + seconds
        await self.settle()
        while self._timers and self._timers[0][0] <= end:
            at, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, at)
            timer.callback()
            await self.settle()
        self.now = end
        await self.settle()
