"""Waiting for a condition with a deadline — never a sleep standing in for "it has happened by now".

A fixed sleep is too short on a busy machine (a flaky test) and too long on an idle one (a slow
suite); a condition polled with a deadline is neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(predicate: Callable[[], bool], within_s: float = 10.0, what: str = "the condition") -> None:
    """Until ``predicate()`` holds; an AssertionError naming ``what`` after ``within_s``."""
    try:
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110 - polling a condition of another process or thread
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {within_s} s") from None


async def settled(sample: Callable[[], object], within_s: float = 10.0, stable_for: int = 5) -> object:
    """``sample()`` once it has stopped changing (the same for ``stable_for`` polls 20 ms apart):
    a baseline taken when the work just finished has settled, not while it is still winding down."""
    last, same = sample(), 0
    try:
        async with asyncio.timeout(within_s):
            while same < stable_for:
                await asyncio.sleep(0.02)
                now = sample()
                same = same + 1 if now == last else 0
                last = now
    except TimeoutError:
        raise AssertionError(f"still changing after {within_s} s: {last!r}") from None
    return last
