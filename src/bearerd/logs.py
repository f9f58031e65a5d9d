"""structlog setup: JSON lines for machines, a console view on a TTY, and redaction for both.

Redaction is a processor in the one pipeline every line goes through — bearerd's own lines and
those of libraries logging through ``logging`` (MSAL, aiohttp) — so no call site has to
remember it. It removes values of secret-named keys, anything shaped like a JWT or a
``Bearer``/``Basic`` credential, and the exact secrets the config loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from bearerd.errors import first_line
from bearerd.logwriter import LogStream, writer_for

REDACTED = "[redacted]"
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "proxy_authorization",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "secret",
        "client_assertion",
        "assertion",
        "password",
        "passphrase",
        "private_key",
        "cookie",
        "set-cookie",
    }
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_MIN_SECRET_LENGTH = 6


class Redactor:
    """Scrubs secrets out of an event dict, recursively."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._trigger = re.compile(r"eyJ|(?i:bearer|basic)")

    def register(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets) | {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = tuple(sorted(known, key=len, reverse=True))
        # One scan tells whether a text needs any scrubbing at all (nearly none does): a JWT's
        # start, a credential scheme (any case), or one of the secrets.
        self._trigger = re.compile("|".join([r"eyJ", r"(?i:bearer|basic)", *map(re.escape, self._secrets)]))

    def scrub_text(self, text: str) -> str:
        if self._trigger.search(text) is None:
            return text
        text = _JWT.sub("[redacted-jwt]", text)
        text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {k: (REDACTED if str(k).lower() in _SECRET_KEYS else self.scrub(v)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        if isinstance(value, bytes | bytearray):
            return self.scrub_text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, BaseException):
            return self.scrub_text(repr(value))
        return value

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        for key, value in event_dict.items():
            if key.lower() in _SECRET_KEYS:
                event_dict[key] = REDACTED
            elif isinstance(value, str | dict | list | tuple | bytes | bytearray | BaseException):
                event_dict[key] = self.scrub(value)
        return event_dict


REDACTOR = Redactor()


class AccessLog:
    """The one line per request, written without structlog's processor chain.

    Through the chain (bind, contextvars, level, timestamp, redaction of every value, render,
    print + flush) the access line was ~15% of the daemon's CPU in the benchmark's profile. Here
    it is the same JSON, rendered by hand (``event``, ``level``, ``timestamp`` and the
    fields), with every string value scrubbed by the same ``Redactor`` — so the guarantee is
    unchanged — and handed to the same stream as every other line, so order is kept. That
    stream is the log writer's (``logwriter.py``): its thread writes whatever has queued up in one
    system call, so under load lines go out in batches, and a stalled reader costs dropped lines,
    never a blocked request. In console mode (a person at a terminal) lines go through structlog,
    for its formatting.
    """

    def __init__(self) -> None:
        self._stream: TextIO | LogStream | None = None
        self._min_level = logging.INFO
        self._fallback = structlog.get_logger("bearerd.access")
        self._second = 0
        self._second_text = ""

    def configure(self, stream: TextIO | LogStream | None, min_level: int) -> None:
        self._stream = stream  # None: console mode, through structlog
        self._min_level = min_level
        self._fallback = structlog.get_logger("bearerd.access").bind()

    def write(self, debug: bool, fields: dict[str, object]) -> None:
        """One access line from its fields (each string scrubbed)."""
        if not self.wanted(debug):
            return
        if self._stream is None:
            (self._fallback.debug if debug else self._fallback.info)("request", **fields)
            return
        self.write_rendered(debug, ", ".join(f'"{k}": {render_value(v)}' for k, v in fields.items()))

    def wanted(self, debug: bool) -> bool:
        return (logging.DEBUG if debug else logging.INFO) >= self._min_level

    @property
    def console(self) -> bool:
        """Lines go through structlog (a person at a terminal), not rendered here."""
        return self._stream is None

    def write_rendered(self, debug: bool, body: str) -> None:
        """One access line whose fields are already JSON (``"key": value, …``, strings scrubbed)."""
        stream = self._stream
        if stream is None:
            return
        level = "debug" if debug else "info"
        stream.write(f'{{{body}, "event": "request", "level": "{level}", "timestamp": "{self._timestamp()}"}}\n')

    def _timestamp(self) -> str:
        """ISO 8601 UTC like structlog's, with the date part formatted once per second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return "%s.%06dZ" % (self._second_text, (now - second) * 1e6)  # noqa: UP031 - %d truncates: cheaper than int()


ACCESS_LOG = AccessLog()
# The access line is rendered by hand, in json.dumps's own format, because it is on every request.
json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii
_JSON_CONSTANTS: dict[object, str] = {True: "true", False: "false", None: "null"}


def render_value(value: object) -> str:
    """A field value as JSON; strings scrubbed of secrets first."""
    if isinstance(value, str):
        return json_string(REDACTOR.scrub_text(value))
    if value is True or value is False or value is None:
        return _JSON_CONSTANTS[value]
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(REDACTOR.scrub(value))


def _scrub_rendered_exception(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    # Tracebacks are rendered to text by format_exc_info; scrub that text too.
    exc = event_dict.get("exception")
    if isinstance(exc, str):
        event_dict["exception"] = REDACTOR.scrub_text(exc)
    return event_dict


def _record_exception_only(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """A stdlib record renders its own exception, or none.

    ``logging`` stores ``exc_info=True`` as whatever was being handled at the call, and a call
    with nothing being handled as ``(None, None, None)`` — which structlog's ``format_exc_info``
    would take as "look at ``sys.exc_info()`` now", rendering an exception of somebody else's.
    Only a real exception tuple on the record is kept.
    """
    exc_info = event_dict.pop("exc_info", None)
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        event_dict["exc_info"] = exc_info
    return event_dict


_FIELDS_ATTR = "bearerd_fields"


def _record_fields(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Fields a filter attached to a stdlib record (``MalformedRequests``) become keys of the line."""
    record = event_dict.get("_record")
    fields = getattr(record, _FIELDS_ATTR, None)
    if isinstance(fields, dict):
        event_dict.update(fields)
    return event_dict


MALFORMED_LOG_INTERVAL_S = 10.0


class MalformedRequests(logging.Filter):
    """aiohttp's server logs every request it cannot parse as an ERROR with a traceback.

    A malformed request is the client's mistake, answered with a 400: not an error of bearerd,
    and a fuzzer or a port scanner turned it into thousands of tracebacks. Here it becomes one
    ``request.malformed`` warning without traceback, at most one per ``MALFORMED_LOG_INTERVAL_S``
    (the next one says how many were left out). Every other record passes unchanged — a
    handler's real exception still logs with its traceback.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._quiet_until = float("-inf")
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError  # aiohttp is loaded wherever this logger logs

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self._clock()
        if now < self._quiet_until:
            self._suppressed += 1
            return False
        self._quiet_until = now + MALFORMED_LOG_INTERVAL_S
        fields: dict[str, object] = {"status": exc.code, "error": first_line(exc.message, 200)}
        if self._suppressed:
            fields["suppressed"] = self._suppressed
            self._suppressed = 0
        record.msg, record.args = "request.malformed", ()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        setattr(record, _FIELDS_ATTR, fields)
        return True


_MALFORMED = MalformedRequests()


def _dropped_notice(console: bool) -> Callable[[int], str]:
    """The line the log writer puts first when a stalled reader takes lines again."""

    def notice(count: int) -> str:
        event = "log.lines_dropped"
        why = "the log reader did not keep up"
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if console:
            return f"{stamp} [warning  ] {event} dropped={count} reason={why!r}\n"
        line = {"event": event, "level": "warning", "dropped": count, "reason": why, "timestamp": stamp}
        return json.dumps(line) + "\n"

    return notice


def _bounded(stream: TextIO, console: bool) -> TextIO | LogStream:
    """``stream`` itself when it is in memory; else the log writer of its file descriptor."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # StringIO, pytest's capture: nothing can block
        return stream
    with contextlib.suppress(OSError, ValueError):
        stream.flush()  # whatever was printed before keeps its place ahead of the log lines
    return LogStream(writer_for(fd, _dropped_notice(console)), tty=stream.isatty())


def configure_logging(
    fmt: str = "auto", level: str = "info", stream: TextIO | None = None, secrets: Iterable[str] = ()
) -> None:
    """Configure structlog and route stdlib logging (MSAL, aiohttp) through the same pipeline.

    Every line goes to ``stream`` (stdout by default) through the bounded, non-blocking log
    writer (``logwriter.py``) when it is a real file descriptor.
    """
    given = stream or sys.stdout
    REDACTOR.register(secrets)
    use_console = fmt == "console" or (fmt == "auto" and given.isatty())
    out = _bounded(given, use_console)
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=given.isatty()) if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        REDACTOR,
    ]
    tail: list[Processor] = [] if use_console else [structlog.processors.format_exc_info, _scrub_rendered_exception]
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_record_exception_only, structlog.stdlib.add_logger_name, _record_fields, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    ACCESS_LOG.configure(None if use_console else out, numeric)
    root.setLevel(numeric)
    # Chatty libraries stay at warning: MSAL's and urllib3's debug lines describe HTTP exchanges.
    for name in ("msal", "urllib3", "aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    server_logger = logging.getLogger("aiohttp.server")
    if _MALFORMED not in server_logger.filters:
        server_logger.addFilter(_MALFORMED)


def redact_mapping(values: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact a mapping in place (used for CLI output that echoes settings)."""
    for key in list(values):
        values[key] = REDACTED if key.lower() in _SECRET_KEYS else REDACTOR.scrub(values[key])
    return values
