"""The access line's fields come from the request's record: fixed keys first, optional ones when set."""

from __future__ import annotations

from bearerd.proxy.exchange import Exchange


def test_a_plain_request_has_only_what_happened() -> None:
    record = Exchange("GET", 0.0, path="/secretapi/x", route="secretapi", auth="memory", status=200)
    assert record.access_fields(1.5) == {
        "method": "GET",
        "path": "/secretapi/x",
        "route": "secretapi",
        "auth": "memory",
        "status": 200,
        "duration_ms": 1.5,
    }


def test_everything_that_happened_is_named() -> None:
    record = Exchange(
        "POST",
        0.0,
        path="/x",
        route="r",
        via="forward_proxy",
        auth="refresh",
        retried="claims",
        upstream_ms=3.2,
        bytes_in=10,
        bytes_out=20,
        status=502,
        problem="upstream-unreachable",
        detail="cannot connect",
        upstream_error="ClientPayloadError",
    )
    fields = record.access_fields(4.0)
    assert list(fields) == [
        "method", "via", "path", "route", "auth", "retried", "upstream_ms", "bytes_in", "bytes_out",
        "problem", "detail", "upstream_error", "status", "duration_ms",
    ]  # fmt: skip
    assert fields["via"] == "forward_proxy" and fields["retried"] == "claims"


def test_the_rendered_line_is_the_fields_as_json_and_scrubbed() -> None:
    import json

    from bearerd.logs import REDACTOR

    REDACTOR.register(["s3cr3t-in-a-path"])
    record = Exchange(
        "PROPFIND", 0.0, path='/x/s3cr3t-in-a-path/"q"', route="r", via="forward_proxy", auth="refresh",
        websocket=True, retried="refused", upstream_ms=1.25, bytes_in=3, bytes_out=4, status=502,
        problem="upstream-unreachable", detail="Bearer abc.def failed", client_closed=True, upstream_error="X",
    )  # fmt: skip
    rendered = json.loads("{" + record.access_json(2.5) + "}")
    expected = record.access_fields(2.5)
    expected["path"] = '/x/[redacted]/"q"'
    expected["detail"] = "Bearer [redacted] failed"
    assert rendered == expected and list(rendered) == list(expected)
    plain = Exchange("GET", 0.0, status=200)
    assert json.loads("{" + plain.access_json(0.1) + "}") == plain.access_fields(0.1)
