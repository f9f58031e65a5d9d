"""After a response has left: its metrics and its access line, both read off the request's ``Exchange``.

Kept off the request path on purpose — the handler calls ``finished`` only once the response has
been written (the core writes as it sends and starts a pipelined next request itself), so no
client waits for bookkeeping. The route's ``access_log`` mode and sample rate
decide whether a line is written; metrics always count every request.
"""

from __future__ import annotations

import random
import time

import structlog

from bearerd.errors import ProxyError
from bearerd.logs import ACCESS_LOG
from bearerd.metrics import Metrics
from bearerd.proxy.exchange import Exchange
from bearerd.proxy.routing import Routing

log = structlog.get_logger("bearerd.access")


class Accounting:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._rng = random.Random()  # noqa: S311 - access-log sampling, not cryptography

    def started(self) -> None:
        self.metrics.in_flight += 1

    def finished(self, routing: Routing, exchange: Exchange) -> None:
        self.metrics.in_flight -= 1
        elapsed = time.perf_counter() - exchange.started
        upstream_s = exchange.upstream_ms / 1000 if exchange.upstream_ms is not None else None
        self.metrics.observe_request(
            exchange.route, exchange.method, exchange.status, elapsed, upstream_s, exchange.bytes_in, exchange.bytes_out
        )
        upstream = routing.upstreams.get(exchange.route) if exchange.route is not None else None
        status = exchange.status
        if upstream is not None:
            mode, sample = upstream.access_log, upstream.access_log_sample
            if mode == "off" or (
                status < 400 and (mode == "errors" or (sample < 1.0 and self._rng.random() >= sample))
            ):
                return
        debug, duration_ms = status == 499, round(elapsed * 1000, 2)
        if ACCESS_LOG.console:
            ACCESS_LOG.write(debug, exchange.access_fields(duration_ms))
        elif ACCESS_LOG.wanted(debug):
            ACCESS_LOG.write_rendered(debug, exchange.access_json(duration_ms))

    def refused(self, error: ProxyError) -> None:
        """A request the HTTP core refused before it reached the handler (malformed, too large):
        counted, and one access line saying why — never a traceback."""
        self.metrics.observe_request(None, "-", error.status, 0.0, None, 0, 0)
        fields = {"method": "-", "problem": error.slug, "detail": error.detail, "status": error.status}
        ACCESS_LOG.write(False, {**fields, "duration_ms": 0.0})

    def body_failed(self, exchange: Exchange) -> None:
        """The upstream failed after the response had started (the client gets a cut stream)."""
        log.warning("upstream.body_failed", route=exchange.route, error_type=exchange.upstream_error)
