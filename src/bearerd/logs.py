"""structlog setup: JSON lines for machines, a console view on a TTY, and redaction for both.

Redaction is a processor in the one pipeline every line goes through — bearerd's own lines and
those of libraries logging through ``logging`` (MSAL, aiohttp) — so no call site has to
remember it. It removes values of secret-named keys, anything shaped like a JWT or a
``Bearer``/``Basic`` credential, and the exact secrets the config loaded.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

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

    def register(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets) | {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def scrub_text(self, text: str) -> str:
        if "eyJ" in text:
            text = _JWT.sub("[redacted-jwt]", text)
        if "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text:
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


def _scrub_rendered_exception(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    # Tracebacks are rendered to text by format_exc_info; scrub that text too.
    exc = event_dict.get("exception")
    if isinstance(exc, str):
        event_dict["exception"] = REDACTOR.scrub_text(exc)
    return event_dict


def configure_logging(
    fmt: str = "auto", level: str = "info", stream: TextIO | None = None, secrets: Iterable[str] = ()
) -> None:
    """Configure structlog and route stdlib logging (MSAL, aiohttp) through the same pipeline."""
    out = stream or sys.stdout
    REDACTOR.register(secrets)
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if use_console else structlog.processors.JSONRenderer()
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
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Chatty libraries stay at warning: MSAL's and urllib3's debug lines describe HTTP exchanges.
    for name in ("msal", "urllib3", "aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def redact_mapping(values: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact a mapping in place (used for CLI output that echoes settings)."""
    for key in list(values):
        values[key] = REDACTED if key.lower() in _SECRET_KEYS else REDACTOR.scrub(values[key])
    return values
