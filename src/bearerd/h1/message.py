"""A message as its reader sees it — head fields by name, and the body: chunks the protocol
queued, drained in order, with a wait when none is there. Shared by a request (server side) and a
response (client side).

The protocol appends to ``_chunks`` and calls ``_wake``/``_fail``; each side supplies its own
``_take`` (which resumes reading below the low-water mark) and ``_wait`` (which arms its deadline).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from .errors import BodyTooLarge, H1Error


class Message:
    __slots__ = ("_buffered", "_chunks", "_complete", "_error", "_waiter", "headers", "index")

    def __init__(self, headers: list[tuple[str, str]], index: dict[str, list[str]]) -> None:
        #: Fields in arrival order, names as sent, latin-1 decoded, surrounding OWS removed.
        self.headers = headers
        #: Lower-case name -> values in order, built while parsing.
        self.index = index
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: H1Error | None = None

    def get(self, lname: str, default: str | None = None) -> str | None:
        """First value of a field, by lower-case name."""
        values = self.index.get(lname)
        return default if values is None else values[0]

    def getall(self, lname: str) -> list[str]:
        return self.index.get(lname, [])

    def _take(self) -> bytes | None:
        if not self._chunks:
            return None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        self._taken()
        return chunk

    def _taken(self) -> None:
        """After a chunk was taken: resume reading once the buffer is low again (each side's rule)."""
        raise NotImplementedError

    async def _wait(self) -> None:
        raise NotImplementedError

    def _too_large(self) -> None:
        """Called before ``read`` raises ``BodyTooLarge``."""

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The whole (rest of the) body; ``BodyTooLarge`` past ``limit`` bytes."""
        parts: list[bytes] = []
        total = 0
        while True:
            chunk = self._take()
            if chunk is None:
                if self._complete:
                    break
                await self._wait()
                continue
            total += len(chunk)
            if total > limit:
                self._too_large()
                raise BodyTooLarge(limit)
            parts.append(chunk)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        return _Chunks(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: H1Error) -> None:
        if self._complete:
            return
        self._error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class _Chunks:
    __slots__ = ("_body",)

    def __init__(self, body: Message) -> None:
        self._body = body

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        body = self._body
        while True:
            chunk = body._take()
            if chunk is not None:
                return chunk
            if body._complete:
                raise StopAsyncIteration
            await body._wait()
