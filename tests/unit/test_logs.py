"""Redaction: no token, secret, assertion or Authorization value survives the log pipeline."""

from __future__ import annotations

import io
import json
import logging

import structlog

from bearerd.logs import configure_logging

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3gifQ.c2lnbmF0dXJlLWJ5dGVz"


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secret_keys_jwts_bearer_values_and_known_secrets_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream, secrets=["super-secret-value"])
    log = structlog.get_logger("t")
    log.info(
        "event",
        authorization="Bearer abc.def",
        access_token=JWT,
        nested={"client_secret": "x", "ok": f"token {JWT} inside"},
        message="header was Bearer abcdefghijkl and secret super-secret-value",
        items=[JWT, "fine"],
    )
    text = stream.getvalue()
    for leaked in (JWT, "abc.def", "abcdefghijkl", "super-secret-value"):
        assert leaked not in text
    (line,) = lines(stream)
    assert line["authorization"] == "[redacted]"
    assert line["items"] == ["[redacted-jwt]", "fine"]
    assert line["nested"] == {"client_secret": "[redacted]", "ok": "token [redacted-jwt] inside"}


def test_stdlib_logging_goes_through_redaction() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    logging.getLogger("bearerd.test").warning("sent Authorization: Bearer %s", JWT)
    assert JWT not in stream.getvalue()
    assert "Bearer [redacted" in stream.getvalue()


def test_exceptions_are_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    assert JWT not in stream.getvalue()


def test_level_filter() -> None:
    stream = io.StringIO()
    configure_logging("json", "warning", stream=stream)
    structlog.get_logger("t").info("quiet")
    structlog.get_logger("t").warning("loud")
    assert [entry["event"] for entry in lines(stream)] == ["loud"]
