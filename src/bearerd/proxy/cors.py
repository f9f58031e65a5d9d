"""CORS for browser clients: preflights answered by bearerd, allowed origins echoed on answers.

App Proxy answers an unauthenticated preflight (no token, by the spec) with a redirect to the
sign-in page, which a browser treats as a failed preflight. For the origins a route lists,
bearerd answers the preflight itself; any other origin is refused before anything is forwarded.
Off unless ``cors_origins`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bearerd.errors import CorsOriginRefused


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: frozenset[str] = frozenset()
    max_age_s: int = 600

    @classmethod
    def of(cls, origins: Iterable[str], max_age_s: int) -> CorsPolicy:
        return cls(frozenset(origins), max_age_s)

    def allowed(self, origin: str | None) -> str | None:
        """The origin to echo, None when CORS is off or the request has no Origin; refuses others."""
        if not self.origins or origin is None:
            return None
        if origin not in self.origins and "*" not in self.origins:
            raise CorsOriginRefused(f"origin {origin!r} is not in this route's cors_origins")
        return origin

    def preflight(self, origin: str, method: str, wanted_headers: str | None) -> list[tuple[str, str]]:
        """The headers of bearerd's own 204 answer to a preflight from an allowed origin, for the
        request's ``Access-Control-Request-Method`` and ``-Headers``."""
        headers = [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", method),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Max-Age", str(self.max_age_s)),
            ("Vary", "Origin"),
        ]
        if wanted_headers:
            headers.append(("Access-Control-Allow-Headers", wanted_headers))
        return headers


def preflight_method(method: str, get: Callable[[str], str | None]) -> str | None:
    """The method a preflight asks about, or None when this is not a preflight."""
    return get("access-control-request-method") if method == "OPTIONS" else None


def answer_headers(origin: str) -> list[tuple[str, str]]:
    """Added to every proxied answer for an allowed origin."""
    return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
