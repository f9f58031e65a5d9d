"""Every limit and timeout of the server side, in one frozen value passed to the listener."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerLimits:
    # Request head (over → 431; a request line over its limit is 431 too, as bearerd.errors says).
    max_request_line: int = 8190
    max_header_field: int = 8190
    max_header_count: int = 100
    max_header_bytes: int = 64 * 1024
    # Time allowed for a whole request head, counted from its first byte (leading empty lines
    # included), or from the end of the previous response when bytes were already waiting.
    header_timeout_s: float = 10.0
    # An idle keep-alive connection (no byte of a next request yet) is closed after this.
    keepalive_timeout_s: float = 75.0
    # Longest silence while a handler waits for request body bytes; None: no limit.
    body_timeout_s: float | None = None
    # Request body bytes buffered before the client is paused (flow control), and resumed below
    # a quarter of it.
    body_high_water: int = 512 * 1024
    # Requests parsed ahead of the one being answered; more closes the connection after them.
    max_pipelined: int = 16
    # After a refusal or an unread body, how long the connection reads and discards before it
    # closes, so the client can read the response instead of getting a reset.
    linger_s: float = 2.0
    # How often the one per-server timer checks every connection's deadline.
    tick_s: float = 0.5

    def tick(self) -> float:
        """The sweep interval, fine enough for the shortest timeout configured."""
        shortest = min(self.header_timeout_s, self.keepalive_timeout_s, self.linger_s, self.body_timeout_s or 1e9)
        return max(0.01, min(self.tick_s, shortest / 4))
