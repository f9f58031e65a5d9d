"""Prometheus metrics: what operators graph and alert on, with bounded, secret-free labels.

Labels are route and credential *names* from the config, HTTP methods from a fixed set and
status classes — never paths, hosts, scopes or anything a client controls. Each ``Daemon`` has
its own registry (tests run many daemons in one process).

Per-request counting is on the hot path, so it is plain Python arithmetic on per-route
accumulators (no lock, no label lookup, no metric objects); a custom collector turns them into
Prometheus counters and histograms when ``/metrics`` is scraped. Rare events (token
acquisitions, reloads) use ``prometheus_client``'s own metric types.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_ROUTE = "(none)"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180)


class _Histogram:
    """Counts per bucket (non-cumulative), a sum and a count; cumulated at scrape time."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class _RouteSeries:
    __slots__ = ("bytes_in", "bytes_out", "duration", "requests", "upstream")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}  # (method, status class) -> count
        self.duration = _Histogram()
        self.upstream = _Histogram()
        self.bytes_in = 0
        self.bytes_out = 0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.in_flight = 0
        self._series: dict[str, _RouteSeries] = {}
        self._status_classes: dict[int, str] = {}
        r.register(_RequestCollector(self))
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
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._fleet_connected: Gauge | None = None
        self.reloads = Counter("bearerd_config_reloads", "Configuration reloads, by outcome", ["outcome"], registry=r)

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
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _RouteSeries()
        status_class = self._status_classes.get(status)
        if status_class is None:
            status_class = self._status_classes[status] = "client_closed" if status == 499 else f"{status // 100}xx"
        key = (method if method in _METHODS else "OTHER", status_class)
        series.requests[key] = series.requests.get(key, 0) + 1
        series.duration.observe(seconds)
        if upstream_s is not None:
            series.upstream.observe(upstream_s)
        series.bytes_in += bytes_in
        series.bytes_out += bytes_out

    def routes(self) -> list[tuple[str, _RouteSeries]]:
        return list(self._series.items())

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


class _RequestCollector(Collector):
    """The per-request accumulators as Prometheus families, built at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "bearerd_requests",
            "Requests handled, by route, method and status class",
            labels=["route", "method", "status_class"],
        )
        duration = HistogramMetricFamily(
            "bearerd_request_duration_seconds", "Time from request to response end, by route", labels=["route"]
        )
        upstream = HistogramMetricFamily(
            "bearerd_upstream_duration_seconds",
            "Time until the upstream's response headers, by route",
            labels=["route"],
        )
        bytes_in = CounterMetricFamily(
            "bearerd_request_body_bytes", "Request body bytes received from clients", labels=["route"]
        )
        bytes_out = CounterMetricFamily(
            "bearerd_response_body_bytes", "Response body bytes sent to clients", labels=["route"]
        )
        for route, series in self._metrics.routes():
            for (method, status_class), count in list(series.requests.items()):
                requests.add_metric([route, method, status_class], count)
            duration.add_metric([route], series.duration.buckets(), series.duration.total)
            if any(series.upstream.counts):
                upstream.add_metric([route], series.upstream.buckets(), series.upstream.total)
            bytes_in.add_metric([route], series.bytes_in)
            bytes_out.add_metric([route], series.bytes_out)
        in_flight = GaugeMetricFamily("bearerd_requests_in_flight", "Requests being handled now")
        in_flight.add_metric([], self._metrics.in_flight)
        yield from (requests, duration, upstream, bytes_in, bytes_out, in_flight)


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
