"""Metrics: bounded, secret-free labels; one child per known (route, method, status)."""

from __future__ import annotations

from bearerd.metrics import NO_ROUTE, Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_requests_by_route_method_and_status_class() -> None:
    metrics = Metrics()
    metrics.observe_request("secretapi", "GET", 200, 0.01, 0.005, 10, 20)
    metrics.observe_request("secretapi", "GET", 204, 0.01, None, 0, 0)
    metrics.observe_request(None, "BREW", 404, 0.001, None, 0, 0)
    metrics.observe_request("secretapi", "GET", 499, 0.2, None, 0, 0)
    total = "bearerd_requests_total"
    assert sample(metrics, total, route="secretapi", method="GET", status_class="2xx") == 2
    assert sample(metrics, total, route=NO_ROUTE, method="OTHER", status_class="4xx") == 1  # no client-chosen label
    assert sample(metrics, total, route="secretapi", method="GET", status_class="client_closed") == 1
    assert sample(metrics, "bearerd_request_body_bytes_total", route="secretapi") == 10
    assert sample(metrics, "bearerd_response_body_bytes_total", route="secretapi") == 20
    assert sample(metrics, "bearerd_upstream_duration_seconds_count", route="secretapi") == 1


def test_shared_tokens_are_counted_but_not_timed_as_identity_provider_calls() -> None:
    metrics = Metrics()
    metrics.observe_acquisition("app", "success", 0.2)
    metrics.observe_acquisition("app", "shared", 0.001)
    assert sample(metrics, "bearerd_token_acquisitions_total", credential="app", outcome="shared") == 1
    assert sample(metrics, "bearerd_identity_provider_duration_seconds_count", credential="app") == 1


def test_token_expiry_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    expiry: list[tuple[str, str, float | None]] = [("secretapi", "app", 100.0), ("otherapi", "app", None)]
    metrics.watch_token_expiry(lambda: expiry)
    assert sample(metrics, "bearerd_token_expires_in_seconds", route="secretapi", credential="app") == 100
    assert sample(metrics, "bearerd_token_expires_in_seconds", route="otherapi", credential="app") is None
    expiry[0] = ("secretapi", "app", 50.0)
    assert sample(metrics, "bearerd_token_expires_in_seconds", route="secretapi", credential="app") == 50
