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


def test_a_stdlib_record_renders_only_its_own_exception() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    try:
        raise KeyError("somebody else's problem")
    except KeyError:
        # A record made with nothing of its own to show (exc_info resolved to (None, None, None))
        # while an unrelated exception is being handled further up.
        logging.getLogger("lib").error("no exception here", exc_info=(None, None, None))
        try:
            raise ValueError("this record's own")
        except ValueError:
            logging.getLogger("lib").exception("with its own")
    first, second = lines(stream)
    assert "exception" not in first and "KeyError" not in stream.getvalue().splitlines()[0]
    assert "ValueError: this record's own" in str(second["exception"])


def test_malformed_requests_are_one_rate_limited_warning_without_traceback() -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    from bearerd.logs import MALFORMED_LOG_INTERVAL_S, MalformedRequests
    from support.clock import FakeClock

    clock = FakeClock()
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    server = logging.getLogger("aiohttp.server.test")
    server.addFilter(MalformedRequests(clock=clock))
    try:
        for _ in range(5):
            server.error("Error handling request from %s", "127.0.0.1", exc_info=BadHttpMessage("Invalid header"))
        clock.now += MALFORMED_LOG_INTERVAL_S
        server.error("Error handling request from %s", "127.0.0.1", exc_info=BadHttpMessage("Invalid header"))
        try:
            raise RuntimeError("a real bug")
        except RuntimeError:
            server.exception("Unhandled exception")
    finally:
        server.filters.clear()
    first, second, bug = lines(stream)
    assert first["event"] == "request.malformed" and first["level"] == "warning" and "exception" not in first
    assert first["status"] == 400 and "Invalid header" in str(first["error"])
    assert second["suppressed"] == 4 and "exception" not in second
    assert bug["level"] == "error" and "RuntimeError: a real bug" in str(bug["exception"])  # bugs keep theirs
