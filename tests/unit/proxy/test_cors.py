"""CORS: preflights answered for listed origins, others refused, off when nothing is listed."""

from __future__ import annotations

import pytest

from bearerd.errors import CorsOriginRefused
from bearerd.proxy.cors import CorsPolicy, answer_headers, preflight_method

ORIGIN = "http://localhost:3000"


def test_off_by_default_whatever_the_origin() -> None:
    assert CorsPolicy().allowed("http://evil.example") is None


def test_a_listed_origin_is_echoed_and_others_refused() -> None:
    policy = CorsPolicy.of([ORIGIN], 600)
    assert policy.allowed(ORIGIN) == ORIGIN
    assert policy.allowed(None) is None  # not a browser's cross-origin request
    with pytest.raises(CorsOriginRefused, match="evil"):
        policy.allowed("http://evil.example")
    assert CorsPolicy.of(["*"], 1).allowed("http://any.example") == "http://any.example"


def test_preflight_answer() -> None:
    request = {"access-control-request-method": "PUT", "access-control-request-headers": "content-type, x-trace"}
    assert preflight_method("OPTIONS", request.get) == "PUT"
    nothing: dict[str, str] = {}
    assert preflight_method("OPTIONS", nothing.get) is None and preflight_method("GET", request.get) is None
    assert CorsPolicy.of([ORIGIN], 120).preflight(ORIGIN, "PUT", "content-type, x-trace") == [
        ("Access-Control-Allow-Origin", ORIGIN),
        ("Access-Control-Allow-Methods", "PUT"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Max-Age", "120"),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Headers", "content-type, x-trace"),
    ]
    assert answer_headers(ORIGIN) == [
        ("Access-Control-Allow-Origin", ORIGIN),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]
