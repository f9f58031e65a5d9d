"""The HTTP/1.1 core's own exceptions, so the caller maps them to problem types in one place.

Refusals the server makes by itself (malformed request, oversized headers) never surface here:
the core answers those with ``bearerd.errors`` problem+json directly. What is left is what a
handler has to decide about::

    H1Error
    ├── ClientGone                the client connection ended (or its body can't be completed)
    ├── ClientTLSError            a TLS handshake with the client inside a CONNECT tunnel failed (``reason``)
    ├── BodyTooLarge              ``read(limit)`` met a body over the limit
    ├── PoolBusy                  no pooled connection freed up in time (``retry_after_s``)
    └── UpstreamError
        ├── UpstreamConnectError  DNS, refused, unreachable, egress proxy refused (``reason``)
        │   └── UpstreamTLSError  handshake failed; ``verify_failed`` for certificate problems
        ├── UpstreamTimeoutError  ``phase``: connect | request | response | body
        ├── UpstreamProtocolError invalid or oversized response head, unsupported coding
        └── UpstreamClosedError   connection ended mid-response (``before_response`` if no byte came)

Messages name what failed and never carry header values, bodies or URLs with credentials.
"""

from __future__ import annotations

from typing import Literal

TimeoutPhase = Literal["connect", "request", "response", "body"]


class H1Error(Exception):
    """Base of everything the core raises on purpose."""


class ClientGone(H1Error):
    """The client went away (or its request body can't complete); nothing more can be sent or read."""


class ClientTLSError(H1Error):
    """The client's TLS handshake inside a CONNECT tunnel failed (it doesn't trust the certificate, its SNI
    was refused, it timed out); ``reason`` is OpenSSL's short name or what happened."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"client TLS handshake failed: {reason}")
        self.reason = reason


class BodyTooLarge(H1Error):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class PoolBusy(H1Error):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__("every upstream connection stayed busy")
        self.retry_after_s = retry_after_s


class UpstreamError(H1Error):
    """The upstream leg failed; ``str()`` is safe to log."""


class UpstreamConnectError(UpstreamError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"connect failed: {reason}")
        self.reason = reason


class UpstreamTLSError(UpstreamConnectError):
    def __init__(self, reason: str, *, verify_failed: bool) -> None:
        super().__init__(f"TLS: {reason}")
        self.verify_failed = verify_failed


class UpstreamTimeoutError(UpstreamError):
    def __init__(self, phase: TimeoutPhase) -> None:
        super().__init__(f"upstream timed out ({phase})")
        self.phase: TimeoutPhase = phase


class UpstreamProtocolError(UpstreamError):
    pass


class UpstreamClosedError(UpstreamError):
    def __init__(self, message: str, *, before_response: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response
