"""Pool bookkeeping, the ticker and limit arithmetic with a fake clock — no sockets, no waiting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bearerd.h1.limits import ServerLimits
from bearerd.h1.pool import PoolBook
from bearerd.h1.ticker import Ticker


@dataclass(eq=False)
class FakeConn:
    deadline: float = 0.0
    alive: bool = True
    expired_at: float | None = None

    @property
    def usable(self) -> bool:
        return self.alive

    def expire(self, now: float) -> None:
        self.expired_at = now


def test_reserve_up_to_the_limit_and_release() -> None:
    book: PoolBook[FakeConn] = PoolBook(2)
    assert book.reserve() and book.reserve()
    assert not book.reserve()
    book.release_slot()
    assert book.reserve()
    assert book.total == 2


def test_take_idle_is_lifo_and_skips_dead_or_expired() -> None:
    book: PoolBook[FakeConn] = PoolBook(8)
    old, dead, fresh = FakeConn(deadline=100), FakeConn(deadline=500, alive=False), FakeConn(deadline=500)
    for conn in (old, dead, fresh):
        book.put_idle(conn)
    first, stale = book.take_idle(now=200)
    assert first is fresh and stale == []
    second, stale = book.take_idle(now=200)
    assert second is None and stale == [dead, old]  # dead, then expired; both to be closed
    assert book.idle == []


def test_remove_idle_is_tolerant() -> None:
    book: PoolBook[FakeConn] = PoolBook(1)
    conn = FakeConn()
    book.put_idle(conn)
    book.remove_idle(conn)
    book.remove_idle(conn)
    assert book.idle == []


async def test_ticker_expires_only_what_is_due() -> None:
    now = [10.0]
    ticks: list[float] = []
    ticker: Ticker[FakeConn] = Ticker(asyncio.get_running_loop(), 60, clock=lambda: now[0], on_tick=ticks.append)
    due, later, unarmed = FakeConn(deadline=9), FakeConn(deadline=11), FakeConn()
    ticker.members.update({due, later, unarmed})
    ticker.sweep()
    assert (due.expired_at, later.expired_at, unarmed.expired_at) == (10.0, None, None)
    assert due.deadline == 0.0  # disarmed before expire() runs
    now[0] = 11.0
    ticker.sweep()
    assert later.expired_at == 11.0 and ticks == [10.0, 11.0]
    ticker.start()
    ticker.stop()


def test_tick_is_fine_enough_for_the_shortest_timeout() -> None:
    assert ServerLimits().tick() == 0.5
    assert ServerLimits(header_timeout_s=0.4).tick() == 0.1
    assert ServerLimits(body_timeout_s=0.02, tick_s=1).tick() == 0.01
