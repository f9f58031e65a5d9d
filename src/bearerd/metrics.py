"""Prometheus metrics: what operators graph and alert on, with bounded, secret-free labels.

Labels are route and credential *names* from the config, HTTP methods from a fixed set and
status classes — never paths, hosts, scopes or anything a client controls. Each ``Daemon`` has
its own registry (tests run many daemons in one process). Per-route label children are bound
once, so counting a request is a few attribute increments, not label lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_ROUTE = "(none)"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180)


@dataclass(frozen=True, slots=True)
class _RouteSeries:
    duration: Histogram
    upstream: Histogram
    bytes_in: Counter
    bytes_out: Counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bearerd_requests",
            "Requests handled, by route, method and status class",
            ["route", "method", "status_class"],
            registry=r,
        )
        self._duration = Histogram(
            "bearerd_request_duration_seconds",
            "Time from request to response end, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._upstream = Histogram(
            "bearerd_upstream_duration_seconds",
            "Time until the upstream's response headers, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._bytes_in = Counter(
            "bearerd_request_body_bytes", "Request body bytes received from clients", ["route"], registry=r
        )
        self._bytes_out = Counter(
            "bearerd_response_body_bytes", "Response body bytes sent to clients", ["route"], registry=r
        )
        self.in_flight = Gauge("bearerd_requests_in_flight", "Requests being handled now", registry=r)
        self.token_acquisitions = Counter(
            "bearerd_token_acquisitions",
            "Token acquisitions from the identity provider, by credential and outcome",
            ["credential", "outcome"],
            registry=r,
        )
        self.identity_provider_seconds = Histogram(
            "bearerd_identity_provider_duration_seconds",
            "Duration of token acquisitions, by credential",
            ["credential"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._fleet_connected: Gauge | None = None
        self.reloads = Counter("bearerd_config_reloads", "Configuration reloads, by outcome", ["outcome"], registry=r)
        self._series: dict[str, _RouteSeries] = {}
        self._request_children: dict[tuple[str, str, int], Counter] = {}

    def series(self, route: str) -> _RouteSeries:
        series = self._series.get(route)
        if series is None:
            series = self._series[route] = _RouteSeries(
                self._duration.labels(route),
                self._upstream.labels(route),
                self._bytes_in.labels(route),
                self._bytes_out.labels(route),
            )
        return series

    def observe_request(
        self,
        route: str | None,
        method: str,
        status: int,
        seconds: float,
        upstream_s: float | None,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        name = route or NO_ROUTE
        key = (name, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            # labels() takes a lock and builds tuples; the set of keys is small and bounded
            # (configured routes by known methods by status codes), so the children are kept.
            status_class = "client_closed" if status == 499 else f"{status // 100}xx"
            counter = self.requests.labels(name, method if method in _METHODS else "OTHER", status_class)
            if method in _METHODS:
                self._request_children[key] = counter
        counter.inc()
        series = self.series(name)
        series.duration.observe(seconds)
        if upstream_s is not None:
            series.upstream.observe(upstream_s)
        if bytes_in:
            series.bytes_in.inc(bytes_in)
        if bytes_out:
            series.bytes_out.inc(bytes_out)

    def observe_acquisition(self, credential: str, outcome: str, seconds: float) -> None:
        self.token_acquisitions.labels(credential, outcome).inc()
        if outcome != "shared":  # a fleet replica's token: no call to the identity provider was made
            self.identity_provider_seconds.labels(credential).observe(seconds)

    def observe_fleet(self, connected: bool) -> None:
        """Whether the Redis fleet cache is usable (only registered when one is configured)."""
        if self._fleet_connected is None:
            self._fleet_connected = Gauge(
                "bearerd_fleet_connected",
                "1 while the Redis fleet cache is usable; 0 while this replica acquires tokens alone",
                registry=self.registry,
            )
        self._fleet_connected.set(1 if connected else 0)

    def watch_token_expiry(self, source: Callable[[], Iterable[tuple[str, str, float | None]]]) -> None:
        """Report seconds until each route's token expires, read at scrape time."""
        self.registry.register(_ExpiryCollector(source))

    def watch_log_drops(self, source: Callable[[], int]) -> None:
        """Report the log lines dropped because the log reader stalled (``logwriter.py``), read at scrape time."""
        self.registry.register(_LogDropCollector(source))


class _ExpiryCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[tuple[str, str, float | None]]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "bearerd_token_expires_in_seconds",
            "Seconds until the route's current token expires (absent when there is none)",
            labels=["route", "credential"],
        )
        for route, credential, seconds in self._source():
            if seconds is not None:
                family.add_metric([route, credential], seconds)
        yield family


class _LogDropCollector(Collector):
    def __init__(self, source: Callable[[], int]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "bearerd_log_lines_dropped",
            "Log lines dropped because the log reader (stdout) did not keep up",
            value=self._source(),
        )
