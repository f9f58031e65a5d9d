"""Start-and-stop as an async context manager, safe when starting fails half-way.

``async with X() as x`` runs ``_start``; ``_stop`` runs on exit — and also when ``_start``
raised, so whatever it had already started (sockets, sessions, tasks) is released. ``_stop``
must therefore cope with a partial start.
"""

from __future__ import annotations

from typing import Self


class Lifecycle:
    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()
