"""Pure HTTP/1.1 wire decisions shared by both sides: message heads, framing, codings.

No sockets here, so every rule is tested on its own. Heads are built as one ``str`` and
encoded once (latin-1, the inverse of how the parsers decoded them), ready for one write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Headers = Sequence[tuple[str, str]]

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

# How a message body is delimited.
NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3

# Names the core writes itself; a caller's copies are dropped (never two framings).
# Lengths first: one int lookup keeps almost every header off the lower-casing path.
_RESPONSE_OWNED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_REQUEST_OWNED = frozenset({"content-length", "transfer-encoding"})
_OWNED_LENGTHS = frozenset(len(n) for n in _RESPONSE_OWNED)

_status_lines: dict[tuple[int, str], str] = {}


def status_line(status: int, reason: str) -> str:
    key = (status, reason)
    line = _status_lines.get(key)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status {status}")
        line = f"HTTP/1.1 {status} {reason}\r\n"
        if len(_status_lines) < 512:
            _status_lines[key] = line
    return line


def response_framing(head_request: bool, status: int, http11: bool, length: int | None) -> tuple[int, str]:
    """(mode, framing header line) for a final response; RFC 9112 §6.1-6.3."""
    if status < 200 or status == 204:
        return NO_BODY, ""  # never a Content-Length on 1xx/204 (RFC 9110 §8.6)
    if head_request or status == 304:
        # No body follows, but the length the GET would have had may be stated.
        return NO_BODY, ("" if length is None else f"Content-Length: {length}\r\n")
    if length is not None:
        return LENGTH, f"Content-Length: {length}\r\n"
    if http11:
        return CHUNKED, "Transfer-Encoding: chunked\r\n"
    return UNTIL_CLOSE, ""


def response_head(status: int, reason: str, headers: Headers, framing: str, connection: str) -> bytes:
    """Status line + the caller's headers (minus framing/connection ones) + ours + blank line."""
    parts = [status_line(status, reason)]
    for name, value in headers:
        if len(name) in _OWNED_LENGTHS and name.lower() in _RESPONSE_OWNED:
            continue
        parts.append(f"{name}: {value}\r\n")
    parts.append(framing)
    parts.append(connection)
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def raw_head(status: int, reason: str, headers: Headers) -> bytes:
    """A head written exactly as given (1xx, 101, 2xx to CONNECT): no framing of ours."""
    parts = [status_line(status, reason)]
    parts += [f"{name}: {value}\r\n" for name, value in headers]
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def request_head(
    method: str, target: str, headers: Headers, default_host: str, body_length: int | None, has_body: bool
) -> tuple[bytes, int | None]:
    """Request line + headers with our framing; returns (head, caller's Content-Length if any).

    ``body_length`` is the known length (bytes body); for a streamed body (``has_body`` and no
    length) the caller's Content-Length is kept as the framing, else the body is chunked.
    """
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    declared: int | None = None
    host_seen = False
    for name, value in headers:
        n = len(name)
        if n == 4 and not host_seen and name.lower() == "host":
            host_seen = True
        elif n in _OWNED_LENGTHS and name.lower() in _REQUEST_OWNED:
            if name.lower() == "content-length":
                declared = int(value)
            continue
        parts.append(f"{name}: {value}\r\n")
    if not host_seen:
        parts.append(f"Host: {default_host}\r\n")
    if body_length is not None:
        parts.append(f"Content-Length: {body_length}\r\n")
    elif has_body:
        parts.append("Transfer-Encoding: chunked\r\n" if declared is None else f"Content-Length: {declared}\r\n")
    elif declared is not None or method in ("POST", "PUT", "PATCH"):
        parts.append("Content-Length: 0\r\n")  # RFC 9110 §8.6: say "no content" where one is expected
    parts.append("\r\n")
    return "".join(parts).encode("latin-1"), declared


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk as three pieces for ``writelines`` (no copy of ``data`` where writev exists)."""
    return b"%x\r\n" % len(data), data, CRLF


def last_chunk(trailers: Iterable[tuple[str, str]] | None) -> bytes:
    if not trailers:
        return LAST_CHUNK
    lines = "".join(f"{name}: {value}\r\n" for name, value in trailers)
    return b"0\r\n" + lines.encode("latin-1") + CRLF


def only_chunked(values: Sequence[str]) -> bool:
    """True when the Transfer-Encoding field(s) say exactly ``chunked`` (RFC 9112 §6.1)."""
    return len(values) == 1 and values[0].strip(" \t").lower() == "chunked"


def content_length(value: str) -> int | None:
    """A Content-Length value as llhttp already validated it (digits, maybe trailing OWS)."""
    value = value.strip(" \t")
    return int(value) if value.isdigit() and value.isascii() else None


def has_token(value: str, token: str) -> bool:
    """Whether a comma-separated list (Connection, Upgrade) contains ``token``, case-insensitively."""
    return any(part.strip(" \t").lower() == token for part in value.split(","))
